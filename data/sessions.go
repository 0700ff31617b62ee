package data

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Session is a signed-in browser. The cookie holds a random token that only the browser knows;
// the caller hashes it and data stores the session under the hash, so neither the database nor
// a copy of it can be turned back into a working cookie.
type Session struct {
	ID            string    // the caller's hash of the cookie token (hex); the key of the record
	UserID        string    // the user signed in
	AuthMethod    string    // "password", "oidc", "link", …; opaque to data
	CreatedAt     time.Time // sign-in time: policy (re-authentication, the user's list) uses it
	LastSeen      time.Time // the last request the caller recorded
	IdleExpiresAt time.Time // the session ends if not seen again by then
	ExpiresAt     time.Time // the absolute end, however active the session is
	IP            string    // at sign-in, for the user's list of sessions
	UserAgent     string    // at sign-in, for the user's list of sessions
}

// Expired reports whether the session has ended at now: now is at or after IdleExpiresAt or
// ExpiresAt. A zero deadline counts as passed, so a session without deadlines is never valid;
// CreateSession refuses one.
func (s Session) Expired(now time.Time) bool {
	return !now.Before(s.IdleExpiresAt) || !now.Before(s.ExpiresAt)
}

// deadline is when the session ends if it is not touched again: its sessions_by_expiry entry.
func (s Session) deadline() time.Time {
	if s.IdleExpiresAt.Before(s.ExpiresAt) {
		return s.IdleExpiresAt
	}
	return s.ExpiresAt
}

// CreateSession stores a new session. A zero CreatedAt means now and a zero LastSeen means
// CreatedAt. ErrInvalid for an empty or NUL-containing id or user id, or a zero deadline;
// ErrNotFound if the user does not exist; ErrExists if the id is taken (never overwritten: the
// id is what authenticates).
func (s *Store) CreateSession(ctx context.Context, sess Session) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validateSession(sess); err != nil {
		return err
	}
	if sess.CreatedAt.IsZero() {
		sess.CreatedAt = time.Now()
	}
	if sess.LastSeen.IsZero() {
		sess.LastSeen = sess.CreatedAt
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := checkUserExists(tx, sess.UserID); err != nil {
			return err
		}
		if tx.Bucket([]byte(bucketSessions)).Get([]byte(sess.ID)) != nil {
			return fmt.Errorf("%w: session id", ErrExists)
		}
		return putSession(tx, sess, nil)
	})
}

func validateSession(sess Session) error {
	if err := checkID("session id", sess.ID); err != nil {
		return err
	}
	if err := checkID("session user id", sess.UserID); err != nil {
		return err
	}
	if sess.IdleExpiresAt.IsZero() || sess.ExpiresAt.IsZero() {
		return fmt.Errorf("%w: a session needs both an idle and an absolute deadline", ErrInvalid)
	}
	return nil
}

// GetSession returns the session with this id, expired or not (the caller decides, with
// Expired or its own policy), or ErrNotFound.
//
// It is on every signed-in request's path, so it only ever opens a read transaction: it never
// waits for a writer, never fsyncs, and an expired session is left for DeleteSession or the
// sweep.
func (s *Store) GetSession(ctx context.Context, id string) (Session, error) {
	if err := ctx.Err(); err != nil {
		return Session{}, err
	}
	var out Session
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, found, err = getSession(tx, id)
		return err
	})
	switch {
	case err != nil:
		return Session{}, err
	case !found:
		// Session ids stay out of errors, which end up in logs: they are derived from
		// credentials.
		return Session{}, fmt.Errorf("%w: session", ErrNotFound)
	}
	return out, nil
}

// TouchSession records activity: LastSeen and IdleExpiresAt are replaced and the session's
// expiry entry moves with them. It does not check whether the session has expired: a caller that
// coalesces these writes knows of later activity than the record does. ErrNotFound if the
// session is gone; ErrInvalid for a zero idleExpiresAt.
func (s *Store) TouchSession(ctx context.Context, id string, lastSeen, idleExpiresAt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkID("session id", id); err != nil {
		return err
	}
	if idleExpiresAt.IsZero() {
		return fmt.Errorf("%w: zero idle deadline", ErrInvalid)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		old, found, err := getSession(tx, id)
		switch {
		case err != nil:
			return err
		case !found:
			return fmt.Errorf("%w: session", ErrNotFound)
		}
		sess := old
		sess.LastSeen, sess.IdleExpiresAt = lastSeen, idleExpiresAt
		return putSession(tx, sess, &old)
	})
}

// DeleteSession ends the session. A session that is already gone is not an error: signing out
// twice, or after the sweep, signs out.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkID("session id", id); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		old, found, err := getSession(tx, id)
		if err != nil || !found {
			return err
		}
		return deleteSession(tx, old)
	})
}

// DeleteUserSessions ends every session of the user (signed out everywhere, disabled, password
// changed) in one transaction and returns how many there were.
func (s *Store) DeleteUserSessions(ctx context.Context, userID string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := checkID("user id", userID); err != nil {
		return 0, err
	}
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		sessions, err := userSessions(tx, userID)
		if err != nil {
			return err
		}
		for _, sess := range sessions {
			if err := deleteSession(tx, sess); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// SessionsByUser returns the user's sessions, expired ones included, oldest sign-in first (ties
// by id). A user without sessions gets an empty slice and no error.
func (s *Store) SessionsByUser(ctx context.Context, userID string) ([]Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Session
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = userSessions(tx, userID)
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Session) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// SweepExpiredSessions deletes sessions that have ended at now, earliest end first, at most
// limit of them (limit <= 0 means 1000) in one write transaction, and returns how many.
//
// It walks the sessions_by_expiry index rather than the sessions bucket: sessions are the most
// numerous records here and a sweep runs every minute, and the index makes its cost that of
// the sessions that actually ended. Keeping the entry in step costs a delete and a put in
// TouchSession's write transaction, which is open anyway.
func (s *Store) SweepExpiredSessions(ctx context.Context, now time.Time, limit int) (int, error) {
	n := 0
	err := s.sweepIndex(ctx, bucketSessionsByExpiry, now, limit, func(tx *bolt.Tx, id string, entry []byte) error {
		sess, found, err := getSession(tx, id)
		if err != nil {
			return err
		}
		if !found || !bytes.Equal(expiryKey(sess.deadline(), id), entry) {
			return dropStaleEntry(tx, bucketSessionsByExpiry, entry)
		}
		if !sess.Expired(now) {
			return nil
		}
		if err := deleteSession(tx, sess); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// userSessions reads the user's sessions through the index, re-checking each record so that
// a stale entry shows nothing.
func userSessions(tx *bolt.Tx, userID string) ([]Session, error) {
	var out []Session
	prefix := ownerKey(userID, "")
	c := tx.Bucket([]byte(bucketSessionsByUser)).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		sess, found, err := getSession(tx, string(k[len(prefix):]))
		if err != nil {
			return nil, err
		}
		if found && sess.UserID == userID {
			out = append(out, sess)
		}
	}
	return out, nil
}

// getSession reads a session inside tx. Decoding copies everything out of bbolt's memory map.
func getSession(tx *bolt.Tx, id string) (Session, bool, error) {
	v := tx.Bucket([]byte(bucketSessions)).Get([]byte(id))
	if v == nil {
		return Session{}, false, nil
	}
	sess, err := decodeSession(id, v)
	if err != nil {
		return Session{}, false, fmt.Errorf("data: session: %w", err)
	}
	return sess, true, nil
}

// putSession writes a session and keeps both indexes in step with it; old is the stored
// version it replaces, if any. Every write of a session goes through putSession or
// deleteSession.
func putSession(tx *bolt.Tx, sess Session, old *Session) error {
	if old != nil {
		if err := deleteSessionIndexes(tx, *old); err != nil {
			return err
		}
	}
	sess.CreatedAt, sess.LastSeen = sess.CreatedAt.UTC(), sess.LastSeen.UTC()
	sess.IdleExpiresAt, sess.ExpiresAt = sess.IdleExpiresAt.UTC(), sess.ExpiresAt.UTC()
	v, err := encodeSession(sess)
	if err != nil {
		return fmt.Errorf("data: encode session: %w", err)
	}
	if err := tx.Bucket([]byte(bucketSessions)).Put([]byte(sess.ID), v); err != nil {
		return fmt.Errorf("data: store session: %w", err)
	}
	if err := tx.Bucket([]byte(bucketSessionsByUser)).Put(ownerKey(sess.UserID, sess.ID), nil); err != nil {
		return fmt.Errorf("data: index session by user: %w", err)
	}
	if err := tx.Bucket([]byte(bucketSessionsByExpiry)).Put(expiryKey(sess.deadline(), sess.ID), nil); err != nil {
		return fmt.Errorf("data: index session by expiry: %w", err)
	}
	return nil
}

func deleteSessionIndexes(tx *bolt.Tx, sess Session) error {
	if err := tx.Bucket([]byte(bucketSessionsByUser)).Delete(ownerKey(sess.UserID, sess.ID)); err != nil {
		return fmt.Errorf("data: unindex session by user: %w", err)
	}
	if err := tx.Bucket([]byte(bucketSessionsByExpiry)).Delete(expiryKey(sess.deadline(), sess.ID)); err != nil {
		return fmt.Errorf("data: unindex session by expiry: %w", err)
	}
	return nil
}

func deleteSession(tx *bolt.Tx, sess Session) error {
	if err := deleteSessionIndexes(tx, sess); err != nil {
		return err
	}
	if err := tx.Bucket([]byte(bucketSessions)).Delete([]byte(sess.ID)); err != nil {
		return fmt.Errorf("data: delete session: %w", err)
	}
	return nil
}
