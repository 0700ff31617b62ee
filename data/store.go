// Package data is toolgate's storage: it owns the one bbolt file and every bucket and key layout
// in it (see layout.go), the schema version, and the expiry sweeps. Other packages hold records
// through the methods here and never see bbolt.
//
// It knows what it stores (names, secrets, certificates) but not why: name rules belong to
// package tunnel, certificate policy to package web. Today the backend is bbolt, a single-process
// file; a second backend for several nodes (etcd) is meant to implement the same methods.
package data

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Errors callers check with errors.Is.
var (
	ErrNotFound     = errors.New("data: not found")
	ErrNameTaken    = errors.New("data: name is claimed by another owner")
	ErrLocked       = errors.New("data: the database is held by another process (is another toolgate running with the same data directory?)")
	ErrSchemaTooNew = errors.New("data: the database was written by a newer toolgate")
)

// Config configures [Open]. Fields are read once, by Open.
type Config struct {
	// Path is the bbolt file. Required. Its directory is created (0700) if missing; the file
	// is created 0600.
	Path string
	// LockTimeout is how long Open waits for another process to release the file. Default 2s.
	LockTimeout time.Duration
	// NoSync skips fsync on commit. Default false; only for tests and benchmarks, since a
	// crash may then lose recent writes.
	NoSync bool
	// Logger receives sweep results. Default: discard.
	Logger *slog.Logger
}

// Store is an open database. Its methods are safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
	log  *slog.Logger
	cert *CertStorage
}

// Open opens (creating if needed) the database, makes sure every bucket exists and checks the
// schema version.
func Open(cfg Config) (*Store, error) {
	if cfg.Path == "" {
		return nil, errors.New("data: Config.Path is required")
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: cfg.LockTimeout, NoSync: cfg.NoSync})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, cfg.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("data: open %s: %w", cfg.Path, err)
	}
	s := &Store{db: db, path: cfg.Path, log: cfg.Logger}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	s.cert = &CertStorage{db: db, locks: make(map[string]chan struct{})}
	return s, nil
}

// init creates the buckets and records or checks the schema version in one transaction, so a
// file from a newer toolgate is left exactly as it was.
func (s *Store) init() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return fmt.Errorf("data: %w", err)
		}
		if v := meta.Get(keySchema); v != nil {
			if len(v) != 4 {
				return fmt.Errorf("data: corrupt schema version record (%d bytes)", len(v))
			}
			if got := be.Uint32(v); got > schemaVersion {
				return fmt.Errorf("%w: schema %d, this build knows %d", ErrSchemaTooNew, got, schemaVersion)
			}
		}
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("data: bucket %s: %w", b, err)
			}
		}
		var v [4]byte
		be.PutUint32(v[:], schemaVersion)
		return meta.Put(keySchema, v[:])
	})
}

// Close closes the database. It is safe to call more than once.
func (s *Store) Close() error {
	err := s.db.Close()
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return nil
	}
	return err
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// CertStorage returns certmagic storage on this database.
func (s *Store) CertStorage() *CertStorage { return s.cert }

// LoadOrCreateSecret returns the secret called name, creating it with create the first time.
// create runs inside the write transaction, so concurrent callers agree on one value; it
// should be quick (generating a key is fine). A create error stores nothing.
func (s *Store) LoadOrCreateSecret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketSecrets).Get([]byte(name)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil || out != nil {
		return out, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSecrets)
		if v := b.Get([]byte(name)); v != nil {
			out = append([]byte(nil), v...) // another caller won the race
			return nil
		}
		v, err := create()
		if err != nil {
			return fmt.Errorf("data: create secret %q: %w", name, err)
		}
		if len(v) == 0 {
			return fmt.Errorf("data: create secret %q: empty value", name)
		}
		out = append([]byte(nil), v...)
		return b.Put([]byte(name), v)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
