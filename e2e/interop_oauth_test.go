package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/e2e/browsertest"
	"github.com/toolgate/toolgate/e2e/sshtest"
)

// The tests in this file run real Node MCP clients, as users install them from npm, against a
// tunnel behind toolgate's OAuth authorization server, with a real user approving them in
// headless Chromium: the MCP TypeScript SDK v1 (e2e/interop/ts-sdk-client.mjs) and mcp-remote
// (e2e/interop/mcp-remote-client.mjs). The Node side runs as a browsertest script, so it gets
// browsertest's Chromium with a private NSS store trusting the dev CA; Node itself trusts the CA
// through NODE_EXTRA_CA_CERTS and resolves *.localhost through e2e/interop/resolve-localhost.mjs.

// interopOAuth is a toolgate with OAuth on tunnels, an everything-server behind a tunnel owned by
// email, and a one-time sign-in link for that user.
type interopOAuth struct {
	in     *instance
	email  string
	mcpURL string
	link   string
	issuer string
}

// requireInteropClients is browsertest.Require plus the npm clients in e2e/interop/node_modules;
// it returns the absolute e2e/interop directory. Under CI a missing piece fails the test.
func requireInteropClients(t *testing.T) string {
	t.Helper()
	browsertest.Require(t)
	dir, err := filepath.Abs("interop")
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, pkg := range []string{"@modelcontextprotocol/sdk", "mcp-remote"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("e2e/interop/node_modules lacks %s (run: npm ci --prefix e2e/interop)", strings.Join(missing, ", "))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir
}

func startInteropOAuth(t *testing.T, email string) *interopOAuth {
	t.Helper()
	in := startToolgate(t, "--tunnel-auth", "oauth")
	port := everythingServer(t)
	key := sshtest.NewKey(t)
	in.linkKeyTo(key, email)
	ssh := in.sshClient(key, []string{"-T", "-R", fmt.Sprintf("0:127.0.0.1:%d", port)})
	host := tunnelHost(t, ssh, 1)[0]
	out, stderr, code := in.adminRun("user", "reset", email)
	if code != 0 {
		t.Fatalf("toolgate user reset %s: exit %d: %s", email, code, stderr)
	}
	link := regexp.MustCompile(`https://\S+/signin/t/[A-Za-z0-9_-]+`).FindString(out)
	if link == "" {
		t.Fatalf("no sign-in link in the output of user reset:\n%s", out)
	}
	return &interopOAuth{
		in:     in,
		email:  email,
		mcpURL: in.url(host, "/mcp"),
		link:   link,
		issuer: "https://" + in.domain + ":" + in.httpsPort(),
	}
}

// runClient runs one of the e2e/interop client modules (a browser.mjs script module) with args,
// failing the test with its error, its HTTP trace or child output, and the browser console.
func (o *interopOAuth) runClient(t *testing.T, dir, module string, args map[string]any, res any) {
	t.Helper()
	args["module"] = (&url.URL{Scheme: "file", Path: filepath.Join(dir, module)}).String()
	args["mcpURL"] = o.mcpURL
	args["signinLink"] = o.link
	args["issuer"] = o.issuer
	opts := o.in.browser(args)
	opts.Timeout = 50 * time.Second
	hook := (&url.URL{Scheme: "file", Path: filepath.Join(dir, "resolve-localhost.mjs")}).String()
	opts.Env = []string{
		"NODE_EXTRA_CA_CERTS=" + filepath.Join(o.in.dataDir, "ca.pem"),
		"NODE_OPTIONS=" + strings.TrimSpace(os.Getenv("NODE_OPTIONS")+` --import="`+hook+`"`),
	}
	start := time.Now()
	r, err := browsertest.Try(t, opts, `return (await import(args.module)).default({page, context, browser, baseURL, args});`)
	if err != nil {
		t.Fatalf("%s failed after %s: %v", module, time.Since(start).Round(time.Millisecond), err)
	}
	t.Logf("%s passed in %s: %s", module, time.Since(start).Round(time.Millisecond), r.Value)
	if err := r.Decode(res); err != nil {
		t.Fatalf("%s result %s: %v", module, r.Value, err)
	}
}

// checkGrant asserts that `toolgate grant list` shows the user's approval of clientName for the
// MCP URL.
func (o *interopOAuth) checkGrant(t *testing.T, clientName string) {
	t.Helper()
	out, stderr, code := o.in.adminRun("grant", "list")
	if code != 0 {
		t.Fatalf("toolgate grant list: exit %d: %s", code, stderr)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, o.email) && strings.Contains(line, clientName) && strings.Contains(line, o.mcpURL) {
			return
		}
	}
	t.Errorf("toolgate grant list has no approval of %q by %s for %s:\n%s", clientName, o.email, o.mcpURL, out)
}

// TestTypeScriptSDKClientOAuth: the MCP TypeScript SDK v1 client with a headless
// OAuthClientProvider meets a tunnel without a token, discovers the authorization server,
// registers, and its user approves it in Chromium; it lists and calls tools, refreshes a spoiled
// access token with its refresh token, and a second authorization skips the consent page.
func TestTypeScriptSDKClientOAuth(t *testing.T) {
	dir := requireInteropClients(t)
	o := startInteropOAuth(t, "ts-sdk@e2e.test")
	const clientName = "toolgate e2e TypeScript SDK client"
	var res struct {
		ClientID string
		Tools    int
		CallText string
		Consents []bool
		Refresh  struct {
			Resource            *string
			RotatedRefreshToken bool
		}
	}
	o.runClient(t, dir, "ts-sdk-client.mjs", map[string]any{"clientName": clientName}, &res)
	if res.Tools < 5 || res.CallText == "" {
		t.Errorf("tools %d, call text %q", res.Tools, res.CallText)
	}
	if len(res.Consents) != 2 || !res.Consents[0] || res.Consents[1] {
		t.Errorf("consent pages shown %v, want [true false]", res.Consents)
	}
	if res.Refresh.Resource == nil || *res.Refresh.Resource != o.mcpURL {
		t.Errorf("the SDK's refresh request had resource %v, want %s", res.Refresh.Resource, o.mcpURL)
	}
	o.checkGrant(t, clientName)
}

// TestMCPRemoteOAuth: mcp-remote's test client (mcp-remote-client) authorizes through its own
// loopback callback listener with the user approving in Chromium, lists tools and exits 0; a
// second run reuses its stored tokens.
func TestMCPRemoteOAuth(t *testing.T) {
	dir := requireInteropClients(t)
	o := startInteropOAuth(t, "mcp-remote@e2e.test")
	var res struct {
		MCPRemoteVersion string
		Resource         string
		ConsentShown     bool
		Tools            int
	}
	o.runClient(t, dir, "mcp-remote-client.mjs", map[string]any{}, &res)
	if !res.ConsentShown {
		t.Errorf("mcp-remote's first authorization showed no consent page")
	}
	if res.Resource != o.mcpURL {
		t.Errorf("mcp-remote asked for resource %q, want %q", res.Resource, o.mcpURL)
	}
	o.checkGrant(t, "MCP CLI Client")
}
