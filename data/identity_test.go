package data

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// dump returns every bucket's keys and values, to tell whether anything was written.
func dump(t testing.TB, s *Store) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, name := range allBuckets() {
			m := map[string]string{}
			err := tx.Bucket([]byte(name)).ForEach(func(k, v []byte) error {
				m[string(k)] = string(v)
				return nil
			})
			if err != nil {
				return err
			}
			out[name] = m
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameDump(a, b map[string]map[string]string) bool {
	return maps.EqualFunc(a, b, func(x, y map[string]string) bool { return maps.Equal(x, y) })
}

// checkIdentityIndexes fails the test unless every identity index holds exactly the entries
// its record bucket implies.
func checkIdentityIndexes(t *testing.T, s *Store) {
	t.Helper()
	want := map[string]map[string]string{}
	for _, b := range []string{bucketUsersByEmail, bucketUsersBySubject, bucketKeysByUser, bucketKeysByExpiry, bucketSessionsByUser, bucketSessionsByExpiry} {
		want[b] = map[string]string{}
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket([]byte(bucketUsers)).ForEach(func(k, v []byte) error {
			u, err := decodeUser(string(k), v)
			if err != nil {
				return err
			}
			if u.Email != "" {
				want[bucketUsersByEmail][u.Email] = u.ID
			}
			if u.Subject != "" {
				want[bucketUsersBySubject][u.Subject] = u.ID
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket([]byte(bucketKeys)).ForEach(func(k, v []byte) error {
			key, err := decodeKey(string(k), v)
			if err != nil {
				return err
			}
			want[bucketKeysByUser][string(ownerKey(key.UserID, key.Fingerprint))] = ""
			if !key.ExpiresAt.IsZero() {
				want[bucketKeysByExpiry][string(expiryKey(key.ExpiresAt, key.Fingerprint))] = ""
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketSessions)).ForEach(func(k, v []byte) error {
			sess, err := decodeSession(string(k), v)
			if err != nil {
				return err
			}
			want[bucketSessionsByUser][string(ownerKey(sess.UserID, sess.ID))] = ""
			want[bucketSessionsByExpiry][string(expiryKey(sess.deadline(), sess.ID))] = ""
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	got := dump(t, s)
	for b, w := range want {
		if !maps.Equal(got[b], w) {
			t.Errorf("index %s = %q, want %q", b, got[b], w)
		}
	}
}

// seedIdentity gives a fresh store one of everything, for tests that need something to
// (not) change.
func seedIdentity(t *testing.T, s *Store) (User, SSHKey, Session, Ticket) {
	t.Helper()
	t0 := epoch()
	ctx := context.Background()
	u := mustUser(t, s, User{ID: "u_seed", Email: "seed@example.com", Subject: "iss|seed", CreatedAt: t0})
	k, err := s.LinkKey(ctx, SSHKey{Fingerprint: "SHA256:seed", UserID: u.ID, LinkedAt: t0, ExpiresAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	sess := Session{ID: "seedsession", UserID: u.ID, CreatedAt: t0, IdleExpiresAt: t0.Add(time.Hour), ExpiresAt: t0.Add(24 * time.Hour)}
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	tk := Ticket{ID: "seedticket", Kind: "signin", UserID: u.ID, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.CreateTicket(ctx, tk); err != nil {
		t.Fatal(err)
	}
	claim(t, s, NameClaim{Name: "seed-name", Owner: k.Fingerprint, LastUsed: t0})
	return u, k, sess, tk
}

// A file written before the identity buckets existed (schema 1 all the same) gains them, empty,
// on Open; its data stays, and the next Open writes nothing.
func TestOpenAddsIdentityBucketsToAnOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "toolgate.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	old := []string{bucketMeta, bucketSecrets, bucketNames, bucketNamesByOwner, bucketNamesByExpiry, bucketCertmagic}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range old {
			if _, err := tx.CreateBucket([]byte(b)); err != nil {
				return err
			}
		}
		v, err := encodeName(NameClaim{Name: "kept", Owner: "SHA256:old", Kind: NameRandom, LastUsed: epoch()})
		if err != nil {
			return err
		}
		if err := tx.Bucket([]byte(bucketNames)).Put([]byte("kept"), v); err != nil {
			return err
		}
		if err := tx.Bucket([]byte(bucketNamesByOwner)).Put(ownerKey("SHA256:old", "kept"), nil); err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketMeta)).Put([]byte(keySchema), encodeSchema(1))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openTest(t, path)
	ctx := context.Background()
	d := dump(t, s)
	for _, b := range allBuckets() {
		if _, ok := d[b]; !ok {
			t.Errorf("bucket %s missing after Open", b)
		}
	}
	if got := d[bucketMeta][keySchema]; got != string(encodeSchema(1)) {
		t.Errorf("schema after Open = %x, want version 1", got)
	}
	if c, err := s.GetName(ctx, "kept"); err != nil || c.Owner != "SHA256:old" {
		t.Errorf("old name after Open: %+v, %v", c, err)
	}
	if n, err := s.CountUsers(ctx); err != nil || n != 0 {
		t.Errorf("CountUsers on an upgraded file = %d, %v; want 0", n, err)
	}
	mustUser(t, s, User{Email: "first@example.com"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := openTest(t, path).Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("the second Open of an upgraded file wrote to it")
	}
}

// Records from a newer toolgate are refused by every method that reads them, and never
// overwritten.
func TestIdentityRefusesNewerRecords(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	target := mustUser(t, s, User{ID: "u_old", Email: "old@example.com"})
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, p := range []struct{ bucket, key, value string }{
			{bucketUsers, "u_new", `{"v":2,"email":"new@example.com","subject":"iss|new","created_at":"2026-11-28T12:00:00Z","updated_at":"2026-11-28T12:00:00Z"}`},
			{bucketUsersByEmail, "new@example.com", "u_new"},
			{bucketUsersBySubject, "iss|new", "u_new"},
			{bucketKeys, "SHA256:new", `{"v":2,"user":"u_new","linked_at":"2026-11-28T12:00:00Z"}`},
			{bucketKeysByUser, string(ownerKey("u_new", "SHA256:new")), ""},
			{bucketSessions, "newsession", `{"v":2,"user":"u_new","created_at":"2026-11-28T12:00:00Z","last_seen":"2026-11-28T12:00:00Z","idle_expires_at":"2026-11-28T13:00:00Z","expires_at":"2026-11-29T12:00:00Z"}`},
			{bucketSessionsByUser, string(ownerKey("u_new", "newsession")), ""},
			{bucketTickets, "newticket", `{"v":2,"kind":"signin","user":"u_new","created_at":"2026-11-28T12:00:00Z","expires_at":"2026-11-28T12:01:00Z"}`},
		} {
			if err := tx.Bucket([]byte(p.bucket)).Put([]byte(p.key), []byte(p.value)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	before := dump(t, s)
	nop := func(*User) error { return nil }
	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"GetUser", func() error { _, err := s.GetUser(ctx, "u_new"); return err }},
		{"UserByEmail", func() error { _, err := s.UserByEmail(ctx, "new@example.com"); return err }},
		{"UserBySubject", func() error { _, err := s.UserBySubject(ctx, "iss|new"); return err }},
		{"ListUsers", func() error { _, err := s.ListUsers(ctx); return err }},
		{"UpdateUser", func() error { _, err := s.UpdateUser(ctx, "u_new", nop); return err }},
		{"CreateUser with its email", func() error { _, err := s.CreateUser(ctx, User{Email: "new@example.com"}); return err }},
		{"UpdateUser to its subject", func() error {
			_, err := s.UpdateUser(ctx, target.ID, func(u *User) error { u.Subject = "iss|new"; return nil })
			return err
		}},
		{"GetKey", func() error { _, err := s.GetKey(ctx, "SHA256:new"); return err }},
		{"KeysByUser", func() error { _, err := s.KeysByUser(ctx, "u_new"); return err }},
		{"LinkKey over it", func() error {
			_, err := s.LinkKey(ctx, SSHKey{Fingerprint: "SHA256:new", UserID: target.ID, LinkedAt: t0})
			return err
		}},
		{"TouchKey", func() error { return s.TouchKey(ctx, "SHA256:new", t0) }},
		{"RevokeKey", func() error { _, err := s.RevokeKey(ctx, "SHA256:new"); return err }},
		{"GetSession", func() error { _, err := s.GetSession(ctx, "newsession"); return err }},
		{"SessionsByUser", func() error { _, err := s.SessionsByUser(ctx, "u_new"); return err }},
		{"TouchSession", func() error { return s.TouchSession(ctx, "newsession", t0, t0.Add(time.Hour)) }},
		{"DeleteSession", func() error { return s.DeleteSession(ctx, "newsession") }},
		{"DeleteUserSessions", func() error { _, err := s.DeleteUserSessions(ctx, "u_new"); return err }},
		{"ConsumeTicket", func() error { _, err := s.ConsumeTicket(ctx, "newticket", "signin", t0); return err }},
		{"DeleteUserTickets", func() error { return s.DeleteUserTickets(ctx, "u_new") }},
		{"SweepExpiredTickets", func() error { _, err := s.SweepExpiredTickets(ctx, t0.Add(time.Hour), 0); return err }},
	} {
		if err := tc.op(); !errors.Is(err, ErrSchemaTooNew) {
			t.Errorf("%s: %v, want ErrSchemaTooNew", tc.name, err)
		}
	}
	if !sameDump(before, dump(t, s)) {
		t.Error("a refused newer record was changed")
	}
}

// Every identity method checks its context before it does anything.
func TestIdentityRefusesCancelledContext(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	u, k, sess, tk := seedIdentity(t, s)
	ctx := cancelledContext()
	before := dump(t, s)
	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"CreateUser", func() error { _, err := s.CreateUser(ctx, User{Email: "x@example.com"}); return err }},
		{"GetUser", func() error { _, err := s.GetUser(ctx, u.ID); return err }},
		{"UserByEmail", func() error { _, err := s.UserByEmail(ctx, u.Email); return err }},
		{"UserBySubject", func() error { _, err := s.UserBySubject(ctx, u.Subject); return err }},
		{"ListUsers", func() error { _, err := s.ListUsers(ctx); return err }},
		{"CountUsers", func() error { _, err := s.CountUsers(ctx); return err }},
		{"UpdateUser", func() error {
			_, err := s.UpdateUser(ctx, u.ID, func(u *User) error { u.Name = "x"; return nil })
			return err
		}},
		{"LinkKey", func() error { _, err := s.LinkKey(ctx, SSHKey{Fingerprint: "SHA256:x", UserID: u.ID}); return err }},
		{"GetKey", func() error { _, err := s.GetKey(ctx, k.Fingerprint); return err }},
		{"KeysByUser", func() error { _, err := s.KeysByUser(ctx, u.ID); return err }},
		{"TouchKey", func() error { return s.TouchKey(ctx, k.Fingerprint, t0) }},
		{"RevokeKey", func() error { _, err := s.RevokeKey(ctx, k.Fingerprint); return err }},
		{"SweepExpiredKeys", func() error { _, err := s.SweepExpiredKeys(ctx, t0.Add(100*time.Hour), 0); return err }},
		{"CreateSession", func() error {
			return s.CreateSession(ctx, Session{ID: "x", UserID: u.ID, IdleExpiresAt: t0.Add(time.Hour), ExpiresAt: t0.Add(time.Hour)})
		}},
		{"GetSession", func() error { _, err := s.GetSession(ctx, sess.ID); return err }},
		{"TouchSession", func() error { return s.TouchSession(ctx, sess.ID, t0, t0.Add(2*time.Hour)) }},
		{"DeleteSession", func() error { return s.DeleteSession(ctx, sess.ID) }},
		{"DeleteUserSessions", func() error { _, err := s.DeleteUserSessions(ctx, u.ID); return err }},
		{"SessionsByUser", func() error { _, err := s.SessionsByUser(ctx, u.ID); return err }},
		{"SweepExpiredSessions", func() error { _, err := s.SweepExpiredSessions(ctx, t0.Add(100*time.Hour), 0); return err }},
		{"CreateTicket", func() error {
			return s.CreateTicket(ctx, Ticket{ID: "x", Kind: "signin", UserID: u.ID, ExpiresAt: t0.Add(time.Hour)})
		}},
		{"ConsumeTicket", func() error { _, err := s.ConsumeTicket(ctx, tk.ID, tk.Kind, t0); return err }},
		{"DeleteUserTickets", func() error { return s.DeleteUserTickets(ctx, u.ID) }},
		{"SweepExpiredTickets", func() error { _, err := s.SweepExpiredTickets(ctx, t0.Add(100*time.Hour), 0); return err }},
		{"MoveNames", func() error { _, err := s.MoveNames(ctx, k.Fingerprint, u.ID); return err }},
	} {
		if err := tc.op(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v", tc.name, err)
		}
	}
	if !sameDump(before, dump(t, s)) {
		t.Error("a call with a cancelled context wrote something")
	}
}

// Bad input gets an error that says what is wrong, and writes nothing. Reads treat ids that
// cannot be stored as absent.
func TestIdentityRefusesBadInput(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	u, k, sess, tk := seedIdentity(t, s)
	hour := t0.Add(time.Hour)
	goodSession := func(f func(*Session)) Session {
		x := Session{ID: "fresh", UserID: u.ID, IdleExpiresAt: hour, ExpiresAt: hour}
		f(&x)
		return x
	}
	goodTicket := func(f func(*Ticket)) Ticket {
		x := Ticket{ID: "fresh", Kind: "signin", UserID: u.ID, ExpiresAt: hour}
		f(&x)
		return x
	}
	update := func(id string, fn func(*User) error) func() error {
		return func() error { _, err := s.UpdateUser(ctx, id, fn); return err }
	}
	before := dump(t, s)
	for _, tc := range []struct {
		name    string
		op      func() error
		is      error
		mention string // the message must contain this
	}{
		{"CreateUser NUL id", func() error { _, err := s.CreateUser(ctx, User{ID: "u_\x00"}); return err }, ErrInvalid, "NUL"},
		{"CreateUser NUL email", func() error { _, err := s.CreateUser(ctx, User{Email: "a\x00@x"}); return err }, ErrInvalid, "email"},
		{"CreateUser NUL subject", func() error { _, err := s.CreateUser(ctx, User{Subject: "iss|\x00"}); return err }, ErrInvalid, "subject"},
		{"UpdateUser empty id", update("", func(*User) error { return nil }), ErrInvalid, "empty user id"},
		{"UpdateUser nil fn", update(u.ID, nil), ErrInvalid, "function"},
		{"UpdateUser changes id", update(u.ID, func(x *User) error { x.ID = "u_other"; return nil }), ErrInvalid, "id"},
		{"UpdateUser clears id", update(u.ID, func(x *User) error { *x = User{}; return nil }), ErrInvalid, "id"},
		{"UpdateUser NUL email", update(u.ID, func(x *User) error { x.Email = "\x00"; return nil }), ErrInvalid, "NUL"},
		{"UpdateUser unknown", update("u_nobody", func(*User) error { return nil }), ErrNotFound, "u_nobody"},
		{"LinkKey empty fingerprint", func() error { _, err := s.LinkKey(ctx, SSHKey{UserID: u.ID}); return err }, ErrInvalid, "empty key fingerprint"},
		{"LinkKey empty user", func() error { _, err := s.LinkKey(ctx, SSHKey{Fingerprint: "SHA256:x"}); return err }, ErrInvalid, "empty user id"},
		{"LinkKey NUL fingerprint", func() error { _, err := s.LinkKey(ctx, SSHKey{Fingerprint: "SHA256:\x00", UserID: u.ID}); return err }, ErrInvalid, "NUL"},
		{"LinkKey NUL user", func() error {
			_, err := s.LinkKey(ctx, SSHKey{Fingerprint: "SHA256:x", UserID: u.ID + "\x00"})
			return err
		}, ErrInvalid, "NUL"},
		{"LinkKey unknown user", func() error {
			_, err := s.LinkKey(ctx, SSHKey{Fingerprint: "SHA256:x", UserID: "u_nobody"})
			return err
		}, ErrNotFound, "u_nobody"},
		{"TouchKey empty", func() error { return s.TouchKey(ctx, "", t0) }, ErrInvalid, "empty"},
		{"TouchKey unknown", func() error { return s.TouchKey(ctx, "SHA256:nobody", t0) }, ErrNotFound, "SHA256:nobody"},
		{"RevokeKey empty", func() error { _, err := s.RevokeKey(ctx, ""); return err }, ErrInvalid, "empty"},
		{"RevokeKey NUL", func() error { _, err := s.RevokeKey(ctx, k.Fingerprint+"\x00"); return err }, ErrInvalid, "NUL"},
		{"CreateSession empty id", func() error { return s.CreateSession(ctx, goodSession(func(x *Session) { x.ID = "" })) }, ErrInvalid, "empty session id"},
		{"CreateSession NUL id", func() error { return s.CreateSession(ctx, goodSession(func(x *Session) { x.ID = "a\x00" })) }, ErrInvalid, "NUL"},
		{"CreateSession empty user", func() error { return s.CreateSession(ctx, goodSession(func(x *Session) { x.UserID = "" })) }, ErrInvalid, "user id"},
		{"CreateSession unknown user", func() error { return s.CreateSession(ctx, goodSession(func(x *Session) { x.UserID = "u_nobody" })) }, ErrNotFound, "u_nobody"},
		{"CreateSession no idle deadline", func() error {
			return s.CreateSession(ctx, goodSession(func(x *Session) { x.IdleExpiresAt = time.Time{} }))
		}, ErrInvalid, "deadline"},
		{"CreateSession no deadline", func() error { return s.CreateSession(ctx, goodSession(func(x *Session) { x.ExpiresAt = time.Time{} })) }, ErrInvalid, "deadline"},
		{"CreateSession existing id", func() error { return s.CreateSession(ctx, goodSession(func(x *Session) { x.ID = sess.ID })) }, ErrExists, "session"},
		{"TouchSession empty", func() error { return s.TouchSession(ctx, "", t0, hour) }, ErrInvalid, "empty session id"},
		{"TouchSession no deadline", func() error { return s.TouchSession(ctx, sess.ID, t0, time.Time{}) }, ErrInvalid, "deadline"},
		{"TouchSession unknown", func() error { return s.TouchSession(ctx, "nosuch", t0, hour) }, ErrNotFound, "session"},
		{"DeleteSession empty", func() error { return s.DeleteSession(ctx, "") }, ErrInvalid, "empty"},
		{"DeleteUserSessions empty", func() error { _, err := s.DeleteUserSessions(ctx, ""); return err }, ErrInvalid, "empty user id"},
		{"CreateTicket empty id", func() error { return s.CreateTicket(ctx, goodTicket(func(x *Ticket) { x.ID = "" })) }, ErrInvalid, "empty ticket id"},
		{"CreateTicket empty kind", func() error { return s.CreateTicket(ctx, goodTicket(func(x *Ticket) { x.Kind = "" })) }, ErrInvalid, "empty ticket kind"},
		{"CreateTicket empty user", func() error { return s.CreateTicket(ctx, goodTicket(func(x *Ticket) { x.UserID = "" })) }, ErrInvalid, "user id"},
		{"CreateTicket NUL id", func() error { return s.CreateTicket(ctx, goodTicket(func(x *Ticket) { x.ID = "\x00" })) }, ErrInvalid, "NUL"},
		{"CreateTicket no expiry", func() error { return s.CreateTicket(ctx, goodTicket(func(x *Ticket) { x.ExpiresAt = time.Time{} })) }, ErrInvalid, "expiry"},
		{"CreateTicket unknown user", func() error { return s.CreateTicket(ctx, goodTicket(func(x *Ticket) { x.UserID = "u_nobody" })) }, ErrNotFound, "u_nobody"},
		{"CreateTicket existing id", func() error { return s.CreateTicket(ctx, goodTicket(func(x *Ticket) { x.ID = tk.ID })) }, ErrExists, "ticket"},
		{"ConsumeTicket empty id", func() error { _, err := s.ConsumeTicket(ctx, "", "signin", t0); return err }, ErrInvalid, "empty ticket id"},
		{"ConsumeTicket empty kind", func() error { _, err := s.ConsumeTicket(ctx, tk.ID, "", t0); return err }, ErrInvalid, "empty ticket kind"},
		{"DeleteUserTickets empty", func() error { return s.DeleteUserTickets(ctx, "") }, ErrInvalid, "empty user id"},
		{"MoveNames empty from", func() error { _, err := s.MoveNames(ctx, "", u.ID); return err }, ErrInvalid, "empty owner"},
		{"MoveNames empty to", func() error { _, err := s.MoveNames(ctx, k.Fingerprint, ""); return err }, ErrInvalid, "empty owner"},
		{"MoveNames NUL to", func() error { _, err := s.MoveNames(ctx, k.Fingerprint, "u\x00"); return err }, ErrInvalid, "NUL"},
		// Reads: an id that cannot be stored is simply not there.
		{"GetUser empty", func() error { _, err := s.GetUser(ctx, ""); return err }, ErrNotFound, "user"},
		{"UserByEmail empty", func() error { _, err := s.UserByEmail(ctx, "  "); return err }, ErrNotFound, "email"},
		{"UserBySubject empty", func() error { _, err := s.UserBySubject(ctx, ""); return err }, ErrNotFound, "subject"},
		{"GetKey empty", func() error { _, err := s.GetKey(ctx, ""); return err }, ErrNotFound, "key"},
		{"GetSession empty", func() error { _, err := s.GetSession(ctx, ""); return err }, ErrNotFound, "session"},
	} {
		err := tc.op()
		if !errors.Is(err, tc.is) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.is)
			continue
		}
		if !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: %q does not mention %q", tc.name, err, tc.mention)
		}
	}
	if !sameDump(before, dump(t, s)) {
		t.Error("refused input wrote something")
	}
	for _, tc := range []struct {
		name string
		op   func() (int, error)
	}{
		{"KeysByUser empty", func() (int, error) { l, err := s.KeysByUser(ctx, ""); return len(l), err }},
		{"KeysByUser NUL", func() (int, error) { l, err := s.KeysByUser(ctx, u.ID+"\x00"); return len(l), err }},
		{"SessionsByUser empty", func() (int, error) { l, err := s.SessionsByUser(ctx, ""); return len(l), err }},
	} {
		if n, err := tc.op(); n != 0 || err != nil {
			t.Errorf("%s = %d, %v; want nothing and no error", tc.name, n, err)
		}
	}
}
