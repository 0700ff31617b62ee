package data

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Ticket is a one-time credential, such as a sign-in link printed on the console for the first
// admin or a password reset. The link carries a secret; data stores the ticket under the
// caller's hash of it, so the database never holds a usable link.
type Ticket struct {
	ID        string // the caller's hash of the secret in the link; the key of the record
	Kind      string // what the ticket is for, e.g. "signin"; opaque to data, never empty
	UserID    string
	CreatedAt time.Time
	ExpiresAt time.Time // required: a one-time credential that never expires is a standing one
}

// expired reports whether the ticket has lapsed at now (at the deadline itself, it has).
func (t Ticket) expired(now time.Time) bool {
	return !t.ExpiresAt.After(now)
}

// CreateTicket stores a new ticket. A zero CreatedAt means now. ErrInvalid for an empty or
// NUL-containing id, kind or user id, or a zero ExpiresAt; ErrNotFound if the user does not
// exist; ErrExists if the id is taken.
func (s *Store) CreateTicket(ctx context.Context, t Ticket) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, f := range []struct{ what, v string }{{"ticket id", t.ID}, {"ticket kind", t.Kind}, {"ticket user id", t.UserID}} {
		if err := checkID(f.what, f.v); err != nil {
			return err
		}
	}
	if t.ExpiresAt.IsZero() {
		return fmt.Errorf("%w: a ticket needs an expiry", ErrInvalid)
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = time.Now()
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := checkUserExists(tx, t.UserID); err != nil {
			return err
		}
		b := tx.Bucket([]byte(bucketTickets))
		if b.Get([]byte(t.ID)) != nil {
			return fmt.Errorf("%w: ticket id", ErrExists)
		}
		t.CreatedAt, t.ExpiresAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC()
		v, err := encodeTicket(t)
		if err != nil {
			return fmt.Errorf("data: encode ticket: %w", err)
		}
		if err := b.Put([]byte(t.ID), v); err != nil {
			return fmt.Errorf("data: store ticket: %w", err)
		}
		return nil
	})
}

// ConsumeTicket uses up the ticket: in one write transaction it reads, deletes and returns it,
// so of any number of concurrent calls exactly one gets it, and a consumed ticket is never
// returned again.
//
// A zero now means time.Now(), so that forgetting the clock cannot make every ticket valid.
// ErrNotFound if there is no such ticket or it is of another kind (that one is left alone: it
// belongs to another flow, and presenting it at the wrong door must not burn it). An expired
// ticket is deleted too, and the error wraps both ErrNotFound and ErrTicketExpired. Ticket ids
// stay out of errors: they are derived from credentials.
func (s *Store) ConsumeTicket(ctx context.Context, id, kind string, now time.Time) (Ticket, error) {
	if err := ctx.Err(); err != nil {
		return Ticket{}, err
	}
	if err := checkID("ticket id", id); err != nil {
		return Ticket{}, err
	}
	if err := checkID("ticket kind", kind); err != nil {
		return Ticket{}, err
	}
	if now.IsZero() {
		now = time.Now()
	}
	var out Ticket
	expired := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		t, found, err := getTicket(tx, id)
		switch {
		case err != nil:
			return err
		case !found || t.Kind != kind:
			return fmt.Errorf("%w: %s ticket", ErrNotFound, kind)
		}
		if err := tx.Bucket([]byte(bucketTickets)).Delete([]byte(id)); err != nil {
			return fmt.Errorf("data: delete ticket: %w", err)
		}
		// The deletion must commit even when the ticket has expired, so that is reported
		// after the transaction rather than by failing it.
		out, expired = t, t.expired(now)
		return nil
	})
	switch {
	case err != nil:
		return Ticket{}, err
	case expired:
		return Ticket{}, fmt.Errorf("%w: %s ticket (%w at %s)", ErrNotFound, kind, ErrTicketExpired, out.ExpiresAt.Format(time.RFC3339))
	}
	return out, nil
}

// DeleteUserTickets deletes every ticket of the user, of any kind, in one transaction: issuing
// a new sign-in link, setting a password or disabling the user voids the old links. It scans
// the tickets bucket (see layout.go for why there is no index).
func (s *Store) DeleteUserTickets(ctx context.Context, userID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkID("user id", userID); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		ids, err := scanTickets(tx, 0, func(t Ticket) bool { return t.UserID == userID })
		if err != nil {
			return err
		}
		return deleteTickets(tx, ids)
	})
}

// SweepExpiredTickets deletes tickets that expired at or before now, at most limit of them
// (limit <= 0 means 1000), and returns how many. It scans the tickets bucket in a read
// transaction first, so a sweep with nothing due opens no write transaction, and re-checks
// each ticket in the deleting one.
func (s *Store) SweepExpiredTickets(ctx context.Context, now time.Time, limit int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if limit <= 0 {
		limit = defaultSweepLimit
	}
	due := func(t Ticket) bool { return t.expired(now) }
	var ids []string
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		ids, err = scanTickets(tx, limit, due)
		return err
	})
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	n := 0
	err = s.db.Update(func(tx *bolt.Tx) error {
		var still []string
		for _, id := range ids {
			t, found, err := getTicket(tx, id)
			if err != nil {
				return err
			}
			if found && due(t) {
				still = append(still, id)
			}
		}
		n = len(still)
		return deleteTickets(tx, still)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// scanTickets returns the ids of up to limit tickets (0: no limit) that match.
func scanTickets(tx *bolt.Tx, limit int, match func(Ticket) bool) ([]string, error) {
	var ids []string
	c := tx.Bucket([]byte(bucketTickets)).Cursor()
	for k, v := c.First(); k != nil && (limit == 0 || len(ids) < limit); k, v = c.Next() {
		t, err := decodeTicket(string(k), v)
		if err != nil {
			return nil, fmt.Errorf("data: ticket: %w", err)
		}
		if match(t) {
			ids = append(ids, t.ID)
		}
	}
	return ids, nil
}

// deleteTickets deletes by id. The ids were collected first because deleting under a live
// bbolt cursor can make it skip the next key.
func deleteTickets(tx *bolt.Tx, ids []string) error {
	b := tx.Bucket([]byte(bucketTickets))
	for _, id := range ids {
		if err := b.Delete([]byte(id)); err != nil {
			return fmt.Errorf("data: delete ticket: %w", err)
		}
	}
	return nil
}

// getTicket reads a ticket inside tx. Decoding copies everything out of bbolt's memory map.
func getTicket(tx *bolt.Tx, id string) (Ticket, bool, error) {
	v := tx.Bucket([]byte(bucketTickets)).Get([]byte(id))
	if v == nil {
		return Ticket{}, false, nil
	}
	t, err := decodeTicket(id, v)
	if err != nil {
		return Ticket{}, false, fmt.Errorf("data: ticket: %w", err)
	}
	return t, true, nil
}
