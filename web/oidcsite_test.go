package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/toolgate/toolgate/data"
)

// idpUser is a person at the test provider. Unlike mockoidc.MockUser it can send a name, an
// email_verified of any JSON value (nil: absent) and a groups claim of any shape.
type idpUser struct {
	sub, email, name string
	verified         any // nil: no email_verified claim
	groups           any // nil: no groups claim
}

func (u *idpUser) ID() string { return u.sub }

func (u *idpUser) Userinfo([]string) ([]byte, error) {
	return json.Marshal(map[string]string{"sub": u.sub, "email": u.email})
}

type idpClaims struct {
	*mockoidc.IDTokenClaims
	Email         string `json:"email,omitempty"`
	EmailVerified any    `json:"email_verified,omitempty"`
	Name          string `json:"name,omitempty"`
	Groups        any    `json:"groups,omitempty"`
}

func (u *idpUser) Claims(_ []string, base *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	return &idpClaims{IDTokenClaims: base, Email: u.email, EmailVerified: u.verified, Name: u.name, Groups: u.groups}, nil
}

// syncBuffer collects log output written from server goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// idpCodeTTL is how long the test provider's codes live; mockoidc itself never expires them.
const idpCodeTTL = time.Minute

// startIdP runs a mockoidc provider on loopback. A middleware gives its codes a lifetime on
// its own clock (m.FastForward moves it), as real providers do.
func startIdP(t *testing.T, key *rsa.PrivateKey) *mockoidc.MockOIDC {
	t.Helper()
	m, err := mockoidc.NewServer(key)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	issued := map[string]time.Time{}
	m.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == mockoidc.TokenEndpoint {
				r.ParseForm()
				mu.Lock()
				at, ok := issued[r.PostForm.Get("code")]
				mu.Unlock()
				if ok && m.Now().Sub(at) > idpCodeTTL {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusBadRequest)
					io.WriteString(w, `{"error":"invalid_grant","error_description":"authorization code expired"}`)
					return
				}
			}
			next.ServeHTTP(w, r)
			if r.URL.Path == mockoidc.AuthorizationEndpoint {
				if u, err := url.Parse(w.Header().Get("Location")); err == nil && u.Query().Get("code") != "" {
					mu.Lock()
					issued[u.Query().Get("code")] = m.Now()
					mu.Unlock()
				}
			}
		})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

func testIdPKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// oidcSite is an apex with sessions, local accounts and OIDC sign-in at a mockoidc provider.
type oidcSite struct {
	*testSite
	idp  *mockoidc.MockOIDC
	oidc *OIDC
	logs *syncBuffer
}

// newOIDCSite starts a provider and an apex using it; mod adjusts the OIDC configuration.
// Without accounts, the apex has OIDC as its only sign-in.
func newOIDCSite(t *testing.T, key *rsa.PrivateKey, accounts bool, mod func(*OIDCConfig)) *oidcSite {
	t.Helper()
	// The clock starts at the real time: the provider stamps its tokens with it.
	s := &oidcSite{testSite: &testSite{t: t, store: openTestStore(t), clock: &testClock{t: time.Now()}}, logs: &syncBuffer{}}
	s.idp = startIdP(t, key)
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
	cfg := OIDCConfig{
		Issuer: s.idp.Issuer(), ClientID: s.idp.ClientID, ClientSecret: s.idp.ClientSecret,
		RedirectURL: s.srv.URL + OIDCCallbackPath, DisplayName: "Example IdP",
		Store: s.store, Now: s.clock.Now, Logger: slog.New(slog.NewTextHandler(s.logs, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	if s.oidc, err = NewOIDC(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	ac := ApexConfig{Domain: "toolgate.localhost", Sessions: s.sessions, OIDC: s.oidc}
	if accounts {
		ac.Accounts = s.accounts
	}
	h = NewApex(ac)
	return s
}

// flow is one browser's trip through an OIDC sign-in, stopped at every hop so that tests can
// tamper with it.
type flow struct {
	s        *oidcSite
	c        *http.Client
	auth     *url.URL // the provider's authorization URL toolgate sent the browser to
	callback *url.URL // where the provider sent the browser back
}

// fetch GETs an absolute URL with c, not following redirects.
func (s *oidcSite) fetch(c *http.Client, u string, header ...string) response {
	s.t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		s.t.Fatal(err)
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

// begin starts a sign-in in browser c (a new one if nil) as user, who the provider will say
// signed in.
func (s *oidcSite) begin(c *http.Client, user *idpUser, next string) *flow {
	s.t.Helper()
	if c == nil {
		c = s.client()
	}
	s.idp.QueueUser(user)
	p := s.get(c, "/signin/oidc?next="+url.QueryEscape(next))
	if p.StatusCode != http.StatusFound {
		s.t.Fatalf("GET /signin/oidc: %d %s", p.StatusCode, p.Body)
	}
	u, err := url.Parse(p.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(u.String(), s.idp.AuthorizationEndpoint()+"?") {
		s.t.Fatalf("GET /signin/oidc sent the browser to %q", p.Header.Get("Location"))
	}
	return &flow{s: s, c: c, auth: u}
}

// authorize visits the provider, which signs the queued user in and redirects back.
func (f *flow) authorize() *flow {
	f.s.t.Helper()
	p := f.s.fetch(f.c, f.auth.String())
	u, err := url.Parse(p.Header.Get("Location"))
	if p.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(u.String(), f.s.srv.URL+OIDCCallbackPath+"?") {
		f.s.t.Fatalf("provider answered %d, Location %q: %s", p.StatusCode, p.Header.Get("Location"), p.Body)
	}
	f.callback = u
	return f
}

// finish follows the provider's redirect back to toolgate.
func (f *flow) finish() response {
	f.s.t.Helper()
	return f.s.fetch(f.c, f.callback.String())
}

// signIn is the whole trip in a new browser; it returns the browser and the callback's answer.
func (s *oidcSite) signIn(user *idpUser, next string) (*http.Client, response) {
	s.t.Helper()
	f := s.begin(nil, user, next).authorize()
	return f.c, f.finish()
}

// snapshot renders every user and their sessions, to show that a refusal wrote nothing.
func (s *oidcSite) snapshot() string {
	s.t.Helper()
	ctx := context.Background()
	users, err := s.store.ListUsers(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	var b strings.Builder
	for _, u := range users {
		sess, err := s.store.SessionsByUser(ctx, u.ID)
		if err != nil {
			s.t.Fatal(err)
		}
		fmt.Fprintf(&b, "%+v sessions=%d\n", u, len(sess))
	}
	return b.String()
}

func (s *oidcSite) user(email string) data.User {
	s.t.Helper()
	u, err := s.store.UserByEmail(context.Background(), email)
	if err != nil {
		s.t.Fatalf("user %s: %v", email, err)
	}
	return u
}

func (s *oidcSite) sessionsOf(u data.User) []data.Session {
	s.t.Helper()
	sess, err := s.store.SessionsByUser(context.Background(), u.ID)
	if err != nil {
		s.t.Fatal(err)
	}
	return sess
}

// checkLogs fails if the log holds any of the secrets.
func (s *oidcSite) checkLogs(secrets ...string) {
	s.t.Helper()
	logs := s.logs.String()
	for _, v := range append(secrets, s.idp.ClientSecret) {
		if v != "" && strings.Contains(logs, v) {
			s.t.Errorf("the log holds a secret %q:\n%s", v, logs)
		}
	}
}

// flowSecrets are the values of a flow that must never be logged.
func flowSecrets(f *flow) []string {
	out := []string{f.auth.Query().Get("state"), f.auth.Query().Get("nonce"), f.auth.Query().Get("code_challenge")}
	if f.callback != nil {
		out = append(out, f.callback.Query().Get("code"))
	}
	return out
}

func sessionCookieSet(p response) bool {
	for _, c := range p.Header.Values("Set-Cookie") {
		if strings.HasPrefix(c, SessionCookie+"=") && !strings.Contains(c, "Max-Age=0") {
			return true
		}
	}
	return false
}
