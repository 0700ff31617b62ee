package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/data"
)

func (s *testSite) linkKey(fp, userID string, expires time.Time) {
	s.t.Helper()
	now := s.clock.Now()
	if _, err := s.store.LinkKey(context.Background(), data.SSHKey{Fingerprint: fp, Type: "ssh-ed25519", UserID: userID,
		LinkedAt: now, ExpiresAt: expires, LinkedFrom: "192.0.2.7"}); err != nil {
		s.t.Fatal(err)
	}
}

func TestKeysPage(t *testing.T) {
	s := newTestSite(t)
	ada := s.addUser("ada@example.com", testPassword, false)
	bob := s.addUser("bob@example.com", testPassword, false)
	const adaKey, adaOld, bobKey = "SHA256:ada-key", "SHA256:ada-old", "SHA256:bob-key"
	s.linkKey(adaKey, ada.ID, s.clock.Now().Add(30*24*time.Hour))
	s.linkKey(adaOld, ada.ID, s.clock.Now().Add(time.Hour))
	s.linkKey(bobKey, bob.ID, s.clock.Now().Add(30*24*time.Hour))
	s.clock.Advance(2 * time.Hour)

	c := s.signedIn("ada@example.com", testPassword)
	p := s.get(c, "/keys")
	if p.StatusCode != http.StatusOK {
		t.Fatalf("GET /keys: %d", p.StatusCode)
	}
	for _, want := range []string{adaKey, adaOld, "ssh-ed25519", "192.0.2.7", "expired", `action="/keys/revoke"`, "2026-03-31 12:00:00 UTC"} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("keys page lacks %q", want)
		}
	}
	if strings.Contains(p.Body, bobKey) {
		t.Error("keys page shows another user's key")
	}

	// Someone else's key: refused as unknown, untouched, nothing closed.
	if r := s.post(c, "/keys", "/keys/revoke", url.Values{"fingerprint": {bobKey}}); r.StatusCode != http.StatusNotFound {
		t.Fatalf("revoke bob's key as ada: %d", r.StatusCode)
	}
	if _, err := s.store.GetKey(context.Background(), bobKey); err != nil {
		t.Fatalf("bob's key after ada's attempt: %v", err)
	}
	// Without CSRF: refused, untouched.
	if r := s.do(c, "POST", "/keys/revoke", url.Values{"fingerprint": {adaKey}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("revoke without CSRF: %d", r.StatusCode)
	}
	if len(s.closer.calls()) != 0 {
		t.Fatalf("refused revocations closed %v", s.closer.calls())
	}

	// Her own key: revoked, connections closed, a confirmation on the next page.
	r := s.post(c, "/keys", "/keys/revoke", url.Values{"fingerprint": {adaKey}})
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/keys" {
		t.Fatalf("revoke: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if _, err := s.store.GetKey(context.Background(), adaKey); !errors.Is(err, data.ErrNotFound) {
		t.Fatalf("revoked key: %v", err)
	}
	if got := s.closer.calls(); !slices.Equal(got, []string{adaKey}) {
		t.Fatalf("CloseKey calls %v", got)
	}
	p = s.get(c, "/keys")
	if !strings.Contains(p.Body, "Revoked "+adaKey+". Its connection was closed.") || strings.Contains(p.Body, "<code>"+adaKey) {
		t.Fatalf("keys page after revoking:\n%s", p.Body)
	}
}

func TestAdminRevokesAnyKey(t *testing.T) {
	s := newTestSite(t)
	s.addUser("root@example.com", testPassword, true)
	bob := s.addUser("bob@example.com", testPassword, false)
	s.linkKey("SHA256:bob-key", bob.ID, s.clock.Now().Add(time.Hour))
	c := s.signedIn("root@example.com", testPassword)
	if r := s.post(c, "/keys", "/keys/revoke", url.Values{"fingerprint": {"SHA256:bob-key"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("admin revoke: %d %s", r.StatusCode, r.Body)
	}
	if _, err := s.store.GetKey(context.Background(), "SHA256:bob-key"); !errors.Is(err, data.ErrNotFound) {
		t.Fatalf("key after admin revoke: %v", err)
	}
}

// A forged flash cookie shows nothing.
func TestFlashIsSigned(t *testing.T) {
	s := newTestSite(t)
	s.addUser("ada@example.com", testPassword, false)
	c := s.signedIn("ada@example.com", testPassword)
	u, _ := url.Parse(s.srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: flashCookie, Value: "SGFja2Vk.forged", Path: "/", Secure: true}})
	if p := s.get(c, "/keys"); strings.Contains(p.Body, "Hacked") || strings.Contains(p.Body, `class="flash"`) {
		t.Fatal("a forged flash was shown")
	}
}
