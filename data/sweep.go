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

// sweepIndex is the sweep of keys, sessions, OAuth clients and OAuth tokens. In a read
// transaction it collects up to limit entries of the expiry index bucket that are due at now
// (limit <= 0 means 1000); if there are any, it calls remove for each inside one write
// transaction, with the id the entry points at and the entry itself. remove re-reads the
// record there and decides, since it may have changed in between. A sweep with nothing due
// thus costs one read transaction and no fsync.
func (s *Store) sweepIndex(ctx context.Context, index string, now time.Time, limit int, remove func(tx *bolt.Tx, id string, entry []byte) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if limit <= 0 {
		limit = defaultSweepLimit
	}
	nowN := expiryNanos(now)
	var due [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(index)).Cursor()
		for k, _ := c.First(); k != nil && len(due) < limit; k, _ = c.Next() {
			if len(k) <= 8 {
				continue // not an entry this package writes; nothing to point at
			}
			if binary.BigEndian.Uint64(k) > nowN {
				break // deadline order: everything further is in the future
			}
			// Keys live in bbolt's memory map only as long as tx: copy.
			due = append(due, bytes.Clone(k))
		}
		return nil
	})
	if err != nil || len(due) == 0 {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, e := range due {
			if err := remove(tx, string(e[8:]), e); err != nil {
				return err
			}
		}
		return nil
	})
}

// dropStaleEntry deletes an expiry index entry whose record is gone or has another deadline
// (normally deleted with the change already; deleting a missing key is a no-op).
func dropStaleEntry(tx *bolt.Tx, index string, entry []byte) error {
	if err := tx.Bucket([]byte(index)).Delete(entry); err != nil {
		return fmt.Errorf("data: drop stale %s entry: %w", index, err)
	}
	return nil
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

	// KeysExpired receives the SSH key links a sweep deleted because they expired, so that
	// the server can close the connections those keys still hold. It is called outside any
	// transaction, after the deletion committed, from RunSweeps' goroutine: it may use the
	// Store, and a slow one delays the next sweep, not the server. Default nil.
	KeysExpired func([]SSHKey)

	// Audit is the audit log whose retention (its AuditLogConfig's MaxAge and MaxRecords) the
	// sweep enforces on the audit bucket, with [Store.SweepAudit]. Default nil: audit
	// records are not swept.
	Audit *AuditLog

	// Now is the clock sweeps compare deadlines with. Default time.Now.
	Now func() time.Time

	// Logger receives a line per sweep that released something (counts at info level for
	// names, keys and OAuth clients, at debug level for sessions, tickets, OAuth tokens and
	// audit records, which expire as a matter of course; the names and fingerprints at debug
	// level) and sweep failures.
	// Default: the Store's Config.Logger.
	Logger *slog.Logger
}

// RunSweeps releases expired name claims and deletes expired SSH key links, browser sessions,
// tickets, OAuth clients and OAuth tokens, and audit records past cfg.Audit's retention,
// every cfg.Interval until ctx is done, then returns.
// Within a tick, a sweep that removes a full batch is followed at once by another of the same
// kind, so a backlog does not wait for the ticker. Failures are logged and retried at the next tick; one kind failing does
// not stop the others.
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
		s.sweepOnce(ctx, cfg)
	}
}

// sweepOnce is one tick of RunSweeps.
func (s *Store) sweepOnce(ctx context.Context, cfg SweepConfig) {
	log := cfg.Logger
	drain(ctx, log, "name", func() (int, error) {
		names, err := s.SweepExpiredNames(ctx, cfg.Now(), defaultSweepLimit, cfg.NamesInUse)
		if len(names) > 0 {
			log.Info("released expired names", "count", len(names))
			log.Debug("released expired names", "names", names)
		}
		return len(names), err
	})
	drain(ctx, log, "SSH key", func() (int, error) {
		keys, err := s.SweepExpiredKeys(ctx, cfg.Now(), defaultSweepLimit)
		if len(keys) > 0 {
			fps := make([]string, len(keys))
			for i, k := range keys {
				fps[i] = k.Fingerprint
			}
			log.Info("unlinked expired SSH keys", "count", len(keys))
			log.Debug("unlinked expired SSH keys", "fingerprints", fps)
			if cfg.KeysExpired != nil {
				cfg.KeysExpired(keys)
			}
		}
		return len(keys), err
	})
	drain(ctx, log, "session", func() (int, error) {
		n, err := s.SweepExpiredSessions(ctx, cfg.Now(), defaultSweepLimit)
		if n > 0 {
			log.Debug("deleted expired sessions", "count", n)
		}
		return n, err
	})
	drain(ctx, log, "ticket", func() (int, error) {
		n, err := s.SweepExpiredTickets(ctx, cfg.Now(), defaultSweepLimit)
		if n > 0 {
			log.Debug("deleted expired tickets", "count", n)
		}
		return n, err
	})
	drain(ctx, log, "OAuth client", func() (int, error) {
		n, err := s.SweepExpiredOAuthClients(ctx, cfg.Now(), defaultSweepLimit)
		if n > 0 {
			log.Info("deleted expired OAuth clients", "count", n)
		}
		return n, err
	})
	drain(ctx, log, "OAuth token", func() (int, error) {
		n, err := s.SweepExpiredOAuthTokens(ctx, cfg.Now(), defaultSweepLimit)
		if n > 0 {
			log.Debug("deleted expired OAuth tokens", "count", n)
		}
		return n, err
	})
	if cfg.Audit != nil {
		// SweepAudit works through a backlog in chunks itself, so no drain.
		maxAge, maxRecords := cfg.Audit.retention()
		n, err := s.SweepAudit(ctx, cfg.Now(), maxAge, maxRecords)
		if n > 0 {
			log.Debug("deleted audit records past retention", "count", n)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("audit retention sweep failed", "err", err)
		}
	}
}

// drain runs sweep until it removes less than a full batch, fails, or ctx is done. A failure
// is logged unless it is ctx's own.
func drain(ctx context.Context, log *slog.Logger, what string, sweep func() (int, error)) {
	for ctx.Err() == nil {
		n, err := sweep()
		if err != nil {
			if ctx.Err() == nil {
				log.Warn(what+" expiry sweep failed", "err", err)
			}
			return
		}
		if n < defaultSweepLimit {
			return
		}
	}
}
