package data

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func sameSession(a, b Session) bool {
	return a.ID == b.ID && a.UserID == b.UserID && a.AuthMethod == b.AuthMethod && a.IP == b.IP && a.UserAgent == b.UserAgent &&
		a.CreatedAt.Equal(b.CreatedAt) && a.LastSeen.Equal(b.LastSeen) &&
		a.IdleExpiresAt.Equal(b.IdleExpiresAt) && a.ExpiresAt.Equal(b.ExpiresAt)
}

func sessionIDs(ss []Session) []string {
	out := []string{}
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

func createSession(t testing.TB, s *Store, sess Session) {
	t.Helper()
	if err := s.CreateSession(context.Background(), sess); err != nil {
		t.Fatalf("CreateSession(%+v): %v", sess, err)
	}
}

func TestSessionExpired(t *testing.T) {
	t0 := epoch()
	for _, tc := range []struct {
		name       string
		idle, abs  time.Time
		now        time.Time
		wantExpire bool
	}{
		{"before both", t0.Add(time.Hour), t0.Add(2 * time.Hour), t0, false},
		{"at the idle deadline", t0, t0.Add(time.Hour), t0, true},
		{"past the idle deadline", t0, t0.Add(time.Hour), t0.Add(time.Minute), true},
		{"at the absolute deadline", t0.Add(time.Hour), t0, t0, true},
		{"idle after absolute: absolute wins", t0.Add(2 * time.Hour), t0.Add(time.Hour), t0.Add(90 * time.Minute), true},
		{"a nanosecond before", t0, t0, t0.Add(-time.Nanosecond), false},
		{"no deadlines is never valid", time.Time{}, time.Time{}, t0, true},
		{"no idle deadline is never valid", time.Time{}, t0.Add(time.Hour), t0, true},
	} {
		if got := (Session{IdleExpiresAt: tc.idle, ExpiresAt: tc.abs}).Expired(tc.now); got != tc.wantExpire {
			t.Errorf("%s: Expired = %v, want %v", tc.name, got, tc.wantExpire)
		}
	}
}

func TestSessionLifecycle(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	u := mustUser(t, s, User{})
	zone := time.FixedZone("X", 3600)
	sess := Session{ID: "0123abcd", UserID: u.ID, AuthMethod: "password", CreatedAt: t0.In(zone),
		IdleExpiresAt: t0.Add(time.Hour), ExpiresAt: t0.Add(24 * time.Hour), IP: "192.0.2.1", UserAgent: "Firefox"}
	createSession(t, s, sess)
	want := sess
	want.CreatedAt, want.LastSeen = t0, t0 // LastSeen defaults to CreatedAt
	got, err := s.GetSession(ctx, sess.ID)
	if err != nil || !sameSession(got, want) || got.CreatedAt.Location() != time.UTC {
		t.Fatalf("GetSession = %+v, %v; want %+v in UTC", got, err, want)
	}
	checkIdentityIndexes(t, s)

	if err := s.CreateSession(ctx, Session{ID: sess.ID, UserID: u.ID, IdleExpiresAt: t0.Add(time.Minute), ExpiresAt: t0.Add(time.Minute)}); !errors.Is(err, ErrExists) {
		t.Fatalf("CreateSession over an existing id: %v, want ErrExists", err)
	}
	if got, _ := s.GetSession(ctx, sess.ID); !sameSession(got, want) {
		t.Fatalf("the refused create changed the session: %+v", got)
	}

	for _, tc := range []struct {
		name       string
		id         string
		seen, idle time.Time
		wantErr    error
	}{
		{"touch moves both", sess.ID, t0.Add(30 * time.Minute), t0.Add(90 * time.Minute), nil},
		{"touch past the absolute end is stored as given", sess.ID, t0.Add(time.Hour), t0.Add(48 * time.Hour), nil},
		{"touch of a missing session", "nosuch", t0, t0.Add(time.Hour), ErrNotFound},
	} {
		err := s.TouchSession(ctx, tc.id, tc.seen, tc.idle)
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("%s: TouchSession: %v, want %v", tc.name, err, tc.wantErr)
		}
		if err == nil {
			want.LastSeen, want.IdleExpiresAt = tc.seen, tc.idle
		}
		if got, err := s.GetSession(ctx, sess.ID); err != nil || !sameSession(got, want) {
			t.Errorf("%s: stored %+v, %v; want %+v", tc.name, got, err, want)
		}
		checkIdentityIndexes(t, s)
	}

	for i := range 2 { // deleting twice is fine
		if err := s.DeleteSession(ctx, sess.ID); err != nil {
			t.Fatalf("DeleteSession #%d: %v", i+1, err)
		}
		if _, err := s.GetSession(ctx, sess.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetSession after DeleteSession: %v", err)
		}
		if err := s.TouchSession(ctx, sess.ID, t0, t0.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("TouchSession after DeleteSession: %v", err)
		}
		checkIdentityIndexes(t, s)
	}
}

func TestSessionsByUserAndDeleteUserSessions(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	for _, id := range []string{"u_a", "u_ab", "u_b"} {
		mustUser(t, s, User{ID: id})
	}
	for _, sess := range []Session{
		{ID: "s3", UserID: "u_a", CreatedAt: t0.Add(2 * time.Minute)},
		{ID: "s2", UserID: "u_a", CreatedAt: t0},
		{ID: "s1", UserID: "u_a", CreatedAt: t0},                                    // ties with s2: id order
		{ID: "s0", UserID: "u_a", CreatedAt: t0.Add(-time.Hour), IdleExpiresAt: t0}, // expired: still listed and deleted
		{ID: "s4", UserID: "u_ab", CreatedAt: t0},
		{ID: "s5", UserID: "u_b", CreatedAt: t0},
	} {
		if sess.IdleExpiresAt.IsZero() {
			sess.IdleExpiresAt = t0.Add(time.Hour)
		}
		sess.ExpiresAt = t0.Add(24 * time.Hour)
		createSession(t, s, sess)
	}
	for _, tc := range []struct {
		user string
		want []string
	}{
		{"u_a", []string{"s0", "s1", "s2", "s3"}},
		{"u_ab", []string{"s4"}},
		{"u_", []string{}},
		{"u_nobody", []string{}},
	} {
		if got, err := s.SessionsByUser(ctx, tc.user); err != nil || !slices.Equal(sessionIDs(got), tc.want) {
			t.Errorf("SessionsByUser(%q) = %v, %v; want %v", tc.user, sessionIDs(got), err, tc.want)
		}
	}
	for _, tc := range []struct {
		user string
		want int
	}{
		{"u_a", 4},
		{"u_a", 0},
		{"u_nobody", 0},
	} {
		if n, err := s.DeleteUserSessions(ctx, tc.user); err != nil || n != tc.want {
			t.Errorf("DeleteUserSessions(%q) = %d, %v; want %d", tc.user, n, err, tc.want)
		}
		checkIdentityIndexes(t, s)
	}
	for user, want := range map[string][]string{"u_a": {}, "u_ab": {"s4"}, "u_b": {"s5"}} {
		if got, err := s.SessionsByUser(ctx, user); err != nil || !slices.Equal(sessionIDs(got), want) {
			t.Errorf("after deleting u_a's: SessionsByUser(%q) = %v, %v; want %v", user, sessionIDs(got), err, want)
		}
	}
}

// GetSession is on every request's path and must never write: it commits no transaction,
// leaves an expired session where it is, and does not even wait for the writer lock.
func TestGetSessionDoesNotWrite(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	u := mustUser(t, s, User{})
	createSession(t, s, Session{ID: "live", UserID: u.ID, CreatedAt: t0, IdleExpiresAt: t0.Add(100 * 365 * 24 * time.Hour), ExpiresAt: t0.Add(100 * 365 * 24 * time.Hour)})
	createSession(t, s, Session{ID: "ended", UserID: u.ID, CreatedAt: t0, IdleExpiresAt: t0, ExpiresAt: t0})
	pageWrites := func() int64 { st := s.db.Stats(); return st.TxStats.GetWrite() }
	before, id, writes := dump(t, s), txID(t, s), pageWrites()
	for range 100 {
		for _, sid := range []string{"live", "ended", "missing"} {
			_, err := s.GetSession(ctx, sid)
			if wantErr := map[bool]error{true: ErrNotFound}[sid == "missing"]; !errors.Is(err, wantErr) {
				t.Fatalf("GetSession(%s): %v, want %v", sid, err, wantErr)
			}
		}
	}
	if got := txID(t, s); got != id {
		t.Errorf("GetSession committed %d write transactions", got-id)
	}
	if got := pageWrites(); got != writes {
		t.Errorf("GetSession wrote %d pages", got-writes)
	}
	if !sameDump(before, dump(t, s)) {
		t.Error("GetSession changed the database")
	}

	tx, err := s.db.Begin(true) // hold the writer lock
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	done := make(chan error, 1)
	go func() {
		_, err := s.GetSession(ctx, "live")
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("GetSession while a writer is open: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("GetSession waited for the writer lock")
	}
}

func BenchmarkGetSession(b *testing.B) {
	t0 := time.Now()
	s := openTest(b, "")
	ctx := context.Background()
	u := mustUser(b, s, User{})
	for i := range 1000 {
		createSession(b, s, Session{ID: fmt.Sprintf("%064x", i), UserID: u.ID, AuthMethod: "password",
			IdleExpiresAt: t0.Add(time.Hour), ExpiresAt: t0.Add(24 * time.Hour), IP: "192.0.2.1", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"})
	}
	id := fmt.Sprintf("%064x", 500) // the shape of a hex SHA-256
	if _, err := s.GetSession(ctx, id); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetSession(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSweepExpiredSessions(t *testing.T) {
	t0 := epoch()
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	// name: idle and absolute deadlines, in minutes.
	seed := map[string][2]int{
		"idle-1":     {1, 600},
		"abs-2":      {600, 2},
		"idle-3":     {3, 600},
		"now-10":     {10, 600},
		"later-11":   {11, 600},
		"touched-5":  {5, 600}, // touched to 20 before the sweep
		"both-later": {30, 40},
	}
	for _, tc := range []struct {
		name   string
		limit  int
		sweeps []int // how many each successive sweep at at(10) deletes
	}{
		{"no limit", 0, []int{4, 0}},
		{"limit 3", 3, []int{3, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, "")
			ctx := context.Background()
			u := mustUser(t, s, User{})
			for id, d := range seed {
				createSession(t, s, Session{ID: id, UserID: u.ID, CreatedAt: at(-60), IdleExpiresAt: at(d[0]), ExpiresAt: at(d[1])})
			}
			if err := s.TouchSession(ctx, "touched-5", at(4), at(20)); err != nil {
				t.Fatal(err)
			}
			for i, want := range tc.sweeps {
				n, err := s.SweepExpiredSessions(ctx, at(10), tc.limit)
				if err != nil || n != want {
					t.Fatalf("sweep %d deleted %d, %v; want %d", i+1, n, err, want)
				}
				checkIdentityIndexes(t, s)
			}
			left, err := s.SessionsByUser(ctx, u.ID)
			got := sessionIDs(left)
			slices.Sort(got)
			if want := []string{"both-later", "later-11", "touched-5"}; err != nil || !slices.Equal(got, want) {
				t.Errorf("left %v, %v; want %v", got, err, want)
			}
		})
	}
}
