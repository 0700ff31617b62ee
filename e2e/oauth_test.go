package e2e

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/toolgate/toolgate/e2e/sshtest"
)

// startOAuth runs toolgate with OAuth on tunnels, as it ships.
func startOAuth(t testing.TB, args ...string) *instance {
	return startToolgate(t, append([]string{"--tunnel-auth", "oauth"}, args...)...)
}

// browserUser is a person with a browser session on the apex: a cookie jar signed in through
// a one-time link, as a user who clicks the link does.
type browserUser struct {
	t      testing.TB
	in     *instance
	email  string
	client *http.Client // keeps cookies, does not follow redirects
	mu     sync.Mutex
	// consents counts consent pages shown; authorizations counts codes obtained; signIns
	// counts sign-ins.
	consents, authorizations, signIns int
	lastAuthURL                       string
}

func (in *instance) signIn(t testing.TB, email string) *browserUser {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	u := &browserUser{t: t, in: in, email: email, client: &http.Client{
		Transport: in.transport(), Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	u.signInAgain()
	return u
}

// signInAgain signs in with a fresh one-time link, as a person does when toolgate asks.
func (u *browserUser) signInAgain() {
	u.t.Helper()
	page := u.get(u.in.signInLink(u.t, u.email))
	form := parseForm(u.t, page)
	resp := u.post(form.action, url.Values{"csrf": {form.fields["csrf"]}, "next": {form.fields["next"]}})
	if resp.StatusCode != http.StatusSeeOther {
		u.t.Fatalf("signing in with the link: %s", resp.Status)
	}
	u.mu.Lock()
	u.signIns++
	u.mu.Unlock()
}

func (u *browserUser) abs(path string) string {
	if strings.HasPrefix(path, "https://") {
		return path
	}
	return u.in.url(u.in.domain, path)
}

func (u *browserUser) get(rawURL string) string {
	u.t.Helper()
	req, _ := http.NewRequest("GET", u.abs(rawURL), nil)
	req.Header.Set("Accept", "text/html")
	resp, err := u.client.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		u.t.Fatalf("GET %s: %s: %s", rawURL, resp.Status, b)
	}
	return string(b)
}

func (u *browserUser) post(action string, form url.Values) *http.Response {
	u.t.Helper()
	req, _ := http.NewRequest("POST", u.abs(action), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://"+u.in.domain+":"+u.in.httpsPort())
	resp, err := u.client.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

type htmlForm struct {
	action string
	fields map[string]string
}

var (
	formRe   = regexp.MustCompile(`(?s)<form method="post" action="([^"]*)">(.*?)</form>`)
	hiddenRe = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
)

// parseForm returns the last POST form of a page that has hidden fields.
func parseForm(t testing.TB, page string) htmlForm {
	t.Helper()
	var f htmlForm
	for _, m := range formRe.FindAllStringSubmatch(page, -1) {
		if !strings.Contains(m[2], `name="csrf"`) || strings.Contains(m[1], "signout") {
			continue
		}
		f = htmlForm{action: html.UnescapeString(m[1]), fields: map[string]string{}}
		for _, h := range hiddenRe.FindAllStringSubmatch(m[2], -1) {
			f.fields[h[1]] = html.UnescapeString(h[2])
		}
	}
	if f.action == "" {
		t.Fatalf("no form in page:\n%s", page)
	}
	return f
}

// authorize is the user at the authorization URL: signed in already, they approve on the
// consent page when it is shown, and the browser follows the redirect to the client.
func (u *browserUser) authorize(ctx context.Context, authURL string) (*url.URL, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", authURL, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	u.mu.Lock()
	u.lastAuthURL = authURL
	u.mu.Unlock()
	if resp.StatusCode == http.StatusSeeOther && strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
		// toolgate wants a fresh sign-in (the last one is older than max-auth-age).
		u.signInAgain()
		return u.authorize(ctx, authURL)
	}
	if resp.StatusCode == http.StatusOK {
		if !strings.Contains(string(body), "Allow") {
			return nil, fmt.Errorf("authorization page without an Allow button:\n%s", body)
		}
		u.mu.Lock()
		u.consents++
		u.mu.Unlock()
		form := parseForm(u.t, string(body))
		resp = u.post(form.action, url.Values{"csrf": {form.fields["csrf"]}, "decision": {"approve"}})
	}
	if resp.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("authorization: %s: %s", resp.Status, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	u.authorizations++
	u.mu.Unlock()
	return loc, nil
}

// fetcher adapts authorize to the Go SDK client.
func (u *browserUser) fetcher() auth.AuthorizationCodeFetcher {
	return func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
		loc, err := u.authorize(ctx, args.URL)
		if err != nil {
			return nil, err
		}
		q := loc.Query()
		if e := q.Get("error"); e != "" {
			return nil, fmt.Errorf("authorization refused: %s: %s", e, q.Get("error_description"))
		}
		return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
	}
}

// oauthTunnel is an everything-server behind a tunnel owned by email.
func oauthTunnel(t testing.TB, in *instance, email string) (mcpURL string) {
	t.Helper()
	port := everythingServer(t)
	key := sshtest.NewKey(t)
	in.linkKeyTo(key, email)
	ssh := sshtest.Start(t, sshtest.Options{Key: key, Port: in.ssh, Args: []string{"-T", "-R", fmt.Sprintf("0:127.0.0.1:%d", port)}})
	return in.url(tunnelHost(t, ssh, 1)[0], "/mcp")
}

// connectOAuth connects the Go SDK client to mcpURL through its OAuth flow.
func connectOAuth(t testing.TB, in *instance, mcpURL string, cfg *auth.AuthorizationCodeHandlerConfig) *mcp.ClientSession {
	t.Helper()
	return connectOAuthWith(t, in, mcpURL, cfg, nil, nil)
}

// connectOAuthWith is connectOAuth with the Go SDK's client and session options.
func connectOAuthWith(t testing.TB, in *instance, mcpURL string, cfg *auth.AuthorizationCodeHandlerConfig,
	copts *mcp.ClientOptions, sopts *mcp.ClientSessionOptions) *mcp.ClientSession {
	t.Helper()
	cfg.Client = in.client()
	cfg.RedirectURL = "http://127.0.0.1:53682/callback"
	h, err := auth.NewAuthorizationCodeHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e-oauth", Version: "1"}, copts).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: mcpURL, HTTPClient: in.client(), OAuthHandler: h}, sopts)
	if err != nil {
		t.Fatalf("MCP connect with OAuth: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// connectMCP connects the Go SDK client with OAuth and checks tools can be listed and called.
func connectMCP(t testing.TB, in *instance, mcpURL string, cfg *auth.AuthorizationCodeHandlerConfig) *mcp.ClientSession {
	t.Helper()
	cs := connectOAuth(t, in, mcpURL, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	if len(tools.Tools) < 5 {
		t.Fatalf("tools/list returned %d tools", len(tools.Tools))
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
	if err != nil || res.IsError {
		t.Fatalf("tools/call test_simple_text: %v %+v", err, res)
	}
	return cs
}

// TestOAuthGoSDKDynamicRegistration: the Go SDK client meets a tunnel with no token, follows
// the 401 to protected resource metadata and the authorization server, registers itself,
// sends its user through consent, and lists and calls tools. A second client of the same
// user skips the consent page.
func TestOAuthGoSDKDynamicRegistration(t *testing.T) {
	in := startOAuth(t)
	const email = "dev@e2e.test"
	mcpURL := oauthTunnel(t, in, email)
	user := in.signIn(t, email)
	dcr := func() *auth.AuthorizationCodeHandlerConfig {
		return &auth.AuthorizationCodeHandlerConfig{
			AuthorizationCodeFetcher: user.fetcher(),
			DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
				ClientName: "e2e Go client", RedirectURIs: []string{"http://127.0.0.1:53682/callback"},
			}},
			RequestRefreshToken: true,
		}
	}
	connectMCP(t, in, mcpURL, dcr())
	if user.consents != 1 || user.authorizations != 1 {
		t.Fatalf("consent pages %d, authorizations %d; want 1 and 1", user.consents, user.authorizations)
	}
	if !strings.Contains(user.lastAuthURL, "resource=") {
		t.Errorf("the client sent no resource parameter: %s", user.lastAuthURL)
	}
	out, _, _ := in.adminRun("grant", "list", "--user", email)
	if !strings.Contains(out, "e2e Go client") || !strings.Contains(out, mcpURL) {
		t.Errorf("grant list does not show the approval:\n%s", out)
	}
}

// TestOAuthGoSDKPreregisteredClient uses a client from oauth-clients-file.
func TestOAuthGoSDKPreregisteredClient(t *testing.T) {
	clients := t.TempDir() + "/clients.yaml"
	writeFile(t, clients, "- id: e2e-static\n  name: Static e2e client\n  redirect_uris: [\"http://127.0.0.1/callback\"]\n")
	in := startOAuth(t, "--oauth-clients-file", clients, "--oauth-dynamic-registration=false")
	const email = "static@e2e.test"
	mcpURL := oauthTunnel(t, in, email)
	user := in.signIn(t, email)
	connectMCP(t, in, mcpURL, &auth.AuthorizationCodeHandlerConfig{
		AuthorizationCodeFetcher: user.fetcher(),
		PreregisteredClient:      &oauthex.ClientCredentials{ClientID: "e2e-static"},
	})
	// Registration is off, so the endpoint is gone.
	resp, err := in.client().Post(in.url(in.domain, "/oauth/register"), "application/json", strings.NewReader(`{"redirect_uris":["http://127.0.0.1/cb"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		t.Errorf("registration answered %s with oauth-dynamic-registration=false", resp.Status)
	}
}

// TestOAuthGoSDKStepUp: with tools/call needing an extra scope, listing works on the first
// token; the call gets a 403 insufficient_scope challenge; the client goes back through
// consent for the union of scopes; the retried call passes.
func TestOAuthGoSDKStepUp(t *testing.T) {
	in := startOAuth(t, "--oauth-method-scopes", "tools/call=mcp:call")
	const email = "stepup@e2e.test"
	mcpURL := oauthTunnel(t, in, email)
	user := in.signIn(t, email)
	connectMCP(t, in, mcpURL, &auth.AuthorizationCodeHandlerConfig{
		AuthorizationCodeFetcher: user.fetcher(),
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			ClientName: "step-up client", RedirectURIs: []string{"http://127.0.0.1:53682/callback"},
		}},
	})
	if user.consents != 2 || user.authorizations != 2 {
		t.Fatalf("consent pages %d, authorizations %d; want 2 and 2 (initial, step-up)", user.consents, user.authorizations)
	}
	q, _ := url.Parse(user.lastAuthURL)
	if s := q.Query().Get("scope"); !strings.Contains(s, "mcp:call") || !strings.Contains(s, "mcp") {
		t.Errorf("step-up asked for scope %q", s)
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
