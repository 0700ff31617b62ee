package data

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// NameKind says how a name came to its owner.
type NameKind string

// Name kinds.
const (
	NameRequested NameKind = "requested" // the owner asked for exactly this name
	NameRandom    NameKind = "random"    // the server made it up
)

// NameClaim is a tunnel name and who holds it.
type NameClaim struct {
	Name      string // lower-case DNS label
	Owner     string
	Kind      NameKind
	Hint      string // opaque to data; which forward used it last
	ClaimedAt time.Time
	LastUsed  time.Time
	ExpiresAt time.Time // zero: never
}

func (c NameClaim) expired(at time.Time) bool {
	return !c.ExpiresAt.IsZero() && !c.ExpiresAt.After(at)
}

// nameRecord is NameClaim as stored: JSON with a version so it can grow.
type nameRecord struct {
	V         int       `json:"v"`
	Owner     string    `json:"owner"`
	Kind      NameKind  `json:"kind"`
	Hint      string    `json:"hint,omitempty"`
	ClaimedAt time.Time `json:"claimed_at"`
	LastUsed  time.Time `json:"last_used"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

func ownerKey(owner, name string) []byte {
	k := make([]byte, 0, len(owner)+1+len(name))
	k = append(k, owner...)
	k = append(k, 0)
	return append(k, name...)
}

func expiryKey(at time.Time, name string) []byte {
	k := make([]byte, 8, 8+len(name))
	be.PutUint64(k, uint64(at.UnixNano()))
	return append(k, name...)
}

func getName(tx *bolt.Tx, name string) (NameClaim, bool, error) {
	v := tx.Bucket(bucketNames).Get([]byte(name))
	if v == nil {
		return NameClaim{}, false, nil
	}
	var r nameRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return NameClaim{}, false, fmt.Errorf("data: name %q: %w", name, err)
	}
	return NameClaim{Name: name, Owner: r.Owner, Kind: r.Kind, Hint: r.Hint,
		ClaimedAt: r.ClaimedAt, LastUsed: r.LastUsed, ExpiresAt: r.ExpiresAt}, true, nil
}

// putName writes a claim and keeps both indexes in step with it; old is the previous version
// of the record, if there was one.
func putName(tx *bolt.Tx, c NameClaim, old *NameClaim) error {
	if old != nil {
		if err := delIndexes(tx, *old); err != nil {
			return err
		}
	}
	v, err := json.Marshal(nameRecord{V: 1, Owner: c.Owner, Kind: c.Kind, Hint: c.Hint,
		ClaimedAt: c.ClaimedAt.UTC(), LastUsed: c.LastUsed.UTC(), ExpiresAt: utcOrZero(c.ExpiresAt)})
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := tx.Bucket(bucketNames).Put([]byte(c.Name), v); err != nil {
		return err
	}
	if err := tx.Bucket(bucketNamesByOwner).Put(ownerKey(c.Owner, c.Name), nil); err != nil {
		return err
	}
	if !c.ExpiresAt.IsZero() {
		return tx.Bucket(bucketNamesByExpiry).Put(expiryKey(c.ExpiresAt, c.Name), nil)
	}
	return nil
}

func delIndexes(tx *bolt.Tx, c NameClaim) error {
	if err := tx.Bucket(bucketNamesByOwner).Delete(ownerKey(c.Owner, c.Name)); err != nil {
		return err
	}
	if !c.ExpiresAt.IsZero() {
		return tx.Bucket(bucketNamesByExpiry).Delete(expiryKey(c.ExpiresAt, c.Name))
	}
	return nil
}

func delName(tx *bolt.Tx, c NameClaim) error {
	if err := delIndexes(tx, c); err != nil {
		return err
	}
	return tx.Bucket(bucketNames).Delete([]byte(c.Name))
}

func utcOrZero(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// ClaimName claims c.Name for c.Owner, or refreshes the owner's claim. A new claim starts at
// c.LastUsed (or c.ClaimedAt if set). An existing claim of the same owner gets c's LastUsed, Hint
// and ExpiresAt, and becomes NameRequested if c is (never the reverse: a name someone asked for
// stays theirs on the requested terms). A claim of another owner is ErrNameTaken, unless it has
// expired by c.LastUsed, in which case it is replaced. It returns the stored claim.
func (s *Store) ClaimName(ctx context.Context, c NameClaim) (NameClaim, error) {
	if err := ctx.Err(); err != nil {
		return NameClaim{}, err
	}
	if c.Name == "" || c.Owner == "" {
		return NameClaim{}, fmt.Errorf("data: claim needs a name and an owner")
	}
	var out NameClaim
	err := s.db.Update(func(tx *bolt.Tx) error {
		old, ok, err := getName(tx, c.Name)
		if err != nil {
			return err
		}
		switch {
		case ok && old.Owner == c.Owner:
			out = old
			out.LastUsed, out.Hint, out.ExpiresAt = c.LastUsed, c.Hint, c.ExpiresAt
			if c.Kind == NameRequested {
				out.Kind = NameRequested
			}
			return putName(tx, out, &old)
		case ok && !old.expired(c.LastUsed):
			return fmt.Errorf("%w: %q", ErrNameTaken, c.Name)
		}
		out = c
		if out.ClaimedAt.IsZero() {
			out.ClaimedAt = c.LastUsed
		}
		if ok {
			return putName(tx, out, &old)
		}
		return putName(tx, out, nil)
	})
	if err != nil {
		return NameClaim{}, err
	}
	return out, nil
}

// GetName returns the claim on name, or ErrNotFound.
func (s *Store) GetName(ctx context.Context, name string) (NameClaim, error) {
	if err := ctx.Err(); err != nil {
		return NameClaim{}, err
	}
	var out NameClaim
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, found, err = getName(tx, name)
		return err
	})
	if err != nil {
		return NameClaim{}, err
	}
	if !found {
		return NameClaim{}, fmt.Errorf("%w: name %q", ErrNotFound, name)
	}
	return out, nil
}

// NamesByOwner returns an owner's claims, most recently used first.
func (s *Store) NamesByOwner(ctx context.Context, owner string) ([]NameClaim, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []NameClaim
	prefix := ownerKey(owner, "")
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketNamesByOwner).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			n, ok, err := getName(tx, string(k[len(prefix):]))
			if err != nil {
				return err
			}
			if ok && n.Owner == owner {
				out = append(out, n)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].LastUsed.After(out[j].LastUsed) })
	return out, nil
}

// TouchName records a use of a name the owner holds: ErrNotFound if nobody holds it,
// ErrNameTaken if someone else does.
func (s *Store) TouchName(ctx context.Context, name, owner string, lastUsed time.Time, hint string, expiresAt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		old, ok, err := getName(tx, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: name %q", ErrNotFound, name)
		}
		if old.Owner != owner {
			return fmt.Errorf("%w: %q", ErrNameTaken, name)
		}
		c := old
		c.LastUsed, c.Hint, c.ExpiresAt = lastUsed, hint, expiresAt
		return putName(tx, c, &old)
	})
}

// ReleaseName deletes the claim on name. owner "" releases whoever holds it (an operator's
// act); otherwise only the owner may.
func (s *Store) ReleaseName(ctx context.Context, name, owner string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		old, ok, err := getName(tx, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: name %q", ErrNotFound, name)
		}
		if owner != "" && old.Owner != owner {
			return fmt.Errorf("%w: %q", ErrNameTaken, name)
		}
		return delName(tx, old)
	})
}

// SweepExpiredNames releases claims whose expiry is at or before now, except names for which
// inUse returns true (a live tunnel keeps its name). It walks only the expiry index, oldest
// first, releases at most limit claims (default 1000) in one transaction, and returns them.
func (s *Store) SweepExpiredNames(ctx context.Context, now time.Time, limit int, inUse func(name string) bool) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 1000
	}
	var released []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		released = released[:0] // Update does not retry, but keep fn idempotent anyway
		var due []NameClaim
		c := tx.Bucket(bucketNamesByExpiry).Cursor()
		for k, _ := c.First(); k != nil && len(due) < limit; k, _ = c.Next() {
			if len(k) < 8 || int64(be.Uint64(k[:8])) > now.UnixNano() {
				break
			}
			name := string(k[8:])
			if inUse != nil && inUse(name) {
				continue
			}
			n, ok, err := getName(tx, name)
			if err != nil {
				return err
			}
			if ok && n.expired(now) {
				due = append(due, n)
			}
		}
		// Delete after the walk: deleting under a cursor can skip keys.
		for _, n := range due {
			if err := delName(tx, n); err != nil {
				return err
			}
			released = append(released, n.Name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return released, nil
}

// SweepConfig configures [Store.RunSweeps].
type SweepConfig struct {
	// Interval between sweeps. Default 1 minute.
	Interval time.Duration
	// NamesInUse reports names that must be kept even if expired. Default: none.
	NamesInUse func(name string) bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// RunSweeps releases expired records every cfg.Interval until ctx ends.
func (s *Store) RunSweeps(ctx context.Context, cfg SweepConfig) {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		names, err := s.SweepExpiredNames(ctx, cfg.Now(), 0, cfg.NamesInUse)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("name expiry sweep failed", "err", err)
		case len(names) > 0:
			s.log.Info("released unused names", "count", len(names))
		}
	}
}
