package web

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/toolgate/toolgate/data"
)

func TestHashPassword(t *testing.T) {
	h1, err := HashPassword(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := HashPassword(testPassword)
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=19456,t=2,p=1$") || h1 == h2 {
		t.Fatalf("hashes %q, %q: want PHC argon2id with OWASP parameters and a fresh salt each", h1, h2)
	}
	for pw, want := range map[string]bool{testPassword: true, testPassword + " ": false, "": false, strings.Repeat("x", MaxPasswordLen+1): false} {
		if ok, err := VerifyPassword(h1, pw); err != nil || ok != want {
			t.Errorf("VerifyPassword(%.20q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	// Hashes with other parameters verify too: the parameters travel with the hash.
	salt := []byte("saltsalt")
	key := argon2.IDKey([]byte(testPassword), salt, 1, 64, 2, 24)
	other := fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=2$%s$%s", base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
	if ok, err := VerifyPassword(other, testPassword); !ok || err != nil {
		t.Errorf("a hash with other parameters: %v, %v", ok, err)
	}
	for _, bad := range []string{
		"", "plain", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=16$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=19456,t=2,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$c2hvcnQ",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$",
	} {
		if _, err := VerifyPassword(bad, testPassword); err == nil {
			t.Errorf("VerifyPassword accepted the hash %q", bad)
		}
	}
	if _, err := HashPassword(""); err == nil {
		t.Error("hashed an empty password")
	}
}

func TestValidatePassword(t *testing.T) {
	for pw, ok := range map[string]bool{
		"":                                    false,
		"elevenchars":                         false,
		"twelve chars":                        true,
		"ünïcödé·chår":                        true, // 12 runes, more bytes
		strings.Repeat("x", MaxPasswordLen):   true,
		strings.Repeat("x", MaxPasswordLen+1): false,
		"\xff\xfe not utf-8 at all":           false,
	} {
		if err := ValidatePassword(pw); (err == nil) != ok {
			t.Errorf("ValidatePassword(%.20q) = %v, want ok=%v", pw, err, ok)
		}
	}
}

func TestNormalizeEmail(t *testing.T) {
	for in, want := range map[string]string{
		"ada@example.com":             "ada@example.com",
		"  Ada.Lovelace@Example.COM ": "ada.lovelace@example.com",
		"a+tag@sub.example.co.uk":     "a+tag@sub.example.co.uk",
		"admin@toolgate.localhost":    "admin@toolgate.localhost",
		"root@localhost":              "root@localhost",
		"":                            "",
		"ada":                         "",
		"@example.com":                "",
		"ada@":                        "",
		"ada@@example.com":            "",
		"a da@example.com":            "",
		"<ada@example.com>":           "",
		"ada@exa_mple.com":            "",
		"ada@-example.com":            "",
		"ada@example..com":            "",
		".ada@example.com":            "",
		"ad..a@example.com":           "",
		"ada@example.com\n":           "ada@example.com", // trimmed
		"ada\r\n@example.com":         "",
	} {
		got, err := NormalizeEmail(in)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", in, got, err, want)
		}
		if err != nil && !errors.Is(err, ErrInvalidEmail) {
			t.Errorf("NormalizeEmail(%q): error %v is not ErrInvalidEmail", in, err)
		}
	}
}

func newTestAccounts(t *testing.T) (*Accounts, *data.Store, *testClock) {
	t.Helper()
	st := openTestStore(t)
	clock := newTestClock()
	a, err := NewAccounts(AccountsConfig{Store: st, BaseURL: "https://toolgate.localhost:8443/", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return a, st, clock
}

func TestAccounts(t *testing.T) {
	a, st, _ := newTestAccounts(t)
	ctx := context.Background()
	u, err := a.AddUser(ctx, " Ada@Example.com", "Ada", false)
	if err != nil {
		t.Fatal(err)
	}
	if u.Email != "ada@example.com" || u.ID == "" || u.PasswordHash != "" || u.Admin {
		t.Fatalf("user %+v", u)
	}
	if _, err := a.AddUser(ctx, "ADA@example.com", "", false); !errors.Is(err, data.ErrUserExists) {
		t.Fatalf("second add: %v, want ErrUserExists", err)
	}
	if _, err := a.AddUser(ctx, "not an email", "", false); !errors.Is(err, ErrInvalidEmail) {
		t.Fatalf("bad email: %v", err)
	}

	if _, err := a.SetPassword(ctx, "ada@example.com", "short"); !errors.Is(err, ErrInvalidPassword) {
		t.Fatalf("short password: %v", err)
	}
	if u, err = a.SetPassword(ctx, "ada@example.com", testPassword); err != nil {
		t.Fatal(err)
	}
	if ok, _ := VerifyPassword(u.PasswordHash, testPassword); !ok {
		t.Fatal("stored hash does not verify")
	}

	// Disable ends sessions; Enable lets the user back in.
	if err := st.CreateSession(ctx, data.Session{ID: "s1", UserID: u.ID, CreatedAt: time.Now(), IdleExpiresAt: time.Now().Add(time.Hour), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	d, err := a.Disable(ctx, "ada@example.com")
	if err != nil || !d.Disabled || d.ID != u.ID {
		t.Fatalf("Disable: %+v, %v", d, err)
	}
	if _, err := st.GetSession(ctx, "s1"); !errors.Is(err, data.ErrNotFound) {
		t.Fatalf("session after Disable: %v", err)
	}
	if _, err := a.checkPassword(ctx, "ada@example.com", testPassword); !errors.Is(err, ErrUserDisabled) {
		t.Fatalf("disabled sign-in: %v", err)
	}
	if _, err := a.IssueSignInLink(ctx, u.ID, 0); err == nil {
		t.Fatal("a disabled user got a sign-in link")
	}
	if e, err := a.Enable(ctx, "ada@example.com"); err != nil || e.Disabled {
		t.Fatalf("Enable: %+v, %v", e, err)
	}
	if _, err := a.checkPassword(ctx, "ada@example.com", testPassword); err != nil {
		t.Fatalf("enabled sign-in: %v", err)
	}
	if _, err := a.Disable(ctx, "nobody@example.com"); !errors.Is(err, data.ErrNotFound) {
		t.Fatalf("Disable of nobody: %v", err)
	}
}

func TestIssueSignInLink(t *testing.T) {
	a, st, clock := newTestAccounts(t)
	ctx := context.Background()
	u, _ := a.AddUser(ctx, "ada@example.com", "", false)
	link, err := a.IssueSignInLink(ctx, u.ID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	token, ok := strings.CutPrefix(link, "https://toolgate.localhost:8443/signin/t/")
	if !ok {
		t.Fatalf("link %q", link)
	}
	if _, ok := decodeToken(token); !ok {
		t.Fatalf("token %q is not 32 bytes of base64url", token)
	}
	// Only the hash is stored: the token itself names no ticket.
	if _, err := st.ConsumeTicket(ctx, token, SignInTicketKind, clock.Now()); err == nil {
		t.Fatal("the raw token is stored")
	}
	if got, err := a.redeemSignInLink(ctx, token); err != nil || got.ID != u.ID {
		t.Fatalf("redeem: %+v, %v", got, err)
	}
	if _, err := a.redeemSignInLink(ctx, token); !errors.Is(err, errLinkUnusable) {
		t.Fatalf("second redeem: %v", err)
	}

	// Setting a password voids links not yet used.
	link, _ = a.IssueSignInLink(ctx, u.ID, time.Minute)
	if _, err := a.SetPassword(ctx, u.Email, testPassword); err != nil {
		t.Fatal(err)
	}
	if _, err := a.redeemSignInLink(ctx, link[strings.LastIndex(link, "/")+1:]); !errors.Is(err, errLinkUnusable) {
		t.Fatalf("redeem after a password was set: %v", err)
	}
	for _, bad := range []string{"", "short", strings.Repeat("A", 43) + "\x00"} {
		if _, err := a.redeemSignInLink(ctx, bad); !errors.Is(err, errLinkUnusable) {
			t.Errorf("redeem %q: %v", bad, err)
		}
	}
}

func TestBootstrap(t *testing.T) {
	a, st, _ := newTestAccounts(t)
	ctx := context.Background()

	// Concurrent first starts create one admin.
	links := make([]string, 4)
	var wg sync.WaitGroup
	for i := range links {
		wg.Go(func() {
			var err error
			if links[i], err = a.Bootstrap(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n, _ := st.CountUsers(ctx); n != 1 {
		t.Fatalf("%d users after bootstrap", n)
	}
	admin, err := st.UserByEmail(ctx, "admin@toolgate.localhost")
	if err != nil || !admin.Admin || admin.PasswordHash != "" {
		t.Fatalf("admin %+v, %v", admin, err)
	}
	for _, l := range links {
		if !strings.HasPrefix(l, "https://toolgate.localhost:8443/signin/t/") {
			t.Fatalf("bootstrap link %q", l)
		}
	}

	// Until the admin has signed in, a restart prints a new link.
	again, err := a.Bootstrap(ctx)
	if err != nil || again == "" {
		t.Fatalf("second bootstrap before any sign-in: %q, %v", again, err)
	}
	a.noteSignIn(ctx, admin.ID)
	if l, err := a.Bootstrap(ctx); err != nil || l != "" {
		t.Fatalf("bootstrap after the admin signed in: %q, %v", l, err)
	}
}

// Another user besides the admin means the installation is set up: no link.
func TestBootstrapWithUsers(t *testing.T) {
	a, _, _ := newTestAccounts(t)
	ctx := context.Background()
	a.AddUser(ctx, "ada@example.com", "", false)
	if l, err := a.Bootstrap(ctx); err != nil || l != "" {
		t.Fatalf("bootstrap with a user: %q, %v", l, err)
	}
}

func TestNewAccountsChecksConfig(t *testing.T) {
	st := openTestStore(t)
	for _, base := range []string{"", "http://d.example", "https://", "https://d.example/path", "d.example"} {
		if _, err := NewAccounts(AccountsConfig{Store: st, BaseURL: base}); err == nil {
			t.Errorf("BaseURL %q accepted", base)
		}
	}
}
