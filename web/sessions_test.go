package web

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/data"
)

// countingStore counts the writes sessions make.
type countingStore struct {
	*data.Store
	touches, deletes atomic.Int64
}

func (c *countingStore) TouchSession(ctx context.Context, id string, lastSeen, idle time.Time) error {
	c.touches.Add(1)
	return c.Store.TouchSession(ctx, id, lastSeen, idle)
}

func (c *countingStore) DeleteSession(ctx context.Context, id string) error {
	c.deletes.Add(1)
	return c.Store.DeleteSession(ctx, id)
}

// sessionFixture is a Sessions over a counting store with one user, and a way to start a
// session and replay its cookie.
type sessionFixture struct {
	t        testing.TB
	store    *countingStore
	clock    *testClock
	sessions *Sessions
	user     data.User
}

func newSessionFixture(t testing.TB, idle, maxAge time.Duration) *sessionFixture {
	t.Helper()
	st := &countingStore{Store: openTestStore(t)}
	f := &sessionFixture{t: t, store: st, clock: newTestClock()}
	var err error
	f.sessions, err = NewSessions(SessionsConfig{Store: st, Secret: make([]byte, 32), IdleTimeout: idle, MaxAge: maxAge, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if f.user, err = st.CreateUser(context.Background(), data.User{Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	return f
}

// start signs the user in and returns the session cookie.
func (f *sessionFixture) start() *http.Cookie {
	f.t.Helper()
	w := httptest.NewRecorder()
	if _, err := f.sessions.Start(w, httptest.NewRequest("POST", "https://d/signin", nil), f.user, "password"); err != nil {
		f.t.Fatal(err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == SessionCookie {
			if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
				f.t.Fatalf("session cookie attributes: %+v", c)
			}
			return c
		}
	}
	f.t.Fatal("Start set no session cookie")
	return nil
}

func (f *sessionFixture) lookup(c *http.Cookie) (*data.Session, *data.User, error) {
	r := httptest.NewRequest("GET", "https://d/", nil)
	if c != nil {
		r.AddCookie(c)
	}
	return f.sessions.Lookup(r)
}

func TestLookup(t *testing.T) {
	f := newSessionFixture(t, 0, 0)
	c := f.start()
	sess, user, err := f.lookup(c)
	if err != nil {
		t.Fatal(err)
	}
	if user.ID != f.user.ID || sess.AuthMethod != "password" || sess.ID != tokenHash(c.Value) || sess.ID == c.Value {
		t.Fatalf("session %+v, user %+v", sess, user)
	}

	tampered := func(v string) *http.Cookie { return &http.Cookie{Name: SessionCookie, Value: v} }
	last := c.Value[42]
	flip := byte('A')
	if last == 'A' {
		flip = 'E'
	}
	// The cookie is random: its first character is 'x' one time in 64, and then putting an 'x'
	// there would change nothing.
	first := "x"
	if c.Value[0] == 'x' {
		first = "y"
	}
	for name, tc := range map[string]struct {
		cookie *http.Cookie
		want   error
	}{
		"no cookie":         {nil, ErrNoSession},
		"empty":             {tampered(""), ErrNoSession},
		"garbage":           {tampered("hello"), ErrBadSession},
		"one char changed":  {tampered(first + c.Value[1:]), ErrBadSession},
		"spare bits set":    {tampered(c.Value[:42] + string(last+1)), ErrBadSession},
		"last char changed": {tampered(c.Value[:42] + string(flip)), ErrBadSession},
		"too long":          {tampered(c.Value + "A"), ErrBadSession},
		"the stored ID":     {tampered(sess.ID), ErrBadSession},
	} {
		if _, _, err := f.lookup(tc.cookie); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func TestSessionExpiry(t *testing.T) {
	f := newSessionFixture(t, time.Hour, 3*time.Hour)

	// Idle: nothing for an hour.
	c := f.start()
	f.clock.Advance(time.Hour)
	if _, _, err := f.lookup(c); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("idle an hour: %v", err)
	}
	if _, _, err := f.lookup(c); !errors.Is(err, ErrBadSession) {
		t.Fatalf("an expired session is deleted, then unknown: %v", err)
	}

	// Busy: a request every 50 minutes keeps it alive, but not past MaxAge.
	c = f.start()
	for i := range 3 {
		f.clock.Advance(50 * time.Minute)
		if _, _, err := f.lookup(c); err != nil {
			t.Fatalf("request %d, 50 minutes after the previous: %v", i+1, err)
		}
	}
	f.clock.Advance(30 * time.Minute) // 3h after sign-in
	if _, _, err := f.lookup(c); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("past MaxAge: %v", err)
	}
}

// The hot path only reads: TouchSession runs at most once per touch interval
// (min(IdleTimeout/10, 5m)) however many requests come, and the in-memory last-seen time keeps
// a session alive between writes.
func TestLookupDoesNotWriteOnHotPath(t *testing.T) {
	f := newSessionFixture(t, 12*time.Hour, 0)
	c := f.start()
	for range 1000 {
		if _, _, err := f.lookup(c); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.store.touches.Load(); n != 0 {
		t.Fatalf("1000 requests at one instant wrote %d times, want 0", n)
	}

	// A request a second for an hour: 3600 lookups, at most one write per 5 minutes.
	for range 3600 {
		f.clock.Advance(time.Second)
		if _, _, err := f.lookup(c); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.store.touches.Load(); n < 10 || n > 12 {
		t.Fatalf("an hour of requests wrote %d times, want about 12", n)
	}
	stored, err := f.store.GetSession(context.Background(), tokenHash(c.Value))
	if err != nil {
		t.Fatal(err)
	}
	if lag := f.clock.Now().Add(12 * time.Hour).Sub(stored.IdleExpiresAt); lag < 0 || lag > 5*time.Minute {
		t.Fatalf("stored idle deadline lags by %v, want at most 5m", lag)
	}
	if f.store.deletes.Load() != 0 {
		t.Fatal("lookups deleted something")
	}
}

// Between writes, expiry counts the last request kept in memory, not the stored deadline.
func TestIdleExpiryUsesMemory(t *testing.T) {
	f := newSessionFixture(t, 10*time.Minute, 0) // writes when the deadline moves > 1m
	c := f.start()
	for range 7 { // a request every 40s: written at 80s, 160s and 240s, not at 280s
		f.clock.Advance(40 * time.Second)
		if _, _, err := f.lookup(c); err != nil {
			t.Fatal(err)
		}
	}
	last := f.clock.Now()
	stored, _ := f.store.GetSession(context.Background(), tokenHash(c.Value))
	if want := last.Add(-40 * time.Second).Add(10 * time.Minute); !stored.IdleExpiresAt.Equal(want) {
		t.Fatalf("stored idle deadline %v, want %v", stored.IdleExpiresAt, want)
	}
	f.clock.Advance(stored.IdleExpiresAt.Sub(last))
	if _, _, err := f.lookup(c); err != nil {
		t.Fatalf("at the stored deadline, before the remembered one: %v", err)
	}
	f.clock.Advance(10 * time.Minute)
	if _, _, err := f.lookup(c); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("10 minutes after the last request: %v", err)
	}
}

func TestDisabledUserSessionRefused(t *testing.T) {
	f := newSessionFixture(t, 0, 0)
	c := f.start()
	if _, err := f.store.UpdateUser(context.Background(), f.user.ID, func(u *data.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.lookup(c); !errors.Is(err, ErrUserDisabled) {
		t.Fatalf("disabled user's session: %v", err)
	}
}

func TestStartReplacesOldSession(t *testing.T) {
	f := newSessionFixture(t, 0, 0)
	old := f.start()
	w := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "https://d/signin", nil)
	r.AddCookie(old)
	if _, err := f.sessions.Start(w, r, f.user, "password"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.lookup(old); !errors.Is(err, ErrBadSession) {
		t.Fatalf("the browser's previous session survived a new sign-in: %v", err)
	}
}

func TestNewSessionsChecksConfig(t *testing.T) {
	st := openTestStore(t)
	if _, err := NewSessions(SessionsConfig{Store: st, Secret: make([]byte, 16)}); err == nil {
		t.Error("a 16-byte secret was accepted")
	}
	if _, err := NewSessions(SessionsConfig{Secret: make([]byte, 32)}); err == nil {
		t.Error("no store was accepted")
	}
}

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"/":                 "/",
		"/keys":             "/keys",
		"/link/ABCD-EFGH":   "/link/ABCD-EFGH",
		"/a?b=c&d=%2F%2Fe":  "/a?b=c&d=%2F%2Fe",
		"":                  "/",
		"//evil.com":        "/",
		"///evil.com":       "/",
		"/\\evil":           "/",
		"/a\\b":             "/",
		"https://evil":      "/",
		"http:/evil":        "/",
		"evil":              "/",
		"/\t/evil.com":      "/",
		"/\n/evil.com":      "/",
		"/%0a":              "/%0a",
		" /keys":            "/",
		"\x00/keys":         "/",
		"/keys\x7f":         "/",
		"/%2F%2Fevil.com":   "/%2F%2Fevil.com", // a path here, not a host
		"/@evil.com":        "/@evil.com",
		"/signin?next=//ev": "/signin?next=//ev",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

func TestRequireSession(t *testing.T) {
	s := newTestSite(t)
	c := s.client()
	// A browser navigating is sent to sign in, and back.
	p := s.do(c, "GET", "/keys?x=1", nil, "Accept", "text/html")
	if p.StatusCode != http.StatusSeeOther || p.Header.Get("Location") != "/signin?next="+url.QueryEscape("/keys?x=1") {
		t.Fatalf("browser: %d to %q", p.StatusCode, p.Header.Get("Location"))
	}
	// A program gets 401 JSON.
	p = s.do(c, "GET", "/keys", nil, "Accept", "application/json")
	if p.StatusCode != http.StatusUnauthorized || !strings.Contains(p.Body, "sign_in_required") {
		t.Fatalf("JSON client: %d %s", p.StatusCode, p.Body)
	}
	// A disabled user's browser is told so, rather than sent round the sign-in form.
	s.addUser("ada@example.com", testPassword, false)
	c = s.signedIn("ada@example.com", testPassword)
	u, _ := s.store.UserByEmail(context.Background(), "ada@example.com")
	s.store.UpdateUser(context.Background(), u.ID, func(u *data.User) error { u.Disabled = true; return nil })
	if p := s.do(c, "GET", "/keys", nil, "Accept", "text/html"); p.StatusCode != http.StatusForbidden || !strings.Contains(p.Body, "disabled") {
		t.Fatalf("disabled user: %d %s", p.StatusCode, p.Body)
	}
}

// A state-changing request without the right token is refused with 403 before anything
// happens.
func TestCSRF(t *testing.T) {
	s := newTestSite(t)
	u := s.addUser("ada@example.com", testPassword, false)
	before, _ := s.store.GetUser(context.Background(), u.ID)
	c := s.signedIn("ada@example.com", testPassword)
	good := s.csrf(c, "/account/password")
	other := s.csrf(s.signedIn("ada@example.com", testPassword), "/account/password")
	newPW := url.Values{"current": {testPassword}, "password": {"a brand new password"}, "confirm": {"a brand new password"}}

	for _, tc := range []struct {
		name   string
		token  string
		header []string
	}{
		{"missing", "", nil},
		{"wrong", "AAAA" + good[4:], nil},
		{"another session's", other, nil},
		{"the sign-in form's token, once signed in", s.preSessionToken(c), nil},
		{"cross-site", good, []string{"Sec-Fetch-Site", "cross-site"}},
		{"from a tunnel", good, []string{"Origin", "https://app.toolgate.localhost"}},
	} {
		form := url.Values{}
		for k, v := range newPW {
			form[k] = v
		}
		if tc.token != "" {
			form.Set("csrf", tc.token)
		}
		p := s.do(c, "POST", "/account/password", form, tc.header...)
		if p.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tc.name, p.StatusCode)
		}
	}
	after, _ := s.store.GetUser(context.Background(), u.ID)
	if after.PasswordHash != before.PasswordHash {
		t.Fatal("a refused request changed the password")
	}
	// The header form works too, and so does the right token.
	form := url.Values{}
	for k, v := range newPW {
		form[k] = v
	}
	if p := s.do(c, "POST", "/account/password", form, "X-CSRF-Token", good); p.StatusCode != http.StatusSeeOther {
		t.Fatalf("with X-CSRF-Token: %d %s", p.StatusCode, p.Body)
	}

	// Before sign-in, the form's token must match this browser's CSRF cookie.
	c1, c2 := s.client(), s.client()
	tok1 := s.csrf(c1, "/signin")
	s.csrf(c2, "/signin")
	login := url.Values{"email": {"ada@example.com"}, "password": {"a brand new password"}, "csrf": {tok1}}
	if p := s.do(c2, "POST", "/signin", login); p.StatusCode != http.StatusForbidden {
		t.Fatalf("another browser's sign-in token: %d", p.StatusCode)
	}
	if p := s.do(s.client(), "POST", "/signin", login); p.StatusCode != http.StatusForbidden {
		t.Fatalf("a browser without the CSRF cookie: %d", p.StatusCode)
	}
	if p := s.do(c1, "POST", "/signin", login); p.StatusCode != http.StatusSeeOther {
		t.Fatalf("the right browser: %d", p.StatusCode)
	}
}

// preSessionToken is the token c's sign-in form had, from c's CSRF cookie.
func (s *testSite) preSessionToken(c *http.Client) string {
	u, _ := url.Parse(s.srv.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == csrfCookie {
			return s.sessions.mac("login|", ck.Value)
		}
	}
	s.t.Fatal("no CSRF cookie")
	return ""
}

// BenchmarkLookup is the cost a signed-in page pays: a cookie, two bbolt reads, no write.
func BenchmarkLookup(b *testing.B) {
	f := newSessionFixture(b, 0, 0)
	c := f.start()
	r := httptest.NewRequest("GET", "https://d/", nil)
	r.AddCookie(c)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := f.sessions.Lookup(r); err != nil {
			b.Fatal(err)
		}
	}
	if n := f.store.touches.Load(); n != 0 {
		b.Fatalf("%d writes", n)
	}
}

// BenchmarkLoad is the session middleware as a page request pays for it, against the same
// request without a session cookie in the same run: the difference is the session lookup.
// Neither writes to the database (checked).
func BenchmarkLoad(b *testing.B) {
	f := newSessionFixture(b, 0, 0)
	c := f.start()
	h := f.sessions.Load(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, u := SessionFromContext(r.Context()); u == nil && r.Header.Get("Cookie") != "" {
			b.Fatal("signed-in request without a user")
		}
	}))
	for _, tc := range []struct {
		name   string
		cookie *http.Cookie
	}{{"anonymous", nil}, {"signed-in", c}} {
		b.Run(tc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "https://d/keys", nil)
			if tc.cookie != nil {
				r.AddCookie(tc.cookie)
			}
			w := httptest.NewRecorder()
			before := f.store.touches.Load()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, r)
			}
			if n := f.store.touches.Load() - before; n != 0 {
				b.Fatalf("%d writes", n)
			}
		})
	}
}
