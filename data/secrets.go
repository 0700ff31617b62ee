package data

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// LoadOrCreateSecret returns the secret called name (the SSH host key, the local CA, …),
// creating it with create the first time and returning the stored bytes forever after.
//
// create runs inside the write transaction, and only when the secret is absent, so concurrent
// callers for the same name agree: one create wins and every caller gets its bytes. While it
// runs every other write waits, so create must be quick (generating a key is fine) and must not
// call the Store: a transaction inside a transaction on one goroutine deadlocks bbolt. A create
// error, or an empty result, stores nothing and is returned wrapped.
func (s *Store) LoadOrCreateSecret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, errors.New("data: secret name is empty")
	}
	// The common case, every start after the first, needs no write transaction and no fsync.
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = getSecret(tx, name)
		return err
	})
	if err != nil || out != nil {
		return out, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if out, err = getSecret(tx, name); err != nil || out != nil {
			return err // another caller created it between our two transactions
		}
		v, err := create()
		if err != nil {
			return fmt.Errorf("data: create secret %q: %w", name, err)
		}
		if len(v) == 0 {
			return fmt.Errorf("data: create secret %q: it returned no bytes", name)
		}
		rec, err := encodeSecret(v, time.Now())
		if err != nil {
			return fmt.Errorf("data: encode secret %q: %w", name, err)
		}
		if err := tx.Bucket([]byte(bucketSecrets)).Put([]byte(name), rec); err != nil {
			return fmt.Errorf("data: store secret %q: %w", name, err)
		}
		// A copy, so that a create that keeps and later changes its slice cannot change ours.
		out = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// getSecret returns the secret's value, or nil if there is none. Unmarshalling copies the bytes
// out of bbolt's memory map, so the result outlives tx.
func getSecret(tx *bolt.Tx, name string) ([]byte, error) {
	v := tx.Bucket([]byte(bucketSecrets)).Get([]byte(name))
	if v == nil {
		return nil, nil
	}
	rec, err := decodeSecret(v)
	if err != nil {
		return nil, fmt.Errorf("data: secret %q: %w", name, err)
	}
	if len(rec.Value) == 0 {
		return nil, fmt.Errorf("data: secret %q: stored record has no value", name)
	}
	return rec.Value, nil
}
