package e2e

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/toolgate/toolgate/e2e/sshtest"
)

// TestOAuthGoSDKMetadataDocument: the client is identified by the https URL of its metadata
// document, which toolgate fetches (here from a loopback server, allowed by the testing
// setting; SSL_CERT_FILE makes toolgate trust that server). Without the setting the same
// client id is refused on a page, not redirected: loopback addresses are off limits.
func TestOAuthGoSDKMetadataDocument(t *testing.T) {
	var fetches atomic.Int32
	var docURL string
	doc := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=600")
		json.NewEncoder(w).Encode(map[string]any{
			"client_id": docURL, "client_name": "CIMD e2e client",
			"redirect_uris":              []string{"http://127.0.0.1:53682/callback"},
			"token_endpoint_auth_method": "none",
			"grant_types":                []string{"authorization_code", "refresh_token"},
			"response_types":             []string{"code"},
		})
	}))
	doc.StartTLS()
	defer doc.Close()
	docURL = doc.URL + "/oauth/client.json"
	certFile := filepath.Join(t.TempDir(), "doc-ca.pem")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: doc.Certificate().Raw})))

	in := startToolgateEnv(t, []string{"SSL_CERT_FILE=" + certFile},
		"--tunnel-auth", "oauth", "--oauth-metadata-documents-private")
	const email = "cimd@e2e.test"
	mcpURL := oauthTunnel(t, in, email)
	user := in.signIn(t, email)
	connectMCP(t, in, mcpURL, &auth.AuthorizationCodeHandlerConfig{
		AuthorizationCodeFetcher:       user.fetcher(),
		ClientIDMetadataDocumentConfig: &auth.ClientIDMetadataDocumentConfig{URL: docURL},
	})
	if !strings.Contains(user.lastAuthURL, url.QueryEscape(docURL)) {
		t.Errorf("the client did not use its document URL as client_id: %s", user.lastAuthURL)
	}
	if n := fetches.Load(); n < 1 || n > 2 {
		t.Errorf("the document was fetched %d times; want once (cached)", n)
	}

	strict := startOAuth(t)
	mcpURL = oauthTunnel(t, strict, email)
	user = strict.signIn(t, email)
	q := url.Values{"client_id": {docURL}, "response_type": {"code"}, "redirect_uri": {"http://127.0.0.1:53682/callback"},
		"code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"}, "resource": {mcpURL}, "state": {"abcdefghij"}}
	resp := user.rawGet(strict.url(strict.domain, "/oauth/authorize?"+q.Encode()))
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Fatalf("a metadata document on a loopback address: %s, Location %q; want 400 and no redirect", resp.Status, resp.Header.Get("Location"))
	}
	if !strings.Contains(resp.body, "127.0.0.1") {
		t.Errorf("the error page does not say why: %s", resp.body)
	}
}

type rawResponse struct {
	*http.Response
	body string
}

func (u *browserUser) rawGet(rawURL string) rawResponse {
	u.t.Helper()
	req, _ := http.NewRequest("GET", rawURL, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := u.client.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResponse{resp, string(b)}
}

// tokenFor runs the Go SDK client's authorization for mcpURL and returns its token.
func tokenFor(t testing.TB, in *instance, user *browserUser, mcpURL string) (access, refresh string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		Client: in.client(), RedirectURL: "http://127.0.0.1:53682/callback",
		AuthorizationCodeFetcher: user.fetcher(),
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			ClientName: "token helper", RedirectURIs: []string{"http://127.0.0.1:53682/callback"},
		}},
		RequestRefreshToken: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", mcpURL, strings.NewReader(`{}`))
	resp, err := in.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %s, want 401", resp.Status)
	}
	if err := h.Authorize(ctx, req, resp); err != nil {
		t.Fatalf("authorize: %v", err)
	}
	ts, err := h.TokenSource(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken, tok.RefreshToken
}

// call sends one MCP-ish request with a bearer token (empty: none) and returns the response.
func call(t testing.TB, in *instance, method, rawURL, token string, hdr ...string) rawResponse {
	t.Helper()
	var body io.Reader
	if method == "POST" {
		body = strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	}
	req, _ := http.NewRequest(method, rawURL, body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := in.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResponse{resp, string(b)}
}

// TestOAuthTunnelRefusals: what a tunnel does with requests that carry no token, or the wrong
// one, through real tunnels with real tokens.
func TestOAuthTunnelRefusals(t *testing.T) {
	in := startOAuth(t)
	const email = "edge@e2e.test"
	// An echo server: it reports whether it saw an Authorization header.
	echoHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "authorization="+r.Header.Get("Authorization"))
	})
	echo, echo2 := localServer(t, echoHandler, 0), localServer(t, echoHandler, 0)
	key := sshtest.NewKey(t)
	in.linkKeyTo(key, email)
	ssh := sshtest.Start(t, sshtest.Options{Key: key, Port: in.ssh, Args: []string{"-T",
		"-R", fmt.Sprintf("0:127.0.0.1:%d", echo), "-R", fmt.Sprintf("0:127.0.0.1:%d", echo2)}})
	hosts := tunnelHost(t, ssh, 2)
	a, b := in.url(hosts[0], "/mcp"), in.url(hosts[1], "/mcp")
	user := in.signIn(t, email)

	// No token: 401 with the challenge, for every method.
	for _, m := range []string{"POST", "GET", "DELETE"} {
		r := call(t, in, m, a, "")
		want := `resource_metadata="` + in.url(hosts[0], "/.well-known/oauth-protected-resource/mcp") + `"`
		if r.StatusCode != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), want) ||
			!strings.Contains(r.Header.Get("WWW-Authenticate"), `scope="mcp"`) {
			t.Errorf("%s without a token: %s, WWW-Authenticate %q", m, r.Status, r.Header.Get("WWW-Authenticate"))
		}
	}
	// Protected resource metadata, path-inserted and root.
	for path, resource := range map[string]string{"/.well-known/oauth-protected-resource/mcp": a,
		"/.well-known/oauth-protected-resource": "https://" + hosts[0] + ":" + in.httpsPort()} {
		r := call(t, in, "GET", in.url(hosts[0], path), "", "Origin", "http://localhost:6274")
		var prm struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		json.Unmarshal([]byte(r.body), &prm)
		if r.StatusCode != 200 || prm.Resource != resource || len(prm.AuthorizationServers) != 1 ||
			prm.AuthorizationServers[0] != in.url(in.domain, "") || r.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("GET %s: %s %s (CORS %q)", path, r.Status, r.body, r.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	// CORS: a preflight is answered before any token check; a 401 exposes its challenge; a
	// foreign origin is refused.
	r := call(t, in, "OPTIONS", a, "", "Origin", "http://localhost:6274", "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "authorization, mcp-protocol-version")
	if r.StatusCode != 204 || !strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %s %v", r.Status, r.Header)
	}
	r = call(t, in, "POST", a, "", "Origin", "http://localhost:6274")
	if r.StatusCode != 401 || !strings.Contains(r.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
		t.Errorf("401 to a browser client: %s, expose %q", r.Status, r.Header.Get("Access-Control-Expose-Headers"))
	}
	if r = call(t, in, "POST", a, "", "Origin", "https://evil.example"); r.StatusCode != 403 {
		t.Errorf("foreign Origin: %s, want 403", r.Status)
	}

	access, refresh := tokenFor(t, in, user, a)
	if out, stderr, code := in.adminRun("token", "inspect", access); code != 0 || !strings.Contains(out, email) || !strings.Contains(out, a) {
		t.Errorf("token inspect: exit %d\n%s%s", code, out, stderr)
	}
	r = call(t, in, "POST", a, access)
	if r.StatusCode != 200 || r.body != "authorization=" {
		t.Fatalf("with the token: %s %q; want 200 and no Authorization reaching the local server", r.Status, r.body)
	}
	// The token for A at B, in the query string, or with a bad signature: 401.
	if r = call(t, in, "POST", b, access); r.StatusCode != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("A's token at B: %s %q", r.Status, r.Header.Get("WWW-Authenticate"))
	}
	if r = call(t, in, "POST", a+"?access_token="+url.QueryEscape(access), ""); r.StatusCode != 401 {
		t.Errorf("token in the query string: %s", r.Status)
	}
	forged := access[:len(access)-2] + "xx"
	if r = call(t, in, "POST", a, forged); r.StatusCode != 401 {
		t.Errorf("forged signature: %s", r.Status)
	}

	// Revocation (RFC 7009) of the refresh token ends the grant: the access token too.
	form := url.Values{"token": {refresh}, "token_type_hint": {"refresh_token"}, "client_id": {user.lastClientID()}}
	resp, err := in.client().PostForm(in.url(in.domain, "/oauth/revoke"), form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("revoke: %s", resp.Status)
	}
	if r = call(t, in, "POST", a, access); r.StatusCode != 401 {
		t.Errorf("after revoking the grant: %s", r.Status)
	}
	if _, _, code := in.adminRun("token", "inspect", access); code != 1 {
		t.Errorf("token inspect of a revoked token: exit %d, want 1", code)
	}

	// Revoking the approval (the CLI, as /grants does) revokes its tokens.
	access, _ = tokenFor(t, in, user, a)
	if r = call(t, in, "POST", a, access); r.StatusCode != 200 {
		t.Fatalf("new token: %s", r.Status)
	}
	if out, stderr, code := in.adminRun("grant", "revoke", "--user", email, user.lastClientID()); code != 0 {
		t.Fatalf("grant revoke: %s %s", out, stderr)
	}
	if r = call(t, in, "POST", a, access); r.StatusCode != 401 {
		t.Errorf("after grant revoke: %s", r.Status)
	}
}

// lastClientID is the client_id of the user's latest authorization.
func (u *browserUser) lastClientID() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	q, err := url.Parse(u.lastAuthURL)
	if err != nil {
		u.t.Fatal(err)
	}
	return q.Query().Get("client_id")
}

// TestOAuthOtherUsersTunnel: a user who approves a client for someone else's tunnel is not
// offered the approval, and a token cannot be had for it.
func TestOAuthOtherUsersTunnel(t *testing.T) {
	in := startOAuth(t)
	mcpURL := oauthTunnel(t, in, "owner@e2e.test")
	other := in.signIn(t, "other@e2e.test")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		Client: in.client(), RedirectURL: "http://127.0.0.1:53682/callback",
		AuthorizationCodeFetcher: func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			page := other.rawGet(args.URL)
			if page.StatusCode != 200 || strings.Contains(page.body, `value="approve"`) || !strings.Contains(page.body, "not shared with you") {
				t.Errorf("consent page for another user's tunnel: %s\n%s", page.Status, page.body)
			}
			return nil, fmt.Errorf("the user cancelled")
		},
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{"http://127.0.0.1:53682/callback"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", mcpURL, strings.NewReader(`{}`))
	resp, err := in.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Authorize(ctx, req, resp); err == nil {
		t.Fatal("authorization for another user's tunnel succeeded")
	}
}

// TestOAuthExpiredToken: an access token past its lifetime is refused with a 401 challenge
// (also when the same token passed a moment before, from the cache), and the client's
// refresh token gets a new one.
func TestOAuthExpiredToken(t *testing.T) {
	in := startOAuth(t, "--oauth-access-token-ttl", "1s")
	const email = "expiry@e2e.test"
	echo := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), 0)
	key := sshtest.NewKey(t)
	in.linkKeyTo(key, email)
	ssh := sshtest.Start(t, sshtest.Options{Key: key, Port: in.ssh, Args: []string{"-T", "-R", fmt.Sprintf("0:127.0.0.1:%d", echo)}})
	mcpURL := in.url(tunnelHost(t, ssh, 1)[0], "/mcp")
	user := in.signIn(t, email)
	access, refresh := tokenFor(t, in, user, mcpURL)
	if r := call(t, in, "POST", mcpURL, access); r.StatusCode != 200 {
		t.Fatalf("fresh token: %s", r.Status)
	}
	time.Sleep(2100 * time.Millisecond)
	r := call(t, in, "POST", mcpURL, access)
	if r.StatusCode != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("expired token: %s %q", r.Status, r.Header.Get("WWW-Authenticate"))
	}
	resp, err := in.client().PostForm(in.url(in.domain, "/oauth/token"), url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {refresh}, "client_id": {user.lastClientID()}, "resource": {mcpURL}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || tok.AccessToken == "" {
		t.Fatalf("refresh: %s", resp.Status)
	}
	if r := call(t, in, "POST", mcpURL, tok.AccessToken); r.StatusCode != 200 {
		t.Fatalf("refreshed token: %s", r.Status)
	}
}
