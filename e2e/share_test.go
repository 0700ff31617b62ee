package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/toolgate/toolgate/e2e/sshtest"
)

// cli runs the toolgate binary as an operator does, `toolgate ARGS --data-dir DIR`, which
// finds the running server's admin socket and runs the command inside it.
func (in *instance) cli(args ...string) (stdout, stderr string, code int) {
	in.t.Helper()
	cmd := exec.Command(toolgateBin, append(args, "--data-dir", in.dataDir)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		in.t.Fatalf("toolgate %v: %v", args, err)
	}
	return o.String(), e.String(), 0
}

// namedTunnel opens the owner's tunnel named name to ns with a key of its own, and returns
// the ssh process once the tunnel's URL is on its terminal.
func namedTunnel(t *testing.T, in *instance, key *sshtest.Key, name string, ns *notesServer) *sshtest.Client {
	t.Helper()
	c := sshtest.Start(t, sshtest.Options{Key: key, Port: in.ssh,
		Args: []string{"-T", "-R", fmt.Sprintf("%s:80:127.0.0.1:%d", name, ns.port)}})
	if got := tunnelHost(t, c, 1)[0]; !strings.HasPrefix(got, name+".") {
		t.Fatalf("asked for %s, got %s", name, got)
	}
	return c
}

func callRead(cs *mcp.ClientSession) error {
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "read_notes"})
	if err == nil && res.IsError {
		err = fmt.Errorf("tool error: %+v", res.Content)
	}
	return err
}

// TestShareFromCLI: the operator shares a live tunnel with `toolgate tunnel share`; the person
// it is shared with can then authorize an MCP client and call the read tool. The share is
// saved: after the owner reconnects with a new ssh process it still applies, and the owner's
// terminal lists it under the URL. `toolgate tunnel unshare` takes it back at once. The
// notes server's own call counts say what got through.
func TestShareFromCLI(t *testing.T) {
	in := startOAuth(t)
	ns := startNotesServer(t)
	key := sshtest.NewKey(t)
	in.linkKeyTo(key, "owner@e2e.test")
	ssh := namedTunnel(t, in, key, "shared-notes", ns)
	mcpURL := in.url("shared-notes."+in.domain, "/mcp")

	out, stderr, code := in.cli("tunnel", "share", "shared-notes", "friend@e2e.test")
	if code != 0 || !strings.Contains(out, "shared-notes (owner owner@e2e.test) is shared with friend@e2e.test\n  applied to the live tunnel\n") {
		t.Fatalf("toolgate tunnel share: exit %d, %q %q", code, out, stderr)
	}
	waitFor(t, 5*time.Second, "the owner's terminal to hear of the share", func() bool {
		return strings.Contains(ssh.Output(), "toolgate: the operator shared friend@e2e.test; shared-notes is now shared with friend@e2e.test")
	})

	friend := policyClient(t, in, in.signIn(t, "friend@e2e.test"), mcpURL)
	if got := toolNames(t, friend); !slices.Equal(got, []string{"read_notes"}) {
		t.Fatalf("the shared user's tools/list: %v, want only read_notes", got)
	}
	if err := callRead(friend); err != nil {
		t.Fatalf("the shared user calling read_notes: %v", err)
	}
	if n := ns.count("read_notes"); n != 1 {
		t.Fatalf("read_notes reached the server %d times, want 1", n)
	}

	// The owner reconnects: a new ssh process, the same name, and the share is in force
	// before anyone says so again.
	ssh.Signal(syscall.SIGTERM)
	waitFor(t, 10*time.Second, "the tunnel to go", func() bool {
		out, _, _ := in.adminRun("tunnel", "shares", "shared-notes", "--json")
		return strings.Contains(out, `"live":false`)
	})
	ssh = namedTunnel(t, in, key, "shared-notes", ns)
	waitFor(t, 5*time.Second, "the saved share under the URL", func() bool {
		return regexp.MustCompile(`/mcp  ->  -R shared-notes:80\n(  Go and Node .*\n)?  shared with friend@e2e\.test\n`).MatchString(ssh.Stdout())
	})
	// The new incarnation learns the tools' classes from a listing, as every tunnel does.
	if got := toolNames(t, friend); !slices.Equal(got, []string{"read_notes"}) {
		t.Fatalf("after the owner reconnected, the shared user's tools/list: %v", got)
	}
	if err := callRead(friend); err != nil {
		t.Fatalf("after the owner reconnected, the shared user calling read_notes: %v", err)
	}
	if n := ns.count("read_notes"); n != 2 {
		t.Fatalf("read_notes reached the server %d times, want 2", n)
	}

	// Unshared: the next call is denied by policy and never reaches the server.
	if out, stderr, code = in.cli("tunnel", "unshare", "shared-notes", "friend@e2e.test"); code != 0 ||
		!strings.Contains(out, "shared-notes (owner owner@e2e.test) is shared with nobody\n") {
		t.Fatalf("toolgate tunnel unshare: exit %d, %q %q", code, out, stderr)
	}
	// The call is denied by rule "default". Or the Go SDK has closed the session already: it
	// re-opens its standalone SSE stream (a GET) now and then, that GET is denied by the same
	// rule with a 403, and the SDK closes a session whose stream is refused. Either way the
	// owner's terminal shows the denial, and the server's count below must not move.
	err := callRead(friend)
	switch {
	case err == nil:
		t.Fatal("after unshare, the shared user called read_notes")
	case strings.Contains(err.Error(), `rule "default"`):
	case strings.Contains(err.Error(), "client is closing") || strings.Contains(err.Error(), "connection closed"):
		if !strings.Contains(ssh.Output(), `get  DENIED by "default"  403`) {
			t.Fatalf("after unshare, the session closed (%v) without a denied GET on the owner's terminal", err)
		}
	default:
		t.Fatalf("after unshare, the shared user calling read_notes: %v; want a denial by rule \"default\"", err)
	}
	if n := ns.count("read_notes"); n != 2 {
		t.Fatalf("after unshare read_notes reached the server (%d calls, want 2)", n)
	}
	// A typo in an unshare is refused, not taken for done.
	if _, stderr, code = in.cli("tunnel", "unshare", "shared-notes", "freind@e2e.test"); code != 1 ||
		!strings.Contains(stderr, "shared-notes is not shared with freind@e2e.test") {
		t.Fatalf("unshare of someone not shared: exit %d, %q", code, stderr)
	}

	waitFor(t, 10*time.Second, "the share and unshare in the audit log", func() bool {
		out, _, _ := in.adminRun("audit", "list", "--tunnel", "shared-notes", "--json")
		return strings.Contains(out, `"kind":"tunnel_share","tunnel":"shared-notes","owner":"owner@e2e.test"`) &&
			strings.Contains(out, `"kind":"tunnel_unshare","tunnel":"shared-notes","owner":"owner@e2e.test"`)
	})
}

// policyFile is a policy like the built-in one, with the rule for people the tunnel is
// shared with given as sharedRule.
func policyFile(sharedRule string) string {
	return "rules:\n" +
		"  - name: owner\n" +
		"    when: user.id == tunnel.owner\n" +
		"    effect: allow\n" +
		sharedRule
}

// TestPolicyReloadFromCLI: `toolgate policy reload` makes the running server read its policy
// file again. A broken file is refused with its line and column, the command fails, and the
// old policy keeps deciding; a good one decides from then on. The notes server's call counts
// say which calls got through.
func TestPolicyReloadFromCLI(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(policyFile("  - name: shared-read\n    when: tunnel.shared && (method != \"tools/call\" || tool.class == \"read\")\n    effect: allow\n"))
	in := startOAuth(t, "--policy", file)
	ns := startNotesServer(t)
	mcpURL := policyTunnel(t, in, "owner@e2e.test", ns, "share=friend@e2e.test")
	friend := policyClient(t, in, in.signIn(t, "friend@e2e.test"), mcpURL)
	if got := toolNames(t, friend); !slices.Equal(got, []string{"read_notes"}) {
		t.Fatalf("tools/list under the first policy: %v", got)
	}
	callWrite := func() error {
		res, err := friend.CallTool(context.Background(), &mcp.CallToolParams{Name: "write_note"})
		if err == nil && res.IsError {
			err = fmt.Errorf("tool error: %+v", res.Content)
		}
		return err
	}
	if err := callWrite(); err == nil || !strings.Contains(err.Error(), `rule "default"`) {
		t.Fatalf("write_note under the first policy: %v; want a denial", err)
	}

	// Broken: a condition cut short on line 6. Refused, exit 1, the old policy stays.
	write(policyFile("  - name: shared-writes\n    when: tunnel.shared && (method != \"tools/call\" || tool.class in [\"read\", \"write\"\n    effect: allow\n"))
	out, stderr, code := in.cli("policy", "reload")
	if code != 1 || out != "" || !strings.Contains(stderr, "the policy in force stays") ||
		!regexp.MustCompile(regexp.QuoteMeta(file)+`:6:\d+: `).MatchString(stderr) {
		t.Fatalf("policy reload of a broken file: exit %d, %q %q; want exit 1 and %s:6:COLUMN", code, out, stderr, file)
	}
	if err := callWrite(); err == nil || !strings.Contains(err.Error(), `rule "default"`) {
		t.Fatalf("write_note after a refused reload: %v; want the old policy's denial", err)
	}
	if err := callRead(friend); err != nil {
		t.Fatalf("read_notes after a refused reload: %v", err)
	}
	if n := ns.count("write_note"); n != 0 {
		t.Fatalf("write_note reached the server %d times under the old policy", n)
	}

	// Good: the new policy decides.
	write(policyFile("  - name: shared-writes\n    when: tunnel.shared && (method != \"tools/call\" || tool.class in [\"read\", \"write\"])\n    effect: allow\n"))
	if out, stderr, code = in.cli("policy", "reload"); code != 0 || out != "reloaded "+file+": 2 rules (owner, shared-writes)\n" {
		t.Fatalf("policy reload: exit %d, %q %q", code, out, stderr)
	}
	if got := toolNames(t, friend); !slices.Equal(got, []string{"read_notes", "write_note"}) {
		t.Fatalf("tools/list under the new policy: %v", got)
	}
	if err := callWrite(); err != nil {
		t.Fatalf("write_note under the new policy: %v", err)
	}
	if n := ns.count("write_note"); n != 1 {
		t.Fatalf("write_note reached the server %d times, want 1", n)
	}
	if _, err := friend.CallTool(context.Background(), &mcp.CallToolParams{Name: "delete_all"}); err == nil || !strings.Contains(err.Error(), `rule "default"`) {
		t.Fatalf("delete_all under the new policy: %v; want a denial", err)
	}
	if out, _, code = in.cli("policy", "show"); code != 0 || !strings.Contains(out, "# from "+file+"; 2 rules: owner, shared-writes\n") {
		t.Fatalf("policy show: exit %d, %q", code, out)
	}
	waitFor(t, 10*time.Second, "both reloads in the audit log", func() bool {
		out, _, _ := in.adminRun("audit", "list", "--kind", "policy_reload", "--json")
		return strings.Count(out, `"decision":"deny"`) == 1 && strings.Count(out, `"decision":"allow"`) == 1
	})
}
