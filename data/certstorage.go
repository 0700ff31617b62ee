package data

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	bolt "go.etcd.io/bbolt"
)

// CertStorage is certmagic's storage on the toolgate database: certificates, keys, ACME
// account data and OCSP staples, under certmagic's own slash-separated keys.
//
// Locks are held in this process only. That is enough while one process owns the file (bbolt's
// flock guarantees it); a multi-node backend will need leases instead.
type CertStorage struct {
	db *bolt.DB

	mu    sync.Mutex
	locks map[string]chan struct{} // closed when the lock is released
}

var _ certmagic.Storage = (*CertStorage)(nil)

// Lock takes the named lock, waiting until it is free or ctx ends.
func (s *CertStorage) Lock(ctx context.Context, name string) error {
	for {
		s.mu.Lock()
		held, ok := s.locks[name]
		if !ok {
			s.locks[name] = make(chan struct{})
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Unlock releases the named lock.
func (s *CertStorage) Unlock(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	held, ok := s.locks[name]
	if !ok {
		return fmt.Errorf("data: unlock %q: not locked", name)
	}
	delete(s.locks, name)
	close(held)
	return nil
}

// Store writes value under key.
func (s *CertStorage) Store(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v := make([]byte, 8+len(value))
	be.PutUint64(v, uint64(time.Now().UnixNano()))
	copy(v[8:], value)
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCertmagic).Put([]byte(key), v)
	})
}

// Load returns the value under key, or an error satisfying errors.Is(err, fs.ErrNotExist).
func (s *CertStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCertmagic).Get([]byte(key))
		if len(v) < 8 {
			return fmt.Errorf("data: certmagic key %q: %w", key, fs.ErrNotExist)
		}
		out = append([]byte(nil), v[8:]...)
		return nil
	})
	return out, err
}

// Delete removes key and, as a directory, everything under key + "/".
func (s *CertStorage) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCertmagic)
		var doomed [][]byte
		if b.Get([]byte(key)) != nil {
			doomed = append(doomed, []byte(key))
		}
		prefix := []byte(key + "/")
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			doomed = append(doomed, append([]byte(nil), k...))
		}
		if len(doomed) == 0 {
			return fmt.Errorf("data: certmagic key %q: %w", key, fs.ErrNotExist)
		}
		for _, k := range doomed {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Exists reports whether key exists as a value or a directory.
func (s *CertStorage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// List returns the keys under path: all of them if recursive, else the immediate children
// (files and directories) as full paths.
func (s *CertStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prefix := ""
	if path != "" {
		prefix = strings.TrimSuffix(path, "/") + "/"
	}
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		seen := make(map[string]bool)
		c := tx.Bucket(bucketCertmagic).Cursor()
		for k, _ := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, _ = c.Next() {
			key := string(k)
			if !recursive {
				rest := key[len(prefix):]
				if i := strings.IndexByte(rest, '/'); i >= 0 {
					key = prefix + rest[:i]
				}
			}
			if !seen[key] {
				seen[key] = true
				out = append(out, key)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("data: certmagic path %q: %w", path, fs.ErrNotExist)
	}
	return out, nil
}

// Stat describes key: a terminal value, or a directory if keys exist under key + "/".
func (s *CertStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return certmagic.KeyInfo{}, err
	}
	var info certmagic.KeyInfo
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCertmagic)
		if v := b.Get([]byte(key)); len(v) >= 8 {
			info = certmagic.KeyInfo{Key: key, Modified: time.Unix(0, int64(be.Uint64(v))),
				Size: int64(len(v) - 8), IsTerminal: true}
			return nil
		}
		prefix := []byte(key + "/")
		if k, _ := b.Cursor().Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) {
			info = certmagic.KeyInfo{Key: key, IsTerminal: false}
			return nil
		}
		return fmt.Errorf("data: certmagic key %q: %w", key, fs.ErrNotExist)
	})
	return info, err
}
