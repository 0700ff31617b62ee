package data

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"testing"
	"time"
)

// certKeys is a tree with the prefix traps: "a/b" is a directory and "a/bc", "a/b.c", "a/b!"
// are its siblings, which sort before, after and between its own keys.
func certKeys() []string {
	return []string{"a/b/c.crt", "a/b/c.key", "a/b!", "a/b.c", "a/bc/x", "a/d", "z"}
}

func newCertStorage(t *testing.T) *CertStorage {
	t.Helper()
	cs := openTest(t, "").CertStorage()
	for _, k := range certKeys() {
		if err := cs.Store(context.Background(), k, []byte("v:"+k)); err != nil {
			t.Fatal(err)
		}
	}
	return cs
}

func TestCertStorageLoad(t *testing.T) {
	cs := newCertStorage(t)
	ctx := context.Background()
	if err := cs.Store(ctx, "empty", nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key     string
		want    string
		missing bool
	}{
		{key: "a/b/c.crt", want: "v:a/b/c.crt"},
		{key: "empty", want: ""},
		{key: "a/b", missing: true}, // a directory is not a value
		{key: "a/b/c", missing: true},
		{key: "nope", missing: true},
	} {
		got, err := cs.Load(ctx, tc.key)
		switch {
		case tc.missing && !errors.Is(err, fs.ErrNotExist):
			t.Errorf("Load(%q) = %q, %v; want fs.ErrNotExist", tc.key, got, err)
		case !tc.missing && (err != nil || string(got) != tc.want || got == nil):
			t.Errorf("Load(%q) = %q, %v; want %q", tc.key, got, err, tc.want)
		}
	}
	// Overwrite, and the caller's slice is not kept.
	v := []byte("new")
	if err := cs.Store(ctx, "z", v); err != nil {
		t.Fatal(err)
	}
	v[0] = 'X'
	if got, _ := cs.Load(ctx, "z"); string(got) != "new" {
		t.Errorf("after overwrite: %q", got)
	}
}

func TestCertStorageList(t *testing.T) {
	cs := newCertStorage(t)
	for _, tc := range []struct {
		path      string
		recursive bool
		want      []string // nil: fs.ErrNotExist
	}{
		{"a", false, []string{"a/b!", "a/b.c", "a/b", "a/bc", "a/d"}},
		{"a/", false, []string{"a/b!", "a/b.c", "a/b", "a/bc", "a/d"}},
		{"a", true, []string{"a/b!", "a/b.c", "a/b/c.crt", "a/b/c.key", "a/bc/x", "a/d"}},
		{"a/b", false, []string{"a/b/c.crt", "a/b/c.key"}},
		{"a/b", true, []string{"a/b/c.crt", "a/b/c.key"}},
		{"a/bc", false, []string{"a/bc/x"}},
		{"", false, []string{"a", "z"}},
		{"", true, certKeys()},
		{"a/b/c.crt", false, nil}, // a value has no children
		{"a/b/c", true, nil},
		{"nope", false, nil},
	} {
		got, err := cs.List(context.Background(), tc.path, tc.recursive)
		if tc.want == nil {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("List(%q, %v) = %q, %v; want fs.ErrNotExist", tc.path, tc.recursive, got, err)
			}
			continue
		}
		want := slices.Sorted(slices.Values(tc.want))
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("List(%q, %v) = %q, %v; want %q", tc.path, tc.recursive, got, err, want)
		}
	}
}

func TestCertStorageStatAndExists(t *testing.T) {
	cs := newCertStorage(t)
	ctx := context.Background()
	for _, tc := range []struct {
		key      string
		exists   bool
		terminal bool
		size     int64
	}{
		{"a/b/c.key", true, true, int64(len("v:a/b/c.key"))},
		{"a/b", true, false, 0},
		{"a", true, false, 0},
		{"a/bc", true, false, 0},
		{"a/b/c", false, false, 0},
		{"a/x", false, false, 0},
		{"a/b/", false, false, 0},
	} {
		info, err := cs.Stat(ctx, tc.key)
		if got := cs.Exists(ctx, tc.key); got != tc.exists {
			t.Errorf("Exists(%q) = %v, want %v", tc.key, got, tc.exists)
		}
		if !tc.exists {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat(%q) = %+v, %v; want fs.ErrNotExist", tc.key, info, err)
			}
			continue
		}
		if err != nil || info.Key != tc.key || info.IsTerminal != tc.terminal || info.Size != tc.size {
			t.Errorf("Stat(%q) = %+v, %v; want terminal %v size %d", tc.key, info, err, tc.terminal, tc.size)
		}
		if tc.terminal && (time.Since(info.Modified) > time.Minute || info.Modified.After(time.Now())) {
			t.Errorf("Stat(%q).Modified = %v, want about now", tc.key, info.Modified)
		}
	}
}

func TestCertStorageDelete(t *testing.T) {
	for _, tc := range []struct {
		key  string
		left []string
	}{
		{"a/b", []string{"a/b!", "a/b.c", "a/bc/x", "a/d", "z"}}, // the directory, not its siblings
		{"a/b/c.crt", []string{"a/b!", "a/b.c", "a/b/c.key", "a/bc/x", "a/d", "z"}},
		{"a", []string{"z"}},
		{"a/", []string{"a/b!", "a/b.c", "a/b/c.crt", "a/b/c.key", "a/bc/x", "a/d", "z"}}, // "a//…" matches nothing
		{"nope", certKeys()}, // deleting nothing is fine (certmagic's contract)
	} {
		cs := newCertStorage(t)
		ctx := context.Background()
		if err := cs.Delete(ctx, tc.key); err != nil {
			t.Errorf("Delete(%q): %v", tc.key, err)
			continue
		}
		got, _ := cs.List(ctx, "", true)
		if want := slices.Sorted(slices.Values(tc.left)); !slices.Equal(got, want) {
			t.Errorf("after Delete(%q): %q, want %q", tc.key, got, want)
		}
	}
	if err := newCertStorage(t).Delete(context.Background(), ""); err == nil {
		t.Error("Delete of the empty key succeeded")
	}
}

func TestCertStorageHonoursContext(t *testing.T) {
	cs := newCertStorage(t)
	ctx := cancelledContext()
	for name, call := range map[string]func() error{
		"Store":  func() error { return cs.Store(ctx, "q", nil) },
		"Load":   func() error { _, err := cs.Load(ctx, "z"); return err },
		"Delete": func() error { return cs.Delete(ctx, "z") },
		"List":   func() error { _, err := cs.List(ctx, "", true); return err },
		"Stat":   func() error { _, err := cs.Stat(ctx, "z"); return err },
		"Lock":   func() error { return cs.Lock(ctx, "free") },
	} {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v", name, err)
		}
	}
	if cs.Exists(ctx, "z") {
		t.Error("Exists with a cancelled context reported true")
	}
	if _, err := cs.Load(context.Background(), "z"); err != nil {
		t.Errorf("a cancelled Delete deleted: %v", err)
	}
}

func TestCertStorageLock(t *testing.T) {
	cs := openTest(t, "").CertStorage()
	ctx := context.Background()
	if err := cs.Lock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- cs.Lock(ctx, "issue_cert_x") }()
	select {
	case err := <-got:
		t.Fatalf("second Lock did not wait: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	// Another name is independent, and a waiter gives up with its context.
	if err := cs.Lock(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if err := cs.Lock(short, "other"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with an expiring context: %v", err)
	}
	if err := cs.Unlock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not woken by Unlock")
	}
	// Unlock ignores its context: a job's context may be done by the time it unlocks.
	for _, name := range []string{"issue_cert_x", "other"} {
		if err := cs.Unlock(cancelledContext(), name); err != nil {
			t.Fatalf("Unlock(%q): %v", name, err)
		}
	}
	for _, name := range []string{"issue_cert_x", "never"} {
		if err := cs.Unlock(ctx, name); err == nil {
			t.Errorf("Unlock of unlocked %q succeeded", name)
		}
	}
}

func TestCertStorageLockExcludes(t *testing.T) {
	cs := openTest(t, "").CertStorage()
	ctx := context.Background()
	var wg sync.WaitGroup
	inside, total := 0, 0 // guarded by the lock under test, checked by -race
	for range 16 {
		wg.Go(func() {
			for range 20 {
				if err := cs.Lock(ctx, "l"); err != nil {
					t.Error(err)
					return
				}
				inside++
				if inside != 1 {
					t.Error("two holders of one lock")
				}
				total++
				inside--
				if err := cs.Unlock(ctx, "l"); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if total != 16*20 {
		t.Fatalf("%d critical sections, want %d", total, 16*20)
	}
}

func TestCertStorageConcurrent(t *testing.T) {
	cs := openTest(t, "").CertStorage()
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			k := fmt.Sprintf("certificates/ca/site%d/site%d.crt", i, i)
			for j := range 25 {
				val := []byte{byte(i), byte(j)}
				if err := cs.Store(ctx, k, val); err != nil {
					t.Error(err)
					return
				}
				if got, err := cs.Load(ctx, k); err != nil || len(got) != 2 || got[0] != byte(i) || got[1] != byte(j) {
					t.Errorf("Load(%s) = %v, %v; want %v", k, got, err, val)
					return
				}
				if _, err := cs.List(ctx, "certificates", false); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got, err := cs.List(ctx, "certificates/ca", false); err != nil || len(got) != 8 {
		t.Fatalf("List after concurrent stores: %q, %v", got, err)
	}
}
