package e2e

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/toolgate/toolgate/e2e/browsertest"
)

// signInLink is a fresh one-time sign-in link for email (creating the user if needed).
func (in *instance) signInLink(t testing.TB, email string) string {
	t.Helper()
	if _, stderr, code := in.adminRun("user", "add", email); code != 0 && !strings.Contains(stderr, "already exists") {
		t.Fatalf("user add: %s", stderr)
	}
	out, stderr, code := in.adminRun("user", "reset", email)
	if code != 0 {
		t.Fatalf("user reset: %s", stderr)
	}
	link := regexp.MustCompile(`https://\S+/signin/t/\S+`).FindString(out)
	if link == "" {
		t.Fatalf("no sign-in link in %q", out)
	}
	return link
}

// linkSignIn signs in with args.link; the browser then holds a session.
const linkSignIn = `
	await page.goto(args.link);
	await page.click("button:has-text('Continue')");
	await page.waitForURL(u => !u.pathname.startsWith("/signin"));
`

// TestOAuthConsentInBrowser: the consent page in Chromium shows what a person must check
// (the application's name, where it returns to, the MCP server, the scopes and what it may
// do) and Allow sends the browser to the client with the code; Cancel sends access_denied.
// /grants lists the approval, and Revoke there ends it: the client's token stops working.
func TestOAuthConsentInBrowser(t *testing.T) {
	browsertest.Require(t)
	in := startOAuth(t)
	const email = "browser@e2e.test"
	mcpURL := oauthTunnel(t, in, email)

	var shown string
	fetch := func(decision string) auth.AuthorizationCodeFetcher {
		return func(ctx context.Context, a *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			res := browsertest.Run(t, in.browser(map[string]string{"link": in.signInLink(t, email), "url": a.URL, "decision": decision}), linkSignIn+`
				await page.route("http://127.0.0.1:53682/**", route => route.fulfill({ status: 200, body: "client callback" }));
				await page.goto(args.url);
				const shown = await page.textContent("main");
				await page.click("button:has-text('" + args.decision + "')");
				await page.waitForURL(u => u.href.startsWith("http://127.0.0.1:53682/"));
				return { shown, landed: page.url() };
			`)
			var out struct{ Shown, Landed string }
			if err := res.Decode(&out); err != nil {
				return nil, err
			}
			shown = out.Shown
			u, err := url.Parse(out.Landed)
			if err != nil {
				return nil, err
			}
			q := u.Query()
			if e := q.Get("error"); e != "" {
				return nil, fmt.Errorf("%s (iss %s)", e, q.Get("iss"))
			}
			return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
		}
	}
	dcr := &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
		ClientName: "Browser e2e <client>", RedirectURIs: []string{"http://127.0.0.1:53682/callback"},
	}}

	// Cancel: the client hears access_denied, with iss.
	h, _ := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		Client: in.client(), RedirectURL: "http://127.0.0.1:53682/callback",
		AuthorizationCodeFetcher: fetch("Cancel"), DynamicClientRegistrationConfig: dcr,
	})
	r := call(t, in, "POST", mcpURL, "")
	req := r.Request
	if err := h.Authorize(context.Background(), req, r.Response); err == nil || !strings.Contains(err.Error(), "access_denied (iss "+in.url(in.domain, "")+")") {
		t.Fatalf("after Cancel: %v; want access_denied with iss", err)
	}

	// Allow.
	connectMCP(t, in, mcpURL, &auth.AuthorizationCodeHandlerConfig{AuthorizationCodeFetcher: fetch("Allow"), DynamicClientRegistrationConfig: dcr})
	for _, want := range []string{"Browser e2e <client>", "127.0.0.1:53682", mcpURL, "mcp", "Everything", "your tunnel"} {
		if !strings.Contains(shown, want) {
			t.Errorf("the consent page does not show %q:\n%s", want, shown)
		}
	}

	// /grants lists the approval; Revoke ends it.
	access, _ := tokenFor(t, in, in.signIn(t, email), mcpURL)
	if r := call(t, in, "POST", mcpURL, access); r.StatusCode != 200 {
		t.Fatalf("token before revoking: %s", r.Status)
	}
	page := browsertest.Run(t, in.browser(map[string]string{"link": in.signInLink(t, email)}), linkSignIn+`
		await page.goto("/grants");
		const before = await page.textContent("main");
		const rows = page.locator("tr", { hasText: "token helper" });
		await rows.first().locator("button:has-text('Revoke')").click();
		await page.waitForURL(/\/grants$/);
		return { before, after: await page.textContent("main") };
	`)
	var grants struct{ Before, After string }
	if err := page.Decode(&grants); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(grants.Before, "Browser e2e <client>") || !strings.Contains(grants.Before, "token helper") || !strings.Contains(grants.Before, mcpURL) {
		t.Errorf("/grants does not list the approvals:\n%s", grants.Before)
	}
	if !strings.Contains(grants.After, "Revoked") || strings.Contains(grants.After, "token helper") {
		t.Errorf("/grants after Revoke:\n%s", grants.After)
	}
	if r := call(t, in, "POST", mcpURL, access); r.StatusCode != 401 {
		t.Errorf("the revoked approval's token: %s, want 401", r.Status)
	}
}
