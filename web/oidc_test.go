package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/data"
)

// TestOIDCSignIn: the first sign-in creates the user, later ones find them by subject and
// refresh name, email and groups; the session records "oidc"; a replayed callback fails.
func TestOIDCSignIn(t *testing.T) {
	s := newOIDCSite(t, testIdPKey(t), true, nil)
	alice := &idpUser{sub: "alice-1", email: "Alice@Example.com", name: "Alice Liddell", verified: true, groups: []string{"eng", "admins", "eng", " "}}

	f := s.begin(nil, alice, "/keys?tab=all")
	for k, want := range map[string]string{"code_challenge_method": "S256", "response_type": "code", "client_id": s.idp.ClientID,
		"redirect_uri": s.srv.URL + OIDCCallbackPath, "scope": "openid email profile"} {
		if got := f.auth.Query().Get(k); got != want {
			t.Errorf("authorization URL %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if len(f.auth.Query().Get(k)) < 43 {
			t.Errorf("authorization URL %s = %q, want 256 random bits", k, f.auth.Query().Get(k))
		}
	}
	p := f.authorize().finish()
	if p.StatusCode != http.StatusSeeOther || p.Header.Get("Location") != "/keys?tab=all" || !sessionCookieSet(p) {
		t.Fatalf("callback: %d Location %q cookies %q\n%s", p.StatusCode, p.Header.Get("Location"), p.Header.Values("Set-Cookie"), p.Body)
	}
	u := s.user("alice@example.com")
	issuer := s.idp.Issuer()
	if u.Subject != issuer+"|alice-1" || u.Name != "Alice Liddell" || strings.Join(u.Groups, ",") != "admins,eng" || u.LastSignIn.IsZero() || u.Admin {
		t.Errorf("created user: %+v", u)
	}
	if sess := s.sessionsOf(u); len(sess) != 1 || sess[0].AuthMethod != "oidc" {
		t.Errorf("sessions: %+v, want one with AuthMethod oidc", sess)
	}
	if home := s.get(f.c, "/"); !strings.Contains(home.Body, "Signed in as <strong>alice@example.com</strong>") {
		t.Errorf("home page after sign-in:\n%s", home.Body)
	}
	s.checkLogs(flowSecrets(f)...)

	// The same callback again, even with the browser's cookie, finds no pending sign-in.
	binding := ""
	for _, c := range f.c.Jar.Cookies(f.callback) {
		if c.Name == oidcCookie {
			binding = c.Value
		}
	}
	if binding != "" {
		t.Errorf("the binding cookie outlived the sign-in")
	}
	g := s.begin(nil, &idpUser{sub: "alice-1", email: "alice@example.com", verified: true}, "/").authorize()
	for _, c := range g.c.Jar.Cookies(g.callback) {
		if c.Name == oidcCookie {
			binding = c.Value
		}
	}
	if p := g.finish(); p.StatusCode != http.StatusSeeOther {
		t.Fatalf("second sign-in: %d %s", p.StatusCode, p.Body)
	}
	before := s.snapshot()
	replay := s.fetch(s.client(), g.callback.String(), "Cookie", oidcCookie+"="+binding)
	if replay.StatusCode != http.StatusBadRequest || !strings.Contains(replay.Body, "used already") || sessionCookieSet(replay) {
		t.Errorf("replayed callback: %d %s", replay.StatusCode, replay.Body)
	}
	if after := s.snapshot(); after != before {
		t.Errorf("the replay wrote:\n%s\nwas:\n%s", after, before)
	}

	// Later sign-ins: same user by subject, name and groups refreshed, an absent groups claim
	// is no groups, and a changed email follows the provider.
	for _, tc := range []struct {
		idp        idpUser
		email      string
		name       string
		wantGroups string
	}{
		{idpUser{email: "alice@example.com", name: "Alice L.", groups: []string{"ops"}}, "alice@example.com", "Alice L.", "ops"},
		{idpUser{email: "alice@example.com", groups: "solo"}, "alice@example.com", "Alice L.", "solo"},
		{idpUser{email: "alice@example.com"}, "alice@example.com", "Alice L.", ""},
		{idpUser{email: "alice.liddell@example.com", verified: "true", groups: []string{}}, "alice.liddell@example.com", "Alice L.", ""},
	} {
		tc.idp.sub = "alice-1"
		if _, p := s.signIn(&tc.idp, "/"); p.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign-in as %+v: %d %s", tc.idp, p.StatusCode, p.Body)
		}
		got := s.user(tc.email)
		if got.ID != u.ID || got.Name != tc.name || strings.Join(got.Groups, ",") != tc.wantGroups {
			t.Errorf("after sign-in as %+v: %+v", tc.idp, got)
		}
	}
	if n, _ := s.store.CountUsers(context.Background()); n != 1 {
		t.Errorf("%d users, want 1", n)
	}
	s.checkLogs(flowSecrets(g)...)
}

// TestOIDCUsers: pre-provisioned users get their subject attached; ProvisionedOnly admits only
// them; disabled users and identity conflicts are refused without writing anything.
func TestOIDCUsers(t *testing.T) {
	key := testIdPKey(t)
	ctx := context.Background()

	t.Run("pre-provisioned", func(t *testing.T) {
		s := newOIDCSite(t, key, true, nil)
		bob := s.addUser("bob@example.com", testPassword, false)
		if _, p := s.signIn(&idpUser{sub: "bob-1", email: "BOB@example.com", name: "Bob", verified: true, groups: []string{"ops"}}, "/"); p.StatusCode != http.StatusSeeOther {
			t.Fatalf("%d %s", p.StatusCode, p.Body)
		}
		got := s.user("bob@example.com")
		if got.ID != bob.ID || got.Subject != s.idp.Issuer()+"|bob-1" || got.Name != "Bob" || strings.Join(got.Groups, ",") != "ops" || got.PasswordHash == "" {
			t.Errorf("pre-provisioned user after sign-in: %+v", got)
		}
	})

	t.Run("provisioned only", func(t *testing.T) {
		s := newOIDCSite(t, key, true, func(c *OIDCConfig) { c.ProvisionedOnly = true })
		s.addUser("bob@example.com", "", false)
		before := s.snapshot()
		_, p := s.signIn(&idpUser{sub: "eve-1", email: "eve@example.com", verified: true}, "/")
		if p.StatusCode != http.StatusForbidden || !strings.Contains(p.Body, "no toolgate account for eve@example.com") || sessionCookieSet(p) {
			t.Errorf("unknown user: %d %s", p.StatusCode, p.Body)
		}
		if after := s.snapshot(); after != before {
			t.Errorf("refusal wrote:\n%s", after)
		}
		if _, p := s.signIn(&idpUser{sub: "bob-1", email: "bob@example.com"}, "/"); p.StatusCode != http.StatusSeeOther {
			t.Errorf("pre-provisioned user: %d %s", p.StatusCode, p.Body)
		}
		// Known by subject now, so a changed email still signs in.
		if _, p := s.signIn(&idpUser{sub: "bob-1", email: "robert@example.com"}, "/"); p.StatusCode != http.StatusSeeOther {
			t.Errorf("provisioned user with a new email: %d %s", p.StatusCode, p.Body)
		}
	})

	for _, tc := range []struct {
		name   string
		setup  func(s *oidcSite)
		user   idpUser
		status int
		body   string
	}{
		{"disabled, pre-provisioned", func(s *oidcSite) {
			s.addUser("carol@example.com", "", false)
			s.accounts.Disable(ctx, "carol@example.com")
		}, idpUser{sub: "carol-1", email: "carol@example.com"}, http.StatusForbidden, "This account is disabled."},
		{"disabled, known by subject", func(s *oidcSite) {
			if _, p := s.signIn(&idpUser{sub: "carol-1", email: "carol@example.com"}, "/"); p.StatusCode != http.StatusSeeOther {
				s.t.Fatalf("first sign-in: %d", p.StatusCode)
			}
			s.accounts.Disable(ctx, "carol@example.com")
		}, idpUser{sub: "carol-1", email: "carol@example.com", groups: []string{"new"}}, http.StatusForbidden, "This account is disabled."},
		{"email belongs to another identity", func(s *oidcSite) {
			s.store.CreateUser(ctx, data.User{Email: "carol@example.com", Subject: "https://other.example|carol"})
		}, idpUser{sub: "carol-1", email: "carol@example.com"}, http.StatusForbidden, "belongs to a different Example IdP identity"},
		{"new email taken by another user", func(s *oidcSite) {
			s.signIn(&idpUser{sub: "carol-1", email: "carol@example.com"}, "/")
			s.addUser("dave@example.com", "", false)
		}, idpUser{sub: "carol-1", email: "dave@example.com"}, http.StatusForbidden, "Another toolgate account already uses dave@example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newOIDCSite(t, key, true, nil)
			tc.setup(s)
			before := s.snapshot()
			_, p := s.signIn(&tc.user, "/")
			if p.StatusCode != tc.status || !strings.Contains(p.Body, tc.body) || sessionCookieSet(p) {
				t.Errorf("got %d %s, want %d with %q", p.StatusCode, p.Body, tc.status, tc.body)
			}
			if after := s.snapshot(); after != before {
				t.Errorf("refusal wrote:\n%s\nwas:\n%s", after, before)
			}
		})
	}
}

// TestOIDCRefusals: every refused sign-in shows a clear message with a fitting status, logs no
// secret, and writes nothing (no user created or changed, no session).
func TestOIDCRefusals(t *testing.T) {
	key := testIdPKey(t)
	ok := idpUser{sub: "frank-1", email: "frank@example.com", verified: true}
	for _, tc := range []struct {
		name   string
		mod    func(*OIDCConfig)
		user   idpUser
		tamper func(s *oidcSite, f *flow) response // nil: the flow as it is
		status int
		body   string
	}{
		{name: "domain not allowed", mod: func(c *OIDCConfig) { c.AllowedDomains = []string{"Corp.example", "@example.org"} },
			user: ok, status: http.StatusForbidden, body: "Accounts at example.com cannot sign in"},
		{name: "subdomain not allowed", mod: func(c *OIDCConfig) { c.AllowedDomains = []string{"example.com"} },
			user: idpUser{sub: "x", email: "x@eng.example.com"}, status: http.StatusForbidden, body: "Accounts at eng.example.com"},
		{name: "email not verified", user: idpUser{sub: "x", email: "x@example.com", verified: false},
			status: http.StatusForbidden, body: "is not verified"},
		{name: "email not verified (string)", user: idpUser{sub: "x", email: "x@example.com", verified: "false"},
			status: http.StatusForbidden, body: "is not verified"},
		{name: "no email", user: idpUser{sub: "x"}, status: http.StatusForbidden, body: "did not share your email address"},
		{name: "malformed groups claim", user: idpUser{sub: "x", email: "x@example.com", groups: 42},
			status: http.StatusBadGateway, body: "groups Example IdP sent could not be read"},
		{name: "wrong state", user: ok, status: http.StatusBadRequest, body: "does not belong to a sign-in started in this browser",
			tamper: func(s *oidcSite, f *flow) response {
				q := f.authorize().callback.Query()
				q.Set("state", newToken())
				f.callback.RawQuery = q.Encode()
				return f.finish()
			}},
		{name: "callback in another browser", user: ok, status: http.StatusBadRequest, body: "does not belong to a sign-in started in this browser",
			tamper: func(s *oidcSite, f *flow) response { return s.fetch(s.client(), f.authorize().callback.String()) }},
		{name: "wrong code", user: ok, status: http.StatusBadRequest, body: "refused the sign-in code",
			tamper: func(s *oidcSite, f *flow) response {
				q := f.authorize().callback.Query()
				q.Set("code", "not-a-code")
				f.callback.RawQuery = q.Encode()
				return f.finish()
			}},
		{name: "wrong nonce", user: ok, status: http.StatusBadRequest, body: "issued for a different sign-in attempt",
			tamper: func(s *oidcSite, f *flow) response {
				// The browser reaches the provider with toolgate's state and PKCE challenge but
				// another nonce, so the ID token carries that nonce.
				q := f.auth.Query()
				q.Set("nonce", newToken())
				f.auth.RawQuery = q.Encode()
				return f.authorize().finish()
			}},
		{name: "code expired at the provider", user: ok, status: http.StatusBadRequest, body: "it expired or was used already",
			tamper: func(s *oidcSite, f *flow) response {
				f.authorize()
				s.idp.FastForward(idpCodeTTL + time.Second)
				return f.finish()
			}},
		{name: "pending sign-in expired", user: ok, status: http.StatusBadRequest, body: "More than 10 minutes passed",
			tamper: func(s *oidcSite, f *flow) response {
				f.authorize()
				s.clock.Advance(oidcPendingTTL)
				return f.finish()
			}},
		{name: "ID token expired", user: ok, status: http.StatusBadRequest, body: "has already expired",
			tamper: func(s *oidcSite, f *flow) response {
				f.authorize()
				s.idp.FastForward(-time.Hour) // the provider's clock is an hour behind
				return f.finish()
			}},
		{name: "provider refused, description shown", user: ok, status: http.StatusForbidden, body: "access was denied or the sign-in was cancelled. Example IdP said: User is not assigned",
			tamper: func(s *oidcSite, f *flow) response {
				u := s.srv.URL + OIDCCallbackPath + "?" + url.Values{"error": {"access_denied"}, "state": {f.auth.Query().Get("state")},
					"error_description": {"User is not assigned to this application"}}.Encode()
				return s.fetch(f.c, u)
			}},
		{name: "forged provider error, description hidden", user: ok, status: http.StatusBadGateway, body: "could not sign you in (invalid).",
			tamper: func(s *oidcSite, f *flow) response {
				u := s.srv.URL + OIDCCallbackPath + "?" + url.Values{"error": {"<b>x</b>"}, "state": {"forged"},
					"error_description": {"Call +1 555 0100 to unlock your account"}}.Encode()
				p := s.fetch(f.c, u)
				if strings.Contains(p.Body, "555") {
					s.t.Errorf("forged description shown: %s", p.Body)
				}
				return p
			}},
		{name: "no code", user: ok, status: http.StatusBadRequest, body: "without a sign-in code",
			tamper: func(s *oidcSite, f *flow) response {
				q := f.authorize().callback.Query()
				q.Del("code")
				f.callback.RawQuery = q.Encode()
				return f.finish()
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newOIDCSite(t, key, true, tc.mod)
			s.addUser("grace@example.com", testPassword, false)
			before := s.snapshot()
			f := s.begin(nil, &tc.user, "/keys")
			var p response
			if tc.tamper != nil {
				p = tc.tamper(s, f)
			} else {
				p = f.authorize().finish()
			}
			if p.StatusCode != tc.status || !strings.Contains(p.Body, tc.body) {
				t.Errorf("got %d, want %d with %q:\n%s", p.StatusCode, tc.status, tc.body, p.Body)
			}
			if sessionCookieSet(p) {
				t.Error("a refused sign-in set a session cookie")
			}
			if after := s.snapshot(); after != before {
				t.Errorf("refusal wrote:\n%s\nwas:\n%s", after, before)
			}
			if !strings.Contains(s.logs.String(), "oidc sign-in refused") {
				t.Errorf("no log line for the refusal:\n%s", s.logs.String())
			}
			s.checkLogs(flowSecrets(f)...)
		})
	}
}

// TestOIDCNext: the page to return to must be on this site.
func TestOIDCNext(t *testing.T) {
	s := newOIDCSite(t, testIdPKey(t), true, nil)
	for next, want := range map[string]string{
		"https://evil.example/": "/", "//evil.example": "/", "/\\evil.example": "/", "": "/", "/keys": "/keys",
	} {
		_, p := s.signIn(&idpUser{sub: "h-1", email: "h@example.com"}, next)
		if p.StatusCode != http.StatusSeeOther || p.Header.Get("Location") != want {
			t.Errorf("next %q: %d to %q, want %q", next, p.StatusCode, p.Header.Get("Location"), want)
		}
	}
}

// TestOIDCSigninPage: the provider's link on /signin, beside the password form or alone.
func TestOIDCSigninPage(t *testing.T) {
	key := testIdPKey(t)
	both := newOIDCSite(t, key, true, nil)
	p := both.get(both.client(), "/signin?next=/keys%3Fa%3Db")
	for _, want := range []string{`href="/signin/oidc?next=%2fkeys%3fa%3db"`, "Sign in with Example IdP", `action="/signin"`} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("/signin lacks %q:\n%s", want, p.Body)
		}
	}
	only := newOIDCSite(t, key, false, func(c *OIDCConfig) { c.DisplayName = "" })
	p = only.get(only.client(), "/signin")
	if p.StatusCode != http.StatusOK || !strings.Contains(p.Body, "Sign in with 127.0.0.1") || strings.Contains(p.Body, `type="password"`) {
		t.Errorf("/signin with OIDC only: %d\n%s", p.StatusCode, p.Body)
	}
	if home := only.get(only.client(), "/"); !strings.Contains(home.Body, `href="/signin"`) {
		t.Errorf("home page has no sign-in link:\n%s", home.Body)
	}
	// Local-account pages stay off without accounts.
	if p := only.do(only.client(), "POST", "/signin", url.Values{}); p.StatusCode != http.StatusForbidden && p.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /signin without accounts: %d", p.StatusCode)
	}
}

// TestNewOIDC: configuration errors, and a discovery failure that names the issuer.
func TestNewOIDC(t *testing.T) {
	idp := startIdP(t, testIdPKey(t))
	st := openTestStore(t)
	good := OIDCConfig{Issuer: idp.Issuer(), ClientID: "c", ClientSecret: "s3cret-value-xyz", RedirectURL: "https://d.example" + OIDCCallbackPath, Store: st}
	o, err := NewOIDC(context.Background(), good)
	if err != nil {
		t.Fatal(err)
	}
	if o.Name() != "127.0.0.1" || strings.Join(o.oauth.Scopes, " ") != "openid email profile" || o.groups != "groups" {
		t.Errorf("defaults: name %q scopes %q groups %q", o.Name(), o.oauth.Scopes, o.groups)
	}
	c := good
	c.Scopes, c.GroupsClaim = []string{"email", "groups"}, NoGroupsClaim
	if o, err = NewOIDC(context.Background(), c); err != nil || strings.Join(o.oauth.Scopes, " ") != "openid email groups" || o.groups != "" {
		t.Errorf("scopes %q groups %q err %v", o.oauth.Scopes, o.groups, err)
	}

	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	for name, tc := range map[string]struct {
		mod  func(*OIDCConfig)
		want string
	}{
		"no store":          {func(c *OIDCConfig) { c.Store = nil }, "Store"},
		"no client id":      {func(c *OIDCConfig) { c.ClientID = "" }, "ClientID"},
		"no secret":         {func(c *OIDCConfig) { c.ClientSecret = "" }, "ClientSecret"},
		"http issuer":       {func(c *OIDCConfig) { c.Issuer = "http://idp.example" }, "Issuer"},
		"issuer with query": {func(c *OIDCConfig) { c.Issuer = "https://idp.example/?a=b" }, "Issuer"},
		"redirect path":     {func(c *OIDCConfig) { c.RedirectURL = "https://d.example/callback" }, "RedirectURL"},
		"redirect http":     {func(c *OIDCConfig) { c.RedirectURL = "http://d.example" + OIDCCallbackPath }, "RedirectURL"},
		"bad domain":        {func(c *OIDCConfig) { c.AllowedDomains = []string{"a b"} }, "AllowedDomains"},
		"discovery fails":   {func(c *OIDCConfig) { c.Issuer = dead.URL + "/oidc" }, "discovery for issuer " + dead.URL + "/oidc"},
		"issuer mismatch":   {func(c *OIDCConfig) { c.Issuer = idp.Issuer() + "/" }, "did not match"},
	} {
		c := good
		tc.mod(&c)
		if _, err := NewOIDC(context.Background(), c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", name, err, tc.want)
		} else if strings.Contains(err.Error(), c.ClientSecret) && c.ClientSecret != "" {
			t.Errorf("%s: error holds the secret: %v", name, err)
		}
	}
}

// TestOIDCPendingBounds: pending sign-ins are bounded per client network and in all; the
// oldest give way.
func TestOIDCPendingBounds(t *testing.T) {
	s := newOIDCSite(t, testIdPKey(t), true, nil)
	o := s.oidc
	stateOf := func(authURL string) string {
		u, _ := url.Parse(authURL)
		return u.Query().Get("state")
	}
	first := stateOf(o.begin("b", "/", "net-a"))
	for range oidcMaxPendingNet {
		s.clock.Advance(time.Millisecond)
		o.begin("b", "/", "net-a")
	}
	o.mu.Lock()
	_, kept := o.pending[first]
	n, perNet := len(o.pending), o.perNet["net-a"]
	o.mu.Unlock()
	if kept || n != oidcMaxPendingNet || perNet != oidcMaxPendingNet {
		t.Errorf("after %d from one network: oldest kept %v, %d pending (%d for the network)", oidcMaxPendingNet+1, kept, n, perNet)
	}
	for i := range oidcMaxPending {
		o.begin("b", "/", fmt.Sprint("net-", i))
	}
	o.mu.Lock()
	n = len(o.pending)
	o.mu.Unlock()
	if n != oidcMaxPending {
		t.Errorf("%d pending, want the bound %d", n, oidcMaxPending)
	}
	if _, ok := o.take(first); ok {
		t.Error("a dropped sign-in could still be taken")
	}
}
