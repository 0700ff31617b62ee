package e2e

import (
	"slices"
	"strings"
	"testing"
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
