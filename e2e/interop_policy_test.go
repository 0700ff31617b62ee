package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/e2e/sshtest"
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
// Two clients: one registered without the refresh_token grant, which authorizes at once; and
// the common one holding a refresh token, whose SDK (1.32.2) refreshes first. toolgate refuses
// that refresh with invalid_grant (a refreshed token keeps the old sign-in time, and the SDK
// would give up on the same challenge, typescript-sdk#2255); the SDK then drops its tokens
// through the provider's invalidateCredentials, as mcp-remote's provider has it, and authorizes.
func TestTypeScriptSDKClientStepUp(t *testing.T) {
	dir := requireInteropClients(t)
	for _, refreshTokens := range []bool{false, true} {
		name := "without refresh token"
		if refreshTokens {
			name = "with refresh token"
		}
		t.Run(name, func(t *testing.T) { testTypeScriptSDKStepUp(t, dir, refreshTokens) })
	}
}

// stepUpInterop is a toolgate whose sign-ins are old after maxAuthAge, the notes server behind
// a tunnel that stepper@e2e.test owns (with its ssh session, whose terminal the tests read),
// and that owner's interop client setup.
func stepUpInterop(t *testing.T, maxAuthAge time.Duration) (*interopOAuth, *notesServer, *sshtest.Client) {
	in := startOAuth(t, "--max-auth-age", maxAuthAge.String())
	ns := startNotesServer(t)
	const email = "stepper@e2e.test"
	mcpURL, ssh := policyTunnelSSH(t, in, email, ns)
	return &interopOAuth{
		in:     in,
		email:  email,
		mcpURL: mcpURL,
		link:   in.signInLink(t, email),
		issuer: "https://" + in.domain + ":" + in.httpsPort(),
	}, ns, ssh
}

func testTypeScriptSDKStepUp(t *testing.T, dir string, refreshTokens bool) {
	const maxAuthAge = 4 * time.Second
	o, ns, ssh := stepUpInterop(t, maxAuthAge)
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
			TokenErrors     []string
			Invalidations   []string
			NewTokens       bool
			RetriedText     string
		}
		Authorizations int
	}
	o.runClient(t, dir, "ts-sdk-stepup.mjs", map[string]any{
		"clientName": clientName, "email": o.email, "password": "a long e2e password",
		"maxAuthAgeMs": maxAuthAge.Milliseconds(), "refreshTokens": refreshTokens,
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
	if refreshTokens {
		// The refresh is refused, the SDK drops the tokens and authorizes.
		if !slices.Equal(s.Grants, []string{"refresh_token 400", "authorization_code 200"}) {
			t.Errorf("token requests during the step-up: %v, want a refused refresh, then one authorization_code grant", s.Grants)
		}
		if len(s.TokenErrors) != 1 || !strings.HasPrefix(s.TokenErrors[0], "invalid_grant: ") ||
			!strings.Contains(s.TokenErrors[0], "a new authorization is required") {
			t.Errorf("token errors during the step-up: %q, want one invalid_grant saying a new authorization is required", s.TokenErrors)
		}
		if !slices.Equal(s.Invalidations, []string{"tokens"}) {
			t.Errorf("the provider's invalidateCredentials calls: %q, want [tokens]", s.Invalidations)
		}
	} else if !slices.Equal(s.Grants, []string{"authorization_code 200"}) {
		t.Errorf("token requests during the step-up: %v, want one authorization_code grant", s.Grants)
	}
	if !s.NewTokens {
		t.Errorf("the client kept its old tokens through the step-up")
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
	tunnel := strings.Split(strings.TrimPrefix(o.mcpURL, "https://"), ".")[0]
	waitFor(t, 10*time.Second, "the step-up in the audit log", func() bool {
		out, _, _ := o.in.adminRun("audit", "list", "--tunnel", tunnel, "--tool", "delete_all", "--json")
		return strings.Count(out, `"decision":"allow"`) == 2 && strings.Count(out, `"decision":"step_up"`) == 1 &&
			strings.Contains(out, `"rule":"fresh-sign-in-for-destructive"`)
	})
	waitFor(t, 10*time.Second, "the password sign-in in the audit log", func() bool {
		out, _, _ := o.in.adminRun("audit", "list", "--user", o.email, "--limit", "1000", "--json")
		return strings.Contains(out, `"detail":"signed in with password"`)
	})
	refused := 0
	if refreshTokens {
		refused = 1
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("%d refused refresh in the audit log", refused), func() bool {
		out, _, _ := o.in.adminRun("audit", "list", "--kind", "token_refresh_refused", "--json")
		return strings.Count(out, `"kind":"token_refresh_refused"`) == refused &&
			(refused == 0 || strings.Contains(out, `"rule":"fresh-sign-in-for-destructive"`))
	})
}

// TestMCPRemoteStepUp: the fresh-sign-in step-up through mcp-remote's stdio proxy
// (e2e/interop/mcp-remote-stepup.mjs), the TypeScript SDK client talking to it as a desktop
// application would. mcp-remote holds a refresh token; on the challenge its SDK refreshes
// first, toolgate refuses the refresh (invalid_grant), mcp-remote discards its tokens and
// re-authorizes mid-session: the owner signs in again in Chromium, and the pending call is
// answered. The challenged call never reaches the server.
func TestMCPRemoteStepUp(t *testing.T) {
	dir := requireInteropClients(t)
	const maxAuthAge = 6 * time.Second // mcp-remote's first connection takes longer than the SDK's
	o, ns, ssh := stepUpInterop(t, maxAuthAge)
	var res struct {
		MCPRemoteVersion string
		Tools            []string
		FreshText        string
		ReadText         string
		StepUp           struct {
			Scope              string
			SignedInAgain      bool
			SignInPage         string
			ConsentShown       bool
			Authorizations     int
			ReauthorizedLogged bool
			NewRefreshToken    bool
			RetriedText        string
		}
	}
	o.runClient(t, dir, "mcp-remote-stepup.mjs", map[string]any{
		"email": o.email, "password": "a long e2e password", "maxAuthAgeMs": maxAuthAge.Milliseconds(),
	}, &res)

	if !slices.Equal(res.Tools, []string{"delete_all", "read_notes", "write_note"}) {
		t.Errorf("the owner's tools/list through mcp-remote %s: %v", res.MCPRemoteVersion, res.Tools)
	}
	if res.FreshText != "delete_all done" || res.ReadText != "read_notes done" {
		t.Errorf("fresh destructive call %q, read call with an old sign-in %q", res.FreshText, res.ReadText)
	}
	s := res.StepUp
	if !s.SignedInAgain || !strings.Contains(s.SignInPage, "your last sign-in is too old") {
		t.Errorf("re-authorizing did not sign the owner in again (signed in again %v); sign-in page:\n%s", s.SignedInAgain, s.SignInPage)
	}
	if s.ConsentShown {
		t.Errorf("re-authorizing showed the consent page again for an approved client")
	}
	if !strings.Contains(" "+s.Scope+" ", " mcp ") {
		t.Errorf("re-authorization asked for scope %q, want the challenge's (mcp)", s.Scope)
	}
	if s.Authorizations != 2 || !s.ReauthorizedLogged || !s.NewRefreshToken {
		t.Errorf("authorizations %d, mcp-remote logged the re-authorization %v, new refresh token %v; want 2, true, true",
			s.Authorizations, s.ReauthorizedLogged, s.NewRefreshToken)
	}
	if s.RetriedText != "delete_all done" {
		t.Errorf("the destructive call after re-authorizing: %q", s.RetriedText)
	}
	// The fresh call and the retried one; the challenged call never got through.
	if n := ns.count("delete_all"); n != 2 {
		t.Errorf("delete_all reached the server %d times, want 2", n)
	}
	if n := ns.count("read_notes"); n != 1 {
		t.Errorf("read_notes reached the server %d times, want 1", n)
	}

	want := `stepper@e2e.test via "MCP CLI Proxy"  tools/call delete_all [destructive]  STEP-UP by "fresh-sign-in-for-destructive"  403`
	waitFor(t, 5*time.Second, "the terminal line "+want, func() bool { return strings.Contains(ssh.Output(), want) })
	waitFor(t, 10*time.Second, "one refused refresh in the audit log", func() bool {
		out, _, _ := o.in.adminRun("audit", "list", "--kind", "token_refresh_refused", "--json")
		return strings.Count(out, `"kind":"token_refresh_refused"`) == 1 && strings.Contains(out, `"rule":"fresh-sign-in-for-destructive"`)
	})
}
