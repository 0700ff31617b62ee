package data

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func createTicket(t testing.TB, s *Store, tk Ticket) {
	t.Helper()
	if err := s.CreateTicket(context.Background(), tk); err != nil {
		t.Fatalf("CreateTicket(%+v): %v", tk, err)
	}
}

func TestConsumeTicket(t *testing.T) {
	t0 := epoch()
	type call struct {
		id, kind    string
		now         time.Time
		wantErr     error // nil: the ticket is returned
		wantExpired bool  // the error also wraps ErrTicketExpired
	}
	for _, tc := range []struct {
		name  string
		calls []call
	}{
		{"once only", []call{
			{"t1", "signin", t0.Add(time.Minute), nil, false},
			{"t1", "signin", t0.Add(time.Minute), ErrNotFound, false},
		}},
		{"another kind neither gets nor burns it", []call{
			{"t1", "reset", t0, ErrNotFound, false},
			{"t1", "signin", t0, nil, false},
		}},
		{"expired at the deadline, and then gone", []call{
			{"t1", "signin", t0.Add(15 * time.Minute), ErrNotFound, true},
			{"t1", "signin", t0, ErrNotFound, false},
		}},
		{"unknown", []call{
			{"t9", "signin", t0, ErrNotFound, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, "")
			ctx := context.Background()
			u := mustUser(t, s, User{})
			want := Ticket{ID: "t1", Kind: "signin", UserID: u.ID, CreatedAt: t0, ExpiresAt: t0.Add(15 * time.Minute)}
			createTicket(t, s, want)
			createTicket(t, s, Ticket{ID: "t2", Kind: "signin", UserID: u.ID, CreatedAt: t0, ExpiresAt: t0.Add(15 * time.Minute)})
			for i, c := range tc.calls {
				got, err := s.ConsumeTicket(ctx, c.id, c.kind, c.now)
				if !errors.Is(err, c.wantErr) || errors.Is(err, ErrTicketExpired) != c.wantExpired {
					t.Fatalf("call %d: ConsumeTicket(%s, %s): %v; want %v (expired %v)", i+1, c.id, c.kind, err, c.wantErr, c.wantExpired)
				}
				if err == nil && (got.ID != want.ID || got.Kind != want.Kind || got.UserID != want.UserID ||
					!got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt)) {
					t.Errorf("call %d: got %+v, want %+v", i+1, got, want)
				}
			}
			// The other ticket is untouched by all of it.
			if _, err := s.ConsumeTicket(ctx, "t2", "signin", t0); err != nil {
				t.Errorf("the other ticket: %v", err)
			}
		})
	}
}

func TestConsumeTicketZeroNowIsNow(t *testing.T) {
	s := openTest(t, "")
	u := mustUser(t, s, User{})
	createTicket(t, s, Ticket{ID: "old", Kind: "signin", UserID: u.ID, ExpiresAt: time.Now().Add(-time.Minute)})
	if _, err := s.ConsumeTicket(context.Background(), "old", "signin", time.Time{}); !errors.Is(err, ErrTicketExpired) {
		t.Fatalf("ConsumeTicket with a zero now: %v, want ErrTicketExpired", err)
	}
}

func TestConsumeTicketOnceUnderConcurrency(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	u := mustUser(t, s, User{})
	createTicket(t, s, Ticket{ID: "t", Kind: "signin", UserID: u.ID, ExpiresAt: t0.Add(time.Hour)})
	var won, lost atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			<-start
			_, err := s.ConsumeTicket(context.Background(), "t", "signin", t0)
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, ErrNotFound):
				lost.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	if won.Load() != 1 || lost.Load() != 19 {
		t.Fatalf("%d callers got the ticket and %d did not; want 1 and 19", won.Load(), lost.Load())
	}
}

func TestDeleteUserTickets(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	for _, id := range []string{"u_a", "u_b"} {
		mustUser(t, s, User{ID: id})
	}
	for _, tk := range []Ticket{
		{ID: "a1", Kind: "signin", UserID: "u_a"},
		{ID: "a2", Kind: "reset", UserID: "u_a"},
		{ID: "a3", Kind: "signin", UserID: "u_a", ExpiresAt: t0.Add(-time.Hour)},
		{ID: "b1", Kind: "signin", UserID: "u_b"},
	} {
		if tk.ExpiresAt.IsZero() {
			tk.ExpiresAt = t0.Add(time.Hour)
		}
		createTicket(t, s, tk)
	}
	for _, user := range []string{"u_a", "u_a", "u_nobody"} {
		if err := s.DeleteUserTickets(ctx, user); err != nil {
			t.Fatalf("DeleteUserTickets(%s): %v", user, err)
		}
	}
	for _, tc := range []struct {
		id, kind string
		wantErr  error
	}{
		{"a1", "signin", ErrNotFound},
		{"a2", "reset", ErrNotFound},
		{"a3", "signin", ErrNotFound},
		{"b1", "signin", nil},
	} {
		if _, err := s.ConsumeTicket(ctx, tc.id, tc.kind, t0); !errors.Is(err, tc.wantErr) || errors.Is(err, ErrTicketExpired) {
			t.Errorf("ConsumeTicket(%s) after DeleteUserTickets(u_a): %v, want %v", tc.id, err, tc.wantErr)
		}
	}
}

func TestSweepExpiredTickets(t *testing.T) {
	t0 := epoch()
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
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
			for id, m := range map[string]int{"e1": 1, "e2": 2, "e3": 3, "now": 10, "later": 11, "much-later": 600} {
				createTicket(t, s, Ticket{ID: id, Kind: "signin", UserID: u.ID, CreatedAt: at(-60), ExpiresAt: at(m)})
			}
			for i, want := range tc.sweeps {
				id := txID(t, s)
				n, err := s.SweepExpiredTickets(ctx, at(10), tc.limit)
				if err != nil || n != want {
					t.Fatalf("sweep %d deleted %d, %v; want %d", i+1, n, err, want)
				}
				if n == 0 && txID(t, s) != id {
					t.Errorf("sweep %d had nothing to do and committed a transaction", i+1)
				}
			}
			for id, wantErr := range map[string]error{"e1": ErrNotFound, "now": ErrNotFound, "later": nil, "much-later": nil} {
				if _, err := s.ConsumeTicket(ctx, id, "signin", at(10)); !errors.Is(err, wantErr) || errors.Is(err, ErrTicketExpired) {
					t.Errorf("ConsumeTicket(%s) after the sweep: %v, want %v", id, err, wantErr)
				}
			}
		})
	}
}
