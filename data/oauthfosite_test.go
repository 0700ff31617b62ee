package data

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
)

// fositeStorage is what package oauth composes: OAuthTokens plus a client manager.
type fositeStorage struct {
	*OAuthTokens
	*testClients
}

// fositeHarness drives a real fosite provider over OAuthTokens, as package oauth will.
type fositeHarness struct {
	t        *testing.T
	s        *Store
	tok      *OAuthTokens
	provider fosite.OAuth2Provider
	client   *fosite.DefaultClient
}

const (
	e2eRedirect = "http://127.0.0.1:8123/cb"
	e2eAudience = "https://a.example/mcp"
	e2eVerifier = "verifier-0123456789-0123456789-0123456789-0123456789"
)

func newFositeHarness(t *testing.T) *fositeHarness {
	s := openTest(t, "")
	client := testClient("c_app")
	clients := newTestClients(client)
	tok := s.OAuthTokens(clients)
	cfg := &fosite.Config{
		GlobalSecret:          bytes.Repeat([]byte("k"), 32),
		EnforcePKCE:           true,
		RefreshTokenScopes:    []string{},
		ScopeStrategy:         fosite.ExactScopeStrategy,
		AccessTokenLifespan:   time.Hour,
		RefreshTokenLifespan:  24 * time.Hour,
		AuthorizeCodeLifespan: 10 * time.Minute,
	}
	provider := compose.Compose(cfg, &fositeStorage{tok, clients}, compose.NewOAuth2HMACStrategy(cfg),
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2PKCEFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
	)
	return &fositeHarness{t: t, s: s, tok: tok, provider: provider, client: client}
}

// authorize runs the authorization endpoint for subject and returns the code.
func (h *fositeHarness) authorize(subject string) string {
	h.t.Helper()
	ctx := context.Background()
	sum := sha256.Sum256([]byte(e2eVerifier))
	q := url.Values{
		"client_id": {h.client.ID}, "response_type": {"code"}, "redirect_uri": {e2eRedirect},
		"scope": {"mcp"}, "state": {"state-0123456789"}, "audience": {e2eAudience},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	r := httptest.NewRequest(http.MethodGet, "https://auth.example/authorize?"+q.Encode(), nil)
	ar, err := h.provider.NewAuthorizeRequest(ctx, r)
	if err != nil {
		h.t.Fatalf("NewAuthorizeRequest: %v", fosite.ErrorToRFC6749Error(err).WithExposeDebug(true).GetDescription())
	}
	ar.GrantScope("mcp")
	ar.GrantAudience(e2eAudience)
	resp, err := h.provider.NewAuthorizeResponse(ctx, ar, &fosite.DefaultSession{Subject: subject})
	if err != nil {
		h.t.Fatalf("NewAuthorizeResponse: %v", fosite.ErrorToRFC6749Error(err).WithExposeDebug(true).GetDescription())
	}
	code := resp.GetParameters().Get("code")
	if code == "" {
		h.t.Fatal("no code")
	}
	return code
}

// token posts form to the token endpoint; it returns the tokens or the OAuth error code.
func (h *fositeHarness) token(form url.Values) (access, refresh, errCode string) {
	h.t.Helper()
	ctx := context.Background()
	form.Set("client_id", h.client.ID)
	r := httptest.NewRequest(http.MethodPost, "https://auth.example/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	ar, err := h.provider.NewAccessRequest(ctx, r, &fosite.DefaultSession{})
	if err == nil {
		var resp fosite.AccessResponder
		if resp, err = h.provider.NewAccessResponse(ctx, ar); err == nil {
			rt, _ := resp.GetExtra("refresh_token").(string)
			return resp.GetAccessToken(), rt, ""
		}
	}
	return "", "", fosite.ErrorToRFC6749Error(err).ErrorField
}

func (h *fositeHarness) exchange(code string) (access, refresh, errCode string) {
	return h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {e2eRedirect}, "code_verifier": {e2eVerifier}})
}

func (h *fositeHarness) refresh(rt string) (access, refresh, errCode string) {
	return h.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

// introspect reports whether the access token is valid, checking its subject if so.
func (h *fositeHarness) introspect(at, subject string) bool {
	h.t.Helper()
	sess := &fosite.DefaultSession{}
	_, ar, err := h.provider.IntrospectToken(context.Background(), at, fosite.AccessToken, sess)
	if err != nil {
		return false
	}
	if got := ar.GetSession().GetSubject(); got != subject || !ar.GetGrantedAudience().Has(e2eAudience) {
		h.t.Errorf("introspected subject %q audience %q, want %q %q", got, ar.GetGrantedAudience(), subject, e2eAudience)
	}
	return true
}

func (h *fositeHarness) revoke(token, hint string) {
	h.t.Helper()
	form := url.Values{"token": {token}, "client_id": {h.client.ID}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	r := httptest.NewRequest(http.MethodPost, "https://auth.example/revoke", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if err := h.provider.NewRevocationRequest(context.Background(), r); err != nil {
		h.t.Fatalf("NewRevocationRequest: %v", fosite.ErrorToRFC6749Error(err).WithExposeDebug(true).GetDescription())
	}
}

func (h *fositeHarness) grants() int {
	gs, err := h.s.ListOAuthGrants(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return len(gs)
}

// TestOAuthTokensWithFosite proves the storage against fosite's own handlers: the code flow
// with PKCE, refresh rotation, replay of a refresh token and of a code, and revocation.
func TestOAuthTokensWithFosite(t *testing.T) {
	h := newFositeHarness(t)

	// Code → tokens.
	code := h.authorize("u_1")
	if _, _, e := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {e2eRedirect}, "code_verifier": {strings.Repeat("x", 43)}}); e != "invalid_grant" {
		t.Fatalf("exchange with the wrong verifier: %q, want invalid_grant", e)
	}
	code = h.authorize("u_1") // the PKCE request of the first code is consumed by the failure
	at1, rt1, e := h.exchange(code)
	if e != "" || at1 == "" || rt1 == "" {
		t.Fatalf("exchange: %q %q %q", at1, rt1, e)
	}
	if !h.introspect(at1, "u_1") || h.grants() != 1 {
		t.Fatal("the first access token does not introspect, or no grant")
	}

	// Refresh rotates: the old access token goes, the new pair works.
	at2, rt2, e := h.refresh(rt1)
	if e != "" || at2 == "" || rt2 == "" {
		t.Fatalf("refresh: %q %q %q", at2, rt2, e)
	}
	if h.introspect(at1, "u_1") || !h.introspect(at2, "u_1") {
		t.Error("after the refresh, at1 must be dead and at2 alive")
	}
	// Replaying rt1 revokes the whole family: rt2 and at2 die too.
	if _, _, e := h.refresh(rt1); e != "invalid_grant" {
		t.Errorf("refresh replay: %q, want invalid_grant", e)
	}
	if _, _, e := h.refresh(rt2); e != "invalid_grant" {
		t.Errorf("rt2 after the replay: %q, want invalid_grant", e)
	}
	if h.introspect(at2, "u_1") || h.grants() != 0 {
		t.Error("after the replay at2 must be dead and the grant gone")
	}

	// Replaying a code revokes the tokens it gave.
	code = h.authorize("u_1")
	at3, rt3, e := h.exchange(code)
	if e != "" {
		t.Fatalf("exchange: %q", e)
	}
	if _, _, e := h.exchange(code); e != "invalid_grant" {
		t.Errorf("code replay: %q, want invalid_grant", e)
	}
	if h.introspect(at3, "u_1") {
		t.Error("at3 survived the code replay")
	}
	if _, _, e := h.refresh(rt3); e != "invalid_grant" {
		t.Errorf("rt3 after the code replay: %q, want invalid_grant", e)
	}

	// The revocation endpoint: a refresh token takes its family with it; an access token
	// (hinted) does as well, and another family is untouched.
	at4, rt4, _ := h.exchange(h.authorize("u_1"))
	at5, rt5, _ := h.exchange(h.authorize("u_2"))
	if !h.introspect(at4, "u_1") || !h.introspect(at5, "u_2") || h.grants() != 2 {
		t.Fatal("fresh tokens do not introspect")
	}
	h.revoke(rt4, "")
	if h.introspect(at4, "u_1") || !h.introspect(at5, "u_2") {
		t.Error("revoking rt4 must kill at4 and leave at5")
	}
	if _, _, e := h.refresh(rt4); e != "invalid_grant" {
		t.Errorf("rt4 after revocation: %q, want invalid_grant", e)
	}
	h.revoke(at5, "access_token")
	if h.introspect(at5, "u_2") {
		t.Error("at5 survived its revocation")
	}
	if _, _, e := h.refresh(rt5); e != "invalid_grant" {
		t.Errorf("rt5 after revoking at5: %q, want invalid_grant", e)
	}
	h.revoke(rt4, "") // revoking twice is fine (RFC 7009)
	if h.grants() != 0 {
		t.Errorf("%d grants left after everything was revoked", h.grants())
	}
	checkOAuthIndexes(t, h.s)

	// What is left is inactive tokens kept for replay detection; their expiry sweeps them.
	if n, err := h.s.SweepExpiredOAuthTokens(context.Background(), time.Now().Add(48*time.Hour), 0); err != nil || n == 0 {
		t.Fatalf("final sweep: %d, %v", n, err)
	}
	for b, m := range dump(t, h.s) {
		if len(m) > 0 && b != bucketMeta {
			t.Errorf("bucket %s is left with %d entries", b, len(m))
		}
	}
}

// TestOAuthGrantsByUserWithFosite checks that the grant fosite's flow creates is the user's,
// and that RevokeOAuthGrants kills what fosite issued.
func TestOAuthGrantsByUserWithFosite(t *testing.T) {
	h := newFositeHarness(t)
	ctx := context.Background()
	at, rt, e := h.exchange(h.authorize("u_1"))
	if e != "" {
		t.Fatal(e)
	}
	pending := h.authorize("u_1") // a code not yet exchanged
	gs, err := h.s.OAuthGrantsByUser(ctx, "u_1")
	if err != nil || len(gs) != 1 || gs[0].ClientID != "c_app" || gs[0].Resources[0] != e2eAudience || gs[0].Scopes[0] != "mcp" {
		t.Fatalf("OAuthGrantsByUser = %+v, %v", gs, err)
	}
	if n, err := h.s.RevokeOAuthGrants(ctx, "u_1", "c_app", e2eAudience); n != 1 || err != nil {
		t.Fatalf("RevokeOAuthGrants = %d, %v", n, err)
	}
	if h.introspect(at, "u_1") {
		t.Error("the access token survived RevokeOAuthGrants")
	}
	if _, _, e := h.refresh(rt); e != "invalid_grant" {
		t.Errorf("refresh after RevokeOAuthGrants: %q", e)
	}
	if _, _, e := h.exchange(pending); e != "invalid_grant" {
		t.Errorf("the pending code after RevokeOAuthGrants: %q, want invalid_grant", e)
	}
	checkOAuthIndexes(t, h.s)
}
