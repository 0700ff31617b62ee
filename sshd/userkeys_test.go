package sshd_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/sshd"
)

func newPubKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestUserKeys(t *testing.T) {
	ctx := context.Background()
	st, err := data.Open(data.Config{Path: filepath.Join(t.TempDir(), "t.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

	alice, err := st.CreateUser(ctx, data.User{Email: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	nameless, err := st.CreateUser(ctx, data.User{Name: "Build bot"})
	if err != nil {
		t.Fatal(err)
	}
	mallory, err := st.CreateUser(ctx, data.User{Email: "mallory@example.com", Disabled: true})
	if err != nil {
		t.Fatal(err)
	}
	link := func(u data.User, expires time.Time) ssh.PublicKey {
		k := newPubKey(t)
		if _, err := st.LinkKey(ctx, data.SSHKey{Fingerprint: ssh.FingerprintSHA256(k), Type: k.Type(), UserID: u.ID, LinkedAt: now.Add(-time.Hour), ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
		return k
	}
	var (
		active   = link(alice, now.Add(time.Hour))
		forever  = link(nameless, time.Time{})
		lapsed   = link(alice, now)
		disabled = link(mallory, now.Add(time.Hour))
		unknown  = newPubKey(t)
	)
	auth := sshd.UserKeys{Keys: st, Now: func() time.Time { return now }}

	for _, tc := range []struct {
		name    string
		key     ssh.PublicKey
		want    sshd.Identity
		wantErr error
		banner  bool
	}{
		{name: "linked", key: active, want: sshd.Identity{Owner: alice.ID, Display: "alice@example.com"}},
		{name: "no expiry, no email", key: forever, want: sshd.Identity{Owner: nameless.ID, Display: "Build bot"}},
		{name: "expired at the deadline", key: lapsed, wantErr: sshd.ErrUnknownKey},
		{name: "never linked", key: unknown, wantErr: sshd.ErrUnknownKey},
		{name: "disabled user", key: disabled, banner: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := auth.Authenticate(ctx, nil, tc.key)
			switch {
			case tc.banner:
				var be *ssh.BannerError
				if !errors.As(err, &be) || be.Message == "" {
					t.Fatalf("err = %v, want a BannerError with a message", err)
				}
				if errors.Is(err, sshd.ErrUnknownKey) {
					t.Fatal("a disabled user's key must not be offered linking")
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case id != tc.want:
				t.Fatalf("identity = %+v, want %+v", id, tc.want)
			}
		})
	}

	// With an allow-list in front: a listed key still needs its link, and a key missing from
	// the list is refused outright, never sent to linking.
	path := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(path, append(ssh.MarshalAuthorizedKey(active), ssh.MarshalAuthorizedKey(unknown)...), 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := sshd.NewAuthorizedKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	both := sshd.Both{list, auth}
	if id, err := both.Authenticate(ctx, nil, active); err != nil || id.Owner != alice.ID {
		t.Fatalf("listed and linked: %+v, %v", id, err)
	}
	if _, err := both.Authenticate(ctx, nil, unknown); !errors.Is(err, sshd.ErrUnknownKey) {
		t.Fatalf("listed, not linked: err = %v, want ErrUnknownKey (link it)", err)
	}
	_, err = both.Authenticate(ctx, nil, forever)
	if !errors.Is(err, sshd.ErrKeyNotAllowed) || errors.Is(err, sshd.ErrUnknownKey) {
		t.Fatalf("not listed: err = %v, want ErrKeyNotAllowed and not ErrUnknownKey", err)
	}
}
