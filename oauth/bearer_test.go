package oauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/oauth"
)

func TestCheckResource(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.tokens(t).AccessToken
	for _, tc := range []struct {
		origin, path string
		want         error
	}{
		{originA, "/mcp", nil},
		{originA, "/mcp/", nil},
		{originA, "/mcp/x", nil},
		{originA, "/mcp/x/y", nil},
		{originB, "/mcp", oauth.ErrWrongResource},
		{originA, "/other", oauth.ErrWrongResource},
		{originA, "/mcpx", oauth.ErrWrongResource},
		{originA, "/", oauth.ErrWrongResource},
		{originA, "", oauth.ErrWrongResource},
		{originA, "/MCP", oauth.ErrWrongResource},
		{"https://a.test.localhost", "/mcp", oauth.ErrWrongResource},
		{"https://a.test.localhost:84", "/mcp", oauth.ErrWrongResource},
		{"http://a.test.localhost:8443", "/mcp", oauth.ErrWrongResource},
		{"https://a.test.localhost:8443/mcp", "/mcp", oauth.ErrWrongResource}, // not an origin
		{"https://a.test.localhost:8443/mcp", "", oauth.ErrWrongResource},
		{"https://x.a.test.localhost:8443", "/mcp", oauth.ErrWrongResource},
	} {
		a, err := f.srv.Check(context.Background(), tok, tc.origin, tc.path)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("Check(%s, %q) = %v, want %v", tc.origin, tc.path, err, tc.want)
		}
		if tc.want == oauth.ErrWrongResource && (a == nil || a.Resource != resourceA) {
			t.Errorf("Check(%s, %q): wrong-resource Access %+v", tc.origin, tc.path, a)
		}
	}
}

func TestCheckInvalid(t *testing.T) {
	f := newFixture(t, func(c *oauth.Config) { c.AccessTokenLifetime = 10 * time.Minute })
	tr := f.tokens(t)
	tok := tr.AccessToken
	wantValid(t, f, tok)

	key, sig, ok := strings.Cut(tok, ".")
	if !ok || sig == "" {
		t.Fatalf("access token %q is not KEY.SIGNATURE", tok)
	}
	flip := func(s string, i int) string {
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	for name, bad := range map[string]string{
		"empty":             "",
		"flipped signature": key + "." + flip(sig, len(sig)/2),
		// Not the last character: base64's last character of a 32-byte key carries two
		// unused bits, and flipping only those decodes to the same key.
		"flipped key":            flip(key, len(key)/2) + "." + sig,
		"truncated":              tok[:len(tok)-1],
		"no prefix":              strings.TrimPrefix(tok, "ory_at_"),
		"no signature":           key,
		"refresh token":          tr.RefreshToken,
		"refresh token as at":    "ory_at_" + strings.TrimPrefix(tr.RefreshToken, "ory_rt_"),
		"refresh token unprefix": strings.TrimPrefix(tr.RefreshToken, "ory_rt_"),
		"garbage":                "ory_at_..",
	} {
		if _, err := f.srv.Check(context.Background(), bad, originA, "/mcp"); !errors.Is(err, oauth.ErrInvalidToken) {
			t.Errorf("%s: Check = %v, want ErrInvalidToken", name, err)
		}
	}

	// Expiry is on the server's clock.
	f.clock.Advance(9 * time.Minute)
	wantValid(t, f, tok)
	f.clock.Advance(2 * time.Minute)
	wantInvalid(t, f, tok)
	if _, err := f.srv.Introspect(context.Background(), tok); err == nil {
		t.Error("Introspect of an expired token succeeded")
	}
}

func TestCheckDisabledUser(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.tokens(t).AccessToken
	wantValid(t, f, tok)
	ctx := context.Background()
	if _, err := f.store.UpdateUser(ctx, f.user.ID, func(u *data.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	wantInvalid(t, f, tok)
	if _, err := f.store.UpdateUser(ctx, f.user.ID, func(u *data.User) error { u.Disabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	wantValid(t, f, tok)
}

func TestIntrospect(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.tokens(t).AccessToken
	a, err := f.srv.Introspect(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if a.Resource != resourceA || a.UserID != f.user.ID || a.ClientID != "static" {
		t.Errorf("Introspect: %+v", a)
	}
	if d := a.ExpiresAt.Sub(f.clock.Now()); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("ExpiresAt %v is %v from now", a.ExpiresAt, d)
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		token  string
		err    error
	}{
		{"bearer", []string{"Bearer abc.def"}, "abc.def", nil},
		{"lower case", []string{"bearer abc.def"}, "abc.def", nil},
		{"upper case", []string{"BEARER abc.def"}, "abc.def", nil},
		{"trailing space", []string{"Bearer abc.def "}, "abc.def", nil},
		{"none", nil, "", oauth.ErrNoToken},
		{"two headers", []string{"Bearer abc", "Bearer def"}, "", oauth.ErrNoToken},
		{"basic", []string{"Basic dXNlcjpwYXNz"}, "", oauth.ErrNoToken},
		{"scheme only", []string{"Bearer"}, "", oauth.ErrNoToken},
		{"bearerx", []string{"Bearerx abc"}, "", oauth.ErrNoToken},
		{"empty", []string{"Bearer "}, "", oauth.ErrInvalidToken},
		{"blank", []string{"Bearer    "}, "", oauth.ErrInvalidToken},
		{"two tokens", []string{"Bearer abc def"}, "", oauth.ErrInvalidToken},
		{"tab inside", []string{"Bearer abc\tdef"}, "", oauth.ErrInvalidToken},
	} {
		r := httptest.NewRequest("GET", "/mcp", nil)
		for _, v := range tc.values {
			r.Header.Add("Authorization", v)
		}
		tok, err := oauth.BearerToken(r)
		if tok != tc.token || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s: BearerToken = %q, %v; want %q, %v", tc.name, tok, err, tc.token, tc.err)
		}
	}

	// A token in the query string or a form does not count.
	r := httptest.NewRequest("POST", "/mcp?access_token=abc", strings.NewReader("access_token=abc"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if _, err := oauth.BearerToken(r); !errors.Is(err, oauth.ErrNoToken) {
		t.Errorf("query/form token: %v", err)
	}
}

func TestChallenge(t *testing.T) {
	got := oauth.Challenge("https://a.test.localhost:8443/.well-known/oauth-protected-resource/mcp",
		[]string{"mcp"}, "invalid_token", `bad "token", error="x"`)
	if strings.Count(got, `"`) != 8 || strings.Contains(got, `error="x"`) {
		t.Errorf("Challenge = %s", got)
	}
	if got := oauth.ResourceMetadataURL(originA, "/mcp/"); got != originA+oauth.ResourceMetadataPath+"/mcp" {
		t.Errorf("ResourceMetadataURL = %s", got)
	}
}

// Check caches validated tokens; every way a token can end early must still end it at once,
// also for a token that was checked (and cached) just before.
func TestCheckCacheFollowsRevocation(t *testing.T) {
	ctx := context.Background()
	for name, end := range map[string]func(t *testing.T, f *fixture, tr tokenResp){
		"revoke refresh token": func(t *testing.T, f *fixture, tr tokenResp) {
			f.post(t, oauth.RevokePath, url.Values{"token": {tr.RefreshToken}, "client_id": {"static"}}, nil)
		},
		"revoke access token": func(t *testing.T, f *fixture, tr tokenResp) {
			f.post(t, oauth.RevokePath, url.Values{"token": {tr.AccessToken}, "client_id": {"static"}}, nil)
		},
		"refresh": func(t *testing.T, f *fixture, tr tokenResp) { wantOK(t, f.refresh(t, tr.RefreshToken)) },
		"revoke grants": func(t *testing.T, f *fixture, tr tokenResp) {
			if _, err := f.store.RevokeUserOAuthGrants(ctx, f.user.ID); err != nil {
				t.Fatal(err)
			}
		},
		"revoke consent": func(t *testing.T, f *fixture, tr tokenResp) {
			if err := f.store.RevokeOAuthConsent(ctx, f.user.ID, "static", resourceA); err != nil {
				t.Fatal(err)
			}
		},
		"disable user": func(t *testing.T, f *fixture, tr tokenResp) {
			if _, err := f.store.UpdateUser(ctx, f.user.ID, func(u *data.User) error { u.Disabled = true; return nil }); err != nil {
				t.Fatal(err)
			}
		},
		"code replay": nil, // below
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, nil)
			p := newPKCE()
			code := f.code(t, authQuery(p, nil))
			tr := f.exchange(t, code, p.verifier, redirectIP, nil)
			wantOK(t, tr)
			wantValid(t, f, tr.AccessToken)
			wantValid(t, f, tr.AccessToken)
			if end == nil {
				wantTokenError(t, f.exchange(t, code, p.verifier, redirectIP, nil), "invalid_grant")
			} else {
				end(t, f, tr)
			}
			wantInvalid(t, f, tr.AccessToken)
		})
	}
}

// A client that registered itself goes through the whole flow; deleting it ends its tokens.
func TestDynamicClientTokens(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := f.http.Client().Post(f.http.URL+oauth.RegisterPath, "application/json", strings.NewReader(
		`{"client_name":"Dyn","redirect_uris":["http://127.0.0.1/callback"],"token_endpoint_auth_method":"none",
		"grant_types":["authorization_code","refresh_token"],"response_types":["code"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var reg struct {
		ClientID string `json:"client_id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&reg)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated || reg.ClientID == "" {
		t.Fatalf("register: %d %v %+v", resp.StatusCode, err, reg)
	}
	const redirect = "http://127.0.0.1:40123/callback"
	p := newPKCE()
	q := authQuery(p, func(q url.Values) {
		q.Set("client_id", reg.ClientID)
		q.Set("redirect_uri", redirect)
	})
	req, err := f.parse(q)
	if err != nil {
		t.Fatal(err)
	}
	if req.ClientKind != data.ClientDynamic || req.ClientName != "Dyn" {
		t.Errorf("client kind %q name %q", req.ClientKind, req.ClientName)
	}
	code := f.approve(t, req).Query().Get("code")
	tr := f.exchange(t, code, p.verifier, redirect, func(v url.Values) { v.Set("client_id", reg.ClientID) })
	wantOK(t, tr)
	wantValid(t, f, tr.AccessToken)
	tr2 := f.post(t, oauth.TokenPath, refreshForm(tr.RefreshToken, reg.ClientID), nil)
	wantOK(t, tr2)
	wantValid(t, f, tr2.AccessToken)

	// Another client's redirect URI is not this client's.
	if _, err := f.parse(authQuery(newPKCE(), func(q url.Values) { q.Set("client_id", reg.ClientID) })); err == nil ||
		authorizeErrorOf(t, err).Redirectable() {
		t.Errorf("dynamic client with static's redirect URI: %v", err)
	}

	if err := f.store.DeleteOAuthClient(context.Background(), reg.ClientID); err != nil {
		t.Fatal(err)
	}
	wantInvalid(t, f, tr2.AccessToken)
	if tr3 := f.post(t, oauth.TokenPath, refreshForm(tr2.RefreshToken, reg.ClientID), nil); tr3.Status == http.StatusOK {
		t.Errorf("refresh for a deleted client: %s", tr3)
	}
}

// Checks racing a revocation: once the revocation has returned, no Check passes.
func TestCheckConcurrentWithRevocation(t *testing.T) {
	f := newFixture(t, nil)
	tr := f.tokens(t)
	wantValid(t, f, tr.AccessToken)
	var revoked atomic.Bool
	var wg sync.WaitGroup
	var late atomic.Int32
	for range 8 {
		wg.Go(func() {
			for range 200 {
				after := revoked.Load()
				err := f.check(tr.AccessToken)
				if after && err == nil {
					late.Add(1)
				}
			}
		})
	}
	if _, err := f.store.RevokeUserOAuthGrants(context.Background(), f.user.ID); err != nil {
		t.Fatal(err)
	}
	revoked.Store(true)
	wg.Wait()
	if n := late.Load(); n > 0 {
		t.Errorf("%d checks passed after the revocation returned", n)
	}
	wantInvalid(t, f, tr.AccessToken)
}
