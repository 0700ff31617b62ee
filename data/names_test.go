package data

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// epoch is the tests' fixed "now".
func epoch() time.Time { return time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC) }

func claim(t *testing.T, s *Store, c NameClaim) NameClaim {
	t.Helper()
	got, err := s.ClaimName(context.Background(), c)
	if err != nil {
		t.Fatalf("ClaimName(%+v): %v", c, err)
	}
	return got
}

func claimNames(cs []NameClaim) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func sameClaim(a, b NameClaim) bool {
	return a.Name == b.Name && a.Owner == b.Owner && a.Kind == b.Kind && a.Hint == b.Hint &&
		a.ClaimedAt.Equal(b.ClaimedAt) && a.LastUsed.Equal(b.LastUsed) && a.ExpiresAt.Equal(b.ExpiresAt)
}

// checkIndexes fails the test unless both name indexes hold exactly the entries the names
// bucket implies.
func checkIndexes(t *testing.T, s *Store) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		var wantOwner, wantExpiry, gotOwner, gotExpiry [][]byte
		err := tx.Bucket([]byte(bucketNames)).ForEach(func(k, v []byte) error {
			c, err := decodeName(string(k), v)
			if err != nil {
				return err
			}
			wantOwner = append(wantOwner, ownerKey(c.Owner, c.Name))
			if !c.ExpiresAt.IsZero() {
				wantExpiry = append(wantExpiry, expiryKey(c.ExpiresAt, c.Name))
			}
			return nil
		})
		if err != nil {
			return err
		}
		tx.Bucket([]byte(bucketNamesByOwner)).ForEach(func(k, _ []byte) error {
			gotOwner = append(gotOwner, bytes.Clone(k))
			return nil
		})
		tx.Bucket([]byte(bucketNamesByExpiry)).ForEach(func(k, _ []byte) error {
			gotExpiry = append(gotExpiry, bytes.Clone(k))
			return nil
		})
		for _, l := range [][][]byte{wantOwner, wantExpiry} {
			slices.SortFunc(l, bytes.Compare)
		}
		if !slices.EqualFunc(gotOwner, wantOwner, bytes.Equal) {
			t.Errorf("owner index %q, want %q", gotOwner, wantOwner)
		}
		if !slices.EqualFunc(gotExpiry, wantExpiry, bytes.Equal) {
			t.Errorf("expiry index %q, want %q", gotExpiry, wantExpiry)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestClaimName runs one story on one store: each step's outcome depends on the ones before.
func TestClaimName(t *testing.T) {
	t0 := epoch()
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	s := openTest(t, "")
	ctx := context.Background()
	for _, tc := range []struct {
		step    string
		c       NameClaim
		wantErr error
		want    NameClaim // the claim as returned and then read back; ignored on error
	}{
		{"new random claim starts at LastUsed",
			NameClaim{Name: "quiet-fox", Owner: "alice", Kind: NameRandom, Hint: "h1", LastUsed: at(0), ExpiresAt: at(60)}, nil,
			NameClaim{Name: "quiet-fox", Owner: "alice", Kind: NameRandom, Hint: "h1", ClaimedAt: at(0), LastUsed: at(0), ExpiresAt: at(60)}},
		{"same owner refreshes and upgrades to requested",
			NameClaim{Name: "quiet-fox", Owner: "alice", Kind: NameRequested, Hint: "h2", LastUsed: at(10), ExpiresAt: at(120)}, nil,
			NameClaim{Name: "quiet-fox", Owner: "alice", Kind: NameRequested, Hint: "h2", ClaimedAt: at(0), LastUsed: at(10), ExpiresAt: at(120)}},
		{"same owner never downgrades; ClaimedAt kept; expiry cleared",
			NameClaim{Name: "quiet-fox", Owner: "alice", Kind: NameRandom, Hint: "h3", ClaimedAt: at(5), LastUsed: at(20)}, nil,
			NameClaim{Name: "quiet-fox", Owner: "alice", Kind: NameRequested, Hint: "h3", ClaimedAt: at(0), LastUsed: at(20)}},
		{"another owner is refused",
			NameClaim{Name: "quiet-fox", Owner: "bob", Kind: NameRequested, LastUsed: at(30)}, ErrNameTaken,
			NameClaim{Name: "quiet-fox", Owner: "alice", Kind: NameRequested, Hint: "h3", ClaimedAt: at(0), LastUsed: at(20)}},
		{"alice's expiring claim",
			NameClaim{Name: "old", Owner: "alice", Kind: NameRequested, LastUsed: at(0), ExpiresAt: at(60)}, nil,
			NameClaim{Name: "old", Owner: "alice", Kind: NameRequested, ClaimedAt: at(0), LastUsed: at(0), ExpiresAt: at(60)}},
		{"is not free before it expires",
			NameClaim{Name: "old", Owner: "bob", Kind: NameRandom, LastUsed: at(59)}, ErrNameTaken,
			NameClaim{Name: "old", Owner: "alice", Kind: NameRequested, ClaimedAt: at(0), LastUsed: at(0), ExpiresAt: at(60)}},
		{"and is replaced once expired, explicit ClaimedAt kept",
			NameClaim{Name: "old", Owner: "bob", Kind: NameRandom, Hint: "b1", ClaimedAt: at(61), LastUsed: at(62), ExpiresAt: at(90)}, nil,
			NameClaim{Name: "old", Owner: "bob", Kind: NameRandom, Hint: "b1", ClaimedAt: at(61), LastUsed: at(62), ExpiresAt: at(90)}},
		{"empty kind means random",
			NameClaim{Name: "plain", Owner: "alice", LastUsed: at(0)}, nil,
			NameClaim{Name: "plain", Owner: "alice", Kind: NameRandom, ClaimedAt: at(0), LastUsed: at(0)}},
		{"times are stored in UTC",
			NameClaim{Name: "zoned", Owner: "alice", Kind: NameRandom, LastUsed: at(0).In(time.FixedZone("X", 3600)), ExpiresAt: at(9).In(time.FixedZone("Y", -7200))}, nil,
			NameClaim{Name: "zoned", Owner: "alice", Kind: NameRandom, ClaimedAt: at(0), LastUsed: at(0), ExpiresAt: at(9)}},
	} {
		got, err := s.ClaimName(ctx, tc.c)
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("%s: ClaimName: %v, want %v", tc.step, err, tc.wantErr)
		}
		if err == nil && !sameClaim(got, tc.want) {
			t.Errorf("%s: ClaimName returned %+v, want %+v", tc.step, got, tc.want)
		}
		if err == nil && (got.LastUsed.Location() != time.UTC || got.ClaimedAt.Location() != time.UTC) {
			t.Errorf("%s: returned times not in UTC: %+v", tc.step, got)
		}
		if err != nil && (strings.Contains(err.Error(), "alice") || strings.Contains(err.Error(), "bob")) {
			t.Errorf("%s: the error names the owner: %v", tc.step, err)
		}
		stored, err := s.GetName(ctx, tc.c.Name)
		if err != nil || !sameClaim(stored, tc.want) {
			t.Errorf("%s: stored %+v, %v; want %+v", tc.step, stored, err, tc.want)
		}
		checkIndexes(t, s)
	}
	if mine, _ := s.NamesByOwner(ctx, "alice"); slices.Contains(claimNames(mine), "old") {
		t.Errorf("alice still lists a name taken over by b: %v", claimNames(mine))
	}
}

func TestClaimNameDefaultsLastUsedToNow(t *testing.T) {
	s := openTest(t, "")
	before := time.Now()
	c := claim(t, s, NameClaim{Name: "n", Owner: "a", Kind: NameRandom})
	if c.LastUsed.Before(before.Add(-time.Second)) || c.LastUsed.After(time.Now().Add(time.Second)) || !c.ClaimedAt.Equal(c.LastUsed) {
		t.Fatalf("claim without LastUsed: %+v", c)
	}
}

func TestClaimNameRefusesInvalidClaims(t *testing.T) {
	s := openTest(t, "")
	for _, tc := range []struct {
		name string
		c    NameClaim
	}{
		{"no name", NameClaim{Owner: "a"}},
		{"no owner", NameClaim{Name: "n"}},
		{"NUL in owner", NameClaim{Name: "n", Owner: "a\x00b"}},
		{"unknown kind", NameClaim{Name: "n", Owner: "a", Kind: "stolen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.ClaimName(context.Background(), tc.c); err == nil {
				t.Fatalf("ClaimName(%+v) succeeded", tc.c)
			}
		})
	}
	if _, err := s.GetName(context.Background(), "n"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused claim was stored: %v", err)
	}
	if _, err := s.ClaimName(cancelledContext(), NameClaim{Name: "n", Owner: "a"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("ClaimName with a cancelled context: %v", err)
	}
}

func TestNamesByOwnerOrderAndIsolation(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	for _, c := range []NameClaim{
		{Name: "n1", Owner: "a", LastUsed: t0},
		{Name: "n2", Owner: "a", LastUsed: t0.Add(2 * time.Minute)},
		{Name: "n3", Owner: "a", LastUsed: t0.Add(time.Minute)},
		{Name: "n0", Owner: "a", LastUsed: t0}, // ties with n1: name order
		// Owners that start with "a" or sort right next to it: the prefix trap.
		{Name: "n4", Owner: "ab", LastUsed: t0.Add(time.Hour)},
		{Name: "n5", Owner: "a\x01", LastUsed: t0.Add(time.Hour)},
		{Name: "n6", Owner: "SHA256:abc", LastUsed: t0},
		{Name: "n7", Owner: "SHA256:abcd", LastUsed: t0},
	} {
		claim(t, s, c)
	}
	for _, tc := range []struct {
		owner string
		want  []string
	}{
		{"a", []string{"n2", "n3", "n0", "n1"}},
		{"ab", []string{"n4"}},
		{"a\x01", []string{"n5"}},
		{"SHA256:abc", []string{"n6"}},
		{"SHA256:abcd", []string{"n7"}},
		{"SHA256:ab", []string{}},
		{"nobody", []string{}},
		{"", []string{}},
	} {
		got, err := s.NamesByOwner(ctx, tc.owner)
		if err != nil || !slices.Equal(claimNames(got), tc.want) {
			t.Errorf("NamesByOwner(%q) = %v, %v; want %v", tc.owner, claimNames(got), err, tc.want)
		}
	}
}

func TestTouchName(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	claim(t, s, NameClaim{Name: "x", Owner: "a", Kind: NameRequested, Hint: "h0", LastUsed: t0, ExpiresAt: t0.Add(time.Hour)})
	for _, tc := range []struct {
		name, owner string
		lastUsed    time.Time
		hint        string
		expiresAt   time.Time
		wantErr     error
	}{
		{"x", "b", t0.Add(time.Minute), "hb", time.Time{}, ErrNameTaken},
		{"y", "a", t0.Add(time.Minute), "h", time.Time{}, ErrNotFound},
		{"x", "", t0.Add(time.Minute), "h", time.Time{}, ErrNameTaken},
		{"x", "a", t0.Add(time.Minute), "h1", t0.Add(2 * time.Hour), nil},
		{"x", "a", t0.Add(2 * time.Minute), "h2", time.Time{}, nil}, // clears the expiry
	} {
		before, _ := s.GetName(ctx, "x")
		err := s.TouchName(ctx, tc.name, tc.owner, tc.lastUsed, tc.hint, tc.expiresAt)
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("TouchName(%q, %q): %v, want %v", tc.name, tc.owner, err, tc.wantErr)
		}
		want := before
		if err == nil {
			want.LastUsed, want.Hint, want.ExpiresAt = tc.lastUsed, tc.hint, tc.expiresAt
		}
		if got, _ := s.GetName(ctx, "x"); !sameClaim(got, want) {
			t.Errorf("TouchName(%q, %q): stored %+v, want %+v", tc.name, tc.owner, got, want)
		}
		checkIndexes(t, s)
	}
	// The expiry is gone, so no sweep however late releases the name.
	if rel, err := s.SweepExpiredNames(ctx, t0.Add(1000*time.Hour), 0, nil); err != nil || len(rel) != 0 {
		t.Fatalf("sweep released %v, %v after the expiry was cleared", rel, err)
	}
}

func TestReleaseName(t *testing.T) {
	t0 := epoch()
	ctx := context.Background()
	for _, tc := range []struct {
		name, owner string
		wantErr     error
	}{
		{"x", "a", nil},
		{"x", "", nil}, // an operator releases anyone's name
		{"x", "b", ErrNameTaken},
		{"y", "a", ErrNotFound},
		{"y", "", ErrNotFound},
	} {
		s := openTest(t, "")
		claim(t, s, NameClaim{Name: "x", Owner: "a", LastUsed: t0, ExpiresAt: t0.Add(time.Hour)})
		err := s.ReleaseName(ctx, tc.name, tc.owner)
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("ReleaseName(%q, %q): %v, want %v", tc.name, tc.owner, err, tc.wantErr)
		}
		_, getErr := s.GetName(ctx, "x")
		if released := errors.Is(getErr, ErrNotFound); released != (err == nil) {
			t.Errorf("ReleaseName(%q, %q) = %v but the claim released: %v", tc.name, tc.owner, err, released)
		}
		checkIndexes(t, s)
		if err == nil {
			if mine, _ := s.NamesByOwner(ctx, "a"); len(mine) != 0 {
				t.Errorf("owner index keeps a released name: %v", claimNames(mine))
			}
			claim(t, s, NameClaim{Name: "x", Owner: "b", LastUsed: t0})
		}
	}
}

func TestListNames(t *testing.T) {
	t0 := epoch()
	ctx := context.Background()
	s := openTest(t, "")
	if got, err := s.ListNames(ctx); err != nil || len(got) != 0 {
		t.Fatalf("ListNames of an empty store: %v, %v", got, err)
	}
	want := []NameClaim{
		claim(t, s, NameClaim{Name: "zeta", Owner: "a", LastUsed: t0}),
		claim(t, s, NameClaim{Name: "alpha", Owner: "b", Kind: NameRequested, LastUsed: t0.Add(time.Hour)}),
		// Lapsed but not swept yet: still a claim, and listed.
		claim(t, s, NameClaim{Name: "mid", Owner: "a", LastUsed: t0, ExpiresAt: t0.Add(time.Minute)}),
	}
	slices.SortFunc(want, func(a, b NameClaim) int { return strings.Compare(a.Name, b.Name) })
	got, err := s.ListNames(ctx)
	if err != nil || !slices.EqualFunc(got, want, sameClaim) {
		t.Fatalf("ListNames = %+v, %v; want %+v", got, err, want)
	}
	if err := s.ReleaseName(ctx, "mid", ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ListNames(ctx); !slices.Equal(claimNames(got), []string{"alpha", "zeta"}) {
		t.Fatalf("after a release ListNames = %v", claimNames(got))
	}
}
