package web

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toolgate/toolgate/data"
)

// testClock is a clock tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeCloser records CloseKey calls and claims one connection per call.
type fakeCloser struct {
	mu     sync.Mutex
	closed []string
}

func (f *fakeCloser) CloseKey(fp, _ string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = append(f.closed, fp)
	return 1
}

func (f *fakeCloser) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.closed...)
}

// testSite is an apex with every feature on, over TLS, on a fresh database.
type testSite struct {
	t        *testing.T
	store    *data.Store
	clock    *testClock
	accounts *Accounts
	sessions *Sessions
	links    *KeyLinks
	closer   *fakeCloser
	srv      *httptest.Server
}

func openTestStore(t testing.TB) *data.Store {
	t.Helper()
	st, err := data.Open(data.Config{Path: filepath.Join(t.TempDir(), "toolgate.db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newTestSite(t *testing.T) *testSite {
	t.Helper()
	s := &testSite{t: t, store: openTestStore(t), clock: newTestClock(), closer: &fakeCloser{}}
	var h http.Handler
	s.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(s.srv.Close)
	var err error
	if s.accounts, err = NewAccounts(AccountsConfig{Store: s.store, BaseURL: s.srv.URL, Now: s.clock.Now}); err != nil {
		t.Fatal(err)
	}
	secret, err := LoadSessionSecret(context.Background(), s.store)
	if err != nil {
		t.Fatal(err)
	}
	if s.sessions, err = NewSessions(SessionsConfig{Store: s.store, Secret: secret, Now: s.clock.Now}); err != nil {
		t.Fatal(err)
	}
	if s.links, err = NewKeyLinks(KeyLinksConfig{Store: s.store, BaseURL: s.srv.URL, Now: s.clock.Now}); err != nil {
		t.Fatal(err)
	}
	h = NewApex(ApexConfig{Domain: "toolgate.localhost", SSHCommand: "ssh -p 2222 -R 0:localhost:3000 toolgate.localhost",
		Accounts: s.accounts, Sessions: s.sessions, Links: s.links, KeyCloser: s.closer})
	return s
}

// client is a browser: its own cookie jar, redirects not followed so tests see them.
func (s *testSite) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := *s.srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// addUser creates a user, with a password unless pw is "".
func (s *testSite) addUser(email, pw string, admin bool) data.User {
	s.t.Helper()
	ctx := context.Background()
	u, err := s.accounts.AddUser(ctx, email, "", admin)
	if err != nil {
		s.t.Fatal(err)
	}
	if pw != "" {
		if u, err = s.accounts.SetPassword(ctx, email, pw); err != nil {
			s.t.Fatal(err)
		}
	}
	return u
}

// signedIn returns a client signed in as email.
func (s *testSite) signedIn(email, pw string) *http.Client {
	s.t.Helper()
	c := s.client()
	resp := s.signIn(c, email, pw, "")
	if resp.StatusCode != http.StatusSeeOther {
		s.t.Fatalf("sign in as %s: %d %s", email, resp.StatusCode, resp.Body)
	}
	return c
}

type response struct {
	StatusCode int
	Header     http.Header
	Body       string
}

func (s *testSite) do(c *http.Client, method, path string, form url.Values, header ...string) response {
	s.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, s.srv.URL+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, string(b)}
}

func (s *testSite) get(c *http.Client, path string) response { return s.do(c, "GET", path, nil) }

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf fetches path and returns the CSRF token of its forms.
func (s *testSite) csrf(c *http.Client, path string) string {
	s.t.Helper()
	p := s.get(c, path)
	m := csrfField.FindStringSubmatch(p.Body)
	if m == nil {
		s.t.Fatalf("GET %s: %d, no csrf field in %s", path, p.StatusCode, p.Body)
	}
	return m[1]
}

// post sends a form with the CSRF token of the page at from.
func (s *testSite) post(c *http.Client, from, path string, form url.Values) response {
	s.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", s.csrf(c, from))
	return s.do(c, "POST", path, form)
}

func (s *testSite) signIn(c *http.Client, email, pw, next string) response {
	s.t.Helper()
	return s.post(c, "/signin", "/signin", url.Values{"email": {email}, "password": {pw}, "next": {next}})
}

func TestSecurityHeaders(t *testing.T) {
	s := newTestSite(t)
	for _, path := range []string{"/", "/signin", "/nope"} {
		p := s.get(s.client(), path)
		for k, want := range map[string]string{
			"Cache-Control":          "no-store",
			"X-Frame-Options":        "DENY",
			"Referrer-Policy":        "same-origin",
			"X-Content-Type-Options": "nosniff",
		} {
			if got := p.Header.Get(k); got != want {
				t.Errorf("GET %s: %s = %q, want %q", path, k, got, want)
			}
		}
		if csp := p.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
	}
}

func TestHomeShowsWhoIsSignedIn(t *testing.T) {
	s := newTestSite(t)
	s.addUser("ada@example.com", "correct horse battery", false)
	out := s.get(s.client(), "/")
	if !strings.Contains(out.Body, `href="/signin"`) || strings.Contains(out.Body, "Signed in as") {
		t.Errorf("signed-out home page:\n%s", out.Body)
	}
	in := s.get(s.signedIn("ada@example.com", "correct horse battery"), "/")
	for _, want := range []string{"Signed in as <strong>ada@example.com</strong>", `href="/keys"`, `action="/signout"`, "ssh -p 2222"} {
		if !strings.Contains(in.Body, want) {
			t.Errorf("signed-in home page lacks %q:\n%s", want, in.Body)
		}
	}
}

// Without Sessions the apex is the home page alone, as before accounts existed.
func TestApexWithoutSessions(t *testing.T) {
	srv := httptest.NewServer(NewApex(ApexConfig{Domain: "d.example", SSHCommand: "ssh d.example"}))
	defer srv.Close()
	for path, want := range map[string]int{"/": 200, "/signin": 404, "/keys": 404} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}
