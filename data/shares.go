package data

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// Saved shares: whom the owner of a tunnel name shares it with, kept across connections.
// What sharing lets those people do is the policy's business, and who may change the list
// (the owner, the operator) is the caller's; data keeps the list valid and tied to the claim.
//
// A share list belongs to a claim, not to a name: it is deleted with the claim (release,
// sweep), deleted when an expired claim is taken over by another owner, and moves with the
// name when MoveNames gives it to the user an SSH key was linked to. Each record also names
// the owner it was saved for, and is read only while that is still the claim's owner, so a
// list can never outlive the claim it was made for, even through a path that forgot to
// delete it.

// MaxShares bounds how many people and groups one name may be shared with. It is there to
// keep a record (and every policy decision that scans it) small; a team larger than this
// is a group.
const MaxShares = 100

const (
	maxShareEmail = 254 // RFC 5321's path limit, less the brackets
	maxShareGroup = 200 // as the ssh command's share= option has always allowed
	groupPrefix   = "group:"
)

// shareError is a refusal from NormalizeShare, ShareName or UnshareName. Its message is
// meant for the person who typed the entry (the CLI and the ssh command print it as it is),
// and it wraps the sentinel callers check with errors.Is (ErrInvalid, ErrNotFound).
type shareError struct {
	kind error
	msg  string
}

func (e *shareError) Error() string { return e.msg }
func (e *shareError) Unwrap() error { return e.kind }

func invalidShare(format string, args ...any) error {
	return &shareError{kind: ErrInvalid, msg: fmt.Sprintf(format, args...)}
}

// NameShares is whom a tunnel name is shared with, as saved.
type NameShares struct {
	Name  string
	Owner string // the name's owner
	// With lists lower-case emails and "group:NAME", sorted; nil for nobody.
	With      []string
	UpdatedAt time.Time // zero if it was never shared
}

// NormalizeShare checks one person or group to share with and returns it as stored: an email
// address, or "group:NAME", trimmed and lower-cased (groups are compared without case by the
// policy). ErrInvalid otherwise, saying why.
//
// Emails are held to the syntax toolgate accepts for accounts (ASCII, a dotted domain of
// letters, digits and hyphens): an address no account can have could never match anyone, and
// a typo that looks shared but is not is worse than a refusal. Group names come from the
// identity provider, so anything printable goes, except spaces and commas (the ssh option
// separates with commas).
func NormalizeShare(who string) (string, error) {
	if !utf8.ValidString(who) {
		// Checked before ToLower, which would quietly turn bad bytes into U+FFFD.
		return "", invalidShare("%q is not UTF-8", who)
	}
	w := strings.ToLower(strings.TrimSpace(who))
	if g, ok := strings.CutPrefix(w, groupPrefix); ok {
		switch {
		case g == "":
			return "", invalidShare("%q: a group needs a name, as in group:eng", who)
		case len(g) > maxShareGroup:
			return "", invalidShare("%q: a group name has at most %d bytes", who, maxShareGroup)
		}
		for _, r := range g {
			if r == ',' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
				return "", invalidShare("%q: a group name has no spaces, commas or control characters", who)
			}
		}
		return w, nil
	}
	if !strings.Contains(w, "@") {
		return "", invalidShare("%q is neither an email address nor group:NAME", who)
	}
	if !validShareEmail(w) {
		return "", invalidShare("%q is not a valid email address", who)
	}
	return w, nil
}

// NormalizeShares is NormalizeShare for a list: each checked, duplicates dropped, sorted. The
// first bad entry fails the whole list, and an empty list is an error too (sharing with
// nobody is a mistake, not a no-op).
func NormalizeShares(with []string) ([]string, error) {
	if len(with) == 0 {
		return nil, invalidShare("share with whom? Give an email address or group:NAME")
	}
	out := make([]string, 0, len(with))
	for _, w := range with {
		n, err := NormalizeShare(w)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// validShareEmail is web.NormalizeEmail's syntax (data may not import web): local part of
// atext characters and single dots, a domain of letters, digits and hyphens. w is lower-cased.
func validShareEmail(w string) bool {
	local, domain, ok := strings.Cut(w, "@")
	if !ok || local == "" || len(local) > 64 || len(w) > maxShareEmail || domain == "" || len(domain) > 253 {
		return false
	}
	for _, c := range []byte(local) {
		if !isAlnumByte(c) && !strings.ContainsRune(".!#$%&'*+/=?^_`{|}~-", rune(c)) {
			return false
		}
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return false
	}
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !isAlnumByte(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

func isAlnumByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ShareName adds with to whom name is shared with and returns the list as saved. Owner ""
// acts for whoever holds the name (the operator); otherwise only the holder may, and anyone
// else gets ErrNameTaken. ErrNotFound if nobody holds the name; ErrInvalid for a bad entry
// (see NormalizeShares) or a list that would pass MaxShares. Sharing with someone already on
// the list is not an error. On any error nothing is written.
func (s *Store) ShareName(ctx context.Context, name, owner string, with []string) (NameShares, error) {
	add, err := NormalizeShares(with)
	if err != nil {
		return NameShares{}, err
	}
	return s.changeShares(ctx, name, owner, func(cur []string) ([]string, error) {
		next := append(slices.Clone(cur), add...)
		slices.Sort(next)
		next = slices.Compact(next)
		if len(next) > MaxShares {
			return nil, invalidShare("%s would be shared with %d people and groups; at most %d (share with a group instead)",
				name, len(next), MaxShares)
		}
		return next, nil
	})
}

// UnshareName removes with from whom name is shared with and returns what is left. An entry
// that is not on the list is ErrNotFound and nothing is removed: an unshare with a typo must
// not look like it took someone's access away. Owner, ErrNotFound for an unheld name and
// ErrInvalid are as for ShareName.
func (s *Store) UnshareName(ctx context.Context, name, owner string, with []string) (NameShares, error) {
	drop, err := NormalizeShares(with)
	if err != nil {
		return NameShares{}, err
	}
	return s.changeShares(ctx, name, owner, func(cur []string) ([]string, error) {
		var missing []string
		for _, d := range drop {
			if !slices.Contains(cur, d) {
				missing = append(missing, d)
			}
		}
		if len(missing) > 0 {
			return nil, &shareError{kind: ErrNotFound, msg: fmt.Sprintf("%s is not shared with %s", name, strings.Join(missing, ", "))}
		}
		return slices.DeleteFunc(slices.Clone(cur), func(w string) bool { return slices.Contains(drop, w) }), nil
	})
}

// changeShares is one read-modify-write of name's list in a transaction.
func (s *Store) changeShares(ctx context.Context, name, owner string, change func(cur []string) ([]string, error)) (NameShares, error) {
	if err := ctx.Err(); err != nil {
		return NameShares{}, err
	}
	if err := checkID("name", name); err != nil {
		return NameShares{}, err
	}
	var out NameShares
	err := s.db.Update(func(tx *bolt.Tx) error {
		cur, err := getShares(tx, name)
		if err != nil {
			return err
		}
		if owner != "" && cur.Owner != owner {
			return fmt.Errorf("%w: %q", ErrNameTaken, name)
		}
		next, err := change(cur.With)
		if err != nil {
			return err
		}
		out = NameShares{Name: name, Owner: cur.Owner, With: next, UpdatedAt: time.Now().UTC()}
		if len(next) == 0 {
			out.With = nil
			return deleteShares(tx, name)
		}
		return putShares(tx, out)
	})
	if err != nil {
		return NameShares{}, err
	}
	return out, nil
}

// GetNameShares returns whom name is shared with; With is nil if nobody. ErrNotFound if nobody
// holds the name.
func (s *Store) GetNameShares(ctx context.Context, name string) (NameShares, error) {
	if err := ctx.Err(); err != nil {
		return NameShares{}, err
	}
	var out NameShares
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = getShares(tx, name)
		return err
	})
	if err != nil {
		return NameShares{}, err
	}
	return out, nil
}

// ListNameShares returns every name shared with someone, by name.
func (s *Store) ListNameShares(ctx context.Context) ([]NameShares, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []NameShares
	err := s.db.View(func(tx *bolt.Tx) error {
		var names []string
		err := tx.Bucket([]byte(bucketNameShares)).ForEach(func(k, _ []byte) error {
			names = append(names, string(k))
			return nil
		})
		if err != nil {
			return err
		}
		for _, n := range names {
			sh, err := getShares(tx, n)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if len(sh.With) > 0 {
				out = append(out, sh)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// getShares reads name's claim and its list inside tx: ErrNotFound without a claim, an empty
// list when the record is missing or was saved for another owner.
func getShares(tx *bolt.Tx, name string) (NameShares, error) {
	c, found, err := getName(tx, name)
	if err != nil {
		return NameShares{}, err
	}
	if !found {
		return NameShares{}, fmt.Errorf("%w: name %q", ErrNotFound, name)
	}
	out := NameShares{Name: name, Owner: c.Owner}
	v := tx.Bucket([]byte(bucketNameShares)).Get([]byte(name))
	if v == nil {
		return out, nil
	}
	r, err := decodeRecord[shareRecord]("share", v)
	if err != nil {
		return NameShares{}, fmt.Errorf("data: shares of %q: %w", name, err)
	}
	if r.Owner != c.Owner {
		return out, nil
	}
	out.With, out.UpdatedAt = r.With, r.UpdatedAt
	return out, nil
}

func putShares(tx *bolt.Tx, sh NameShares) error {
	v, err := encodeShares(sh)
	if err != nil {
		return fmt.Errorf("data: encode shares of %q: %w", sh.Name, err)
	}
	if err := tx.Bucket([]byte(bucketNameShares)).Put([]byte(sh.Name), v); err != nil {
		return fmt.Errorf("data: store shares of %q: %w", sh.Name, err)
	}
	return nil
}

func deleteShares(tx *bolt.Tx, name string) error {
	if err := tx.Bucket([]byte(bucketNameShares)).Delete([]byte(name)); err != nil {
		return fmt.Errorf("data: delete shares of %q: %w", name, err)
	}
	return nil
}

// moveShares gives name's list to the claim's new owner, for MoveNames: the same person,
// under the id of the user their key was linked to. A list saved for anyone but from stays
// where it is (getShares ignores it).
func moveShares(tx *bolt.Tx, name, from, to string) error {
	v := tx.Bucket([]byte(bucketNameShares)).Get([]byte(name))
	if v == nil {
		return nil
	}
	r, err := decodeRecord[shareRecord]("share", v)
	if err != nil {
		return fmt.Errorf("data: shares of %q: %w", name, err)
	}
	if r.Owner != from {
		return nil
	}
	return putShares(tx, NameShares{Name: name, Owner: to, With: r.With, UpdatedAt: r.UpdatedAt})
}
