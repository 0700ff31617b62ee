package sshd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrUnknownKey is returned by an [Authenticator] for a key it does not accept.
var ErrUnknownKey = errors.New("sshd: key not authorized")

// Identity is who a connection belongs to, decided at authentication.
type Identity struct {
	// Owner owns the connection's tunnels and names. Today it is the key's SHA-256 fingerprint.
	Owner string
	// Display is how to show the owner to people (a key comment, later a user name).
	Display string
}

// An Authenticator decides whether a public key may connect, and who it is.
//
// Authenticate may be called for a key the client only offers, before it has proved it holds the
// private key (SSH lets clients ask "would you accept this key?"), so it must have no side
// effects: the identity it returns is attached to the key and used only if the proof follows
// (the CVE-2024-45337 rule). It must be safe for concurrent use and answer quickly: the handshake
// waits for it.
type Authenticator interface {
	Authenticate(ctx context.Context, meta ssh.ConnMetadata, key ssh.PublicKey) (Identity, error)
}

// AuthorizedKeys accepts the keys listed in an OpenSSH authorized_keys file. The file is read
// again whenever its modification time or size changes, so keys can be added and removed while
// the server runs; a file that fails to parse keeps the previous key set and reports the error.
type AuthorizedKeys struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	keys    map[string]string // marshalled key -> comment
	loadErr error
}

// NewAuthorizedKeys reads path and returns an authenticator over it. An unreadable or
// malformed file is an error, naming the line.
func NewAuthorizedKeys(path string) (*AuthorizedKeys, error) {
	a := &AuthorizedKeys{path: path}
	if err := a.reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Len returns the number of keys currently accepted.
func (a *AuthorizedKeys) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.keys)
}

func (a *AuthorizedKeys) reload() error {
	st, err := os.Stat(a.path)
	if err != nil {
		return fmt.Errorf("sshd: authorized keys: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.keys != nil && st.ModTime().Equal(a.modTime) && st.Size() == a.size {
		return a.loadErr
	}
	b, err := os.ReadFile(a.path)
	if err != nil {
		return fmt.Errorf("sshd: authorized keys: %w", err)
	}
	keys, err := ParseAuthorizedKeys(b)
	a.modTime, a.size = st.ModTime(), st.Size()
	if err != nil {
		a.loadErr = fmt.Errorf("sshd: authorized keys %s: %w", a.path, err)
		if a.keys == nil {
			return a.loadErr
		}
		return nil // keep serving the previous set
	}
	a.keys, a.loadErr = keys, nil
	return nil
}

// ParseAuthorizedKeys parses authorized_keys content: one key per line, blank lines and
// #-comments ignored. It returns marshalled key -> comment.
func ParseAuthorizedKeys(b []byte) (map[string]string, error) {
	keys := make(map[string]string)
	for i, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		pub, comment, _, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		keys[string(pub.Marshal())] = comment
	}
	return keys, nil
}

// Authenticate implements [Authenticator].
func (a *AuthorizedKeys) Authenticate(_ context.Context, _ ssh.ConnMetadata, key ssh.PublicKey) (Identity, error) {
	if err := a.reload(); err != nil {
		return Identity{}, err
	}
	a.mu.Lock()
	comment, ok := a.keys[string(key.Marshal())]
	a.mu.Unlock()
	if !ok {
		return Identity{}, ErrUnknownKey
	}
	fp := ssh.FingerprintSHA256(key)
	display := fp
	if comment != "" {
		display = comment
	}
	return Identity{Owner: fp, Display: display}, nil
}
