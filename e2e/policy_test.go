package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/toolgate/toolgate/e2e/sshtest"
)

// notesServer is a real MCP server (the Go SDK's) with one tool of each class, told apart by
// the annotations it lists them with. It counts the calls that reach it, so a test can tell a
// denial from a call that got through.
type notesServer struct {
	port  int
	srv   *mcp.Server
	mu    sync.Mutex
	calls map[string]int
}

func startNotesServer(t testing.TB) *notesServer {
	t.Helper()
	return startNotesServerWith(t, nil)
}

// startNotesServerWith starts a notes server with the SDK's HTTP options: Stateless, for
// one, is what the SDK needs to speak MCP 2026-07-28.
func startNotesServerWith(t testing.TB, opts *mcp.StreamableHTTPOptions) *notesServer {
	t.Helper()
	ns := newNotesServer()
	ns.port = localServer(t, mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return ns.srv }, opts), 0)
	return ns
}

// newNotesServer is a notes server with its tools, for the caller to serve.
func newNotesServer() *notesServer {
	ns := &notesServer{calls: map[string]int{}, srv: mcp.NewServer(&mcp.Implementation{Name: "notes", Version: "1"}, nil)}
	no := false
	for _, tool := range []*mcp.Tool{
		{Name: "read_notes", Description: "read", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		{Name: "write_note", Description: "write", Annotations: &mcp.ToolAnnotations{DestructiveHint: &no}},
		{Name: "delete_all", Description: "destructive: no hints"},
	} {
		ns.setTool(tool)
	}
	return ns
}

// setTool adds a tool, or replaces the one of its name (with new annotations, say). With
// sessions connected, the SDK then sends them notifications/tools/list_changed.
func (ns *notesServer) setTool(tool *mcp.Tool) {
	name := tool.Name
	mcp.AddTool(ns.srv, tool, func(ctx context.Context, _ *mcp.CallToolRequest, _ map[string]any) (*mcp.CallToolResult, any, error) {
		ns.mu.Lock()
		ns.calls[name]++
		ns.mu.Unlock()
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + " done"}}}, nil, nil
	})
}

func (ns *notesServer) count(tool string) int {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.calls[tool]
}

// policyTunnel opens the owner's tunnel to ns, with the remote command words given.
func policyTunnel(t testing.TB, in *instance, owner string, ns *notesServer, words ...string) string {
	t.Helper()
	u, _ := policyTunnelSSH(t, in, owner, ns, words...)
	return u
}

func policyTunnelSSH(t testing.TB, in *instance, owner string, ns *notesServer, words ...string) (string, *sshtest.Client) {
	t.Helper()
	key := sshtest.NewKey(t)
	in.linkKeyTo(key, owner)
	ssh := sshtest.Start(t, sshtest.Options{Key: key, Port: in.ssh,
		Args: []string{"-T", "-R", fmt.Sprintf("0:127.0.0.1:%d", ns.port)}, Command: words})
	return in.url(tunnelHost(t, ssh, 1)[0], "/mcp"), ssh
}

func policyClient(t testing.TB, in *instance, user *browserUser, mcpURL string) *mcp.ClientSession {
	t.Helper()
	return policyClientWith(t, in, user, mcpURL, nil, nil)
}

// policyClientWith is policyClient with the Go SDK's client and session options.
func policyClientWith(t testing.TB, in *instance, user *browserUser, mcpURL string, copts *mcp.ClientOptions, sopts *mcp.ClientSessionOptions) *mcp.ClientSession {
	t.Helper()
	return connectOAuthWith(t, in, mcpURL, &auth.AuthorizationCodeHandlerConfig{
		AuthorizationCodeFetcher: user.fetcher(),
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			ClientName: "policy client", RedirectURIs: []string{"http://127.0.0.1:53682/callback"},
		}},
	}, copts, sopts)
}

func toolNames(t testing.TB, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

// TestPolicyOwnerAndSharedUser: the built-in policy through a real tunnel. The owner sees and
// calls every tool. The owner shares the tunnel from the ssh command line; the person it is
// shared with sees only the read tool in tools/list, may call it, and is denied the write and
// destructive tools with a JSON-RPC error naming the rule, and those calls never reach the
// server. Someone it is not shared with is not offered the approval at all.
func TestPolicyOwnerAndSharedUser(t *testing.T) {
	jsonl := filepath.Join(t.TempDir(), "audit.jsonl")
	in := startOAuth(t, "--audit-jsonl", jsonl)
	ns := startNotesServer(t)
	mcpURL, ssh := policyTunnelSSH(t, in, "owner@e2e.test", ns, "share=friend@e2e.test")

	owner := policyClient(t, in, in.signIn(t, "owner@e2e.test"), mcpURL)
	if got := toolNames(t, owner); !slices.Equal(got, []string{"delete_all", "read_notes", "write_note"}) {
		t.Fatalf("the owner's tools/list: %v", got)
	}
	for _, tool := range []string{"read_notes", "write_note", "delete_all"} {
		if res, err := owner.CallTool(context.Background(), &mcp.CallToolParams{Name: tool}); err != nil || res.IsError {
			t.Errorf("the owner calling %s: %v %+v", tool, err, res)
		}
	}

	friend := policyClient(t, in, in.signIn(t, "friend@e2e.test"), mcpURL)
	if got := toolNames(t, friend); !slices.Equal(got, []string{"read_notes"}) {
		t.Errorf("the shared user's tools/list: %v, want only read_notes", got)
	}
	if res, err := friend.CallTool(context.Background(), &mcp.CallToolParams{Name: "read_notes"}); err != nil || res.IsError {
		t.Errorf("the shared user calling read_notes: %v %+v", err, res)
	}
	before := ns.count("write_note") + ns.count("delete_all")
	for _, tool := range []string{"write_note", "delete_all"} {
		_, err := friend.CallTool(context.Background(), &mcp.CallToolParams{Name: tool})
		if err == nil || !strings.Contains(err.Error(), `rule "default"`) {
			t.Errorf("the shared user calling %s: %v; want a denial naming the rule", tool, err)
		}
	}
	if after := ns.count("write_note") + ns.count("delete_all"); after != before {
		t.Errorf("denied calls reached the server (%d → %d)", before, after)
	}

	// toolgate policy test answers the same, naming the rule and where the class came from.
	name := strings.Split(strings.TrimPrefix(mcpURL, "https://"), ".")[0]
	for tool, want := range map[string]string{
		"write_note": `DENY by rule "default"`, "read_notes": `ALLOW by rule "shared-read"`, "nonexistent": `DENY by rule "default"`,
	} {
		out, stderr, code := in.adminRun("policy", "test", "--user", "friend@e2e.test", "--tunnel", name, "--tool", tool)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("policy test %s: exit %d, %q%s; want %q", tool, code, out, stderr, want)
		}
		if tool == "write_note" && !strings.Contains(out, "write (from the server's tools/list)") {
			t.Errorf("policy test %s does not say where the class came from:\n%s", tool, out)
		}
	}

	// The audit log has every request with its decision, and the security events around
	// them; the JSON-lines export has them too.
	waitFor(t, 10*time.Second, "the denial in the audit log", func() bool {
		out, _, _ := in.adminRun("audit", "list", "--tunnel", name, "--decision", "deny", "--json")
		return strings.Contains(out, `"user":"friend@e2e.test"`) && strings.Contains(out, `"tool":"write_note"`) &&
			strings.Contains(out, `"rule":"default"`) && strings.Contains(out, `"args_digest":"sha256:`)
	})
	out, _, _ := in.adminRun("audit", "list", "--limit", "1000", "--json")
	for _, kind := range []string{"tunnel_open", "tunnel_share", "sign_in", "client_registered", "consent", "token_issued", "mcp"} {
		if !strings.Contains(out, `"kind":"`+kind+`"`) {
			t.Errorf("no %s record in the audit log", kind)
		}
	}
	waitFor(t, 10*time.Second, "the denial in the JSON-lines export", func() bool {
		b, _ := os.ReadFile(jsonl)
		return strings.Contains(string(b), `"decision":"deny"`) && strings.Contains(string(b), `"tool":"write_note"`)
	})

	// The owner's terminal shows who asked for what and what was decided.
	for _, want := range []string{"shared with friend@e2e.test",
		`owner@e2e.test via "policy client"  tools/call delete_all [destructive]  allow  200`,
		`friend@e2e.test via "policy client"  tools/call read_notes [read]  allow  200`,
		`friend@e2e.test via "policy client"  tools/call write_note [write]  DENIED by "default"  200`} {
		waitFor(t, 5*time.Second, "the terminal line "+want, func() bool { return strings.Contains(ssh.Output(), want) })
	}
}

// TestPolicyStepUpForOldSignIn: destructive tools need a sign-in younger than max-auth-age.
// Past it, the owner's destructive call gets a 403 insufficient_scope challenge; the client
// authorizes again, which signs the person in again, and the retried call passes. Read calls
// are not affected.
func TestPolicyStepUpForOldSignIn(t *testing.T) {
	in := startOAuth(t, "--max-auth-age", "3s")
	ns := startNotesServer(t)
	mcpURL := policyTunnel(t, in, "stepper@e2e.test", ns)
	user := in.signIn(t, "stepper@e2e.test")
	cs := policyClient(t, in, user, mcpURL)
	// Listing teaches toolgate the classes; a tool never listed would count as destructive.
	toolNames(t, cs)
	if res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "delete_all"}); err != nil || res.IsError {
		t.Fatalf("destructive call right after sign-in: %v", err)
	}
	time.Sleep(3500 * time.Millisecond)
	if res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "read_notes"}); err != nil || res.IsError {
		t.Fatalf("read call with an old sign-in: %v", err)
	}
	authorizations := user.authorizations
	if res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "delete_all"}); err != nil || res.IsError {
		t.Fatalf("destructive call with an old sign-in, after step-up: %v", err)
	}
	if user.authorizations != authorizations+1 || user.signIns < 2 {
		t.Errorf("authorizations %d → %d, sign-ins %d; want one more authorization after signing in again",
			authorizations, user.authorizations, user.signIns)
	}
	if n := ns.count("delete_all"); n != 2 {
		t.Errorf("delete_all reached the server %d times, want 2", n)
	}
}
