package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTypeScriptSDKClientPolicy: the built-in policy as the MCP TypeScript SDK v1 client sees it
// (e2e/interop/ts-sdk-policy.mjs). The owner shares a tunnel to the notes server; the person it
// is shared with authorizes the SDK client in Chromium, is offered only the read tool in
// tools/list, may call it, and a call of the write tool comes back as an McpError with code
// -31403 naming the rule, without reaching the server.
func TestTypeScriptSDKClientPolicy(t *testing.T) {
	dir := requireInteropClients(t)
	in := startOAuth(t)
	ns := startNotesServer(t)
	mcpURL := policyTunnel(t, in, "owner@e2e.test", ns, "share=friend@e2e.test")
	o := &interopOAuth{
		in:     in,
		email:  "friend@e2e.test",
		mcpURL: mcpURL,
		link:   in.signInLink(t, "friend@e2e.test"),
		issuer: "https://" + in.domain + ":" + in.httpsPort(),
	}
	const clientName = "toolgate e2e TypeScript SDK policy client"
	var res struct {
		Tools       []string
		ReadText    string
		ReadIsError bool
		Write       struct {
			Denied   bool
			MCPError bool `json:"mcpError"`
			Code     int
			Message  string
			Result   any
		}
	}
	o.runClient(t, dir, "ts-sdk-policy.mjs", map[string]any{"clientName": clientName}, &res)

	if !slices.Equal(res.Tools, []string{"read_notes"}) {
		t.Errorf("the shared user's tools/list: %v, want only read_notes", res.Tools)
	}
	if res.ReadIsError || res.ReadText != "read_notes done" {
		t.Errorf("the shared user calling read_notes: isError %v, text %q", res.ReadIsError, res.ReadText)
	}
	if n := ns.count("read_notes"); n != 1 {
		t.Errorf("read_notes reached the server %d times, want 1", n)
	}
	w := res.Write
	if !w.Denied || !w.MCPError || w.Code != -31403 || !strings.Contains(w.Message, `rule "default"`) {
		t.Errorf("the shared user calling write_note: denied %v, McpError %v, code %d, message %q, result %v; "+
			`want an McpError with code -31403 naming rule "default"`, w.Denied, w.MCPError, w.Code, w.Message, w.Result)
	}
	if n := ns.count("write_note"); n != 0 {
		t.Errorf("the denied write_note reached the server %d times", n)
	}
	o.checkGrant(t, clientName)
}

// TestTypeScriptSDKClientStepUp: the built-in policy's fresh-sign-in rule as the MCP TypeScript
// SDK v1 client sees it (e2e/interop/ts-sdk-stepup.mjs). The owner's client, authorized in
// Chromium, calls the destructive tool right after signing in; once the sign-in is older than
// --max-auth-age a read call still passes, and the destructive call is answered 403 with an
// insufficient_scope challenge naming the rule. The SDK's transport re-authorizes by itself:
// toolgate sends the browser to its sign-in page, the owner signs in again with a password
// and is sent back to the (already approved) authorization; the SDK then throws
// UnauthorizedError, and the script does what an application does with it (finishAuth with the
// code, then the call again), which passes. The challenged call never reaches the server.
//
// The client registers without the refresh_token grant: SDK 1.32.2 answers the challenge with
// a refresh when it holds a refresh token, and a refreshed token keeps the old sign-in time, so
// that path gives up with "Server returned 403 after trying upscoping" (see the script).
func TestTypeScriptSDKClientStepUp(t *testing.T) {
	dir := requireInteropClients(t)
	const maxAuthAge = 4 * time.Second
	in := startOAuth(t, "--max-auth-age", maxAuthAge.String())
	ns := startNotesServer(t)
	const email = "stepper@e2e.test"
	mcpURL, ssh := policyTunnelSSH(t, in, email, ns)
	o := &interopOAuth{
		in:     in,
		email:  email,
		mcpURL: mcpURL,
		link:   in.signInLink(t, email),
		issuer: "https://" + in.domain + ":" + in.httpsPort(),
	}
	const clientName = "toolgate e2e TypeScript SDK step-up client"
	var res struct {
		Tools     []string
		FreshText string
		ReadText  string
		StepUp    struct {
			Status          int
			WWWAuthenticate string
			Thrown          string
			Scope           string
			SignedInAgain   bool
			SignInPage      string
			ConsentShown    bool
			Grants          []string
			RetriedText     string
		}
		Authorizations int
	}
	o.runClient(t, dir, "ts-sdk-stepup.mjs", map[string]any{
		"clientName": clientName, "email": email, "password": "a long e2e password",
		"maxAuthAgeMs": maxAuthAge.Milliseconds(),
	}, &res)

	if !slices.Equal(res.Tools, []string{"delete_all", "read_notes", "write_note"}) {
		t.Errorf("the owner's tools/list: %v", res.Tools)
	}
	if res.FreshText != "delete_all done" || res.ReadText != "read_notes done" {
		t.Errorf("fresh destructive call %q, read call with an old sign-in %q", res.FreshText, res.ReadText)
	}
	s := res.StepUp
	if s.Status != 403 || !strings.HasPrefix(s.WWWAuthenticate, "Bearer ") ||
		!strings.Contains(s.WWWAuthenticate, `error="insufficient_scope"`) ||
		!strings.Contains(s.WWWAuthenticate, "fresh-sign-in-for-destructive") {
		t.Errorf("the destructive call with an old sign-in: HTTP %d, WWW-Authenticate %q; "+
			"want 403 with an insufficient_scope challenge naming the rule", s.Status, s.WWWAuthenticate)
	}
	if !strings.HasPrefix(s.Thrown, "UnauthorizedError") {
		t.Errorf("the SDK threw %q on the step-up, want UnauthorizedError", s.Thrown)
	}
	if !s.SignedInAgain || !strings.Contains(s.SignInPage, "your last sign-in is too old") {
		t.Errorf("re-authorizing did not sign the owner in again (signed in again %v); sign-in page:\n%s", s.SignedInAgain, s.SignInPage)
	}
	if s.ConsentShown {
		t.Errorf("re-authorizing showed the consent page again for an approved client")
	}
	if !strings.Contains(" "+s.Scope+" ", " mcp ") {
		t.Errorf("re-authorization asked for scope %q, want the challenge's (mcp)", s.Scope)
	}
	if !slices.Equal(s.Grants, []string{"authorization_code 200"}) {
		t.Errorf("token requests during the step-up: %v, want one authorization_code grant", s.Grants)
	}
	if s.RetriedText != "delete_all done" || res.Authorizations != 2 {
		t.Errorf("after re-authorizing: call %q, authorizations %d; want the call done after 2 authorizations", s.RetriedText, res.Authorizations)
	}
	// The fresh call and the retried one; the challenged call never got through.
	if n := ns.count("delete_all"); n != 2 {
		t.Errorf("delete_all reached the server %d times, want 2", n)
	}
	if n := ns.count("read_notes"); n != 1 {
		t.Errorf("read_notes reached the server %d times, want 1", n)
	}

	// The owner's terminal and the audit log show the step-up, and the second sign-in.
	want := `stepper@e2e.test via "` + clientName + `"  tools/call delete_all [destructive]  STEP-UP by "fresh-sign-in-for-destructive"  403`
	waitFor(t, 5*time.Second, "the terminal line "+want, func() bool { return strings.Contains(ssh.Output(), want) })
	name := strings.Split(strings.TrimPrefix(mcpURL, "https://"), ".")[0]
	waitFor(t, 10*time.Second, "the step-up in the audit log", func() bool {
		out, _, _ := in.adminRun("audit", "list", "--tunnel", name, "--tool", "delete_all", "--json")
		return strings.Count(out, `"decision":"allow"`) == 2 && strings.Count(out, `"decision":"step_up"`) == 1 &&
			strings.Contains(out, `"rule":"fresh-sign-in-for-destructive"`)
	})
	waitFor(t, 10*time.Second, "the password sign-in in the audit log", func() bool {
		out, _, _ := in.adminRun("audit", "list", "--user", email, "--limit", "1000", "--json")
		return strings.Contains(out, `"detail":"signed in with password"`)
	})
}
