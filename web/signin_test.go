package web

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

const testPassword = "correct horse battery"

func TestSignIn(t *testing.T) {
	s := newTestSite(t)
	s.addUser("ada@example.com", testPassword, false)
	s.addUser("bob@example.com", testPassword, false)
	if _, err := s.accounts.Disable(context.Background(), "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, email, pw string
		status          int
		body            string
	}{
		{"ok", "ada@example.com", testPassword, http.StatusSeeOther, ""},
		{"email is case-insensitive", " Ada@Example.COM", testPassword, http.StatusSeeOther, ""},
		{"wrong password", "ada@example.com", "wrong horse battery", http.StatusUnauthorized, "Wrong email or password."},
		{"unknown user", "eve@example.com", testPassword, http.StatusUnauthorized, "Wrong email or password."},
		{"not an email", "eve", testPassword, http.StatusUnauthorized, "Wrong email or password."},
		{"disabled user", "bob@example.com", testPassword, http.StatusForbidden, "This account is disabled."},
		{"disabled user, wrong password", "bob@example.com", "nope nope nope", http.StatusUnauthorized, "Wrong email or password."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := s.client()
			p := s.signIn(c, tc.email, tc.pw, "/keys")
			if p.StatusCode != tc.status || !strings.Contains(p.Body, tc.body) {
				t.Fatalf("got %d %s, want %d with %q", p.StatusCode, p.Body, tc.status, tc.body)
			}
			home := s.get(c, "/")
			if signedIn := strings.Contains(home.Body, "Signed in as"); signedIn != (tc.status == http.StatusSeeOther) {
				t.Fatalf("signed in = %v after %d", signedIn, p.StatusCode)
			}
			if tc.status == http.StatusSeeOther {
				if loc := p.Header.Get("Location"); loc != "/keys" {
					t.Errorf("redirected to %q, want the next, /keys", loc)
				}
				if u, _ := s.store.UserByEmail(context.Background(), "ada@example.com"); u.LastSignIn.IsZero() {
					t.Error("LastSignIn not recorded")
				}
			}
		})
	}
}

// A JSON client gets JSON errors rather than the form again.
func TestSignInJSONError(t *testing.T) {
	s := newTestSite(t)
	c := s.client()
	form := url.Values{"email": {"x@example.com"}, "password": {"whatever whatever"}, "csrf": {s.csrf(c, "/signin")}}
	p := s.do(c, "POST", "/signin", form, "Accept", "application/json")
	if p.StatusCode != http.StatusUnauthorized || !strings.Contains(p.Body, `"error":"wrong_credentials"`) {
		t.Fatalf("%d %s", p.StatusCode, p.Body)
	}
}

func TestSignInRateLimits(t *testing.T) {
	s := newTestSite(t)
	s.addUser("ada@example.com", testPassword, false)
	c := s.client()
	for i := range 5 {
		if p := s.signIn(c, "ada@example.com", "wrong password "+strconv.Itoa(i), ""); p.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, p.StatusCode)
		}
	}
	// Locked, even with the right password, until the first failure leaves the window.
	p := s.signIn(c, "ada@example.com", testPassword, "")
	if p.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("6th attempt: %d, want 429", p.StatusCode)
	}
	if ra, _ := strconv.Atoi(p.Header.Get("Retry-After")); ra < 1 || ra > 15*60 {
		t.Errorf("Retry-After = %q", p.Header.Get("Retry-After"))
	}
	s.clock.Advance(15*time.Minute + time.Second)
	if p := s.signIn(c, "ada@example.com", testPassword, ""); p.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the window: %d", p.StatusCode)
	}

	// Per client address: 20 failures across any accounts, then 429 for every account.
	s.clock.Advance(time.Hour)
	for i := range 20 {
		if p := s.signIn(s.client(), "user"+strconv.Itoa(i)+"@example.com", "wrong password", ""); p.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, p.StatusCode)
		}
	}
	if p := s.signIn(s.client(), "ada@example.com", testPassword, ""); p.StatusCode != http.StatusTooManyRequests || p.Header.Get("Retry-After") == "" {
		t.Fatalf("after 20 failures from one address: %d, want 429 with Retry-After", p.StatusCode)
	}
}

func TestFailures(t *testing.T) {
	f := newFailures(3, time.Minute)
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if d := f.retryAfter("k", t0); d != 0 {
			t.Fatalf("blocked after %d failures", i)
		}
		f.add("k", t0.Add(time.Duration(i)*10*time.Second))
	}
	if d := f.retryAfter("k", t0.Add(25*time.Second)); d != 35*time.Second {
		t.Errorf("retryAfter = %v, want 35s (until the first failure is a minute old)", d)
	}
	if d := f.retryAfter("k", t0.Add(time.Minute)); d != 0 {
		t.Errorf("still blocked once the first failure left the window: %v", d)
	}
	if d := f.retryAfter("other", t0); d != 0 {
		t.Errorf("another key blocked: %v", d)
	}
	f.reset("k")
	if d := f.retryAfter("k", t0.Add(25*time.Second)); d != 0 {
		t.Errorf("blocked after reset: %v", d)
	}
}

// The next parameter leads only to paths on this site.
func TestSignInNextIsLocal(t *testing.T) {
	s := newTestSite(t)
	s.addUser("ada@example.com", testPassword, false)
	for next, want := range map[string]string{
		"/keys?x=1":           "/keys?x=1",
		"//evil.com":          "/",
		"https://evil":        "/",
		"/\\evil":             "/",
		"\\\\evil":            "/",
		"/\t/evil.com":        "/",
		"evil.com":            "/",
		"javascript:alert(1)": "/",
		"":                    "/",
	} {
		p := s.signIn(s.client(), "ada@example.com", testPassword, next)
		if loc := p.Header.Get("Location"); p.StatusCode != http.StatusSeeOther || loc != want {
			t.Errorf("next=%q: %d to %q, want %q", next, p.StatusCode, loc, want)
		}
	}
}

func TestSignInLink(t *testing.T) {
	s := newTestSite(t)
	u := s.addUser("ada@example.com", "", false)
	link, err := s.accounts.IssueSignInLink(context.Background(), u.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	path, ok := strings.CutPrefix(link, s.srv.URL)
	if !ok || !strings.HasPrefix(path, "/signin/t/") || len(path) != len("/signin/t/")+43 {
		t.Fatalf("link %q", link)
	}

	// GET only shows a button; fetching it twice burns nothing.
	c := s.client()
	for range 2 {
		if p := s.get(c, path); p.StatusCode != http.StatusOK || !strings.Contains(p.Body, `action="`+path+`"`) {
			t.Fatalf("GET link: %d %s", p.StatusCode, p.Body)
		}
	}
	p := s.post(c, path, path, nil)
	if p.StatusCode != http.StatusSeeOther || p.Header.Get("Location") != "/account/password?next=%2F" {
		t.Fatalf("POST link: %d to %q, want the password page (the user has none)", p.StatusCode, p.Header.Get("Location"))
	}
	if home := s.get(c, "/"); !strings.Contains(home.Body, "Signed in as <strong>ada@example.com") {
		t.Fatal("not signed in after the link")
	}

	// A second use, from any browser, is refused.
	if p := s.post(s.client(), path, path, nil); p.StatusCode != http.StatusGone || !strings.Contains(p.Body, "expired or was already used") {
		t.Fatalf("second use: %d %s", p.StatusCode, p.Body)
	}

	// An expired link is refused.
	link, _ = s.accounts.IssueSignInLink(context.Background(), u.ID, time.Minute)
	path = strings.TrimPrefix(link, s.srv.URL)
	c = s.client()
	tok := s.csrf(c, path)
	s.clock.Advance(time.Minute)
	if p := s.do(c, "POST", path, url.Values{"csrf": {tok}}); p.StatusCode != http.StatusGone {
		t.Fatalf("expired link: %d %s", p.StatusCode, p.Body)
	}

	// Garbage is not a link.
	if p := s.get(s.client(), "/signin/t/not-a-token"); p.StatusCode != http.StatusNotFound {
		t.Fatalf("garbage link: %d", p.StatusCode)
	}
}

// A user with a password who signs in with a link goes straight to next.
func TestSignInLinkWithPassword(t *testing.T) {
	s := newTestSite(t)
	u := s.addUser("ada@example.com", testPassword, false)
	link, _ := s.accounts.IssueSignInLink(context.Background(), u.ID, 0)
	path := strings.TrimPrefix(link, s.srv.URL)
	c := s.client()
	p := s.post(c, path, path, url.Values{"next": {"/keys"}})
	if p.StatusCode != http.StatusSeeOther || p.Header.Get("Location") != "/keys" {
		t.Fatalf("%d to %q", p.StatusCode, p.Header.Get("Location"))
	}
}

func TestSetPasswordPage(t *testing.T) {
	s := newTestSite(t)
	u := s.addUser("ada@example.com", "", false)
	link, _ := s.accounts.IssueSignInLink(context.Background(), u.ID, 0)
	path := strings.TrimPrefix(link, s.srv.URL)
	c := s.client()
	s.post(c, path, path, nil)

	for _, tc := range []struct {
		pw, confirm string
		status      int
	}{
		{"short", "short", http.StatusBadRequest},
		{"long enough password", "another long password", http.StatusBadRequest},
	} {
		p := s.post(c, "/account/password", "/account/password", url.Values{"password": {tc.pw}, "confirm": {tc.confirm}})
		if p.StatusCode != tc.status {
			t.Errorf("%q/%q: %d, want %d", tc.pw, tc.confirm, p.StatusCode, tc.status)
		}
	}
	p := s.post(c, "/account/password", "/account/password", url.Values{"password": {testPassword}, "confirm": {testPassword}, "next": {"/keys"}})
	if p.StatusCode != http.StatusSeeOther || p.Header.Get("Location") != "/keys" {
		t.Fatalf("set password: %d %q %s", p.StatusCode, p.Header.Get("Location"), p.Body)
	}
	// Still signed in (with a new session), and the flash says so once.
	if k := s.get(c, "/keys"); k.StatusCode != http.StatusOK || !strings.Contains(k.Body, "Password saved.") {
		t.Fatalf("after setting the password: %d %s", k.StatusCode, k.Body)
	}
	if k := s.get(c, "/keys"); strings.Contains(k.Body, "Password saved.") {
		t.Fatal("the flash showed twice")
	}
	s.signedIn("ada@example.com", testPassword)

	// Changing it again, from a password session, needs the current one.
	c = s.signedIn("ada@example.com", testPassword)
	newPW := "an even better password"
	if p := s.post(c, "/account/password", "/account/password", url.Values{"password": {newPW}, "confirm": {newPW}}); p.StatusCode != http.StatusUnauthorized {
		t.Fatalf("change without the current password: %d", p.StatusCode)
	}
	if p := s.post(c, "/account/password", "/account/password", url.Values{"current": {testPassword}, "password": {newPW}, "confirm": {newPW}}); p.StatusCode != http.StatusSeeOther {
		t.Fatalf("change with the current password: %d %s", p.StatusCode, p.Body)
	}
	s.signedIn("ada@example.com", newPW)
}

func TestSignOut(t *testing.T) {
	s := newTestSite(t)
	s.addUser("ada@example.com", testPassword, false)
	c := s.signedIn("ada@example.com", testPassword)
	if p := s.post(c, "/", "/signout", nil); p.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %d", p.StatusCode)
	}
	if p := s.get(c, "/keys"); p.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/keys after sign-out: %d", p.StatusCode)
	}
}
