package data

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	defaultSweepLimit    = 1000
	defaultSweepInterval = time.Minute
)

// sweepCandidate is an expiry index entry found due, with the key it was found under so the
// deleting transaction can tell whether the claim changed in between.
type sweepCandidate struct {
	name string
	key  []byte
}

// SweepExpiredNames releases claims whose ExpiresAt is set and at or before now, oldest deadline
// first, except names for which inUse returns true (a live tunnel keeps its name; nil means
// nothing is in use). It releases at most limit claims (limit <= 0 means 1000), all in one
// write transaction, and returns their names.
//
// It reads only the expiry index, from the oldest deadline up to now, so unexpired claims cost
// nothing. inUse is called outside any transaction: it may take its caller's locks or even call
// the Store without deadlocking against a writer. A claim refreshed between that call and the
// deleting transaction is re-read there and kept.
func (s *Store) SweepExpiredNames(ctx context.Context, now time.Time, limit int, inUse func(name string) bool) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = defaultSweepLimit
	}
	due, err := s.dueNames(ctx, now, limit, inUse)
	if err != nil || len(due) == 0 {
		return nil, err
	}
	var released []string
	err = s.db.Update(func(tx *bolt.Tx) error {
		released = released[:0]
		byExpiry := tx.Bucket([]byte(bucketNamesByExpiry))
		for _, d := range due {
			c, found, err := getName(tx, d.name)
			if err != nil {
				return err
			}
			if !found || c.ExpiresAt.IsZero() || !bytes.Equal(expiryKey(c.ExpiresAt, c.Name), d.key) {
				// The claim is gone or has a new deadline, so this entry is stale (normally
				// already deleted with the change; deleting a missing key is a no-op).
				if err := byExpiry.Delete(d.key); err != nil {
					return fmt.Errorf("data: drop stale expiry entry for %q: %w", d.name, err)
				}
				continue
			}
			if !c.expired(now) {
				continue
			}
			if err := deleteName(tx, c); err != nil {
				return err
			}
			released = append(released, c.Name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return released, nil
}

// dueNames walks the expiry index in pages of read transactions and returns up to limit due
// entries whose names are not in use. Paging matters when many expired claims belong to live
// tunnels: they are skipped without ever holding the write lock.
func (s *Store) dueNames(ctx context.Context, now time.Time, limit int, inUse func(string) bool) ([]sweepCandidate, error) {
	nowN := expiryNanos(now)
	var due []sweepCandidate
	var after []byte // last key seen; the next page starts past it
	for len(due) < limit {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var page []sweepCandidate
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket([]byte(bucketNamesByExpiry)).Cursor()
			k, _ := c.First()
			if after != nil {
				k, _ = c.Seek(after)
				if bytes.Equal(k, after) {
					k, _ = c.Next()
				}
			}
			for ; k != nil && len(page) < limit; k, _ = c.Next() {
				if len(k) < 8 || binary.BigEndian.Uint64(k) > nowN {
					break // the index is in deadline order: everything further is in the future
				}
				// Keys live in bbolt's memory map only as long as tx: copy.
				page = append(page, sweepCandidate{name: string(k[8:]), key: bytes.Clone(k)})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, p := range page {
			if len(due) < limit && (inUse == nil || !inUse(p.name)) {
				due = append(due, p)
			}
		}
		if len(page) < limit {
			break // the due part of the index is exhausted
		}
		after = page[len(page)-1].key
	}
	return due, nil
}

// SweepConfig configures [Store.RunSweeps]. Every field is read once, when RunSweeps starts.
type SweepConfig struct {
	// Interval is the time between sweeps; the first sweep runs one Interval after the start.
	// Default (zero or negative) 1 minute.
	Interval time.Duration

	// NamesInUse reports names that must be kept although their claim has expired, because a
	// live tunnel serves them. It is called outside any transaction. Default nil: nothing is
	// in use.
	NamesInUse func(name string) bool

	// Now is the clock sweeps compare deadlines with. Default time.Now.
	Now func() time.Time

	// Logger receives a line per sweep that released something (the names at debug level)
	// and sweep failures.
	// Default: the Store's Config.Logger.
	Logger *slog.Logger
}

// RunSweeps releases expired name claims every cfg.Interval until ctx is done, then returns.
// A sweep that releases a full batch is followed at once by another, so a backlog does not
// wait for the ticker. Failures are logged and retried at the next tick.
func (s *Store) RunSweeps(ctx context.Context, cfg SweepConfig) {
	if cfg.Interval <= 0 {
		cfg.Interval = defaultSweepInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = s.log
	}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for ctx.Err() == nil {
			names, err := s.SweepExpiredNames(ctx, cfg.Now(), defaultSweepLimit, cfg.NamesInUse)
			if err != nil {
				if ctx.Err() == nil {
					cfg.Logger.Warn("name expiry sweep failed", "err", err)
				}
				break
			}
			if len(names) > 0 {
				cfg.Logger.Info("released expired names", "count", len(names))
				cfg.Logger.Debug("released expired names", "names", names)
			}
			if len(names) < defaultSweepLimit {
				break
			}
		}
	}
}
