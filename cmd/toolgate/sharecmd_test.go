package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/tunnel"
	"github.com/toolgate/toolgate/web"
)

// claimName gives name to the user of email in the database of dir, as connecting with
// `ssh -R name:80:…` would.
func claimName(t *testing.T, store *data.Store, name, email string) {
	t.Helper()
	u, err := store.UserByEmail(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.ClaimName(context.Background(), data.NameClaim{Name: name, Owner: u.ID, Kind: data.NameRequested}); err != nil {
		t.Fatal(err)
	}
}

// TestTunnelShareWithoutServer: with no server, the share commands change the saved list in
// the database file; bad input fails with a clear message and changes nothing; each change
// is in the audit log.
func TestTunnelShareWithoutServer(t *testing.T) {
	dir := t.TempDir()
	if _, errOut, code := cli(t, dir, "user", "add", "owner@example.com"); code != 0 {
		t.Fatalf("user add: %s", errOut)
	}
	store, err := data.Open(data.Config{Path: filepath.Join(dir, dbFileName)})
	if err != nil {
		t.Fatal(err)
	}
	claimName(t, store, "notes", "owner@example.com")
	store.Close()

	out, errOut, code := cli(t, dir, "tunnel", "share", "Notes", "Ada@Example.com,group:Eng", "bob@example.com")
	if code != 0 || out != "notes (owner owner@example.com) is shared with ada@example.com, bob@example.com, group:eng\n"+
		"  not connected: applies when the owner next connects\n" {
		t.Fatalf("tunnel share: %d %q %q", code, out, errOut)
	}
	sharesOut := func() string {
		t.Helper()
		out, errOut, code := cli(t, dir, "tunnel", "shares", "notes")
		if code != 0 {
			t.Fatalf("tunnel shares: %d %q", code, errOut)
		}
		return out
	}
	before := sharesOut()
	if !strings.Contains(before, "notes   owner@example.com  no    ada@example.com, bob@example.com, group:eng  -") {
		t.Fatalf("tunnel shares:\n%s", before)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"not an email", []string{"tunnel", "share", "notes", "carol@example.com", "carol"}, 1, `"carol" is neither an email address nor group:NAME`},
		{"empty group", []string{"tunnel", "share", "notes", "group:"}, 1, "a group needs a name"},
		{"unknown name", []string{"tunnel", "share", "nope", "carol@example.com"}, 1, `no tunnel named "nope"`},
		{"nobody to share with", []string{"tunnel", "share", "notes"}, 2, "expected NAME and at least one EMAIL or group:NAME"},
		{"only commas", []string{"tunnel", "share", "notes", ",,"}, 1, "share with whom?"},
		{"unshare someone not shared", []string{"tunnel", "unshare", "notes", "ada@example.com", "carol@example.com"}, 1, "notes is not shared with carol@example.com"},
		{"unshare on an unknown name", []string{"tunnel", "unshare", "nope", "ada@example.com"}, 1, `no tunnel named "nope"`},
		{"shares of an unknown name", []string{"tunnel", "shares", "nope"}, 1, `no tunnel named "nope"`},
		{"shares of two names", []string{"tunnel", "shares", "notes", "other"}, 2, "at most one NAME"},
		{"unknown subcommand", []string{"tunnel", "open", "notes"}, 2, `unknown command "tunnel open"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := cli(t, dir, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, errOut, tc.code, tc.want)
			}
		})
	}
	if after := sharesOut(); after != before {
		t.Fatalf("failed commands changed the shares:\n%s\nwas:\n%s", after, before)
	}

	if out, errOut, code = cli(t, dir, "tunnel", "unshare", "notes", "ada@example.com,group:eng"); code != 0 ||
		!strings.HasPrefix(out, "notes (owner owner@example.com) is shared with bob@example.com\n") {
		t.Fatalf("tunnel unshare: %d %q %q", code, out, errOut)
	}
	out, _, _ = cli(t, dir, "tunnel", "shares", "--json")
	if out != `{"tunnel":"notes","owner":"owner@example.com","live":false,"saved":["bob@example.com"],"ssh":[],"shared_with":["bob@example.com"]}`+"\n" {
		t.Fatalf("tunnel shares --json:\n%s", out)
	}
	// policy test on the tunnel, not connected, answers from the saved shares.
	if _, errOut, code = cli(t, dir, "user", "add", "bob@example.com"); code != 0 {
		t.Fatalf("user add: %s", errOut)
	}
	out, errOut, code = cli(t, dir, "policy", "test", "--user", "bob@example.com", "--tunnel", "notes", "--tool", "read_notes", "--class", "read")
	if code != 0 || !strings.HasPrefix(out, `ALLOW by rule "shared-read"`) || !strings.Contains(out, "shared with this user: true (not connected: saved shares only") {
		t.Fatalf("policy test: %d %q %q", code, out, errOut)
	}
	out, _, _ = cli(t, dir, "audit", "list", "--tunnel", "notes", "--json")
	for _, want := range []string{
		`"kind":"tunnel_share","tunnel":"notes","owner":"owner@example.com","decision":"allow","detail":"shared by the operator (toolgate tunnel share): ada@example.com, bob@example.com, group:eng; now shared with ada@example.com, bob@example.com, group:eng"`,
		`"kind":"tunnel_unshare","tunnel":"notes","owner":"owner@example.com","decision":"allow","detail":"unshared by the operator (toolgate tunnel unshare): ada@example.com, group:eng; now shared with bob@example.com"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the audit log lacks %s:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 2 {
		t.Errorf("%d audit records for the tunnel, want 2 (failed commands record nothing):\n%s", n, out)
	}
}

// terminal stands in for an SSH connection: it records what the owner's terminal is shown.
type terminal struct {
	mu    sync.Mutex
	lines []string
}

func (c *terminal) Probe(context.Context) error { return nil }
func (c *terminal) Evict(string)                {}
func (c *terminal) Notify(line string) {
	c.mu.Lock()
	c.lines = append(c.lines, line)
	c.mu.Unlock()
}

func (c *terminal) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

type noDialer struct{}

func (noDialer) DialContext(context.Context, netip.AddrPort) (net.Conn, error) {
	return nil, errors.New("no local server in this test")
}

// socketServer is a running server's admin socket over store, with a registry, a policy
// file and an audit log.
type socketServer struct {
	store    *data.Store
	reg      *tunnel.Registry
	policies *policies
	audit    *data.AuditLog
}

func startSocketServer(t *testing.T, dir, policyFile string) *socketServer {
	t.Helper()
	store, err := data.Open(data.Config{Path: filepath.Join(dir, dbFileName)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ss := &socketServer{store: store}
	ss.audit = store.AuditLog(data.AuditLogConfig{FlushInterval: 10 * time.Millisecond})
	t.Cleanup(func() { ss.audit.Close(context.Background()) })
	if ss.reg, err = tunnel.NewRegistry(tunnel.Config{Domain: "toolgate.localhost", Names: store, Shares: store}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if ss.policies, err = loadPolicy(policyFile, authz.DefaultPolicy(time.Hour), log); err != nil {
		t.Fatal(err)
	}
	ss.policies.audit = ss.audit
	accounts, err := web.NewAccounts(web.AccountsConfig{Store: store, BaseURL: "https://example.test"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := listenAdminSocket(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: adminSocketHandler(func() adminEnv {
		return adminEnv{store: store, accounts: accounts, tunnels: ss.reg, audit: ss.audit,
			policies: &policyEnv{policy: ss.policies.Current, reload: ss.policies.Reload, file: policyFile}}
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ss
}

// auditKinds waits for the audit log to hold records of kind and returns their details.
func (ss *socketServer) auditDetails(t *testing.T, kind string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, err := ss.store.QueryAudit(context.Background(), data.AuditQuery{Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) >= n || time.Now().After(deadline) {
			var out []string
			for _, r := range recs {
				out = append(out, r.Decision+": "+r.Detail)
			}
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTunnelShareThroughSocket: inside a running server a change applies to the live tunnel
// before the command returns, the owner's terminal is told, and an unshare that leaves
// someone in through the ssh command says so.
func TestTunnelShareThroughSocket(t *testing.T) {
	dir := t.TempDir()
	ss := startSocketServer(t, dir, "")
	ctx := context.Background()
	if _, err := ss.store.CreateUser(ctx, data.User{ID: "u_owner", Email: "owner@example.com"}); err != nil {
		t.Fatal(err)
	}
	term := &terminal{}
	f, err := ss.reg.Open(ctx, tunnel.OpenRequest{Owner: "u_owner", Conn: term, Dialer: noDialer{}, BindAddr: "notes", LocalHost: "localhost:80"})
	if err != nil {
		t.Fatal(err)
	}
	live := f.Tunnel()
	live.SetCommandShares(term, []string{"bob@example.com"})

	out, errOut, code := cli(t, dir, "tunnel", "share", "notes", "ada@example.com", "bob@example.com")
	if code != 0 || out != "notes (owner owner@example.com) is shared with ada@example.com, bob@example.com\n"+
		"  applied to the live tunnel\n  its ssh command also shares it with bob@example.com, for that connection\n" {
		t.Fatalf("tunnel share: %d %q %q", code, out, errOut)
	}
	if got := live.Shares(); !slices.Equal(got, []string{"ada@example.com", "bob@example.com"}) {
		t.Fatalf("the live tunnel is shared with %q after the command returned", got)
	}
	if !strings.Contains(term.text(), "toolgate: the operator shared ada@example.com, bob@example.com; notes is now shared with ada@example.com, bob@example.com") {
		t.Fatalf("the owner's terminal showed:\n%s", term.text())
	}
	out, _, _ = cli(t, dir, "tunnel", "shares")
	if !strings.Contains(out, "notes   owner@example.com  yes   ada@example.com, bob@example.com  bob@example.com") {
		t.Fatalf("tunnel shares:\n%s", out)
	}

	// Bob stays in through share= on the ssh command, and the operator is told.
	out, errOut, code = cli(t, dir, "tunnel", "unshare", "notes", "ada@example.com", "bob@example.com")
	if code != 0 || !strings.Contains(out, "notes (owner owner@example.com) is shared with nobody\n") ||
		!strings.Contains(out, "note: bob@example.com keep access through the owner's ssh command (share=) until that connection ends") {
		t.Fatalf("tunnel unshare: %d %q %q", code, out, errOut)
	}
	if got := live.Shares(); !slices.Equal(got, []string{"bob@example.com"}) {
		t.Fatalf("after unshare the live tunnel is shared with %q", got)
	}

	// The next connection gets the saved list, not the old connection's share=.
	if _, _, code = cli(t, dir, "tunnel", "share", "notes", "group:eng"); code != 0 {
		t.Fatal("tunnel share group:eng failed")
	}
	f.Close()
	f, err = ss.reg.Open(ctx, tunnel.OpenRequest{Owner: "u_owner", Conn: &terminal{}, Dialer: noDialer{}, BindAddr: "notes", LocalHost: "localhost:80"})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Tunnel().Shares(); !slices.Equal(got, []string{"group:eng"}) {
		t.Fatalf("after reconnecting the tunnel is shared with %q", got)
	}
	if got := ss.auditDetails(t, "tunnel_share", 2); len(got) != 2 {
		t.Fatalf("tunnel_share records: %q", got)
	}
}

// TestPolicyReloadThroughSocket: `policy reload` reloads the running server's file as SIGHUP
// does; a broken file is refused with its line and column, exit 1, and the policy in force
// stays; every attempt is audited. `policy show` prints what is in force.
func TestPolicyReloadThroughSocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("rules:\n  - name: first\n    when: user.id == tunnel.owner\n    effect: allow\n")
	ss := startSocketServer(t, dir, file)

	write("rules:\n  - name: second\n    when: user.id == tunnel.owner\n    effect: allow\n  - name: third\n    when: tunnel.shared\n    effect: allow\n")
	out, errOut, code := cli(t, dir, "policy", "reload")
	if code != 0 || out != "reloaded "+file+": 2 rules (second, third)\n" {
		t.Fatalf("policy reload: %d %q %q", code, out, errOut)
	}
	if got := ss.policies.Current().Rules(); !slices.Equal(got, []string{"second", "third"}) {
		t.Fatalf("in force after reload: %q", got)
	}

	write("rules:\n  - name: broken\n    when: user.id ==\n    effect: allow\n")
	out, errOut, code = cli(t, dir, "policy", "reload")
	if code != 1 || out != "" || !strings.Contains(errOut, "policy reload refused; the policy in force stays") ||
		!strings.Contains(errOut, file+":3:") {
		t.Fatalf("policy reload of a broken file: %d %q %q", code, out, errOut)
	}
	if got := ss.policies.Current().Rules(); !slices.Equal(got, []string{"second", "third"}) {
		t.Fatalf("a broken file replaced the policy: %q", got)
	}

	// show prints what is in force, not what is on disk now.
	out, errOut, code = cli(t, dir, "policy", "show")
	if code != 0 || !strings.HasPrefix(out, "# from "+file+"; 2 rules: second, third\nrules:\n  - name: second\n") || strings.Contains(out, "broken") {
		t.Fatalf("policy show: %d %q %q", code, out, errOut)
	}
	if _, errOut, code = cli(t, dir, "policy", "reload", "now"); code != 2 || !strings.Contains(errOut, "expected no arguments") {
		t.Fatalf("policy reload now: %d %q", code, errOut)
	}

	got := ss.auditDetails(t, "policy_reload", 2)
	if len(got) != 2 || !strings.HasPrefix(got[0], "allow: "+file+": 2 rules") || !strings.Contains(got[1], file+":3:21: ") || !strings.HasPrefix(got[1], "deny: ") {
		t.Fatalf("policy_reload records: %q", got)
	}
}

// TestPolicyReloadBuiltIn: a server on the built-in policy has no file to reload, and says so.
func TestPolicyReloadBuiltIn(t *testing.T) {
	dir := t.TempDir()
	startSocketServer(t, dir, "")
	if _, errOut, code := cli(t, dir, "policy", "reload"); code != 1 || !strings.Contains(errOut, "built-in policy") {
		t.Fatalf("policy reload: %d %q", code, errOut)
	}
	out, errOut, code := cli(t, dir, "policy", "show")
	if code != 0 || !strings.HasPrefix(out, "# the built-in policy; 3 rules: fresh-sign-in-for-destructive, owner, shared-read\n") {
		t.Fatalf("policy show: %d %q %q", code, out, errOut)
	}
}
