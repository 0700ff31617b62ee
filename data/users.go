package data

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// User is a person who signs in to toolgate, locally or through an identity provider.
type User struct {
	// ID is assigned by CreateUser when empty: "u_" and 20 lower-case base32 characters from
	// crypto/rand. It never changes; keys, sessions, tickets and names refer to it.
	ID string
	// Email is stored trimmed and lower-cased. It is unique across users when non-empty; data
	// does not check its syntax.
	Email string
	// Name is the display name.
	Name string
	// Groups come from the identity provider at each sign-in, or are set by an admin for local
	// users. Opaque to data.
	Groups   []string
	Admin    bool
	Disabled bool
	// PasswordHash is opaque to data (a PHC string made by the caller); empty means the user
	// has no password.
	PasswordHash string
	// Subject is the upstream OIDC identity, "issuer|sub". Unique across users when non-empty;
	// compared exactly, since OIDC subjects are case-sensitive.
	Subject    string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	LastSignIn time.Time // zero: never signed in
}

// newUserID returns a fresh user id: 100 random bits, lower-cased so that ids read the same in
// URLs, logs and the email-like places people paste them.
func newUserID() string {
	return "u_" + strings.ToLower(rand.Text()[:20])
}

// normalizeEmail is the form emails are stored and looked up in. Lower-casing the whole address
// (not only the domain) is deliberate: two accounts that differ only in case are a mistake or
// an attack far more often than a wish.
func normalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// CreateUser stores a new user and returns it as stored (email normalized, times in UTC). An
// empty u.ID gets a fresh one; zero CreatedAt and UpdatedAt mean now. ErrUserExists if another
// user has the id, the email or the subject; ErrInvalid for NUL in the id, email or subject.
func (s *Store) CreateUser(ctx context.Context, u User) (User, error) {
	if err := ctx.Err(); err != nil {
		return User{}, err
	}
	u.Email = normalizeEmail(u.Email)
	if u.ID != "" {
		if err := checkID("user id", u.ID); err != nil {
			return User{}, err
		}
	}
	if err := validateUser(u); err != nil {
		return User{}, err
	}
	now := time.Now()
	if u.CreatedAt.IsZero() {
		u.CreatedAt = now
	}
	if u.UpdatedAt.IsZero() {
		u.UpdatedAt = now
	}
	u.Groups = slices.Clone(u.Groups)
	var out User
	err := s.db.Update(func(tx *bolt.Tx) error {
		users := tx.Bucket([]byte(bucketUsers))
		switch {
		case u.ID == "":
			// 100 random bits do not collide in practice; the loop makes "in practice" never.
			for u.ID = newUserID(); users.Get([]byte(u.ID)) != nil; u.ID = newUserID() {
			}
		case users.Get([]byte(u.ID)) != nil:
			return fmt.Errorf("%w: id %q is taken", ErrUserExists, u.ID)
		}
		if err := checkUserUnique(tx, u); err != nil {
			return err
		}
		var err error
		out, err = putUser(tx, u, nil)
		return err
	})
	if err != nil {
		return User{}, err
	}
	return out, nil
}

// validateUser checks the fields that become index keys. The id is checked by the callers,
// since CreateUser allows an empty one.
func validateUser(u User) error {
	for _, f := range []struct{ what, v string }{{"email", u.Email}, {"subject", u.Subject}} {
		if strings.IndexByte(f.v, 0) >= 0 {
			return fmt.Errorf("%w: user %s %q contains NUL", ErrInvalid, f.what, f.v)
		}
	}
	return nil
}

// GetUser returns the user with this id, or ErrNotFound.
func (s *Store) GetUser(ctx context.Context, id string) (User, error) {
	return s.viewUser(ctx, func(tx *bolt.Tx) (User, bool, error) { return getUser(tx, id) },
		func() error { return fmt.Errorf("%w: user %q", ErrNotFound, id) })
}

// UserByEmail returns the user with this email, compared after trimming and lower-casing, or
// ErrNotFound. An empty email finds nobody.
func (s *Store) UserByEmail(ctx context.Context, email string) (User, error) {
	email = normalizeEmail(email)
	return s.viewUser(ctx, func(tx *bolt.Tx) (User, bool, error) { return userByEmail(tx, email) },
		func() error { return fmt.Errorf("%w: user with email %q", ErrNotFound, email) })
}

// UserBySubject returns the user with this upstream identity ("issuer|sub", compared exactly),
// or ErrNotFound. An empty subject finds nobody.
func (s *Store) UserBySubject(ctx context.Context, subject string) (User, error) {
	return s.viewUser(ctx, func(tx *bolt.Tx) (User, bool, error) { return userBySubject(tx, subject) },
		func() error { return fmt.Errorf("%w: user with subject %q", ErrNotFound, subject) })
}

// viewUser runs one user lookup in a read transaction; notFound makes the error for a miss.
func (s *Store) viewUser(ctx context.Context, get func(*bolt.Tx) (User, bool, error), notFound func() error) (User, error) {
	if err := ctx.Err(); err != nil {
		return User{}, err
	}
	var out User
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, found, err = get(tx)
		return err
	})
	switch {
	case err != nil:
		return User{}, err
	case !found:
		return User{}, notFound()
	}
	return out, nil
}

// ListUsers returns every user, sorted by email and then id (users without an email first).
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []User
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketUsers)).ForEach(func(k, v []byte) error {
			u, err := decodeUser(string(k), v)
			if err != nil {
				return fmt.Errorf("data: user %q: %w", k, err)
			}
			out = append(out, u)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b User) int { return cmp.Or(strings.Compare(a.Email, b.Email), strings.Compare(a.ID, b.ID)) })
	return out, nil
}

// CountUsers returns the number of users without decoding any of them (the first-run check
// asks it on every start).
func (s *Store) CountUsers(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketUsers)).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// UpdateUser changes the user with this id in one write transaction: fn gets the stored user
// and changes it in place, and the result is stored with UpdatedAt set to now and returned.
//
// An error from fn aborts the update (nothing is written) and is returned as it is. fn must
// not change ID (ErrInvalid). A changed email is normalized, and the email and subject must
// still be unique (ErrUserExists); their indexes follow the change. ErrNotFound if there is no
// such user.
//
// fn runs inside the write transaction, so every other write waits for it: it must be quick
// (hash passwords before calling, not inside) and must not call the Store, which would
// deadlock.
func (s *Store) UpdateUser(ctx context.Context, id string, fn func(*User) error) (User, error) {
	if err := ctx.Err(); err != nil {
		return User{}, err
	}
	if err := checkID("user id", id); err != nil {
		return User{}, err
	}
	defer s.oauthGen.Add(1) // a disabled user's tokens must stop working
	if fn == nil {
		return User{}, fmt.Errorf("%w: UpdateUser without a function", ErrInvalid)
	}
	var out User
	err := s.db.Update(func(tx *bolt.Tx) error {
		old, found, err := getUser(tx, id)
		switch {
		case err != nil:
			return err
		case !found:
			return fmt.Errorf("%w: user %q", ErrNotFound, id)
		}
		// u shares old's Groups, freshly decoded for this call; putUser reads only old's
		// indexed fields, so fn may change the slice in place.
		u := old
		if err := fn(&u); err != nil {
			return err
		}
		if u.ID != id {
			return fmt.Errorf("%w: UpdateUser changed the id of user %q to %q", ErrInvalid, id, u.ID)
		}
		u.Email = normalizeEmail(u.Email)
		if err := validateUser(u); err != nil {
			return err
		}
		if err := checkUserUnique(tx, u); err != nil {
			return err
		}
		u.UpdatedAt = time.Now()
		out, err = putUser(tx, u, &old)
		return err
	})
	if err != nil {
		return User{}, err
	}
	return out, nil
}

// getUser reads a user inside tx. Decoding copies everything out of bbolt's memory map.
func getUser(tx *bolt.Tx, id string) (User, bool, error) {
	v := tx.Bucket([]byte(bucketUsers)).Get([]byte(id))
	if v == nil {
		return User{}, false, nil
	}
	u, err := decodeUser(id, v)
	if err != nil {
		return User{}, false, fmt.Errorf("data: user %q: %w", id, err)
	}
	return u, true, nil
}

// userByEmail follows the email index and re-checks the record, so a stale entry finds nobody.
func userByEmail(tx *bolt.Tx, email string) (User, bool, error) {
	u, found, err := indexedUser(tx, bucketUsersByEmail, email)
	if err != nil || !found || u.Email != email {
		return User{}, false, err
	}
	return u, true, nil
}

// userBySubject is userByEmail for the subject index.
func userBySubject(tx *bolt.Tx, subject string) (User, bool, error) {
	u, found, err := indexedUser(tx, bucketUsersBySubject, subject)
	if err != nil || !found || u.Subject != subject {
		return User{}, false, err
	}
	return u, true, nil
}

func indexedUser(tx *bolt.Tx, index, key string) (User, bool, error) {
	if key == "" {
		return User{}, false, nil
	}
	id := tx.Bucket([]byte(index)).Get([]byte(key))
	if id == nil {
		return User{}, false, nil
	}
	return getUser(tx, string(id))
}

// checkUserUnique fails with ErrUserExists if another user has u's email or subject. The error
// names the email or subject, which the caller supplied, but not the other user.
func checkUserUnique(tx *bolt.Tx, u User) error {
	if other, found, err := userByEmail(tx, u.Email); err != nil {
		return err
	} else if found && other.ID != u.ID {
		return fmt.Errorf("%w: email %q is in use", ErrUserExists, u.Email)
	}
	if other, found, err := userBySubject(tx, u.Subject); err != nil {
		return err
	} else if found && other.ID != u.ID {
		return fmt.Errorf("%w: subject %q is in use", ErrUserExists, u.Subject)
	}
	return nil
}

// putUser writes a user and keeps both indexes in step with it; old is the stored version it
// replaces, if any. Uniqueness has been checked by then, so the new index entries overwrite
// only stale ones. Every write of a user goes through here.
func putUser(tx *bolt.Tx, u User, old *User) (User, error) {
	byEmail, bySubject := tx.Bucket([]byte(bucketUsersByEmail)), tx.Bucket([]byte(bucketUsersBySubject))
	if old != nil {
		// An old entry is deleted only while it still points at this user: one that points
		// elsewhere belongs to someone else.
		for _, e := range []struct {
			b        *bolt.Bucket
			old, new string
		}{{byEmail, old.Email, u.Email}, {bySubject, old.Subject, u.Subject}} {
			if e.old == "" || e.old == e.new || string(e.b.Get([]byte(e.old))) != old.ID {
				continue
			}
			if err := e.b.Delete([]byte(e.old)); err != nil {
				return User{}, fmt.Errorf("data: unindex user %q: %w", old.ID, err)
			}
		}
	}
	u.CreatedAt, u.UpdatedAt, u.LastSignIn = u.CreatedAt.UTC(), u.UpdatedAt.UTC(), u.LastSignIn.UTC()
	v, err := encodeUser(u)
	if err != nil {
		return User{}, fmt.Errorf("data: encode user %q: %w", u.ID, err)
	}
	if err := tx.Bucket([]byte(bucketUsers)).Put([]byte(u.ID), v); err != nil {
		return User{}, fmt.Errorf("data: store user %q: %w", u.ID, err)
	}
	for _, e := range []struct {
		b   *bolt.Bucket
		key string
	}{{byEmail, u.Email}, {bySubject, u.Subject}} {
		if e.key == "" {
			continue
		}
		if err := e.b.Put([]byte(e.key), []byte(u.ID)); err != nil {
			return User{}, fmt.Errorf("data: index user %q: %w", u.ID, err)
		}
	}
	return u, nil
}
