package data

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SSHKey is an SSH public key linked to a user: connections that authenticate with it act as
// that user. data keeps only the fingerprint, not the key: the SSH server sees the key in every
// handshake and only needs to know whose it is.
type SSHKey struct {
	Fingerprint string // "SHA256:…" as ssh.FingerprintSHA256 prints it; the key of the record
	Type        string // "ssh-ed25519", …; informational
	UserID      string
	LinkedAt    time.Time
	ExpiresAt   time.Time // zero: the link never expires
	LastUsed    time.Time // zero: never used
	LinkedFrom  string    // the source IP the link was approved for; informational
}

// Expired reports whether the link has lapsed at now. At the deadline itself it has, as for
// name claims, so that LinkKey and SweepExpiredKeys agree on the instant.
func (k SSHKey) Expired(now time.Time) bool {
	return !k.ExpiresAt.IsZero() && !k.ExpiresAt.After(now)
}

// LinkKey links k.Fingerprint to k.UserID and returns the link as stored (times in UTC). A zero
// k.LinkedAt means now, and it is also the "now" the rules below compare deadlines with.
//
//   - Not linked: the link is created.
//   - Linked to k.UserID, or linked to someone else but expired at k.LinkedAt: the record is
//     replaced by k. When the key stays with its user and k.LastUsed is zero, the old LastUsed
//     is kept, so that renewing a link does not make the key look unused.
//   - Linked to someone else and not expired: ErrKeyLinked, which does not say to whom.
//
// ErrInvalid for an empty fingerprint or user id or NUL in either; ErrNotFound if the user
// does not exist. It is one transaction. Names the key owns are not moved: see MoveNames.
func (s *Store) LinkKey(ctx context.Context, k SSHKey) (SSHKey, error) {
	if err := ctx.Err(); err != nil {
		return SSHKey{}, err
	}
	if err := checkID("key fingerprint", k.Fingerprint); err != nil {
		return SSHKey{}, err
	}
	if err := checkID("user id", k.UserID); err != nil {
		return SSHKey{}, err
	}
	if k.LinkedAt.IsZero() {
		k.LinkedAt = time.Now()
	}
	var out SSHKey
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := checkUserExists(tx, k.UserID); err != nil {
			return err
		}
		old, found, err := getKey(tx, k.Fingerprint)
		switch {
		case err != nil:
			return err
		case !found:
			out, err = putKey(tx, k, nil)
			return err
		case old.UserID != k.UserID && !old.Expired(k.LinkedAt):
			return fmt.Errorf("%w: %s", ErrKeyLinked, k.Fingerprint)
		case old.UserID == k.UserID && k.LastUsed.IsZero():
			k.LastUsed = old.LastUsed
		}
		out, err = putKey(tx, k, &old)
		return err
	})
	if err != nil {
		return SSHKey{}, err
	}
	return out, nil
}

// GetKey returns the link of the key with this fingerprint, expired or not (the caller tells
// an expired link from an unknown key), or ErrNotFound.
func (s *Store) GetKey(ctx context.Context, fingerprint string) (SSHKey, error) {
	if err := ctx.Err(); err != nil {
		return SSHKey{}, err
	}
	var out SSHKey
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, found, err = getKey(tx, fingerprint)
		return err
	})
	switch {
	case err != nil:
		return SSHKey{}, err
	case !found:
		return SSHKey{}, fmt.Errorf("%w: key %s", ErrNotFound, fingerprint)
	}
	return out, nil
}

// KeysByUser returns every key linked to the user, expired ones included, oldest link first
// (ties by fingerprint). It reads the user index, so its cost does not grow with other users'
// keys. A user without keys gets an empty slice and no error.
func (s *Store) KeysByUser(ctx context.Context, userID string) ([]SSHKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []SSHKey
	prefix := ownerKey(userID, "")
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketKeysByUser)).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			key, found, err := getKey(tx, string(k[len(prefix):]))
			if err != nil {
				return err
			}
			// Re-checked against the record so that a stale index entry shows nothing.
			if found && key.UserID == userID {
				out = append(out, key)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The index is in fingerprint order, so a stable sort leaves ties by fingerprint.
	slices.SortStableFunc(out, func(a, b SSHKey) int { return a.LinkedAt.Compare(b.LinkedAt) })
	return out, nil
}

// TouchKey records a use of the key: only LastUsed changes, and an expired link stays expired.
// ErrNotFound if the key is not linked.
func (s *Store) TouchKey(ctx context.Context, fingerprint string, lastUsed time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkID("key fingerprint", fingerprint); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		old, found, err := getKey(tx, fingerprint)
		switch {
		case err != nil:
			return err
		case !found:
			return fmt.Errorf("%w: key %s", ErrNotFound, fingerprint)
		}
		k := old
		k.LastUsed = lastUsed
		_, err = putKey(tx, k, &old)
		return err
	})
}

// RevokeKey unlinks the key and returns the link it deleted, or ErrNotFound. Closing the key's
// connections is the caller's business.
func (s *Store) RevokeKey(ctx context.Context, fingerprint string) (SSHKey, error) {
	if err := ctx.Err(); err != nil {
		return SSHKey{}, err
	}
	if err := checkID("key fingerprint", fingerprint); err != nil {
		return SSHKey{}, err
	}
	var out SSHKey
	err := s.db.Update(func(tx *bolt.Tx) error {
		var found bool
		var err error
		out, found, err = getKey(tx, fingerprint)
		switch {
		case err != nil:
			return err
		case !found:
			return fmt.Errorf("%w: key %s", ErrNotFound, fingerprint)
		}
		return deleteKey(tx, out)
	})
	if err != nil {
		return SSHKey{}, err
	}
	return out, nil
}

// SweepExpiredKeys unlinks keys whose ExpiresAt is set and at or before now, oldest deadline
// first, at most limit of them (limit <= 0 means 1000) in one write transaction, and returns
// the links it deleted. Like SweepExpiredNames it reads only the due part of the expiry index,
// and a sweep with nothing due opens no write transaction.
func (s *Store) SweepExpiredKeys(ctx context.Context, now time.Time, limit int) ([]SSHKey, error) {
	var swept []SSHKey
	err := s.sweepIndex(ctx, bucketKeysByExpiry, now, limit, func(tx *bolt.Tx, fp string, entry []byte) error {
		k, found, err := getKey(tx, fp)
		if err != nil {
			return err
		}
		if !found || k.ExpiresAt.IsZero() || !bytes.Equal(expiryKey(k.ExpiresAt, fp), entry) {
			return dropStaleEntry(tx, bucketKeysByExpiry, entry)
		}
		if !k.Expired(now) {
			return nil
		}
		if err := deleteKey(tx, k); err != nil {
			return err
		}
		swept = append(swept, k)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return swept, nil
}

// getKey reads a key link inside tx. Decoding copies everything out of bbolt's memory map.
func getKey(tx *bolt.Tx, fingerprint string) (SSHKey, bool, error) {
	v := tx.Bucket([]byte(bucketKeys)).Get([]byte(fingerprint))
	if v == nil {
		return SSHKey{}, false, nil
	}
	k, err := decodeKey(fingerprint, v)
	if err != nil {
		return SSHKey{}, false, fmt.Errorf("data: key %s: %w", fingerprint, err)
	}
	return k, true, nil
}

// putKey writes a key link and keeps both indexes in step with it; old is the stored version
// it replaces, if any. Every write of a key goes through putKey or deleteKey.
func putKey(tx *bolt.Tx, k SSHKey, old *SSHKey) (SSHKey, error) {
	if old != nil {
		if err := deleteKeyIndexes(tx, *old); err != nil {
			return SSHKey{}, err
		}
	}
	k.LinkedAt, k.ExpiresAt, k.LastUsed = k.LinkedAt.UTC(), k.ExpiresAt.UTC(), k.LastUsed.UTC()
	v, err := encodeKey(k)
	if err != nil {
		return SSHKey{}, fmt.Errorf("data: encode key %s: %w", k.Fingerprint, err)
	}
	if err := tx.Bucket([]byte(bucketKeys)).Put([]byte(k.Fingerprint), v); err != nil {
		return SSHKey{}, fmt.Errorf("data: store key %s: %w", k.Fingerprint, err)
	}
	if err := tx.Bucket([]byte(bucketKeysByUser)).Put(ownerKey(k.UserID, k.Fingerprint), nil); err != nil {
		return SSHKey{}, fmt.Errorf("data: index key %s by user: %w", k.Fingerprint, err)
	}
	if !k.ExpiresAt.IsZero() {
		if err := tx.Bucket([]byte(bucketKeysByExpiry)).Put(expiryKey(k.ExpiresAt, k.Fingerprint), nil); err != nil {
			return SSHKey{}, fmt.Errorf("data: index key %s by expiry: %w", k.Fingerprint, err)
		}
	}
	return k, nil
}

func deleteKeyIndexes(tx *bolt.Tx, k SSHKey) error {
	if err := tx.Bucket([]byte(bucketKeysByUser)).Delete(ownerKey(k.UserID, k.Fingerprint)); err != nil {
		return fmt.Errorf("data: unindex key %s by user: %w", k.Fingerprint, err)
	}
	if !k.ExpiresAt.IsZero() {
		if err := tx.Bucket([]byte(bucketKeysByExpiry)).Delete(expiryKey(k.ExpiresAt, k.Fingerprint)); err != nil {
			return fmt.Errorf("data: unindex key %s by expiry: %w", k.Fingerprint, err)
		}
	}
	return nil
}

func deleteKey(tx *bolt.Tx, k SSHKey) error {
	if err := deleteKeyIndexes(tx, k); err != nil {
		return err
	}
	if err := tx.Bucket([]byte(bucketKeys)).Delete([]byte(k.Fingerprint)); err != nil {
		return fmt.Errorf("data: delete key %s: %w", k.Fingerprint, err)
	}
	return nil
}
