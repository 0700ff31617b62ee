package data

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

func TestLoadOrCreateSecretOnceUnderConcurrency(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	var calls atomic.Int32
	results := make([][]byte, 20)
	errs := make([]error, len(results))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			<-start
			results[i], errs[i] = s.LoadOrCreateSecret(ctx, "ssh-host-key", func() ([]byte, error) {
				return []byte{'k', byte(calls.Add(1))}, nil
			})
		})
	}
	close(start)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("create ran %d times, want once", n)
	}
	for i := range results {
		if errs[i] != nil || !bytes.Equal(results[i], []byte{'k', 1}) {
			t.Errorf("caller %d got %q, %v; want the one created value", i, results[i], errs[i])
		}
	}
}

func TestLoadOrCreateSecretFailures(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name   string
		secret string
		ctx    func() context.Context
		create func() ([]byte, error)
		is     error // the error must match this, if set
	}{
		{"create fails", "k", context.Background, func() ([]byte, error) { return nil, boom }, boom},
		{"create returns nothing", "k", context.Background, func() ([]byte, error) { return []byte{}, nil }, nil},
		{"empty name", "", context.Background, func() ([]byte, error) { return []byte("v"), nil }, nil},
		{"cancelled", "k", cancelledContext, func() ([]byte, error) { return []byte("v"), nil }, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, "")
			got, err := s.LoadOrCreateSecret(tc.ctx(), tc.secret, tc.create)
			if err == nil || tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("LoadOrCreateSecret = %q, %v; want an error matching %v", got, err, tc.is)
			}
			if tc.secret == "" {
				return
			}
			// Nothing was stored: the next call creates.
			got, err = s.LoadOrCreateSecret(context.Background(), tc.secret, func() ([]byte, error) { return []byte("second"), nil })
			if err != nil || string(got) != "second" {
				t.Fatalf("after the failure: %q, %v; want a fresh create", got, err)
			}
		})
	}
}

func TestLoadOrCreateSecretSurvivesReopenAndIsACopy(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "toolgate.db")
	s := openTest(t, path)
	kept := []byte("original")
	got, err := s.LoadOrCreateSecret(ctx, "ca", func() ([]byte, error) { return kept, nil })
	if err != nil {
		t.Fatal(err)
	}
	// Neither the creator's slice nor a returned one is the stored value.
	kept[0], got[0] = 'X', 'Y'
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	for range 2 {
		got, err := s.LoadOrCreateSecret(ctx, "ca", func() ([]byte, error) {
			t.Fatal("create called for an existing secret")
			return nil, nil
		})
		if err != nil || string(got) != "original" {
			t.Fatalf("after reopen: %q, %v", got, err)
		}
		got[0] = 'Z'
	}
}

func cancelledContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
