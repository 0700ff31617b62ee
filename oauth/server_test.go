package oauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/oauth"
)

// The test fixture: a real data.Store in a temporary bbolt file, a fake set of resources, a
// settable clock, and the server's JSON endpoints behind httptest. Authorization is driven
// in-process through ParseAuthorize and Approve, as package web does.

const (
	testIssuer = "https://test.localhost:8443"
	originA    = "https://a.test.localhost:8443"
	originB    = "https://b.test.localhost:8443"
	resourceA  = originA + "/mcp"
	resourceB  = originB + "/mcp"

	redirectIP        = "http://127.0.0.1/cb"
	redirectLocalhost = "http://localhost/cb"
	redirectApp       = "https://app.example/cb"

	confidentialSecret = "s3cret-for-tests"
	clientState        = "client-state-0123456789"
)

var staticRedirects = []string{redirectIP, redirectLocalhost, redirectApp}

// fakeResources knows originA and originB; Only returns only when set.
type fakeResources struct {
	mu   sync.Mutex
	only string
}

func (f *fakeResources) Known(_ context.Context, origin string) bool {
	return origin == originA || origin == originB
}

func (f *fakeResources) Only(context.Context) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.only, f.only != ""
}

func (f *fakeResources) setOnly(origin string) {
	f.mu.Lock()
	f.only = origin
	f.mu.Unlock()
}

// fakeClock starts at the real time: data stamps some records (a refresh token's rotation)
// with time.Now, and the server compares those with its own clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// lockedBuffer collects log output from concurrent requests.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type fixture struct {
	srv   *oauth.Server
	store *data.Store
	res   *fakeResources
	clock *fakeClock
	user  data.User
	http  *httptest.Server
	logs  *lockedBuffer
}

func newFixture(t testing.TB, mod func(*oauth.Config)) *fixture {
	t.Helper()
	store, err := data.Open(data.Config{Path: filepath.Join(t.TempDir(), "db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	user, err := store.CreateUser(context.Background(), data.User{Email: "ada@example.com", Name: "Ada"})
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(confidentialSecret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		store: store, res: &fakeResources{}, clock: &fakeClock{now: time.Now()}, user: user,
		logs: &lockedBuffer{},
	}
	cfg := oauth.Config{
		Issuer:              testIssuer,
		Store:               store,
		Secret:              bytes.Repeat([]byte{0x42}, 32),
		Resources:           f.res,
		Scopes:              []string{"mcp", "mcp:admin"},
		DefaultScopes:       []string{"mcp"},
		DynamicRegistration: true,
		Clients: []oauth.StaticClient{
			{ID: "static", Name: "Static", RedirectURIs: slices.Clone(staticRedirects)},
			{ID: "other", Name: "Other", RedirectURIs: []string{redirectIP}},
			{ID: "confidential", Name: "Confidential", RedirectURIs: []string{redirectApp}, SecretHash: string(hash)},
		},
		RefreshGrace: 30 * time.Second,
		Now:          f.clock.Now,
		Logger:       slog.New(slog.NewTextHandler(f.logs, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	f.srv, err = oauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.http = httptest.NewServer(f.srv.Handler())
	t.Cleanup(f.http.Close)
	return f
}

// pkcePair is a PKCE verifier and its S256 challenge.
type pkcePair struct{ verifier, challenge string }

func newPKCE() pkcePair {
	v := oauth2.GenerateVerifier()
	return pkcePair{verifier: v, challenge: oauth2.S256ChallengeFromVerifier(v)}
}

// authQuery is a valid authorization request of client "static", changed by mod.
func authQuery(p pkcePair, mod func(url.Values)) url.Values {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {"static"},
		"redirect_uri":          {redirectIP},
		"code_challenge":        {p.challenge},
		"code_challenge_method": {"S256"},
		"state":                 {clientState},
		"resource":              {resourceA},
		"scope":                 {"mcp"},
	}
	if mod != nil {
		mod(q)
	}
	return q
}

func (f *fixture) parse(q url.Values) (*oauth.AuthorizeRequest, error) {
	r := httptest.NewRequest(http.MethodGet, oauth.AuthorizePath+"?"+q.Encode(), nil)
	return f.srv.ParseAuthorize(context.Background(), r)
}

// approve approves req as the fixture's user and returns the redirect.
func (f *fixture) approve(t testing.TB, req *oauth.AuthorizeRequest) *url.URL {
	t.Helper()
	rec := httptest.NewRecorder()
	f.srv.Approve(context.Background(), rec, req, oauth.Grantee{UserID: f.user.ID, AuthTime: f.clock.Now()})
	return redirectOf(t, rec)
}

func redirectOf(t testing.TB, rec *httptest.ResponseRecorder) *url.URL {
	t.Helper()
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("status %d, want 303: %s", rec.Code, rec.Body)
	}
	loc, err := url.Parse(rec.Header().Get("Location"))
	if err != nil {
		t.Fatalf("Location %q: %v", rec.Header().Get("Location"), err)
	}
	if got := loc.Query()["iss"]; len(got) != 1 || got[0] != testIssuer {
		t.Errorf("iss = %q in %s, want exactly %q", got, loc, testIssuer)
	}
	return loc
}

// code runs an authorization request through approval and returns the code.
func (f *fixture) code(t testing.TB, q url.Values) string {
	t.Helper()
	req, err := f.parse(q)
	if err != nil {
		t.Fatalf("ParseAuthorize: %v", err)
	}
	loc := f.approve(t, req)
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}
	return code
}

// tokenResp is a token endpoint response.
type tokenResp struct {
	Status           int
	Header           http.Header
	Body             string
	AccessToken      string `json:"access_token"`
	RefreshToken     string `json:"refresh_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int64  `json:"expires_in"`
	Scope            string `json:"scope"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func (r tokenResp) String() string { return http.StatusText(r.Status) + " " + r.Body }

// postForm posts form to path; basic, when not nil, is the client id and secret for HTTP Basic.
func (f *fixture) postForm(path string, form url.Values, basic []string) (tokenResp, error) {
	req, err := http.NewRequest(http.MethodPost, f.http.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		return tokenResp{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic != nil {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	resp, err := f.http.Client().Do(req)
	if err != nil {
		return tokenResp{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return tokenResp{}, err
	}
	out := tokenResp{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &out); err != nil {
			return out, errors.New("response is not JSON: " + string(body))
		}
	}
	return out, nil
}

func (f *fixture) post(t testing.TB, path string, form url.Values, basic []string) tokenResp {
	t.Helper()
	r, err := f.postForm(path, form, basic)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *fixture) exchange(t testing.TB, code, verifier, redirect string, mod func(url.Values)) tokenResp {
	t.Helper()
	form := url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect},
		"code_verifier": {verifier}, "client_id": {"static"},
	}
	if mod != nil {
		mod(form)
	}
	return f.post(t, oauth.TokenPath, form, nil)
}

func refreshForm(rt, clientID string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}}
}

func (f *fixture) refresh(t testing.TB, rt string) tokenResp {
	t.Helper()
	return f.post(t, oauth.TokenPath, refreshForm(rt, "static"), nil)
}

// tokens runs the whole flow for client "static" and resourceA and returns the first pair.
func (f *fixture) tokens(t testing.TB) tokenResp {
	t.Helper()
	p := newPKCE()
	code := f.code(t, authQuery(p, nil))
	tr := f.exchange(t, code, p.verifier, redirectIP, nil)
	wantOK(t, tr)
	return tr
}

func wantOK(t testing.TB, tr tokenResp) {
	t.Helper()
	if tr.Status != http.StatusOK || tr.AccessToken == "" || tr.RefreshToken == "" {
		t.Fatalf("token response %s, want 200 with a token pair", tr)
	}
}

func wantTokenError(t testing.TB, tr tokenResp, code string) {
	t.Helper()
	if tr.Error != code || tr.Status < 400 {
		t.Fatalf("token response %s, want error %q", tr, code)
	}
	if tr.AccessToken != "" || tr.RefreshToken != "" {
		t.Fatalf("an error response carries tokens: %s", tr)
	}
}

func (f *fixture) check(token string) error {
	_, err := f.srv.Check(context.Background(), token, originA, "/mcp")
	return err
}

func wantValid(t testing.TB, f *fixture, token string) {
	t.Helper()
	if err := f.check(token); err != nil {
		t.Fatalf("Check: %v, want the token to be valid", err)
	}
}

func wantInvalid(t testing.TB, f *fixture, token string) {
	t.Helper()
	if err := f.check(token); !errors.Is(err, oauth.ErrInvalidToken) {
		t.Fatalf("Check: %v, want ErrInvalidToken", err)
	}
}

func TestMetadata(t *testing.T) {
	for _, docs := range []bool{false, true} {
		f := newFixture(t, func(c *oauth.Config) { c.MetadataDocuments = docs })
		for _, path := range []string{oauth.MetadataPath, oauth.OpenIDConfigPath} {
			resp, err := f.http.Client().Get(f.http.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			err = json.NewDecoder(resp.Body).Decode(&doc)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: status %d, %v", path, resp.StatusCode, err)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("%s: Content-Type %q", path, ct)
			}
			want := map[string]any{
				"issuer":                                         testIssuer,
				"authorization_endpoint":                         testIssuer + oauth.AuthorizePath,
				"token_endpoint":                                 testIssuer + oauth.TokenPath,
				"registration_endpoint":                          testIssuer + oauth.RegisterPath,
				"revocation_endpoint":                            testIssuer + oauth.RevokePath,
				"code_challenge_methods_supported":               []any{"S256"},
				"response_types_supported":                       []any{"code"},
				"authorization_response_iss_parameter_supported": true,
				"client_id_metadata_document_supported":          docs,
			}
			for k, v := range want {
				if got, _ := json.Marshal(doc[k]); string(got) != mustJSON(v) {
					t.Errorf("%s (documents %v): %s = %s, want %s", path, docs, k, got, mustJSON(v))
				}
			}
			scopes, _ := doc["scopes_supported"].([]any)
			if !slices.Contains(scopes, any("mcp")) || !slices.Contains(scopes, any("offline_access")) {
				t.Errorf("%s: scopes_supported %v", path, scopes)
			}
		}
	}

	f := newFixture(t, func(c *oauth.Config) { c.DynamicRegistration = false })
	resp, err := f.http.Client().Get(f.http.URL + oauth.MetadataPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if _, ok := doc["registration_endpoint"]; ok {
		t.Errorf("registration_endpoint advertised with registration off")
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestMetadataCORS(t *testing.T) {
	f := newFixture(t, nil)
	for _, path := range []string{oauth.MetadataPath, oauth.OpenIDConfigPath, oauth.TokenPath, oauth.RevokePath, oauth.RegisterPath} {
		req, _ := http.NewRequest(http.MethodOptions, f.http.URL+path, nil)
		req.Header.Set("Origin", "https://inspector.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		resp, err := f.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("preflight %s: status %d, Allow-Origin %q", path, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
		if m := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") {
			t.Errorf("preflight %s: Allow-Methods %q", path, m)
		}
		if h := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")); !strings.Contains(h, "content-type") {
			t.Errorf("preflight %s: Allow-Headers %q", path, h)
		}
	}

	req, _ := http.NewRequest(http.MethodGet, f.http.URL+oauth.MetadataPath, nil)
	req.Header.Set("Origin", "https://inspector.example")
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("GET with Origin: status %d, Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}

	// A token error is readable cross-origin too.
	tr := f.post(t, oauth.TokenPath, url.Values{"grant_type": {"authorization_code"}}, nil)
	if tr.Status < 400 {
		t.Errorf("empty token request: %s", tr)
	}
}

func TestConsentMemory(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	p := newPKCE()
	req, err := f.parse(authQuery(p, nil))
	if err != nil {
		t.Fatal(err)
	}
	if f.srv.HasConsent(ctx, f.user.ID, req) {
		t.Fatal("HasConsent before any approval")
	}
	code := f.approve(t, req).Query().Get("code")
	tr := f.exchange(t, code, p.verifier, redirectIP, nil)
	wantOK(t, tr)

	same, err := f.parse(authQuery(newPKCE(), nil))
	if err != nil {
		t.Fatal(err)
	}
	if !f.srv.HasConsent(ctx, f.user.ID, same) {
		t.Error("HasConsent false after approving the same client, resource and scopes")
	}
	noScope, err := f.parse(authQuery(newPKCE(), func(q url.Values) { q.Del("scope") }))
	if err != nil {
		t.Fatal(err)
	}
	if !f.srv.HasConsent(ctx, f.user.ID, noScope) {
		t.Error("HasConsent false for the default scopes, which were approved")
	}
	for name, mod := range map[string]func(url.Values){
		"superset scope": func(q url.Values) { q.Set("scope", "mcp mcp:admin") },
		"other resource": func(q url.Values) { q.Set("resource", resourceB) },
		"other path":     func(q url.Values) { q.Set("resource", originA+"/other") },
		"other client":   func(q url.Values) { q.Set("client_id", "other") },
	} {
		r, err := f.parse(authQuery(newPKCE(), mod))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if f.srv.HasConsent(ctx, f.user.ID, r) {
			t.Errorf("%s: HasConsent true", name)
		}
	}
	other, err := f.store.CreateUser(ctx, data.User{Email: "bob@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if f.srv.HasConsent(ctx, other.ID, same) {
		t.Error("HasConsent true for another user")
	}

	wantValid(t, f, tr.AccessToken)
	if err := f.store.RevokeOAuthConsent(ctx, f.user.ID, "static", resourceA); err != nil {
		t.Fatal(err)
	}
	if f.srv.HasConsent(ctx, f.user.ID, same) {
		t.Error("HasConsent true after the consent was revoked")
	}
	wantInvalid(t, f, tr.AccessToken)
	wantTokenError(t, f.refresh(t, tr.RefreshToken), "invalid_grant")
}

// A code issued before the user revoked the approval must not turn into working tokens.
func TestConsentRevokedBeforeExchange(t *testing.T) {
	f := newFixture(t, nil)
	p := newPKCE()
	code := f.code(t, authQuery(p, nil))
	if err := f.store.RevokeOAuthConsent(context.Background(), f.user.ID, "static", resourceA); err != nil {
		t.Fatal(err)
	}
	tr := f.exchange(t, code, p.verifier, redirectIP, nil)
	if tr.Status == http.StatusOK {
		wantInvalid(t, f, tr.AccessToken)
	}
}
