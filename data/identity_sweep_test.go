package data

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// RunSweeps also deletes expired key links (telling KeysExpired), sessions and tickets, and
// keeps the live ones.
func TestRunSweepsIdentity(t *testing.T) {
	t0 := epoch()
	now := t0.Add(2 * time.Hour)
	s := openTest(t, "")
	ctx := context.Background()
	u := mustUser(t, s, User{})
	linkKey(t, s, SSHKey{Fingerprint: "SHA256:lapsed", UserID: u.ID, LinkedAt: t0, ExpiresAt: t0.Add(time.Hour)})
	linkKey(t, s, SSHKey{Fingerprint: "SHA256:live", UserID: u.ID, LinkedAt: t0, ExpiresAt: t0.Add(3 * time.Hour)})
	linkKey(t, s, SSHKey{Fingerprint: "SHA256:forever", UserID: u.ID, LinkedAt: t0})
	createSession(t, s, Session{ID: "idle", UserID: u.ID, CreatedAt: t0, IdleExpiresAt: t0.Add(time.Hour), ExpiresAt: t0.Add(24 * time.Hour)})
	createSession(t, s, Session{ID: "active", UserID: u.ID, CreatedAt: t0, IdleExpiresAt: t0.Add(3 * time.Hour), ExpiresAt: t0.Add(24 * time.Hour)})
	createTicket(t, s, Ticket{ID: "unused", Kind: "signin", UserID: u.ID, ExpiresAt: t0.Add(15 * time.Minute)})
	createTicket(t, s, Ticket{ID: "fresh", Kind: "signin", UserID: u.ID, ExpiresAt: now.Add(15 * time.Minute)})

	sweepCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	expired := make(chan []SSHKey, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.RunSweeps(sweepCtx, SweepConfig{
			Interval: 20 * time.Millisecond,
			Now:      func() time.Time { return now },
			KeysExpired: func(keys []SSHKey) {
				// Outside any transaction: the Store is usable here.
				if _, err := s.GetKey(ctx, keys[0].Fingerprint); !errors.Is(err, ErrNotFound) {
					t.Errorf("GetKey inside KeysExpired: %v, want ErrNotFound", err)
				}
				expired <- keys
			},
		})
	}()
	select {
	case keys := <-expired:
		if got := fingerprints(keys); !slices.Equal(got, []string{"SHA256:lapsed"}) {
			t.Errorf("KeysExpired got %v, want [SHA256:lapsed]", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("KeysExpired was not called")
	}
	// Sessions and tickets are swept in the same tick, right after keys.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.GetSession(ctx, "idle")
		if errors.Is(err, ErrNotFound) && !ticketStored(t, s, "unused") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("RunSweeps did not delete the expired session and ticket")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunSweeps did not return when its context was cancelled")
	}
	keys, err := s.KeysByUser(ctx, u.ID)
	if want := []string{"SHA256:forever", "SHA256:live"}; err != nil || !slices.Equal(fingerprints(keys), want) {
		t.Errorf("keys left %v, %v; want %v", fingerprints(keys), err, want)
	}
	if _, err := s.GetSession(ctx, "active"); err != nil {
		t.Errorf("the active session was swept: %v", err)
	}
	if _, err := s.ConsumeTicket(ctx, "fresh", "signin", now); err != nil {
		t.Errorf("the fresh ticket was swept: %v", err)
	}
	select {
	case more := <-expired:
		t.Errorf("KeysExpired called again with %v", fingerprints(more))
	default:
	}
}

// ticketStored looks at the tickets bucket without consuming anything.
func ticketStored(t *testing.T, s *Store, id string) bool {
	t.Helper()
	_, ok := dump(t, s)[bucketTickets][id]
	return ok
}
