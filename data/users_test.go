package data

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustUser(t testing.TB, s *Store, u User) User {
	t.Helper()
	got, err := s.CreateUser(context.Background(), u)
	if err != nil {
		t.Fatalf("CreateUser(%+v): %v", u, err)
	}
	return got
}

func sameUser(a, b User) bool {
	return a.ID == b.ID && a.Email == b.Email && a.Name == b.Name && slices.Equal(a.Groups, b.Groups) &&
		a.Admin == b.Admin && a.Disabled == b.Disabled && a.PasswordHash == b.PasswordHash && a.Subject == b.Subject &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) && a.LastSignIn.Equal(b.LastSignIn)
}

func userIDs(us []User) []string {
	out := []string{}
	for _, u := range us {
		out = append(out, u.ID)
	}
	return out
}

var userIDPattern = regexp.MustCompile(`^u_[a-z2-7]{20}$`)

// TestCreateUser runs one story on one store: each step's outcome depends on the ones before.
func TestCreateUser(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	var first User // the first user, whose id no error may reveal
	for _, tc := range []struct {
		step    string
		u       User
		wantErr error
		want    User // ID is taken from the result when empty here
	}{
		{"email is trimmed and lower-cased",
			User{Email: "  Alice@Example.COM ", Name: "Alice", Groups: []string{"dev", "ops"}, Subject: "https://idp|123", PasswordHash: "$argon2id$x", Admin: true, CreatedAt: t0, UpdatedAt: t0}, nil,
			User{Email: "alice@example.com", Name: "Alice", Groups: []string{"dev", "ops"}, Subject: "https://idp|123", PasswordHash: "$argon2id$x", Admin: true, CreatedAt: t0, UpdatedAt: t0}},
		{"the same email in another case is taken",
			User{Email: "ALICE@example.com", CreatedAt: t0, UpdatedAt: t0}, ErrUserExists, User{}},
		{"the same subject is taken",
			User{Email: "bob@example.com", Subject: "https://idp|123", CreatedAt: t0, UpdatedAt: t0}, ErrUserExists, User{}},
		{"subjects are compared exactly",
			User{Email: "bob@example.com", Subject: "https://IDP|123", CreatedAt: t0, UpdatedAt: t0}, nil,
			User{Email: "bob@example.com", Subject: "https://IDP|123", CreatedAt: t0, UpdatedAt: t0}},
		{"no email and no subject",
			User{Name: "nobody", Disabled: true, CreatedAt: t0, UpdatedAt: t0}, nil,
			User{Name: "nobody", Disabled: true, CreatedAt: t0, UpdatedAt: t0}},
		{"empty emails are not unique",
			User{Name: "nobody 2", CreatedAt: t0, UpdatedAt: t0}, nil,
			User{Name: "nobody 2", CreatedAt: t0, UpdatedAt: t0}},
		{"an explicit id is kept",
			User{ID: "u_fixed", Email: "carol@example.com", CreatedAt: t0, UpdatedAt: t0}, nil,
			User{ID: "u_fixed", Email: "carol@example.com", CreatedAt: t0, UpdatedAt: t0}},
		{"an explicit id is unique",
			User{ID: "u_fixed", Email: "dave@example.com", CreatedAt: t0, UpdatedAt: t0}, ErrUserExists, User{}},
		{"times are stored in UTC",
			User{Email: "zoned@example.com", CreatedAt: t0.In(time.FixedZone("X", 3600)), UpdatedAt: t0.In(time.FixedZone("Y", -7200)), LastSignIn: t0.Add(time.Minute).In(time.FixedZone("Z", 60))}, nil,
			User{Email: "zoned@example.com", CreatedAt: t0, UpdatedAt: t0, LastSignIn: t0.Add(time.Minute)}},
	} {
		got, err := s.CreateUser(ctx, tc.u)
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("%s: CreateUser: %v, want %v", tc.step, err, tc.wantErr)
		}
		checkIdentityIndexes(t, s)
		if err != nil {
			if first.ID != "" && strings.Contains(err.Error(), first.ID) {
				t.Errorf("%s: the error names the other user: %v", tc.step, err)
			}
			continue
		}
		if first.ID == "" {
			first = got
		}
		want := tc.want
		if want.ID == "" {
			if !userIDPattern.MatchString(got.ID) {
				t.Errorf("%s: generated id %q does not match %s", tc.step, got.ID, userIDPattern)
			}
			want.ID = got.ID
		}
		if !sameUser(got, want) {
			t.Errorf("%s: CreateUser returned %+v, want %+v", tc.step, got, want)
		}
		if got.CreatedAt.Location() != time.UTC || got.UpdatedAt.Location() != time.UTC {
			t.Errorf("%s: returned times not in UTC: %+v", tc.step, got)
		}
		if stored, err := s.GetUser(ctx, got.ID); err != nil || !sameUser(stored, want) {
			t.Errorf("%s: stored %+v, %v; want %+v", tc.step, stored, err, want)
		}
	}
	if n, err := s.CountUsers(ctx); err != nil || n != 6 {
		t.Errorf("CountUsers = %d, %v; want 6", n, err)
	}
}

func TestCreateUserDefaultsAndFreshIDs(t *testing.T) {
	s := openTest(t, "")
	before := time.Now()
	ids := map[string]bool{}
	groups := []string{"g"}
	for range 50 {
		u := mustUser(t, s, User{Groups: groups})
		if !userIDPattern.MatchString(u.ID) || ids[u.ID] {
			t.Fatalf("id %q: malformed or repeated", u.ID)
		}
		ids[u.ID] = true
		if u.CreatedAt.Before(before.Add(-time.Second)) || u.CreatedAt.After(time.Now().Add(time.Second)) || !u.UpdatedAt.Equal(u.CreatedAt) || !u.LastSignIn.IsZero() {
			t.Fatalf("defaults: %+v", u)
		}
	}
	// The caller's slice is not the stored one.
	groups[0] = "changed"
	users, err := s.ListUsers(context.Background())
	if err != nil || len(users) != 50 || users[0].Groups[0] != "g" {
		t.Fatalf("ListUsers = %d users, %v; first %+v", len(users), err, users[0])
	}
}

func TestUserLookups(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	alice := mustUser(t, s, User{Email: "Alice@Example.com", Subject: "iss|a"})
	bob := mustUser(t, s, User{Email: "bob@example.com", Subject: "iss|b"})
	for _, tc := range []struct {
		name   string
		lookup func() (User, error)
		want   string // user id; "" means ErrNotFound
	}{
		{"GetUser", func() (User, error) { return s.GetUser(ctx, alice.ID) }, alice.ID},
		{"GetUser unknown", func() (User, error) { return s.GetUser(ctx, "u_nobody") }, ""},
		{"UserByEmail exact", func() (User, error) { return s.UserByEmail(ctx, "alice@example.com") }, alice.ID},
		{"UserByEmail any case, spaces", func() (User, error) { return s.UserByEmail(ctx, " ALICE@EXAMPLE.COM\t") }, alice.ID},
		{"UserByEmail bob", func() (User, error) { return s.UserByEmail(ctx, "Bob@example.com") }, bob.ID},
		{"UserByEmail unknown", func() (User, error) { return s.UserByEmail(ctx, "carol@example.com") }, ""},
		{"UserBySubject", func() (User, error) { return s.UserBySubject(ctx, "iss|b") }, bob.ID},
		{"UserBySubject is exact", func() (User, error) { return s.UserBySubject(ctx, "ISS|b") }, ""},
		{"UserBySubject unknown", func() (User, error) { return s.UserBySubject(ctx, "iss|c") }, ""},
	} {
		got, err := tc.lookup()
		switch {
		case tc.want == "" && !errors.Is(err, ErrNotFound):
			t.Errorf("%s: %+v, %v; want ErrNotFound", tc.name, got, err)
		case tc.want != "" && (err != nil || got.ID != tc.want):
			t.Errorf("%s: %+v, %v; want %s", tc.name, got, err, tc.want)
		}
	}
}

func TestListAndCountUsers(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	if users, err := s.ListUsers(ctx); err != nil || len(users) != 0 {
		t.Fatalf("ListUsers on an empty store = %v, %v", users, err)
	}
	for _, u := range []User{
		{ID: "u_1", Email: "b@example.com"},
		{ID: "u_2", Email: "a@example.com"},
		{ID: "u_4"},
		{ID: "u_3"},
		{ID: "u_0", Email: "c@example.com"},
	} {
		mustUser(t, s, u)
	}
	users, err := s.ListUsers(ctx)
	if want := []string{"u_3", "u_4", "u_2", "u_1", "u_0"}; err != nil || !slices.Equal(userIDs(users), want) {
		t.Errorf("ListUsers = %v, %v; want %v (by email, then id)", userIDs(users), err, want)
	}
	if n, err := s.CountUsers(ctx); err != nil || n != 5 {
		t.Errorf("CountUsers = %d, %v; want 5", n, err)
	}
}

func TestUpdateUser(t *testing.T) {
	t0 := epoch()
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		id      string // default: alice's
		fn      func(*User) error
		wantErr error
		check   func(t *testing.T, s *Store, got User) // after a successful update
	}{
		{"fields change; created stays", "", func(u *User) error {
			u.Name, u.Groups, u.Admin, u.PasswordHash, u.LastSignIn = "Alice B.", []string{"x"}, true, "$argon2id$y", t0.Add(time.Hour)
			return nil
		}, nil, func(t *testing.T, s *Store, got User) {
			if got.Name != "Alice B." || !slices.Equal(got.Groups, []string{"x"}) || !got.Admin || got.PasswordHash != "$argon2id$y" ||
				!got.LastSignIn.Equal(t0.Add(time.Hour)) || !got.CreatedAt.Equal(t0) {
				t.Errorf("updated to %+v", got)
			}
		}},
		{"a new email is normalized and the old one freed", "", func(u *User) error { u.Email = " A2@Example.com "; return nil }, nil,
			func(t *testing.T, s *Store, got User) {
				ctx := context.Background()
				if got.Email != "a2@example.com" {
					t.Errorf("email %q", got.Email)
				}
				if u, err := s.UserByEmail(ctx, "A2@example.com"); err != nil || u.ID != got.ID {
					t.Errorf("UserByEmail(new) = %+v, %v", u, err)
				}
				if _, err := s.UserByEmail(ctx, "a@example.com"); !errors.Is(err, ErrNotFound) {
					t.Errorf("UserByEmail(old) = %v, want ErrNotFound", err)
				}
				mustUser(t, s, User{Email: "a@example.com"})
			}},
		{"a cleared subject is unindexed", "", func(u *User) error { u.Subject = ""; return nil }, nil,
			func(t *testing.T, s *Store, got User) {
				if _, err := s.UserBySubject(context.Background(), "iss|a"); !errors.Is(err, ErrNotFound) {
					t.Errorf("UserBySubject(old) = %v, want ErrNotFound", err)
				}
			}},
		{"the same email in another case is no change", "", func(u *User) error { u.Email = "A@EXAMPLE.COM"; return nil }, nil,
			func(t *testing.T, s *Store, got User) {
				if got.Email != "a@example.com" {
					t.Errorf("email %q", got.Email)
				}
			}},
		{"bob's email is taken", "", func(u *User) error { u.Email = "B@example.com"; return nil }, ErrUserExists, nil},
		{"bob's subject is taken", "", func(u *User) error { u.Subject = "iss|b"; return nil }, ErrUserExists, nil},
		{"fn's error aborts after changes", "", func(u *User) error { u.Email, u.Name = "new@example.com", "new"; return boom }, boom, nil},
		{"fn's wrapped error aborts", "", func(u *User) error { u.Admin = true; return errors.Join(errors.New("context"), boom) }, boom, nil},
		{"the id may not change", "", func(u *User) error { u.ID = "u_other"; return nil }, ErrInvalid, nil},
		{"unknown user", "u_nobody", func(u *User) error { return nil }, ErrNotFound, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, "")
			ctx := context.Background()
			alice := mustUser(t, s, User{Email: "a@example.com", Subject: "iss|a", Name: "Alice", Groups: []string{"g"}, CreatedAt: t0, UpdatedAt: t0})
			mustUser(t, s, User{Email: "b@example.com", Subject: "iss|b", CreatedAt: t0, UpdatedAt: t0})
			id := tc.id
			if id == "" {
				id = alice.ID
			}
			before := dump(t, s)
			start := time.Now()
			got, err := s.UpdateUser(ctx, id, tc.fn)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("UpdateUser: %v, want %v", err, tc.wantErr)
			}
			checkIdentityIndexes(t, s)
			if err != nil {
				if !sameDump(before, dump(t, s)) {
					t.Error("a failed update wrote something")
				}
				return
			}
			if got.ID != alice.ID || got.UpdatedAt.Before(start.Add(-time.Second)) || got.UpdatedAt.Location() != time.UTC {
				t.Errorf("UpdateUser returned %+v: id or UpdatedAt wrong", got)
			}
			if stored, err := s.GetUser(ctx, alice.ID); err != nil || !sameUser(stored, got) {
				t.Errorf("stored %+v, %v; returned %+v", stored, err, got)
			}
			tc.check(t, s, got)
			checkIdentityIndexes(t, s)
		})
	}
}

// fn works on a copy: changing the slice it was given and then failing leaves the stored
// groups alone.
func TestUpdateUserAbortKeepsGroups(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	u := mustUser(t, s, User{Groups: []string{"a", "b"}})
	_, err := s.UpdateUser(ctx, u.ID, func(u *User) error {
		u.Groups[0] = "changed"
		return errors.New("no")
	})
	if err == nil {
		t.Fatal("UpdateUser succeeded")
	}
	if got, err := s.GetUser(ctx, u.ID); err != nil || !slices.Equal(got.Groups, []string{"a", "b"}) {
		t.Fatalf("groups after the aborted update: %v, %v", got.Groups, err)
	}
}
