package oauth_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/oauth"
)

func TestTokenCodeExchange(t *testing.T) {
	f := newFixture(t, nil)
	p := newPKCE()
	// No offline_access: a refresh token is issued anyway.
	code := f.code(t, authQuery(p, nil))
	tr := f.exchange(t, code, p.verifier, redirectIP, nil)
	wantOK(t, tr)
	if cc := tr.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("Cache-Control %q", cc)
	}
	if ct := tr.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	if !strings.EqualFold(tr.TokenType, "bearer") {
		t.Errorf("token_type %q", tr.TokenType)
	}
	if tr.ExpiresIn <= 0 || tr.ExpiresIn > 3600 {
		t.Errorf("expires_in %d", tr.ExpiresIn)
	}
	if tr.Scope != "mcp" {
		t.Errorf("scope %q", tr.Scope)
	}
	a, err := f.srv.Check(t.Context(), tr.AccessToken, originA, "/mcp")
	if err != nil {
		t.Fatal(err)
	}
	if a.UserID != f.user.ID || a.ClientID != "static" || a.Resource != resourceA || strings.Join(a.Scopes, " ") != "mcp" {
		t.Errorf("Access %+v", a)
	}
	if a.AuthTime.Unix() != f.clock.Now().Unix() {
		t.Errorf("AuthTime %v, want %v", a.AuthTime, f.clock.Now())
	}
}

func TestTokenCodeErrors(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		name, want string
		mod        func(url.Values)
	}{
		{"wrong verifier", "invalid_grant", func(v url.Values) { v.Set("code_verifier", newPKCE().verifier) }},
		{"no verifier", "invalid_grant", func(v url.Values) { v.Del("code_verifier") }},
		{"challenge as verifier", "invalid_grant", func(v url.Values) { v.Set("code_verifier", v.Get("code_challenge_for_test")) }},
		{"other redirect_uri", "invalid_grant", func(v url.Values) { v.Set("redirect_uri", redirectLocalhost) }},
		{"other client", "invalid_grant", func(v url.Values) { v.Set("client_id", "other") }},
		{"unknown client", "invalid_client", func(v url.Values) { v.Set("client_id", "nope") }},
		{"forged code", "invalid_grant", func(v url.Values) { v.Set("code", v.Get("code")+"x") }},
		{"audience", "invalid_request", func(v url.Values) { v.Set("audience", resourceA) }},
		{"other resource", "invalid_target", func(v url.Values) { v.Set("resource", resourceB) }},
		{"other path", "invalid_target", func(v url.Values) { v.Set("resource", originA+"/other") }},
		{"two resources", "invalid_target", func(v url.Values) { v["resource"] = []string{resourceA, resourceA} }},
		{"resource fragment", "invalid_target", func(v url.Values) { v.Set("resource", resourceA+"#x") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKCE()
			code := f.code(t, authQuery(p, nil))
			tr := f.exchange(t, code, p.verifier, redirectIP, func(v url.Values) {
				v.Set("code_challenge_for_test", p.challenge)
				tc.mod(v)
				v.Del("code_challenge_for_test")
			})
			wantTokenError(t, tr, tc.want)
		})
	}
}

func TestTokenResourceMatchesGrant(t *testing.T) {
	f := newFixture(t, nil)
	for _, res := range []string{resourceA, "https://A.TEST.localhost:8443/mcp/"} {
		p := newPKCE()
		code := f.code(t, authQuery(p, nil))
		tr := f.exchange(t, code, p.verifier, redirectIP, func(v url.Values) { v.Set("resource", res) })
		wantOK(t, tr)
		wantValid(t, f, tr.AccessToken)

		// And on refresh.
		wantTokenError(t, f.post(t, oauth.TokenPath, func() url.Values {
			v := refreshForm(tr.RefreshToken, "static")
			v.Set("resource", resourceB)
			return v
		}(), nil), "invalid_target")
		v := refreshForm(tr.RefreshToken, "static")
		v.Set("resource", res)
		tr2 := f.post(t, oauth.TokenPath, v, nil)
		wantOK(t, tr2)
		wantValid(t, f, tr2.AccessToken)
	}

	// A grant bound to the only resource (no resource parameter on the authorization) accepts
	// that origin on the token request.
	f.res.setOnly(originB)
	p := newPKCE()
	code := f.code(t, authQuery(p, func(q url.Values) { q.Del("resource") }))
	tr := f.exchange(t, code, p.verifier, redirectIP, func(v url.Values) { v.Set("resource", originB) })
	wantOK(t, tr)
	if _, err := f.srv.Check(t.Context(), tr.AccessToken, originB, "/anything"); err != nil {
		t.Errorf("Check of an origin-bound token: %v", err)
	}
}

func TestTokenCodeReplay(t *testing.T) {
	f := newFixture(t, nil)
	p := newPKCE()
	code := f.code(t, authQuery(p, nil))
	first := f.exchange(t, code, p.verifier, redirectIP, nil)
	wantOK(t, first)
	wantValid(t, f, first.AccessToken)

	wantTokenError(t, f.exchange(t, code, p.verifier, redirectIP, nil), "invalid_grant")
	// The replay revokes what the code produced.
	wantInvalid(t, f, first.AccessToken)
	wantTokenError(t, f.refresh(t, first.RefreshToken), "invalid_grant")
}

// A failed exchange (wrong verifier) burns the code: guessing verifiers gets nowhere.
func TestTokenWrongVerifierBurnsCode(t *testing.T) {
	f := newFixture(t, nil)
	p := newPKCE()
	code := f.code(t, authQuery(p, nil))
	wantTokenError(t, f.exchange(t, code, newPKCE().verifier, redirectIP, nil), "invalid_grant")
	tr := f.exchange(t, code, p.verifier, redirectIP, nil)
	if tr.Status == http.StatusOK {
		t.Fatalf("the right verifier after a wrong one: %s", tr)
	}
}

func TestRefreshRotationWithGrace(t *testing.T) {
	f := newFixture(t, func(c *oauth.Config) { c.RefreshGrace = 30 * time.Second })
	first := f.tokens(t)

	second := f.refresh(t, first.RefreshToken)
	wantOK(t, second)
	if second.AccessToken == first.AccessToken || second.RefreshToken == first.RefreshToken {
		t.Fatal("refresh did not rotate")
	}
	if cc := second.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("Cache-Control %q", cc)
	}
	wantValid(t, f, second.AccessToken)
	wantInvalid(t, f, first.AccessToken) // rotation ends the old access token

	f.clock.Advance(10 * time.Second)
	again := f.refresh(t, first.RefreshToken)
	wantOK(t, again)
	if again.AccessToken != second.AccessToken || again.RefreshToken != second.RefreshToken {
		t.Fatal("a refresh within the grace got a different pair")
	}
	if cc := again.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("grace response Cache-Control %q", cc)
	}
	if !strings.EqualFold(again.TokenType, "bearer") || again.ExpiresIn <= 0 || again.ExpiresIn > second.ExpiresIn {
		t.Errorf("grace response token_type %q expires_in %d (first %d)", again.TokenType, again.ExpiresIn, second.ExpiresIn)
	}
	if again.Scope != second.Scope {
		t.Errorf("grace response scope %q, first %q", again.Scope, second.Scope)
	}
	wantValid(t, f, second.AccessToken)

	f.clock.Advance(25 * time.Second) // 35s after the rotation
	wantTokenError(t, f.refresh(t, first.RefreshToken), "invalid_grant")
	// Reuse after the grace is theft: the whole family is gone.
	wantTokenError(t, f.refresh(t, second.RefreshToken), "invalid_grant")
	wantInvalid(t, f, second.AccessToken)
}

func TestRefreshConcurrent(t *testing.T) {
	f := newFixture(t, nil)
	first := f.tokens(t)
	const n = 4
	var wg sync.WaitGroup
	results := make([]tokenResp, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = f.postForm(oauth.TokenPath, refreshForm(first.RefreshToken, "static"), nil)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		wantOK(t, results[i])
		if results[i].AccessToken != results[0].AccessToken || results[i].RefreshToken != results[0].RefreshToken {
			t.Errorf("concurrent refresh %d got another pair", i)
		}
	}
	wantValid(t, f, results[0].AccessToken)
	wantOK(t, f.refresh(t, results[0].RefreshToken))
}

func TestRefreshWithoutGrace(t *testing.T) {
	f := newFixture(t, func(c *oauth.Config) { c.RefreshGrace = -1 })
	first := f.tokens(t)
	second := f.refresh(t, first.RefreshToken)
	wantOK(t, second)
	wantTokenError(t, f.refresh(t, first.RefreshToken), "invalid_grant")
	wantTokenError(t, f.refresh(t, second.RefreshToken), "invalid_grant")
	wantInvalid(t, f, second.AccessToken)
}

// The log says which grant issued a token, with or without the grace window.
func TestRefreshLoggedAsRefresh(t *testing.T) {
	for _, grace := range []time.Duration{30 * time.Second, -1} {
		f := newFixture(t, func(c *oauth.Config) { c.RefreshGrace = grace })
		first := f.tokens(t)
		wantOK(t, f.refresh(t, first.RefreshToken))
		var issued []string
		for line := range strings.Lines(f.logs.String()) {
			if strings.Contains(line, `msg="oauth: token issued"`) {
				issued = append(issued, line)
			}
		}
		if len(issued) != 2 || !strings.Contains(issued[0], "grant_type=authorization_code") ||
			!strings.Contains(issued[1], "grant_type=refresh_token") {
			t.Errorf("grace %v: token issued lines:\n%s", grace, strings.Join(issued, ""))
		}
		if strings.Contains(f.logs.String(), first.RefreshToken) || strings.Contains(f.logs.String(), first.AccessToken) {
			t.Errorf("a token was logged")
		}
	}
}

// Within the grace window the old token is still a refresh token: the request must pass every
// check fosite would have made, except for the reuse.
func TestRefreshGraceChecksTheRequest(t *testing.T) {
	f := newFixture(t, nil)

	t.Run("other client", func(t *testing.T) {
		first := f.tokens(t)
		second := f.refresh(t, first.RefreshToken)
		wantOK(t, second)
		tr := f.post(t, oauth.TokenPath, refreshForm(first.RefreshToken, "other"), nil)
		if tr.Status == http.StatusOK || strings.Contains(tr.Body, second.AccessToken) || strings.Contains(tr.Body, second.RefreshToken) {
			t.Fatalf("another client was served the pair: %s", tr)
		}
	})

	t.Run("other resource", func(t *testing.T) {
		first := f.tokens(t)
		wantOK(t, f.refresh(t, first.RefreshToken))
		v := refreshForm(first.RefreshToken, "static")
		v.Set("resource", resourceB)
		wantTokenError(t, f.post(t, oauth.TokenPath, v, nil), "invalid_target")
	})

	t.Run("audience", func(t *testing.T) {
		first := f.tokens(t)
		wantOK(t, f.refresh(t, first.RefreshToken))
		v := refreshForm(first.RefreshToken, "static")
		v.Set("audience", resourceA)
		wantTokenError(t, f.post(t, oauth.TokenPath, v, nil), "invalid_request")
	})

	// A confidential client must authenticate on every refresh, the grace one included.
	t.Run("confidential client", func(t *testing.T) {
		p := newPKCE()
		code := f.code(t, authQuery(p, func(q url.Values) {
			q.Set("client_id", "confidential")
			q.Set("redirect_uri", redirectApp)
		}))
		good := []string{"confidential", confidentialSecret}
		first := f.post(t, oauth.TokenPath, url.Values{
			"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectApp},
			"code_verifier": {p.verifier},
		}, good)
		wantOK(t, first)
		rf := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}}
		wantTokenError(t, f.post(t, oauth.TokenPath, rf, []string{"confidential", "wrong"}), "invalid_client")
		second := f.post(t, oauth.TokenPath, rf, good)
		wantOK(t, second)

		for name, try := range map[string]func() tokenResp{
			"wrong secret": func() tokenResp {
				return f.post(t, oauth.TokenPath, rf, []string{"confidential", "wrong"})
			},
			"client_id only": func() tokenResp {
				v := url.Values{"client_id": {"confidential"}}
				for k, vs := range rf {
					v[k] = vs
				}
				return f.post(t, oauth.TokenPath, v, nil)
			},
		} {
			tr := try()
			if tr.Status == http.StatusOK || strings.Contains(tr.Body, second.RefreshToken) {
				t.Errorf("%s: the grace window served the pair to an unauthenticated client: %s", name, tr)
			}
		}
		again := f.post(t, oauth.TokenPath, rf, good)
		wantOK(t, again)
		if again.RefreshToken != second.RefreshToken {
			t.Error("the authenticated client got another pair within the grace")
		}
	})
}

func TestRevocation(t *testing.T) {
	f := newFixture(t, nil)

	tr := f.tokens(t)
	res := f.post(t, oauth.RevokePath, url.Values{"token": {tr.RefreshToken}, "client_id": {"static"}}, nil)
	if res.Status != http.StatusOK {
		t.Fatalf("revoke: %s", res)
	}
	wantInvalid(t, f, tr.AccessToken)
	wantTokenError(t, f.refresh(t, tr.RefreshToken), "invalid_grant")

	// With the hint, and revoking an access token.
	tr = f.tokens(t)
	res = f.post(t, oauth.RevokePath, url.Values{"token": {tr.AccessToken}, "token_type_hint": {"access_token"}, "client_id": {"static"}}, nil)
	if res.Status != http.StatusOK {
		t.Fatalf("revoke: %s", res)
	}
	wantInvalid(t, f, tr.AccessToken)

	for _, tok := range []string{"ory_rt_unknown.token", "nonsense", tr.AccessToken} {
		res = f.post(t, oauth.RevokePath, url.Values{"token": {tok}, "client_id": {"static"}}, nil)
		if res.Status != http.StatusOK {
			t.Errorf("revoke %q: %s", tok, res)
		}
	}

	// Another client cannot revoke the token.
	tr = f.tokens(t)
	f.post(t, oauth.RevokePath, url.Values{"token": {tr.RefreshToken}, "client_id": {"other"}}, nil)
	wantValid(t, f, tr.AccessToken)
	wantOK(t, f.refresh(t, tr.RefreshToken))
}

// A disabled user's grant issues nothing more: neither the code nor a refresh token works.
func TestDisabledUserGetsNoTokens(t *testing.T) {
	f := newFixture(t, nil)
	first := f.tokens(t)
	p := newPKCE()
	code := f.code(t, authQuery(p, nil))
	if _, err := f.store.UpdateUser(context.Background(), f.user.ID, func(u *data.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	wantTokenError(t, f.refresh(t, first.RefreshToken), "invalid_grant")
	wantTokenError(t, f.exchange(t, code, p.verifier, redirectIP, nil), "invalid_grant")
}
