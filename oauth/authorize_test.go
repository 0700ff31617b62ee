package oauth_test

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/oauth"
)

// authorizeErrorOf asserts that err is an *AuthorizeError.
func authorizeErrorOf(t testing.TB, err error) *oauth.AuthorizeError {
	t.Helper()
	var ae *oauth.AuthorizeError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T), want *oauth.AuthorizeError", err, err)
	}
	return ae
}

// errorRedirect writes a redirectable error and returns where it sends the browser.
func (f *fixture) errorRedirect(t testing.TB, ae *oauth.AuthorizeError) *url.URL {
	t.Helper()
	rec := httptest.NewRecorder()
	f.srv.WriteAuthorizeError(rec, ae)
	return redirectOf(t, rec)
}

func sameTarget(loc *url.URL, redirect string) bool {
	want, err := url.Parse(redirect)
	if err != nil {
		return false
	}
	return loc.Scheme == want.Scheme && loc.Host == want.Host && loc.EscapedPath() == want.EscapedPath() &&
		loc.User == nil && loc.Fragment == ""
}

func TestParseAuthorizeNotRedirectable(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		name string
		mod  func(url.Values)
	}{
		{"unknown client", func(q url.Values) { q.Set("client_id", "nope") }},
		{"no client", func(q url.Values) { q.Del("client_id") }},
		{"two clients", func(q url.Values) { q["client_id"] = []string{"nope", "static"} }},
		{"other host", func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") }},
		{"dot segments", func(q url.Values) { q.Set("redirect_uri", "https://app.example/cb/../x") }},
		{"encoded dot segments", func(q url.Values) { q.Set("redirect_uri", "https://app.example/cb/%2e%2e/x") }},
		{"same host other path", func(q url.Values) { q.Set("redirect_uri", "https://app.example/other") }},
		{"path prefix", func(q url.Values) { q.Set("redirect_uri", "https://app.example/cbx") }},
		{"added query", func(q url.Values) { q.Set("redirect_uri", "https://app.example/cb?next=https://evil.example") }},
		{"http downgrade", func(q url.Values) { q.Set("redirect_uri", "http://app.example/cb") }},
		{"other port", func(q url.Values) { q.Set("redirect_uri", "https://app.example:444/cb") }},
		{"userinfo", func(q url.Values) { q.Set("redirect_uri", "https://app.example@evil.example/cb") }},
		{"suffix host", func(q url.Values) { q.Set("redirect_uri", "https://app.example.evil.example/cb") }},
		{"fragment", func(q url.Values) { q.Set("redirect_uri", "https://app.example/cb#x") }},
		{"javascript", func(q url.Values) { q.Set("redirect_uri", "javascript:alert(1)//https://app.example/cb") }},
		{"no redirect_uri with several registered", func(q url.Values) { q.Del("redirect_uri") }},
		{"loopback other path", func(q url.Values) { q.Set("redirect_uri", "http://localhost:5555/other") }},
		{"loopback IP other path", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:5555/other") }},
		{"loopback other IP", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.2:5555/cb") }},
		{"loopback IPv6 not registered", func(q url.Values) { q.Set("redirect_uri", "http://[::1]:5555/cb") }},
		{"loopback query", func(q url.Values) { q.Set("redirect_uri", "http://localhost:5555/cb?x=1") }},
		{"loopback https", func(q url.Values) { q.Set("redirect_uri", "https://localhost:5555/cb") }},
		{"localhost lookalike", func(q url.Values) { q.Set("redirect_uri", "http://localhost.evil.example:5555/cb") }},
		{"other client's redirect", func(q url.Values) {
			q.Set("client_id", "other")
			q.Set("redirect_uri", redirectApp)
		}},
		{"unknown response_mode", func(q url.Values) { q.Set("response_mode", "web_message") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := f.parse(authQuery(newPKCE(), tc.mod))
			if err == nil {
				t.Fatalf("accepted, redirect %q", req.RedirectURI)
			}
			ae := authorizeErrorOf(t, err)
			if ae.Redirectable() {
				t.Fatalf("%v is redirectable", ae)
			}
			rec := httptest.NewRecorder()
			f.srv.WriteAuthorizeError(rec, ae)
			if rec.Code != 400 || rec.Header().Get("Location") != "" {
				t.Fatalf("WriteAuthorizeError: %d, Location %q", rec.Code, rec.Header().Get("Location"))
			}
		})
	}
}

func TestParseAuthorizeRedirectURIs(t *testing.T) {
	f := newFixture(t, nil)
	for _, redirect := range []string{
		redirectIP, "http://127.0.0.1:5555/cb",
		redirectLocalhost, "http://localhost:5555/cb",
		redirectApp,
	} {
		req, err := f.parse(authQuery(newPKCE(), func(q url.Values) { q.Set("redirect_uri", redirect) }))
		if err != nil {
			t.Errorf("%s: %v", redirect, err)
			continue
		}
		if req.RedirectURI != redirect {
			t.Errorf("%s: RedirectURI %q", redirect, req.RedirectURI)
		}
		if want, _ := url.Parse(redirect); req.RedirectHost != want.Host {
			t.Errorf("%s: RedirectHost %q", redirect, req.RedirectHost)
		}
		loc := f.approve(t, req)
		if !sameTarget(loc, redirect) {
			t.Errorf("%s: approval redirects to %s", redirect, loc)
		}
	}

	// The port variant of a localhost redirect works through the token endpoint too, and only
	// with the same redirect_uri.
	p := newPKCE()
	code := f.code(t, authQuery(p, func(q url.Values) { q.Set("redirect_uri", "http://localhost:5555/cb") }))
	wantTokenError(t, f.exchange(t, code, p.verifier, "http://localhost:5556/cb", nil), "invalid_grant")
	p = newPKCE()
	code = f.code(t, authQuery(p, func(q url.Values) { q.Set("redirect_uri", "http://localhost:5555/cb") }))
	wantOK(t, f.exchange(t, code, p.verifier, "http://localhost:5555/cb", nil))
}

func TestParseAuthorizeRedirectedErrors(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		name, code string
		mod        func(url.Values)
	}{
		{"no code_challenge", "invalid_request", func(q url.Values) { q.Del("code_challenge") }},
		{"plain", "invalid_request", func(q url.Values) { q.Set("code_challenge_method", "plain") }},
		{"no method", "invalid_request", func(q url.Values) { q.Del("code_challenge_method") }},
		{"lower-case s256", "invalid_request", func(q url.Values) { q.Set("code_challenge_method", "s256") }},
		{"response_type token", "unsupported_response_type", func(q url.Values) { q.Set("response_type", "token") }},
		{"response_type code token", "unsupported_response_type", func(q url.Values) { q.Set("response_type", "code token") }},
		{"no response_type", "unsupported_response_type", func(q url.Values) { q.Del("response_type") }},
		{"unknown resource", "invalid_target", func(q url.Values) { q.Set("resource", "https://c.test.localhost:8443/mcp") }},
		{"resource on the issuer", "invalid_target", func(q url.Values) { q.Set("resource", testIssuer) }},
		{"two resources", "invalid_target", func(q url.Values) { q["resource"] = []string{resourceA, resourceB} }},
		{"same resource twice", "invalid_target", func(q url.Values) { q["resource"] = []string{resourceA, resourceA} }},
		{"resource fragment", "invalid_target", func(q url.Values) { q.Set("resource", resourceA+"#x") }},
		{"resource empty fragment", "invalid_target", func(q url.Values) { q.Set("resource", resourceA+"#") }},
		{"resource query", "invalid_target", func(q url.Values) { q.Set("resource", resourceA+"?x=1") }},
		{"resource http", "invalid_target", func(q url.Values) { q.Set("resource", "http://a.test.localhost:8443/mcp") }},
		{"resource userinfo", "invalid_target", func(q url.Values) { q.Set("resource", "https://x@a.test.localhost:8443/mcp") }},
		{"resource dot segment", "invalid_target", func(q url.Values) { q.Set("resource", originA+"/mcp/../x") }},
		{"resource relative", "invalid_target", func(q url.Values) { q.Set("resource", "/mcp") }},
		{"resource empty", "invalid_target", func(q url.Values) { q.Set("resource", "") }},
		{"no resource, several exist", "invalid_target", func(q url.Values) { q.Del("resource") }},
		{"audience", "invalid_request", func(q url.Values) { q.Set("audience", resourceA) }},
		{"unknown scope", "invalid_scope", func(q url.Values) { q.Set("scope", "mcp admin") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, state := range []string{clientState, "", "abc"} {
				q := authQuery(newPKCE(), tc.mod)
				if state == "" {
					q.Del("state")
				} else {
					q.Set("state", state)
				}
				req, err := f.parse(q)
				if err == nil {
					t.Fatalf("accepted: %+v", req)
				}
				ae := authorizeErrorOf(t, err)
				if ae.Code() != tc.code {
					t.Errorf("code %q (%v), want %q", ae.Code(), ae, tc.code)
				}
				if !ae.Redirectable() {
					t.Fatalf("%v not redirectable", ae)
				}
				loc := f.errorRedirect(t, ae)
				if !sameTarget(loc, redirectIP) {
					t.Errorf("error redirects to %s", loc)
				}
				got := loc.Query()
				if got.Get("error") != tc.code {
					t.Errorf("redirect %s: error %q", loc, got.Get("error"))
				}
				if got.Get("code") != "" {
					t.Errorf("error redirect with a code: %s", loc)
				}
				wantState(t, loc, state)
			}
		})
	}
}

// wantState checks that a redirect carries exactly the client's state, or none.
func wantState(t testing.TB, loc *url.URL, state string) {
	t.Helper()
	got, ok := loc.Query()["state"]
	switch {
	case state == "" && ok:
		t.Errorf("redirect %s carries state %q; the client sent none", loc, got)
	case state != "" && (len(got) != 1 || got[0] != state):
		t.Errorf("redirect %s carries state %q, want %q", loc, got, state)
	}
}

func TestParseAuthorizeAccepted(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		name         string
		only         string
		mod          func(url.Values)
		resource     string
		scopes       []string
		redirectHost string
	}{
		{"valid", "", nil, resourceA, []string{"mcp"}, "127.0.0.1"},
		{"no scope gets the defaults", "", func(q url.Values) { q.Del("scope") }, resourceA, []string{"mcp"}, "127.0.0.1"},
		{"empty scope gets the defaults", "", func(q url.Values) { q.Set("scope", "") }, resourceA, []string{"mcp"}, "127.0.0.1"},
		{"offline_access", "", func(q url.Values) { q.Set("scope", "mcp offline_access") }, resourceA, []string{"mcp", "offline_access"}, "127.0.0.1"},
		{"two scopes", "", func(q url.Values) { q.Set("scope", "mcp:admin mcp") }, resourceA, []string{"mcp:admin", "mcp"}, "127.0.0.1"},
		{"canonicalised resource", "", func(q url.Values) { q.Set("resource", "https://A.Test.LOCALHOST:8443/mcp/") }, resourceA, []string{"mcp"}, "127.0.0.1"},
		{"origin resource", "", func(q url.Values) { q.Set("resource", originB) }, originB, []string{"mcp"}, "127.0.0.1"},
		{"origin resource with slash", "", func(q url.Values) { q.Set("resource", originB+"/") }, originB, []string{"mcp"}, "127.0.0.1"},
		{"no resource, only one exists", originB, func(q url.Values) { q.Del("resource") }, originB, []string{"mcp"}, "127.0.0.1"},
		{"resource given, only one exists", originB, nil, resourceA, []string{"mcp"}, "127.0.0.1"},
		{"app redirect", "", func(q url.Values) { q.Set("redirect_uri", redirectApp) }, resourceA, []string{"mcp"}, "app.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.res.setOnly(tc.only)
			defer f.res.setOnly("")
			req, err := f.parse(authQuery(newPKCE(), tc.mod))
			if err != nil {
				t.Fatal(err)
			}
			if req.ClientID != "static" || req.ClientName != "Static" || req.ClientKind != "static" {
				t.Errorf("client %q %q %q", req.ClientID, req.ClientName, req.ClientKind)
			}
			if req.Resource != tc.resource {
				t.Errorf("Resource %q, want %q", req.Resource, tc.resource)
			}
			if !slices.Equal(req.Scopes, tc.scopes) {
				t.Errorf("Scopes %q, want %q", req.Scopes, tc.scopes)
			}
			if req.RedirectHost != tc.redirectHost {
				t.Errorf("RedirectHost %q, want %q", req.RedirectHost, tc.redirectHost)
			}
		})
	}
}

func TestAuthorizeStateAndIss(t *testing.T) {
	f := newFixture(t, nil)
	for _, state := range []string{clientState, "", "abc", "1234567"} {
		p := newPKCE()
		q := authQuery(p, func(q url.Values) { q.Set("state", state) })
		if state == "" {
			q.Del("state")
		}
		req, err := f.parse(q)
		if err != nil {
			t.Fatalf("state %q: %v", state, err)
		}
		loc := f.approve(t, req) // checks iss
		wantState(t, loc, state)
		if loc.Query().Get("code") == "" {
			t.Errorf("state %q: no code in %s", state, loc)
		}
		if !sameTarget(loc, redirectIP) {
			t.Errorf("state %q: approval redirects to %s", state, loc)
		}
		wantOK(t, f.exchange(t, loc.Query().Get("code"), p.verifier, redirectIP, nil))

		req, err = f.parse(q)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		f.srv.Deny(rec, req)
		loc = redirectOf(t, rec)
		if loc.Query().Get("error") != "access_denied" {
			t.Errorf("Deny redirects to %s", loc)
		}
		wantState(t, loc, state)
	}

	// A redirect URI with its own query keeps it, and the response parameters cannot be
	// smuggled in through it.
	f2 := newFixture(t, func(c *oauth.Config) {
		c.Clients = []oauth.StaticClient{{ID: "static", RedirectURIs: []string{"https://app.example/cb?tenant=1"}}}
	})
	req, err := f2.parse(authQuery(newPKCE(), func(q url.Values) { q.Set("redirect_uri", "https://app.example/cb?tenant=1") }))
	if err != nil {
		t.Fatal(err)
	}
	loc := f2.approve(t, req)
	if loc.Query().Get("tenant") != "1" || len(loc.Query()["code"]) != 1 {
		t.Errorf("approval redirects to %s", loc)
	}
}

// A non-redirectable error is written as JSON; it must stay valid JSON whatever the request
// contained, since the description can quote the request.
func TestWriteAuthorizeErrorJSON(t *testing.T) {
	f := newFixture(t, nil)
	for _, mode := range []string{"\x00\xff", "\U000E0001", "\"}", strings.Repeat("x", 100)} {
		_, err := f.parse(authQuery(newPKCE(), func(q url.Values) { q.Set("response_mode", mode) }))
		ae := authorizeErrorOf(t, err)
		if ae.Redirectable() {
			t.Fatalf("response_mode %q: redirectable", mode)
		}
		rec := httptest.NewRecorder()
		f.srv.WriteAuthorizeError(rec, ae)
		if !json.Valid(rec.Body.Bytes()) {
			t.Errorf("response_mode %q: body is not JSON: %s", mode, rec.Body)
		}
	}
}
