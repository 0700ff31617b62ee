package data

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTest(t *testing.T, path string) *Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "sub", "toolgate.db")
	}
	s, err := Open(Config{Path: path, NoSync: true, LockTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenCreatesPrivateFileAndLocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "toolgate.db")
	s := openTest(t, path)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("database mode %v, want 0600", st.Mode().Perm())
	}
	dst, _ := os.Stat(filepath.Dir(path))
	if dst.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", dst.Mode().Perm())
	}
	start := time.Now()
	_, err = Open(Config{Path: path, LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %s to give up", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSchemaTooNewLeavesFileAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "toolgate.db")
	s := openTest(t, path)
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		var v [4]byte
		be.PutUint32(v[:], schemaVersion+1)
		return tx.Bucket(bucketMeta).Put(keySchema, v[:])
	})
	db.Close()
	before, _ := os.ReadFile(path)
	if _, err := Open(Config{Path: path}); !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a newer file: %v, want ErrSchemaTooNew", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("opening a newer file changed it")
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "toolgate.db")
	s := openTest(t, path)
	ctx := context.Background()
	var calls atomic.Int32
	var wg sync.WaitGroup
	results := make([][]byte, 20)
	for i := range results {
		wg.Go(func() {
			v, err := s.LoadOrCreateSecret(ctx, "k", func() ([]byte, error) {
				n := calls.Add(1)
				return []byte{byte(n)}, nil
			})
			if err != nil {
				t.Error(err)
			}
			results[i] = v
		})
	}
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("create ran %d times", calls.Load())
	}
	for _, r := range results {
		if !bytes.Equal(r, results[0]) {
			t.Fatalf("callers disagree: %v vs %v", r, results[0])
		}
	}
	boom := errors.New("boom")
	if _, err := s.LoadOrCreateSecret(ctx, "bad", func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("create error not passed on: %v", err)
	}
	v, err := s.LoadOrCreateSecret(ctx, "bad", func() ([]byte, error) { return []byte("second"), nil })
	if err != nil || string(v) != "second" {
		t.Fatalf("after a failed create: %q %v", v, err)
	}
	s.Close()
	s2 := openTest(t, path)
	v, err = s2.LoadOrCreateSecret(ctx, "k", func() ([]byte, error) { t.Fatal("recreated after reopen"); return nil, nil })
	if err != nil || !bytes.Equal(v, results[0]) {
		t.Fatalf("after reopen: %v %v", v, err)
	}
}
