package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/tunnel"
)

// Fixed times far from now, so "lapsed" is decided the same on any day the tests run.
var (
	namesLongAgo = time.Date(2020, 1, 2, 3, 4, 0, 0, time.UTC)
	namesLater   = time.Date(2099, 5, 6, 7, 8, 0, 0, time.UTC)
)

// seedNames gives owner@example.com "notes" (shared with two) and other@example.com a lapsed
// "old-one", and leaves "zz-key" to a bare SSH key, in the database of dir.
func seedNames(t *testing.T, dir string) {
	t.Helper()
	for _, e := range []string{"owner@example.com", "other@example.com"} {
		if _, errOut, code := cli(t, dir, "user", "add", e); code != 0 {
			t.Fatalf("user add: %s", errOut)
		}
	}
	store, err := data.Open(data.Config{Path: filepath.Join(dir, dbFileName)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	id := func(email string) string {
		u, err := store.UserByEmail(ctx, email)
		if err != nil {
			t.Fatal(err)
		}
		return u.ID
	}
	for _, c := range []data.NameClaim{
		{Name: "notes", Owner: id("owner@example.com"), Kind: data.NameRequested, LastUsed: namesLongAgo, ExpiresAt: namesLater},
		{Name: "old-one", Owner: id("other@example.com"), Kind: data.NameRandom, LastUsed: namesLongAgo, ExpiresAt: namesLongAgo.Add(time.Hour)},
		{Name: "zz-key", Owner: "SHA256:bareKey", Kind: data.NameRequested, LastUsed: namesLongAgo},
	} {
		if _, err := store.ClaimName(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.ShareName(ctx, "notes", "", []string{"ada@example.com", "group:eng"}); err != nil {
		t.Fatal(err)
	}
}

// TestTunnelNamesAndReleaseWithoutServer: with no server, `tunnel names` lists the claims from
// the file (live unknown) and `tunnel release` deletes a claim with its shares, audited; bad
// input fails with a clear message, the usual exit code, and changes nothing.
func TestTunnelNamesAndReleaseWithoutServer(t *testing.T) {
	dir := t.TempDir()
	seedNames(t, dir)
	conf := filepath.Join(t.TempDir(), "toolgate.yaml")
	if err := os.WriteFile(conf, []byte("reserved-names: team-x,billing2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	names := func(args ...string) string {
		t.Helper()
		out, errOut, code := cli(t, dir, append([]string{"tunnel", "names"}, args...)...)
		if code != 0 {
			t.Fatalf("tunnel names %q: exit %d, %q", args, code, errOut)
		}
		return out
	}
	all := "NAME     OWNER              KIND       LIVE     LAST USED         LAPSES                   SHARES\n" +
		"notes    owner@example.com  requested  unknown  2020-01-02 03:04  2099-05-06 07:08         2\n" +
		"old-one  other@example.com  random     unknown  2020-01-02 03:04  lapsed 2020-01-02 04:04  0\n" +
		"zz-key   SHA256:bareKey     requested  unknown  2020-01-02 03:04  never                    0\n"
	if got := names(); got != all {
		t.Fatalf("tunnel names:\n%s\nwant:\n%s", got, all)
	}
	if got, want := names("--json"), `{"name":"notes","owner":"owner@example.com","kind":"requested","live":null,"last_used":"2020-01-02T03:04:00Z","lapses":"2099-05-06T07:08:00Z","shares":2}`+"\n"+
		`{"name":"old-one","owner":"other@example.com","kind":"random","live":null,"last_used":"2020-01-02T03:04:00Z","lapses":"2020-01-02T04:04:00Z","shares":0}`+"\n"+
		`{"name":"zz-key","owner":"SHA256:bareKey","kind":"requested","live":null,"last_used":"2020-01-02T03:04:00Z","lapses":null,"shares":0}`+"\n"; got != want {
		t.Fatalf("tunnel names --json:\n%s\nwant:\n%s", got, want)
	}
	if got := names("--owner", "Owner@Example.com"); !strings.Contains(got, "\nnotes ") || strings.Count(got, "\n") != 2 {
		t.Fatalf("tunnel names --owner owner@example.com:\n%s", got)
	}
	if got := names("--json", "--owner=SHA256:bareKey"); !strings.HasPrefix(got, `{"name":"zz-key",`) || strings.Count(got, "\n") != 1 {
		t.Fatalf("tunnel names --owner SHA256:bareKey:\n%s", got)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"names of an unknown user", []string{"tunnel", "names", "--owner", "nobody@example.com"}, 1, `no user "nobody@example.com"`},
		{"names with an argument", []string{"tunnel", "names", "notes"}, 2, "tunnel names: expected no arguments"},
		{"names with a bad flag", []string{"tunnel", "names", "--live"}, 2, "flag provided but not defined: -live"},
		{"release an unknown name", []string{"tunnel", "release", "nope"}, 1, `no tunnel named "nope" is claimed; nothing to release`},
		{"release a reserved name", []string{"tunnel", "release", "WWW"}, 1, "www is a reserved name: nobody can claim it, so there is no claim to release"},
		{"release a name the settings reserve", []string{"tunnel", "release", "team-x", "--config", conf}, 1, "team-x is a reserved name"},
		{"release without a name", []string{"tunnel", "release"}, 2, "tunnel release: expected NAME"},
		{"release two names", []string{"tunnel", "release", "notes", "zz-key"}, 2, "tunnel release: expected NAME"},
		{"release with a bad flag", []string{"tunnel", "release", "notes", "--force"}, 2, "flag provided but not defined: -force"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := cli(t, dir, tc.args...)
			if code != tc.code || out != "" || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errOut, tc.code, tc.want)
			}
		})
	}
	if got := names(); got != all {
		t.Fatalf("failed commands changed the names:\n%s", got)
	}

	out, errOut, code := cli(t, dir, "tunnel", "release", "Notes")
	if want := "released notes (owner owner@example.com); anyone may claim it now\n" +
		"  no server is running, so there was no live tunnel to close\n" +
		"  its saved shares went with it: ada@example.com, group:eng\n"; code != 0 || out != want {
		t.Fatalf("tunnel release: exit %d, %q %q; want %q", code, out, errOut, want)
	}
	if got := names(); strings.Contains(got, "notes") {
		t.Fatalf("after release, tunnel names:\n%s", got)
	}
	if _, errOut, code := cli(t, dir, "tunnel", "release", "notes"); code != 1 || !strings.Contains(errOut, `no tunnel named "notes" is claimed`) {
		t.Fatalf("a second release: exit %d, %q", code, errOut)
	}
	// A lapsed claim is still a claim until the sweep: releasable, and a bare key's too.
	if out, errOut, code := cli(t, dir, "tunnel", "release", "zz-key"); code != 0 || !strings.HasPrefix(out, "released zz-key (owner SHA256:bareKey); ") {
		t.Fatalf("release of a key's name: exit %d, %q %q", code, out, errOut)
	}

	out, _, _ = cli(t, dir, "audit", "list", "--kind", "name_release", "--json")
	for _, want := range []string{
		`"kind":"name_release","tunnel":"notes","owner":"owner@example.com","decision":"allow","detail":"released by the operator (toolgate tunnel release); no server is running, so there was no live tunnel to close; its saved shares went with it: ada@example.com, group:eng"`,
		`"kind":"name_release","tunnel":"zz-key","owner":"SHA256:bareKey","decision":"allow"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the audit log lacks %s:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 2 {
		t.Errorf("%d name_release records, want 2 (failed commands record nothing):\n%s", n, out)
	}

	// The name is anyone's now, and comes with no shares.
	store, err := data.Open(data.Config{Path: filepath.Join(dir, dbFileName)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	if _, err := store.ClaimName(ctx, data.NameClaim{Name: "notes", Owner: "u_someone_else"}); err != nil {
		t.Fatalf("claiming the released name: %v", err)
	}
	if sh, err := store.GetNameShares(ctx, "notes"); err != nil || len(sh.With) != 0 {
		t.Fatalf("the new claim is shared with %q, %v", sh.With, err)
	}
}

// TestTunnelReleaseThroughSocket: inside a running server `tunnel names` says what is live and
// `tunnel release` closes the name's forwards at once, on every connection of the owner that
// serves it, with a line on their terminals, and leaves their other forwards; the name is
// then free for another owner, whom the old forward's late close does not disturb. Refused
// releases change nothing, live or saved.
func TestTunnelReleaseThroughSocket(t *testing.T) {
	dir := t.TempDir()
	ss := startSocketServer(t, dir, "")
	ctx := context.Background()
	for _, u := range []data.User{{ID: "u_owner", Email: "owner@example.com"}, {ID: "u_bob", Email: "bob@example.com"}} {
		if _, err := ss.store.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	open := func(owner string, term *terminal, bind string) *tunnel.Forward {
		t.Helper()
		f, err := ss.reg.Open(ctx, tunnel.OpenRequest{Owner: owner, Conn: term, Dialer: noDialer{}, BindAddr: bind, LocalHost: "localhost:80"})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	term1, term2 := &terminal{}, &terminal{}
	notes := open("u_owner", term1, "notes")
	other := open("u_owner", term1, "other")
	open("u_owner", term2, "notes") // the owner's second connection: a load-balanced pool
	if _, err := ss.store.ShareName(ctx, "notes", "", []string{"ada@example.com"}); err != nil {
		t.Fatal(err)
	}

	out, errOut, code := cli(t, dir, "tunnel", "names", "--json")
	if code != 0 || !strings.Contains(out, `{"name":"notes","owner":"owner@example.com","kind":"requested","live":true,`) ||
		!strings.Contains(out, `"shares":1}`) || !strings.Contains(out, `{"name":"other","owner":"owner@example.com","kind":"requested","live":true,`) {
		t.Fatalf("tunnel names --json: exit %d, %q %q", code, out, errOut)
	}
	before, _, _ := cli(t, dir, "tunnel", "names")

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown", []string{"tunnel", "release", "nope"}, 1, `no tunnel named "nope" is claimed`},
		{"reserved", []string{"tunnel", "release", "admin"}, 1, "admin is a reserved name"},
		{"bad flag", []string{"tunnel", "release", "--now", "notes"}, 2, "flag provided but not defined: -now"},
		{"two names", []string{"tunnel", "release", "notes", "other"}, 2, "expected NAME"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := cli(t, dir, tc.args...)
			if code != tc.code || out != "" || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errOut, tc.code, tc.want)
			}
		})
	}
	if after, _, _ := cli(t, dir, "tunnel", "names"); after != before || ss.reg.Lookup("notes") != notes.Tunnel() ||
		term1.text() != "" || term2.text() != "" {
		t.Fatalf("refused releases changed something:\n%s\nwas:\n%s\nterminals %q %q", after, before, term1.text(), term2.text())
	}

	out, errOut, code = cli(t, dir, "tunnel", "release", "notes")
	if want := "released notes (owner owner@example.com); anyone may claim it now\n" +
		"  its live tunnel was closed (2 forward(s)) and the owner's terminal was told why\n" +
		"  its saved shares went with it: ada@example.com\n"; code != 0 || out != want {
		t.Fatalf("tunnel release: exit %d, %q %q; want %q", code, out, errOut, want)
	}
	// At once: by the time the command returns, the name is not served.
	if ss.reg.Lookup("notes") != nil {
		t.Fatal("the released name is still live")
	}
	if ss.reg.Lookup("other") != other.Tunnel() {
		t.Fatal("the connection's other forward was closed too")
	}
	const line = "toolgate: the operator released the name notes; this forward is closed"
	if term1.text() != line || term2.text() != line {
		t.Fatalf("the owner's terminals showed %q and %q; want %q once each", term1.text(), term2.text(), line)
	}
	if _, err := ss.store.GetName(ctx, "notes"); !errors.Is(err, data.ErrNotFound) {
		t.Fatalf("the claim is still there: %v", err)
	}

	// Bob claims it; the old forward's close, when the owner's ssh ends, leaves him be.
	bobs := open("u_bob", &terminal{}, "notes")
	notes.Close()
	if ss.reg.Lookup("notes") != bobs.Tunnel() {
		t.Fatal("the old forward's close took bob's tunnel")
	}
	out, _, _ = cli(t, dir, "tunnel", "names", "--owner", "bob@example.com", "--json")
	if !strings.HasPrefix(out, `{"name":"notes","owner":"bob@example.com","kind":"requested","live":true,`) || !strings.HasSuffix(out, `"shares":0}`+"\n") {
		t.Fatalf("tunnel names --owner bob@example.com: %q", out)
	}

	got := ss.auditDetails(t, "name_release", 1)
	if want := "allow: released by the operator (toolgate tunnel release); its live tunnel was closed (2 forward(s)) and the owner's terminal was told why; its saved shares went with it: ada@example.com"; len(got) != 1 || got[0] != want {
		t.Fatalf("name_release records: %q; want [%q]", got, want)
	}
	recs, err := ss.store.QueryAudit(ctx, data.AuditQuery{Kind: "name_release"})
	if err != nil || len(recs) != 1 || recs[0].Tunnel != "notes" || recs[0].Owner != "owner@example.com" || recs[0].User != "" {
		t.Fatalf("name_release record: %+v, %v", recs, err)
	}
}
