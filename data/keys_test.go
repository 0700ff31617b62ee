package data

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func sameKey(a, b SSHKey) bool {
	return a.Fingerprint == b.Fingerprint && a.Type == b.Type && a.UserID == b.UserID && a.LinkedFrom == b.LinkedFrom &&
		a.LinkedAt.Equal(b.LinkedAt) && a.ExpiresAt.Equal(b.ExpiresAt) && a.LastUsed.Equal(b.LastUsed)
}

func fingerprints(ks []SSHKey) []string {
	out := []string{}
	for _, k := range ks {
		out = append(out, k.Fingerprint)
	}
	return out
}

func linkKey(t *testing.T, s *Store, k SSHKey) SSHKey {
	t.Helper()
	got, err := s.LinkKey(context.Background(), k)
	if err != nil {
		t.Fatalf("LinkKey(%+v): %v", k, err)
	}
	return got
}

func TestSSHKeyExpired(t *testing.T) {
	t0 := epoch()
	for _, tc := range []struct {
		expires time.Time
		now     time.Time
		want    bool
	}{
		{time.Time{}, t0, false},
		{time.Time{}, time.Time{}, false},
		{t0, t0.Add(-time.Nanosecond), false},
		{t0, t0, true},
		{t0, t0.Add(time.Hour), true},
	} {
		if got := (SSHKey{ExpiresAt: tc.expires}).Expired(tc.now); got != tc.want {
			t.Errorf("ExpiresAt %v, now %v: Expired = %v, want %v", tc.expires, tc.now, got, tc.want)
		}
	}
}

// TestLinkKey runs one story on one store: each step's outcome depends on the ones before.
func TestLinkKey(t *testing.T) {
	t0 := epoch()
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	s := openTest(t, "")
	ctx := context.Background()
	alice := mustUser(t, s, User{ID: "u_alice", Email: "alice@example.com"})
	bob := mustUser(t, s, User{ID: "u_bob", Email: "bob@example.com"})
	const fp = "SHA256:k1"
	for _, tc := range []struct {
		step    string
		k       SSHKey
		wantErr error
		want    SSHKey // the link as returned and then read back; on error, what stays stored
	}{
		{"alice links a new key",
			SSHKey{Fingerprint: fp, Type: "ssh-ed25519", UserID: alice.ID, LinkedAt: at(0), ExpiresAt: at(60), LastUsed: at(5), LinkedFrom: "192.0.2.1"}, nil,
			SSHKey{Fingerprint: fp, Type: "ssh-ed25519", UserID: alice.ID, LinkedAt: at(0), ExpiresAt: at(60), LastUsed: at(5), LinkedFrom: "192.0.2.1"}},
		{"alice renews it: replaced, LastUsed kept",
			SSHKey{Fingerprint: fp, Type: "ssh-ed25519", UserID: alice.ID, LinkedAt: at(30), ExpiresAt: at(120), LinkedFrom: "192.0.2.2"}, nil,
			SSHKey{Fingerprint: fp, Type: "ssh-ed25519", UserID: alice.ID, LinkedAt: at(30), ExpiresAt: at(120), LastUsed: at(5), LinkedFrom: "192.0.2.2"}},
		{"bob cannot take it",
			SSHKey{Fingerprint: fp, UserID: bob.ID, LinkedAt: at(119)}, ErrKeyLinked,
			SSHKey{Fingerprint: fp, Type: "ssh-ed25519", UserID: alice.ID, LinkedAt: at(30), ExpiresAt: at(120), LastUsed: at(5), LinkedFrom: "192.0.2.2"}},
		{"bob takes it once it expired, at the deadline itself",
			SSHKey{Fingerprint: fp, Type: "ssh-ed25519", UserID: bob.ID, LinkedAt: at(120), LinkedFrom: "198.51.100.1"}, nil,
			SSHKey{Fingerprint: fp, Type: "ssh-ed25519", UserID: bob.ID, LinkedAt: at(120), LinkedFrom: "198.51.100.1"}},
		{"a link that never expires is never taken",
			SSHKey{Fingerprint: fp, UserID: alice.ID, LinkedAt: at(100000)}, ErrKeyLinked,
			SSHKey{Fingerprint: fp, Type: "ssh-ed25519", UserID: bob.ID, LinkedAt: at(120), LinkedFrom: "198.51.100.1"}},
		{"times are stored in UTC",
			SSHKey{Fingerprint: "SHA256:k2", UserID: alice.ID, LinkedAt: at(0).In(time.FixedZone("X", 3600)), ExpiresAt: at(9).In(time.FixedZone("Y", -7200))}, nil,
			SSHKey{Fingerprint: "SHA256:k2", UserID: alice.ID, LinkedAt: at(0), ExpiresAt: at(9)}},
		{"an unknown user links nothing",
			SSHKey{Fingerprint: "SHA256:k3", UserID: "u_nobody", LinkedAt: at(0)}, ErrNotFound, SSHKey{}},
	} {
		got, err := s.LinkKey(ctx, tc.k)
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("%s: LinkKey: %v, want %v", tc.step, err, tc.wantErr)
		}
		if err == nil && (!sameKey(got, tc.want) || got.LinkedAt.Location() != time.UTC) {
			t.Errorf("%s: LinkKey returned %+v, want %+v", tc.step, got, tc.want)
		}
		if errors.Is(err, ErrKeyLinked) {
			for _, secret := range []string{alice.ID, alice.Email, bob.ID, bob.Email} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("%s: the error says whose the key is: %v", tc.step, err)
				}
			}
		}
		stored, err := s.GetKey(ctx, tc.k.Fingerprint)
		if tc.want.Fingerprint == "" {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: stored %+v, %v; want nothing", tc.step, stored, err)
			}
		} else if err != nil || !sameKey(stored, tc.want) {
			t.Errorf("%s: stored %+v, %v; want %+v", tc.step, stored, err, tc.want)
		}
		checkIdentityIndexes(t, s)
	}
	for _, tc := range []struct {
		user string
		want []string
	}{
		{alice.ID, []string{"SHA256:k2"}},
		{bob.ID, []string{fp}},
	} {
		if got, err := s.KeysByUser(ctx, tc.user); err != nil || !slices.Equal(fingerprints(got), tc.want) {
			t.Errorf("KeysByUser(%s) = %v, %v; want %v", tc.user, fingerprints(got), err, tc.want)
		}
	}
}

func TestLinkKeyDefaultsLinkedAtToNow(t *testing.T) {
	s := openTest(t, "")
	u := mustUser(t, s, User{})
	before := time.Now()
	k := linkKey(t, s, SSHKey{Fingerprint: "SHA256:x", UserID: u.ID})
	if k.LinkedAt.Before(before.Add(-time.Second)) || k.LinkedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("link without LinkedAt: %+v", k)
	}
}

func TestKeysByUserOrderAndIsolation(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	// User ids that start with one another: the prefix trap.
	for _, id := range []string{"u_a", "u_ab", "u_a\x01"} {
		if _, err := s.CreateUser(ctx, User{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []SSHKey{
		{Fingerprint: "SHA256:3", UserID: "u_a", LinkedAt: t0.Add(2 * time.Minute)},
		{Fingerprint: "SHA256:1", UserID: "u_a", LinkedAt: t0},
		{Fingerprint: "SHA256:2", UserID: "u_a", LinkedAt: t0.Add(time.Minute), ExpiresAt: t0}, // expired: still listed
		{Fingerprint: "SHA256:0", UserID: "u_a", LinkedAt: t0},                                 // ties with 1: fingerprint order
		{Fingerprint: "SHA256:4", UserID: "u_ab", LinkedAt: t0},
		{Fingerprint: "SHA256:5", UserID: "u_a\x01", LinkedAt: t0},
	} {
		linkKey(t, s, k)
	}
	for _, tc := range []struct {
		user string
		want []string
	}{
		{"u_a", []string{"SHA256:0", "SHA256:1", "SHA256:2", "SHA256:3"}},
		{"u_ab", []string{"SHA256:4"}},
		{"u_a\x01", []string{"SHA256:5"}},
		{"u_", []string{}},
		{"u_nobody", []string{}},
	} {
		got, err := s.KeysByUser(ctx, tc.user)
		if err != nil || !slices.Equal(fingerprints(got), tc.want) {
			t.Errorf("KeysByUser(%q) = %v, %v; want %v", tc.user, fingerprints(got), err, tc.want)
		}
	}
}

func TestTouchKey(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	u := mustUser(t, s, User{})
	k := linkKey(t, s, SSHKey{Fingerprint: "SHA256:x", UserID: u.ID, LinkedAt: t0, ExpiresAt: t0.Add(time.Hour)})
	for _, tc := range []struct {
		fp       string
		lastUsed time.Time
		wantErr  error
	}{
		{"SHA256:x", t0.Add(time.Minute), nil},
		{"SHA256:x", t0.Add(2 * time.Hour), nil}, // an expired link may be touched and stays expired
		{"SHA256:y", t0.Add(time.Minute), ErrNotFound},
	} {
		before, _ := s.GetKey(ctx, k.Fingerprint)
		err := s.TouchKey(ctx, tc.fp, tc.lastUsed)
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("TouchKey(%s): %v, want %v", tc.fp, err, tc.wantErr)
		}
		want := before
		if err == nil {
			want.LastUsed = tc.lastUsed
		}
		if got, _ := s.GetKey(ctx, k.Fingerprint); !sameKey(got, want) {
			t.Errorf("TouchKey(%s): stored %+v, want %+v", tc.fp, got, want)
		}
		checkIdentityIndexes(t, s)
	}
}

func TestRevokeKey(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	alice, bob := mustUser(t, s, User{ID: "u_alice"}), mustUser(t, s, User{ID: "u_bob"})
	k := linkKey(t, s, SSHKey{Fingerprint: "SHA256:x", Type: "ssh-ed25519", UserID: alice.ID, LinkedAt: t0, ExpiresAt: t0.Add(time.Hour)})
	for i, wantErr := range []error{nil, ErrNotFound} {
		got, err := s.RevokeKey(ctx, k.Fingerprint)
		if !errors.Is(err, wantErr) || err == nil && !sameKey(got, k) {
			t.Fatalf("RevokeKey #%d = %+v, %v; want %+v, %v", i+1, got, err, k, wantErr)
		}
		checkIdentityIndexes(t, s)
	}
	if _, err := s.GetKey(ctx, k.Fingerprint); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetKey after revoke: %v", err)
	}
	if keys, err := s.KeysByUser(ctx, alice.ID); err != nil || len(keys) != 0 {
		t.Fatalf("KeysByUser after revoke: %v, %v", fingerprints(keys), err)
	}
	// A revoked key is free for anyone at once.
	linkKey(t, s, SSHKey{Fingerprint: k.Fingerprint, UserID: bob.ID, LinkedAt: t0})
	// Nothing due: the revoked link's deadline went with it.
	if swept, err := s.SweepExpiredKeys(ctx, t0.Add(2*time.Hour), 0); err != nil || len(swept) != 0 {
		t.Fatalf("sweep after revoke: %v, %v", fingerprints(swept), err)
	}
}

func TestSweepExpiredKeys(t *testing.T) {
	t0 := epoch()
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	seed := []SSHKey{
		{Fingerprint: "SHA256:e3", ExpiresAt: at(3)},
		{Fingerprint: "SHA256:e1", ExpiresAt: at(1)},
		{Fingerprint: "SHA256:e2", ExpiresAt: at(2)},
		{Fingerprint: "SHA256:now", ExpiresAt: at(10)},
		{Fingerprint: "SHA256:later", ExpiresAt: at(11)},
		{Fingerprint: "SHA256:forever"},
		{Fingerprint: "SHA256:ancient", ExpiresAt: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tc := range []struct {
		name   string
		limit  int
		sweeps [][]string // swept by each successive sweep at at(10)
	}{
		{"no limit", 0, [][]string{{"SHA256:ancient", "SHA256:e1", "SHA256:e2", "SHA256:e3", "SHA256:now"}, nil}},
		{"limit 2, oldest first", 2, [][]string{{"SHA256:ancient", "SHA256:e1"}, {"SHA256:e2", "SHA256:e3"}, {"SHA256:now"}, nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, "")
			ctx := context.Background()
			u := mustUser(t, s, User{})
			for _, k := range seed {
				k.UserID, k.LinkedAt = u.ID, at(-60)
				linkKey(t, s, k)
			}
			for i, want := range tc.sweeps {
				got, err := s.SweepExpiredKeys(ctx, at(10), tc.limit)
				if err != nil || !slices.Equal(fingerprints(got), append([]string{}, want...)) {
					t.Fatalf("sweep %d removed %v, %v; want %v", i+1, fingerprints(got), err, want)
				}
				for _, k := range got {
					if k.UserID != u.ID || !k.Expired(at(10)) {
						t.Errorf("sweep returned %+v", k)
					}
					if _, err := s.GetKey(ctx, k.Fingerprint); !errors.Is(err, ErrNotFound) {
						t.Errorf("GetKey(%s) after the sweep: %v", k.Fingerprint, err)
					}
				}
				checkIdentityIndexes(t, s)
			}
			left, err := s.KeysByUser(ctx, u.ID)
			if want := []string{"SHA256:forever", "SHA256:later"}; err != nil || !slices.Equal(fingerprints(left), want) {
				t.Errorf("left %v, %v; want %v", fingerprints(left), err, want)
			}
		})
	}
}

// A sweep with nothing due commits no transaction, and a stale index entry is dropped.
func TestSweepExpiredKeysQuietAndStale(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	u := mustUser(t, s, User{})
	linkKey(t, s, SSHKey{Fingerprint: "SHA256:live", UserID: u.ID, LinkedAt: t0, ExpiresAt: t0.Add(time.Hour)})
	id := txID(t, s)
	if got, err := s.SweepExpiredKeys(ctx, t0, 0); err != nil || len(got) != 0 {
		t.Fatalf("sweep = %v, %v", fingerprints(got), err)
	}
	if txID(t, s) != id {
		t.Error("a sweep with nothing due committed a transaction")
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketKeysByExpiry)).Put(expiryKey(t0, "SHA256:ghost"), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.SweepExpiredKeys(ctx, t0.Add(time.Minute), 0); err != nil || len(got) != 0 {
		t.Fatalf("sweep = %v, %v; want nothing", fingerprints(got), err)
	}
	checkIdentityIndexes(t, s)
}

// txID is the id of the last committed write transaction.
func txID(t testing.TB, s *Store) int {
	t.Helper()
	id := -1
	if err := s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}
