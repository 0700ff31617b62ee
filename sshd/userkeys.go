package sshd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/toolgate/toolgate/data"
)

// KeyDirectory is where linked keys and their users are looked up. *data.Store implements it.
type KeyDirectory interface {
	// GetKey returns the key with this SHA-256 fingerprint, expired or not, or data.ErrNotFound.
	GetKey(ctx context.Context, fingerprint string) (data.SSHKey, error)
	// GetUser returns the user, or data.ErrNotFound.
	GetUser(ctx context.Context, id string) (data.User, error)
}

// UserKeys accepts keys linked to a user who is not disabled, and names the connection after
// that user: tunnels and names belong to people, not to keys. A key never linked, or whose link
// expired, is ErrUnknownKey, which sends it through linking when the server has a Linker.
type UserKeys struct {
	// Keys is the directory. Required.
	Keys KeyDirectory
	// Now is the clock link expiry is checked against. Default time.Now.
	Now func() time.Time
}

// Authenticate implements [Authenticator]. It only reads.
func (u UserKeys) Authenticate(ctx context.Context, _ ssh.ConnMetadata, key ssh.PublicKey) (Identity, error) {
	now := time.Now
	if u.Now != nil {
		now = u.Now
	}
	fp := ssh.FingerprintSHA256(key)
	k, err := u.Keys.GetKey(ctx, fp)
	if errors.Is(err, data.ErrNotFound) {
		return Identity{}, ErrUnknownKey
	}
	if err != nil {
		return Identity{}, fmt.Errorf("sshd: look up key: %w", err)
	}
	if k.Expired(now()) {
		return Identity{}, ErrUnknownKey
	}
	user, err := u.Keys.GetUser(ctx, k.UserID)
	if errors.Is(err, data.ErrNotFound) {
		return Identity{}, ErrUnknownKey
	}
	if err != nil {
		return Identity{}, fmt.Errorf("sshd: look up user: %w", err)
	}
	if user.Disabled {
		return Identity{}, &ssh.BannerError{
			Err:     fmt.Errorf("sshd: key %s belongs to a disabled user", fp),
			Message: "toolgate: the account this key belongs to is disabled.\r\n",
		}
	}
	display := user.Email
	if display == "" {
		display = user.Name
	}
	return Identity{Owner: user.ID, Display: display}, nil
}

// ErrKeyNotAllowed is returned by [Both] for a key that an allow-list in front refused. Unlike
// ErrUnknownKey it does not lead to linking: the key may not be used at all.
var ErrKeyNotAllowed = errors.New("sshd: key not in the allow-list")

// Both accepts a key only if every authenticator does, and takes the identity from the last:
// an authorized_keys file as an allow-list in front of UserKeys, for example. Only the last one's
// ErrUnknownKey means "link it"; an earlier one's becomes ErrKeyNotAllowed.
type Both []Authenticator

// Authenticate implements [Authenticator].
func (b Both) Authenticate(ctx context.Context, meta ssh.ConnMetadata, key ssh.PublicKey) (Identity, error) {
	var id Identity
	for i, a := range b {
		var err error
		if id, err = a.Authenticate(ctx, meta, key); err != nil {
			if i < len(b)-1 && errors.Is(err, ErrUnknownKey) {
				return Identity{}, fmt.Errorf("%w (%v)", ErrKeyNotAllowed, err)
			}
			return Identity{}, err
		}
	}
	return id, nil
}
