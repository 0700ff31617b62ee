package data

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestNormalizeShare(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		wantErr  string // in the error; "" for none
	}{
		{in: "ada@example.com", want: "ada@example.com"},
		{in: "  Ada@Example.COM ", want: "ada@example.com"},
		{in: "o'brien+tools@mail.example.co.uk", want: "o'brien+tools@mail.example.co.uk"},
		{in: "group:Eng", want: "group:eng"},
		{in: "GROUP:platform/oncall", want: "group:platform/oncall"},
		{in: "group:Équipe", want: "group:équipe"},
		{in: "group:" + strings.Repeat("g", 200), want: "group:" + strings.Repeat("g", 200)},

		{in: "", wantErr: "neither an email address nor group:NAME"},
		{in: "nobody", wantErr: "neither an email address nor group:NAME"},
		{in: "group:", wantErr: "a group needs a name"},
		{in: "group:" + strings.Repeat("g", 201), wantErr: "at most 200 bytes"},
		{in: "group:a b", wantErr: "no spaces, commas or control characters"},
		{in: "group:a,b", wantErr: "no spaces, commas or control characters"},
		{in: "group:a\x1bb", wantErr: "no spaces, commas or control characters"},
		{in: "group:a\xffb", wantErr: "not UTF-8"},
		{in: "@example.com", wantErr: "not a valid email"},
		{in: "ada@", wantErr: "not a valid email"},
		{in: "a@b@c.com", wantErr: "not a valid email"},
		{in: "ada@exa mple.com", wantErr: "not a valid email"},
		{in: "ada@exa\x1bmple.com", wantErr: "not a valid email"},
		{in: ".ada@example.com", wantErr: "not a valid email"},
		{in: "a..da@example.com", wantErr: "not a valid email"},
		{in: "ada@-example.com", wantErr: "not a valid email"},
		{in: "ada@example..com", wantErr: "not a valid email"},
		{in: "adä@example.com", wantErr: "not a valid email"},
		{in: strings.Repeat("a", 65) + "@example.com", wantErr: "not a valid email"},
		{in: "a@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("e", 61), wantErr: "not a valid email"},
	} {
		got, err := NormalizeShare(tc.in)
		switch {
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("NormalizeShare(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		case tc.wantErr != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("NormalizeShare(%q) = %q, %v; want ErrInvalid saying %q", tc.in, got, err, tc.wantErr)
		}
	}
	// Refusals are sentences for the person who typed the entry, printed as they are.
	if _, err := NormalizeShare("nobody"); err == nil || err.Error() != `"nobody" is neither an email address nor group:NAME` {
		t.Errorf("NormalizeShare(nobody): %v", err)
	}
	got, err := NormalizeShares([]string{"b@example.com", "group:Eng", "B@example.com", "group:eng", "a@example.com"})
	if want := []string{"a@example.com", "b@example.com", "group:eng"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("NormalizeShares = %q, %v; want %q", got, err, want)
	}
	if _, err := NormalizeShares(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("NormalizeShares(nil) = %v; want ErrInvalid", err)
	}
}

// TestShareName runs one story on one store; each step depends on the ones before. A step
// that fails must leave the database byte for byte as it was.
func TestShareName(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	claim(t, s, NameClaim{Name: "notes", Owner: "u_alice", Kind: NameRequested, LastUsed: epoch()})
	claim(t, s, NameClaim{Name: "other", Owner: "u_bob", LastUsed: epoch()})
	tooMany := make([]string, MaxShares)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("p%d@example.com", i)
	}

	type op int
	const (
		share op = iota
		unshare
	)
	for _, tc := range []struct {
		step    string
		op      op
		name    string
		owner   string
		with    []string
		wantErr error
		want    []string // the list afterwards (read back), also after an error
	}{
		{"the owner shares", share, "notes", "u_alice", []string{"Ada@Example.com", "group:Eng"}, nil,
			[]string{"ada@example.com", "group:eng"}},
		{"sharing again adds, and repeats are no error", share, "notes", "u_alice", []string{"ada@example.com", "bob@example.com"}, nil,
			[]string{"ada@example.com", "bob@example.com", "group:eng"}},
		{"the operator (owner \"\") may share any name", share, "notes", "", []string{"carol@example.com"}, nil,
			[]string{"ada@example.com", "bob@example.com", "carol@example.com", "group:eng"}},
		{"someone else may not", share, "notes", "u_bob", []string{"mallory@example.com"}, ErrNameTaken,
			[]string{"ada@example.com", "bob@example.com", "carol@example.com", "group:eng"}},
		{"one bad entry refuses the whole list", share, "notes", "u_alice", []string{"dave@example.com", "not an email"}, ErrInvalid,
			[]string{"ada@example.com", "bob@example.com", "carol@example.com", "group:eng"}},
		{"sharing with nobody is refused", share, "notes", "u_alice", nil, ErrInvalid,
			[]string{"ada@example.com", "bob@example.com", "carol@example.com", "group:eng"}},
		{"past MaxShares is refused", share, "notes", "u_alice", tooMany, ErrInvalid,
			[]string{"ada@example.com", "bob@example.com", "carol@example.com", "group:eng"}},
		{"an unclaimed name cannot be shared", share, "nope", "", []string{"ada@example.com"}, ErrNotFound, nil},
		{"nor a name with NUL", share, "no\x00pe", "", []string{"ada@example.com"}, ErrInvalid, nil},
		{"unshare removes", unshare, "notes", "u_alice", []string{"BOB@example.com", "group:eng"}, nil,
			[]string{"ada@example.com", "carol@example.com"}},
		{"unsharing someone not on the list removes nothing", unshare, "notes", "u_alice", []string{"ada@example.com", "bob@example.com"}, ErrNotFound,
			[]string{"ada@example.com", "carol@example.com"}},
		{"someone else may not unshare", unshare, "notes", "u_bob", []string{"ada@example.com"}, ErrNameTaken,
			[]string{"ada@example.com", "carol@example.com"}},
		{"a bad entry unshares nothing", unshare, "notes", "u_alice", []string{"ada@example.com", "group:"}, ErrInvalid,
			[]string{"ada@example.com", "carol@example.com"}},
		{"the last one out deletes the record", unshare, "notes", "", []string{"ada@example.com", "carol@example.com"}, nil, nil},
		{"and the list can start again", share, "notes", "u_alice", []string{"group:ops"}, nil, []string{"group:ops"}},
	} {
		t.Run(tc.step, func(t *testing.T) {
			before := dump(t, s)
			var got NameShares
			var err error
			if tc.op == share {
				got, err = s.ShareName(ctx, tc.name, tc.owner, tc.with)
			} else {
				got, err = s.UnshareName(ctx, tc.name, tc.owner, tc.with)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if !sameDump(before, dump(t, s)) {
					t.Fatal("a failed change wrote to the database")
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if got.Name != tc.name || got.Owner != "u_alice" || !slices.Equal(got.With, tc.want) || time.Since(got.UpdatedAt) > time.Minute {
					t.Fatalf("returned %+v, want %q owned by u_alice", got, tc.want)
				}
			}
			read, err := s.GetNameShares(ctx, tc.name)
			if tc.want != nil && (err != nil || !slices.Equal(read.With, tc.want) || read.Owner != "u_alice") {
				t.Fatalf("read back %+v, %v; want %q", read, err, tc.want)
			}
		})
	}
	if _, err := s.GetNameShares(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetNameShares of an unclaimed name: %v, want ErrNotFound", err)
	}
	if got, err := s.GetNameShares(ctx, "other"); err != nil || got.With != nil || got.Owner != "u_bob" || !got.UpdatedAt.IsZero() {
		t.Errorf("GetNameShares of a name never shared: %+v, %v", got, err)
	}
	all, err := s.ListNameShares(ctx)
	if err != nil || len(all) != 1 || all[0].Name != "notes" || !slices.Equal(all[0].With, []string{"group:ops"}) {
		t.Errorf("ListNameShares = %+v, %v", all, err)
	}
}

// TestSharesFollowTheClaim: a list lives exactly as long as the claim it was saved for. It
// is deleted with the claim, is not inherited by whoever takes a lapsed name over, and moves
// with the name to the user its key is linked to.
func TestSharesFollowTheClaim(t *testing.T) {
	t0 := epoch()
	ctx := context.Background()
	with := []string{"ada@example.com"}
	shared := func(t *testing.T, s *Store, name string) []string {
		t.Helper()
		sh, err := s.GetNameShares(ctx, name)
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		return sh.With
	}
	stored := func(t *testing.T, s *Store) int { return len(dump(t, s)[bucketNameShares]) }

	t.Run("released", func(t *testing.T) {
		s := openTest(t, "")
		claim(t, s, NameClaim{Name: "n", Owner: "u_a", LastUsed: t0})
		if _, err := s.ShareName(ctx, "n", "u_a", with); err != nil {
			t.Fatal(err)
		}
		if err := s.ReleaseName(ctx, "n", ""); err != nil {
			t.Fatal(err)
		}
		claim(t, s, NameClaim{Name: "n", Owner: "u_b", LastUsed: t0})
		if got := shared(t, s, "n"); got != nil || stored(t, s) != 0 {
			t.Fatalf("after release and a new claim: shared with %q, %d records", got, stored(t, s))
		}
	})
	t.Run("released and claimed again by its old owner", func(t *testing.T) {
		// The one case the owner check in getShares cannot catch: the record would be the
		// claimant's own. Only deleting it with the claim keeps the release complete.
		s := openTest(t, "")
		claim(t, s, NameClaim{Name: "n", Owner: "u_a", LastUsed: t0})
		if _, err := s.ShareName(ctx, "n", "u_a", with); err != nil {
			t.Fatal(err)
		}
		if err := s.ReleaseName(ctx, "n", ""); err != nil {
			t.Fatal(err)
		}
		if stored(t, s) != 0 {
			t.Fatal("the release left the shares behind")
		}
		claim(t, s, NameClaim{Name: "n", Owner: "u_a", LastUsed: t0.Add(time.Minute)})
		if got := shared(t, s, "n"); got != nil {
			t.Fatalf("a released name claimed again by its old owner is shared with %q", got)
		}
	})
	t.Run("swept", func(t *testing.T) {
		s := openTest(t, "")
		claim(t, s, NameClaim{Name: "n", Owner: "u_a", LastUsed: t0, ExpiresAt: t0.Add(time.Hour)})
		if _, err := s.ShareName(ctx, "n", "u_a", with); err != nil {
			t.Fatal(err)
		}
		if got, err := s.SweepExpiredNames(ctx, t0.Add(2*time.Hour), 0, nil); err != nil || len(got) != 1 {
			t.Fatalf("sweep: %q, %v", got, err)
		}
		if stored(t, s) != 0 {
			t.Fatal("the sweep left the shares behind")
		}
	})
	t.Run("lapsed and taken over", func(t *testing.T) {
		s := openTest(t, "")
		claim(t, s, NameClaim{Name: "n", Owner: "u_a", LastUsed: t0, ExpiresAt: t0.Add(time.Hour)})
		if _, err := s.ShareName(ctx, "n", "u_a", with); err != nil {
			t.Fatal(err)
		}
		claim(t, s, NameClaim{Name: "n", Owner: "u_b", LastUsed: t0.Add(2 * time.Hour)})
		if got := shared(t, s, "n"); got != nil || stored(t, s) != 0 {
			t.Fatalf("the new owner inherited %q (%d records)", got, stored(t, s))
		}
		// The same owner refreshing keeps them.
		if _, err := s.ShareName(ctx, "n", "u_b", with); err != nil {
			t.Fatal(err)
		}
		claim(t, s, NameClaim{Name: "n", Owner: "u_b", LastUsed: t0.Add(3 * time.Hour)})
		if got := shared(t, s, "n"); !slices.Equal(got, with) {
			t.Fatalf("a refreshed claim lost its shares: %q", got)
		}
	})
	t.Run("moved to the key's user", func(t *testing.T) {
		s := openTest(t, "")
		claim(t, s, NameClaim{Name: "n", Owner: "SHA256:k", LastUsed: t0})
		if _, err := s.ShareName(ctx, "n", "SHA256:k", with); err != nil {
			t.Fatal(err)
		}
		if _, err := s.MoveNames(ctx, "SHA256:k", "u_a"); err != nil {
			t.Fatal(err)
		}
		sh, err := s.GetNameShares(ctx, "n")
		if err != nil || sh.Owner != "u_a" || !slices.Equal(sh.With, with) {
			t.Fatalf("after MoveNames: %+v, %v", sh, err)
		}
		if _, err := s.UnshareName(ctx, "n", "u_a", with); err != nil {
			t.Fatalf("the new owner cannot unshare: %v", err)
		}
	})
	t.Run("a record saved for another owner is never read", func(t *testing.T) {
		s := openTest(t, "")
		claim(t, s, NameClaim{Name: "n", Owner: "u_b", LastUsed: t0})
		// As if some path had changed the claim's owner without deleting the list.
		if err := s.db.Update(func(tx *bolt.Tx) error {
			return putShares(tx, NameShares{Name: "n", Owner: "u_a", With: with, UpdatedAt: t0})
		}); err != nil {
			t.Fatal(err)
		}
		if got := shared(t, s, "n"); got != nil {
			t.Fatalf("u_b's name reads u_a's list: %q", got)
		}
		if all, _ := s.ListNameShares(ctx); len(all) != 0 {
			t.Fatalf("ListNameShares shows it: %+v", all)
		}
		// The owner's first share starts from nothing rather than from u_a's list.
		if sh, err := s.ShareName(ctx, "n", "u_b", []string{"group:x"}); err != nil || !slices.Equal(sh.With, []string{"group:x"}) {
			t.Fatalf("ShareName over a stale record: %+v, %v", sh, err)
		}
	})
}
