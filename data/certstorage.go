package data

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	bolt "go.etcd.io/bbolt"
)

// CertStorage is certmagic's storage in the toolgate database: certificates, private keys, ACME
// accounts and OCSP staples under certmagic's own slash-separated keys, in the certmagic
// bucket. Get it from [Store.CertStorage]; it is valid until the Store is closed.
//
// Keys are treated as paths the way certmagic's FileStorage treats them: "a/b" is a directory
// when some key starts with "a/b/", and "a/bc" is never inside "a/b".
//
// Locks live in this process only. That is enough because bbolt's file lock already keeps a
// second process off the database; a multi-node backend would need leases instead.
type CertStorage struct {
	db *bolt.DB

	mu    sync.Mutex
	locks map[string]chan struct{} // held locks; the channel is closed on Unlock
}

var _ certmagic.Storage = (*CertStorage)(nil)

// Lock takes the lock called name, waiting until it is free or ctx is done (then ctx.Err()).
func (s *CertStorage) Lock(ctx context.Context, name string) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.mu.Lock()
		held, ok := s.locks[name]
		if !ok {
			s.locks[name] = make(chan struct{})
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		// Every waiter wakes when the channel closes and races for the lock again; there are a
		// handful of certmagic jobs at most, so fairness is not worth a queue.
		select {
		case <-held:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Unlock releases the lock called name. It fails if the lock is not held. ctx is not read:
// certmagic unlocks with the context of the job, which may be done by then, and the lock
// must be released regardless.
func (s *CertStorage) Unlock(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	held, ok := s.locks[name]
	if !ok {
		return fmt.Errorf("data: certmagic unlock %q: not locked", name)
	}
	delete(s.locks, name)
	close(held)
	return nil
}

// Store writes value under key, replacing any value there, with the current time as its
// modification time.
func (s *CertStorage) Store(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v := certValue(time.Now(), value) // a copy: the caller may reuse value, bbolt keeps v until commit
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketCertmagic)).Put([]byte(key), v)
	})
	if err != nil {
		return fmt.Errorf("data: certmagic store %q: %w", key, err)
	}
	return nil
}

// Load returns the value under key; an error matching fs.ErrNotExist if there is none.
func (s *CertStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		_, payload, ok := splitCertValue(tx.Bucket([]byte(bucketCertmagic)).Get([]byte(key)))
		if !ok {
			return fmt.Errorf("data: certmagic load %q: %w", key, fs.ErrNotExist)
		}
		// Always non-nil, so a stored empty value loads as empty rather than as absent.
		out = append([]byte{}, payload...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete removes key and, as a directory, every key under key + "/", in one transaction.
//
// Deleting nothing is not an error. That follows certmagic's Storage contract ("It is not an
// error if the key does not exist ... return nil in that case") rather than returning
// fs.ErrNotExist: certmagic deletes a site's three files and then the site's directory, which
// is empty by then, and treats any error there as a failure.
func (s *CertStorage) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if key == "" {
		// "" + "/" would be every key starting with "/", and an empty key can never be
		// stored; refuse rather than guess whether the whole bucket was meant.
		return errors.New("data: certmagic delete: empty key")
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketCertmagic))
		doomed := [][]byte{[]byte(key)}
		prefix := []byte(key + "/")
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			doomed = append(doomed, bytes.Clone(k))
		}
		// Deleted after the walk: deleting under a live cursor can skip keys.
		for _, k := range doomed {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("data: certmagic delete %q: %w", key, err)
	}
	return nil
}

// Exists reports whether key exists as a value or as a directory. Errors count as absent.
func (s *CertStorage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// List returns the keys under path + "/" in key order: every one if recursive, otherwise the
// distinct immediate children (values and directories) as full paths ("path/child"). Path ""
// lists from the root; a trailing "/" on path is ignored. An error matching fs.ErrNotExist if
// there is nothing under path.
func (s *CertStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prefix := ""
	if path = strings.TrimSuffix(path, "/"); path != "" {
		prefix = path + "/"
	}
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		seen := make(map[string]bool)
		c := tx.Bucket([]byte(bucketCertmagic)).Cursor()
		for k, _ := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, _ = c.Next() {
			key := string(k) // a copy
			if !recursive {
				if i := strings.IndexByte(key[len(prefix):], '/'); i >= 0 {
					key = key[:len(prefix)+i]
				}
			}
			// Not just a comparison with the previous child: a value "a/b" and the directory
			// "a/b/" are not adjacent when "a/b!" sorts between them.
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("data: certmagic list %q: %w", path, err)
	}
	if !recursive {
		// Cut short, keys can come out of order: "a/b" (from "a/b/x") after "a/b.c".
		slices.Sort(out)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("data: certmagic list %q: %w", path, fs.ErrNotExist)
	}
	return out, nil
}

// Stat describes key: a value (IsTerminal, with Size and Modified), or a directory if some key
// starts with key + "/" (not terminal, no size or time). An error matching fs.ErrNotExist
// otherwise.
func (s *CertStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return certmagic.KeyInfo{}, err
	}
	var info certmagic.KeyInfo
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketCertmagic))
		if mtime, payload, ok := splitCertValue(b.Get([]byte(key))); ok {
			info = certmagic.KeyInfo{Key: key, Modified: mtime, Size: int64(len(payload)), IsTerminal: true}
			return nil
		}
		prefix := []byte(key + "/")
		if k, _ := b.Cursor().Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) {
			info = certmagic.KeyInfo{Key: key, IsTerminal: false}
			return nil
		}
		return fmt.Errorf("data: certmagic stat %q: %w", key, fs.ErrNotExist)
	})
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	return info, nil
}
