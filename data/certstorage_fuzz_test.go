package data

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// FuzzCertStorageKeys stores arbitrary keys and checks that each loads back byte for byte, is
// found by List and Stat where it should be, that List never leaves the prefix asked for nor
// repeats itself, and that Delete removes it. One database serves every input, so keys from
// earlier inputs are there as neighbours for the prefix checks.
func FuzzCertStorageKeys(f *testing.F) {
	for _, seed := range []struct {
		key string
		val []byte
	}{
		{"certificates/acme-v02.api.letsencrypt.org-directory/x.example.com/x.example.com.crt", []byte("-----BEGIN CERTIFICATE-----")},
		{"a/b", []byte("v")},
		{"a/bc", nil},
		{"a/b!", []byte{0}},
		{"a", []byte("v")},
		{"a//b", []byte("v")},
		{"/lead", []byte("v")},
		{"trail/", []byte("v")},
		{"\x00/\xff", []byte("v")},
	} {
		f.Add(seed.key, seed.val)
	}
	st, err := Open(Config{Path: filepath.Join(f.TempDir(), "fuzz.db"), NoSync: true, LockTimeout: testLockTimeout})
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
		info, err := cs.Stat(ctx, key)
		if err != nil || !info.IsTerminal || info.Size != int64(len(val)) {
			t.Fatalf("Stat(%q) = %+v, %v", key, info, err)
		}

		// The parent directory as List sees it: List ignores one trailing "/".
		dir, prefix := "", ""
		if i := strings.LastIndexByte(key, '/'); i > 0 {
			dir = key[:i]
			if d := strings.TrimSuffix(dir, "/"); d != "" {
				prefix = d + "/"
			}
		}
		child := prefix + strings.SplitN(key[len(prefix):], "/", 2)[0]
		for _, recursive := range []bool{false, true} {
			list, err := cs.List(ctx, dir, recursive)
			if err != nil {
				t.Fatalf("List(%q, %v): %v", dir, recursive, err)
			}
			for i, k := range list {
				if !strings.HasPrefix(k, prefix) {
					t.Fatalf("List(%q, %v) returned %q outside %q", dir, recursive, k, prefix)
				}
				if !recursive && strings.Contains(k[len(prefix):], "/") {
					t.Fatalf("List(%q, false) returned %q, not an immediate child", dir, k)
				}
				if slices.Contains(list[:i], k) {
					t.Fatalf("List(%q, %v) returned %q twice", dir, recursive, k)
				}
			}
			want := key
			if !recursive {
				want = child
			}
			if !slices.Contains(list, want) {
				t.Fatalf("List(%q, %v) = %q, missing %q", dir, recursive, list, want)
			}
		}

		if err := cs.Delete(ctx, key); err != nil {
			t.Fatalf("Delete(%q): %v", key, err)
		}
		if _, err := cs.Load(ctx, key); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Load(%q) after Delete: %v", key, err)
		}
		// (Not for "x/": List reads it as "x", and Delete("x/") rightly spares "x/y".)
		if list, err := cs.List(ctx, key, true); !strings.HasSuffix(key, "/") && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("List(%q) after Delete = %q, %v; want nothing under it", key, list, err)
		}
	})
}
