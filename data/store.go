package data

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Errors callers check with errors.Is. Returned errors wrap them with detail.
var (
	// ErrNotFound: the record does not exist.
	ErrNotFound = errors.New("data: not found")
	// ErrNameTaken: the name is claimed by another owner. The error never says who.
	ErrNameTaken = errors.New("data: name is claimed by another owner")
	// ErrLocked: another process holds the database file (Open timed out waiting for it).
	ErrLocked = errors.New("data: database is locked")
	// ErrSchemaTooNew: the file, or a record in it, was written by a newer toolgate.
	ErrSchemaTooNew = errors.New("data: database was written by a newer toolgate")
)

const defaultLockTimeout = 2 * time.Second

// Config configures [Open]. Every field is read once, by Open.
type Config struct {
	// Path is the bbolt file. Required; there is no default. A missing parent directory is
	// created with mode 0700; a new file is created with mode 0600 (an existing file keeps its
	// mode).
	Path string

	// LockTimeout is how long Open waits for another process to let go of the file before
	// failing with ErrLocked. Default (zero or negative) 2s. bbolt's own zero means "wait
	// forever", which would hang a second toolgate silently; that is never passed through.
	LockTimeout time.Duration

	// NoSync skips fsync on commit. Default false. Only for tests and benchmarks: a crash may
	// lose or corrupt recent writes.
	NoSync bool

	// Logger receives what the store reports on its own, today only from [Store.RunSweeps]
	// (unless its SweepConfig names another logger). Default: a logger that discards.
	Logger *slog.Logger
}

// Store is an open database. Its methods are safe for concurrent use.
type Store struct {
	// oauthGen counts changes that can end an access token before its expiry; see
	// OAuthGeneration.
	oauthGen atomic.Uint64

	db   *bolt.DB
	path string
	log  *slog.Logger
	cert *CertStorage
}

// Open opens the database, creating it if needed, makes sure every bucket exists and records or
// checks the schema version. A file locked by another process gives ErrLocked after
// cfg.LockTimeout; a file from a newer toolgate gives ErrSchemaTooNew and is left unchanged.
func Open(cfg Config) (*Store, error) {
	if cfg.Path == "" {
		return nil, errors.New("data: Config.Path is required")
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = defaultLockTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("data: create the database directory: %w", err)
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: cfg.LockTimeout, NoSync: cfg.NoSync})
	if errors.Is(err, bolterrors.ErrTimeout) {
		// bbolt's flock is per open file, so this is also what a second Open in the same
		// process gets.
		return nil, fmt.Errorf("%w: another toolgate process holds %s (gave up after %s)", ErrLocked, cfg.Path, cfg.LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("data: open %s: %w", cfg.Path, err)
	}
	s := &Store{db: db, path: cfg.Path, log: cfg.Logger}
	if err := s.init(); err != nil {
		_ = db.Close() // the init error is the one worth reporting
		return nil, fmt.Errorf("data: open %s: %w", cfg.Path, err)
	}
	s.cert = &CertStorage{db: db, locks: make(map[string]chan struct{})}
	return s, nil
}

// init checks the schema in a read transaction first and writes only when something is
// missing. A file from a newer toolgate is refused before any write transaction begins, so it
// is left byte for byte as it was, and an ordinary start costs no fsync.
func (s *Store) init() error {
	ready := false
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		ready, err = checkSchema(tx)
		return err
	})
	if err != nil || ready {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		// Check again so that the check and the writes are one atomic step.
		if _, err := checkSchema(tx); err != nil {
			return err
		}
		for _, name := range allBuckets() {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		if err := tx.Bucket([]byte(bucketMeta)).Put([]byte(keySchema), encodeSchema(schemaVersion)); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
		return nil
	})
}

// checkSchema reports whether the file is complete at the current schema version, and fails if
// its version is newer than this build's.
func checkSchema(tx *bolt.Tx) (ready bool, err error) {
	meta := tx.Bucket([]byte(bucketMeta))
	if meta == nil {
		return false, nil
	}
	v := meta.Get([]byte(keySchema))
	if v == nil {
		return false, nil
	}
	if len(v) != 4 {
		return false, fmt.Errorf("corrupt schema version record (%d bytes)", len(v))
	}
	got := binary.BigEndian.Uint32(v)
	if got > schemaVersion {
		return false, fmt.Errorf("%w: schema version %d, this build knows %d", ErrSchemaTooNew, got, schemaVersion)
	}
	if got < schemaVersion {
		return false, nil
	}
	for _, name := range allBuckets() {
		if tx.Bucket([]byte(name)) == nil {
			return false, nil
		}
	}
	return true, nil
}

// Close closes the database, waiting for transactions in flight. It is safe to call more than
// once; later calls return nil. Methods called after Close fail.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("data: close %s: %w", s.path, err)
	}
	return nil
}

// OAuthGeneration is a number that changes (after the change is committed) whenever an
// access token may have stopped being valid before its expiry: a token deleted or rotated
// away, a grant, consent or client revoked or swept, a user updated (disabled, say). A cache
// of validated tokens that records it before reading and compares it before trusting an
// entry never serves a token past its revocation.
func (s *Store) OAuthGeneration() uint64 { return s.oauthGen.Load() }

// Path returns the database file's path as given in Config.Path.
func (s *Store) Path() string { return s.path }

// CertStorage returns certmagic storage in this database's certmagic bucket. Every call returns
// the same value, so its locks are shared.
func (s *Store) CertStorage() *CertStorage { return s.cert }
