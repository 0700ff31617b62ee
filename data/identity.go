package data

import (
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Identity records: users (users.go), the SSH keys linked to them (keys.go), their browser
// sessions (sessions.go) and one-time sign-in tickets (tickets.go). data stores them and keeps
// their indexes; what a password hash, a group or an auth method means, how long a session or a
// link lasts and who may do what belong to the callers.
//
// Two rules hold for all of them:
//
//   - A method that writes refuses an empty id, or an id or fingerprint containing NUL, with
//     ErrInvalid before it opens a transaction, so bad input never writes anything. NUL is what
//     separates the parts of the by-user index keys (see layout.go).
//   - A method that only reads treats such an id as absent: ErrNotFound, or an empty list. Nothing
//     can be stored under it, so that is the true answer, and the request path needs no special
//     case for a malformed cookie.
//
// Sessions, keys and tickets name a user that must exist when they are written (ErrNotFound
// otherwise): a dangling reference would be a bug in the caller, and one Get in a write
// transaction that is open anyway is the cheapest place to catch it.

// Errors of the identity records, checked with errors.Is like those in store.go.
var (
	// ErrInvalid: the argument can never be stored (an empty id, NUL in an id, a missing
	// deadline, …). Nothing was written.
	ErrInvalid = errors.New("data: invalid argument")
	// ErrExists: a record with this id exists already. Session and ticket ids are hashes of
	// random tokens, so this means a broken random source or a replayed write.
	ErrExists = errors.New("data: record already exists")
	// ErrUserExists: another user has this id, email or subject.
	ErrUserExists = errors.New("data: a user with this email, subject or id already exists")
	// ErrKeyLinked: the SSH key is linked to another user and that link has not expired. The
	// error never says to whom.
	ErrKeyLinked = errors.New("data: SSH key is linked to another user")
	// ErrTicketExpired: the ticket existed but had expired (it has been deleted). Errors that
	// wrap it also wrap ErrNotFound, so a caller that only asks "usable or not" checks that.
	ErrTicketExpired = errors.New("data: ticket expired")
)

// checkID refuses what no write may store as an id: the empty string (bbolt refuses empty keys,
// and it is always a caller's bug) and NUL (the index separator).
func checkID(what, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	case strings.IndexByte(id, ownerSep) >= 0:
		return fmt.Errorf("%w: %s %q contains NUL", ErrInvalid, what, id)
	}
	return nil
}

// checkUserExists fails with ErrNotFound unless the user id is in the users bucket. It does not
// decode the record: existence is all a reference needs.
func checkUserExists(tx *bolt.Tx, id string) error {
	if tx.Bucket([]byte(bucketUsers)).Get([]byte(id)) == nil {
		return fmt.Errorf("%w: user %q", ErrNotFound, id)
	}
	return nil
}
