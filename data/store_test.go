package data

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const testLockTimeout = 200 * time.Millisecond

// openTest opens a store at path ("" for a fresh file in a new subdirectory) and closes it when
// the test ends.
func openTest(t testing.TB, path string) *Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "sub", "toolgate.db")
	}
	s, err := Open(Config{Path: path, NoSync: true, LockTimeout: testLockTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawUpdate changes a closed database file behind the Store's back.
func rawUpdate(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCreatesPrivateFileAndDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "toolgate.db")
	s := openTest(t, path)
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	for _, tc := range []struct {
		path string
		want os.FileMode
	}{
		{path, 0o600},
		{filepath.Dir(path), 0o700},
	} {
		st, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != tc.want {
			t.Errorf("%s: mode %v, want %v", tc.path, got, tc.want)
		}
	}
}

func TestOpenRequiresPath(t *testing.T) {
	if _, err := Open(Config{}); err == nil {
		t.Fatal("Open without a path succeeded")
	}
}

func TestOpenLockedByAnotherOpen(t *testing.T) {
	s := openTest(t, "")
	start := time.Now()
	_, err := Open(Config{Path: s.Path(), LockTimeout: testLockTimeout})
	took := time.Since(start)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "another toolgate process") {
		t.Errorf("ErrLocked message does not say why: %q", err)
	}
	if took < testLockTimeout/2 || took > 5*testLockTimeout {
		t.Errorf("second Open gave up after %s, want about %s", took, testLockTimeout)
	}
	// Once the first store is closed the file is free again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	openTest(t, s.Path())
}

func TestOpenSchemaVersion(t *testing.T) {
	for _, tc := range []struct {
		name    string
		schema  []byte // written into meta/schema before the reopen; nil: leave as Open wrote it
		wantErr bool
		is      error // when wantErr, the error must match this one, if set
	}{
		{"current", nil, false, nil},
		{"too new", binary.BigEndian.AppendUint32(nil, schemaVersion+1), true, ErrSchemaTooNew},
		{"corrupt", []byte{1}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "toolgate.db")
			if err := openTest(t, path).Close(); err != nil {
				t.Fatal(err)
			}
			if tc.schema != nil {
				rawUpdate(t, path, func(tx *bolt.Tx) error {
					return tx.Bucket([]byte(bucketMeta)).Put([]byte(keySchema), tc.schema)
				})
			}
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Open(Config{Path: path, LockTimeout: testLockTimeout})
			if (err != nil) != tc.wantErr || tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("Open: %v, want error %v (%v)", err, tc.wantErr, tc.is)
			}
			if s != nil {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			// Refused files are left alone, and so is a current one: a plain start writes
			// nothing.
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Error("Open changed the file")
			}
		})
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	s := openTest(t, "")
	for i := range 3 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if _, err := s.GetName(context.Background(), "x"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("GetName after Close: %v, want a closed-database error", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	t0 := epoch()
	path := filepath.Join(t.TempDir(), "toolgate.db")
	s := openTest(t, path)
	want := claim(t, s, NameClaim{Name: "keep", Owner: "a", Kind: NameRequested, Hint: "h", LastUsed: t0, ExpiresAt: t0.Add(time.Hour)})
	if err := s.CertStorage().Store(ctx, "certificates/x/x.crt", []byte("PEM")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadOrCreateSecret(ctx, "k", func() ([]byte, error) { return []byte("secret"), nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, path)
	if got, err := s.GetName(ctx, "keep"); err != nil || !sameClaim(got, want) {
		t.Errorf("name after reopen: %+v, %v; want %+v", got, err, want)
	}
	if got, err := s.CertStorage().Load(ctx, "certificates/x/x.crt"); err != nil || string(got) != "PEM" {
		t.Errorf("certificate after reopen: %q, %v", got, err)
	}
	got, err := s.LoadOrCreateSecret(ctx, "k", func() ([]byte, error) { return nil, errors.New("created again") })
	if err != nil || string(got) != "secret" {
		t.Errorf("secret after reopen: %q, %v", got, err)
	}
	checkIndexes(t, s)
}
