package data

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestCertStorage(t *testing.T) {
	cs := openTest(t, "").CertStorage()
	ctx := context.Background()
	for _, k := range []string{"a/b/c.crt", "a/b/c.key", "a/bc/x", "a/d", "z"} {
		if err := cs.Store(ctx, k, []byte("v:"+k)); err != nil {
			t.Fatal(err)
		}
	}
	v, err := cs.Load(ctx, "a/b/c.crt")
	if err != nil || string(v) != "v:a/b/c.crt" {
		t.Fatalf("Load: %q %v", v, err)
	}
	if _, err := cs.Load(ctx, "a/b"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a directory: %v", err)
	}
	for _, tc := range []struct {
		path      string
		recursive bool
		want      []string
	}{
		{"a", false, []string{"a/b", "a/bc", "a/d"}},
		{"a/b", false, []string{"a/b/c.crt", "a/b/c.key"}},
		{"a", true, []string{"a/b/c.crt", "a/b/c.key", "a/bc/x", "a/d"}},
		{"", false, []string{"a", "z"}},
	} {
		got, err := cs.List(ctx, tc.path, tc.recursive)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("List(%q, %v) = %v, %v; want %v", tc.path, tc.recursive, got, err, tc.want)
		}
	}
	if _, err := cs.List(ctx, "nope", true); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("List of nothing: %v", err)
	}
	info, err := cs.Stat(ctx, "a/b/c.key")
	if err != nil || !info.IsTerminal || info.Size != int64(len("v:a/b/c.key")) || time.Since(info.Modified) > time.Minute {
		t.Errorf("Stat(file) = %+v, %v", info, err)
	}
	if info, err := cs.Stat(ctx, "a/b"); err != nil || info.IsTerminal {
		t.Errorf("Stat(dir) = %+v, %v", info, err)
	}
	if _, err := cs.Stat(ctx, "a/b/c"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(missing) = %v", err)
	}
	if !cs.Exists(ctx, "a/bc") || cs.Exists(ctx, "a/x") {
		t.Error("Exists wrong")
	}
	// Delete is recursive, and "a/b" must not take "a/bc" with it.
	if err := cs.Delete(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if got, _ := cs.List(ctx, "a", true); !slices.Equal(got, []string{"a/bc/x", "a/d"}) {
		t.Fatalf("after Delete(a/b): %v", got)
	}
	if err := cs.Delete(ctx, "a/b"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Delete of nothing: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := cs.Store(cancelled, "q", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Store with a cancelled context: %v", err)
	}
}

func TestCertStorageLocks(t *testing.T) {
	cs := openTest(t, "").CertStorage()
	ctx := context.Background()
	if err := cs.Lock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		if err := cs.Lock(ctx, "issue_cert_x"); err != nil {
			t.Error(err)
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("second Lock did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	// Another name is independent.
	if err := cs.Lock(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if err := cs.Lock(short, "other"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with an expiring context: %v", err)
	}
	cs.Unlock(ctx, "issue_cert_x")
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not woken by Unlock")
	}
	if err := cs.Unlock(ctx, "never"); err == nil {
		t.Fatal("Unlock of an unlocked name succeeded")
	}
}

func TestCertStorageConcurrent(t *testing.T) {
	cs := openTest(t, "").CertStorage()
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			k := "k/" + strings.Repeat("x", i)
			for j := range 20 {
				val := []byte{byte(i), byte(j)}
				if err := cs.Store(ctx, k, val); err != nil {
					t.Error(err)
					return
				}
				if got, err := cs.Load(ctx, k); err != nil || len(got) != 2 || got[0] != byte(i) {
					t.Errorf("Load(%s) = %v, %v", k, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// FuzzCertStorageKeys stores arbitrary keys and checks they load back and that listings never
// leave the prefix asked for.
func FuzzCertStorageKeys(f *testing.F) {
	for _, s := range []string{"certificates/acme/x.example/x.example.crt", "a/b", "a", "a//b", "/lead", "trail/", "\x00", ""} {
		f.Add(s, []byte("v"))
	}
	st, err := Open(Config{Path: filepath.Join(f.TempDir(), "fuzz.db"), NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	cs := st.CertStorage()
	f.Fuzz(func(t *testing.T, key string, val []byte) {
		if key == "" || len(key) > bolt.MaxKeySize {
			return // bbolt refuses these keys; certmagic never makes them
		}
		ctx := context.Background()
		if err := cs.Store(ctx, key, val); err != nil {
			t.Fatalf("Store(%q): %v", key, err)
		}
		got, err := cs.Load(ctx, key)
		if err != nil || !bytes.Equal(got, val) {
			t.Fatalf("Load(%q) = %q, %v; want %q", key, got, err, val)
		}
		dir := key
		if i := strings.LastIndexByte(key, '/'); i > 0 {
			dir = key[:i]
		}
		for _, rec := range []bool{false, true} {
			list, err := cs.List(ctx, dir, rec)
			if err != nil {
				continue
			}
			for _, k := range list {
				if !strings.HasPrefix(k, strings.TrimSuffix(dir, "/")+"/") {
					t.Fatalf("List(%q, %v) returned %q outside the prefix", dir, rec, k)
				}
			}
		}
	})
}
