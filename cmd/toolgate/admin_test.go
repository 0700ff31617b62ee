package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/web"
)

// cli runs `toolgate ARGS --data-dir dir` in-process and returns its output and exit code.
func cli(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(append(args, "--data-dir", dir), &o, &e, func(string) (string, bool) { return "", false })
	return o.String(), e.String(), code
}

func writePubKey(t *testing.T) (path, fingerprint string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "id_ed25519.pub")
	if err := os.WriteFile(path, append(bytes.TrimSpace(ssh.MarshalAuthorizedKey(k)), " me@laptop\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, ssh.FingerprintSHA256(k)
}

// TestAdminCLIWithoutServer: with no server running, the commands open the database file
// themselves; bad input fails with a clear message and changes nothing.
func TestAdminCLIWithoutServer(t *testing.T) {
	dir := t.TempDir()
	out, errOut, code := cli(t, dir, "user", "add", "Ada@Example.com", "--name", "Ada", "--admin")
	if code != 0 {
		t.Fatalf("user add: %d %s", code, errOut)
	}
	if !regexp.MustCompile(`added ada@example\.com \(admin\)\n.*\n  https://toolgate\.localhost:8443/signin/t/[A-Za-z0-9_-]{43}\n`).MatchString(out) {
		t.Fatalf("user add printed:\n%s", out)
	}
	keyFile, fp := writePubKey(t)

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"duplicate user", []string{"user", "add", "ada@example.com"}, 1, "already exists"},
		{"invalid email", []string{"user", "add", "not-an-email"}, 1, "not a valid email"},
		{"unknown command", []string{"user", "frobnicate"}, 2, `unknown command "user frobnicate"`},
		{"missing argument", []string{"user", "disable"}, 2, "expected EMAIL"},
		{"key for nobody", []string{"key", "add", "--user", "bob@example.com", keyFile}, 1, `no user "bob@example.com"`},
		{"key without user", []string{"key", "add", keyFile}, 2, "--user is required"},
		{"not a key", []string{"key", "add", "--user", "ada@example.com", "ssh-ed25519 AAAAnotbase64 x"}, 1, "not an OpenSSH public key"},
		{"missing key file", []string{"key", "add", "--user", "ada@example.com", filepath.Join(dir, "nope.pub")}, 1, "reading the public key"},
		{"revoke unknown key", []string{"key", "revoke", "SHA256:AAAA"}, 1, "no linked key SHA256:AAAA"},
		{"reset unknown user", []string{"user", "reset", "nobody@example.com"}, 1, `no user "nobody@example.com"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := cli(t, dir, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, errOut, tc.code, tc.want)
			}
		})
	}
	// Nothing the failures above touched was written.
	out, _, _ = cli(t, dir, "user", "list")
	if strings.Count(out, "\n") != 2 || !strings.Contains(out, "ada@example.com  Ada   admin  active") {
		t.Fatalf("user list after failed commands:\n%s", out)
	}
	if out, _, _ = cli(t, dir, "key", "list"); strings.Count(out, "\n") != 1 {
		t.Fatalf("key list after failed commands:\n%s", out)
	}

	if out, errOut, code = cli(t, dir, "key", "add", "--user", "ADA@example.com", keyFile, "--ttl", "0"); code != 0 || !strings.Contains(out, "linked "+fp+" (ssh-ed25519) to ada@example.com; never expires") {
		t.Fatalf("key add: %d %q %q", code, out, errOut)
	}
	if out, _, _ = cli(t, dir, "key", "list", "--user", "ada@example.com"); !strings.Contains(out, fp) || !strings.Contains(out, " cli") {
		t.Fatalf("key list:\n%s", out)
	}
	// Revoking takes the fingerprint as ssh-keygen -l prints it, with or without the prefix.
	if out, errOut, code = cli(t, dir, "key", "revoke", strings.TrimPrefix(fp, "SHA256:")); code != 0 || out != "revoked "+fp+"; 0 SSH connection(s) closed\n" {
		t.Fatalf("key revoke: %d %q %q", code, out, errOut)
	}
	if out, errOut, code = cli(t, dir, "user", "disable", "ada@example.com"); code != 0 || !strings.Contains(out, "disabled ada@example.com") {
		t.Fatalf("user disable: %d %q %q", code, out, errOut)
	}
	if _, errOut, code = cli(t, dir, "user", "reset", "ada@example.com"); code != 1 || !strings.Contains(errOut, "is disabled") {
		t.Fatalf("user reset of a disabled user: %d %q", code, errOut)
	}
	if _, errOut, code = cli(t, dir, "key", "add", "--user", "ada@example.com", keyFile); code != 1 || !strings.Contains(errOut, "is disabled") {
		t.Fatalf("key add for a disabled user: %d %q", code, errOut)
	}
}

// closeRecorder stands in for the SSH server.
type closeRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (c *closeRecorder) CloseKey(fp, reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, "key "+fp+": "+reason)
	return 2
}

func (c *closeRecorder) CloseOwner(owner, reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, "owner "+owner+": "+reason)
	return 1
}

// TestAdminCLIThroughSocket: while a server holds the database, the same commands run inside
// it, over the admin socket, and can close live connections.
func TestAdminCLIThroughSocket(t *testing.T) {
	dir := t.TempDir()
	store, err := data.Open(data.Config{Path: filepath.Join(dir, dbFileName)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	accounts, err := web.NewAccounts(web.AccountsConfig{Store: store, BaseURL: "https://example.test"})
	if err != nil {
		t.Fatal(err)
	}
	closer := &closeRecorder{}
	l, err := listenAdminSocket(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, adminSocketName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode: %v %v", fi, err)
	}
	srv := &http.Server{Handler: adminSocketHandler(func() adminEnv {
		return adminEnv{store: store, accounts: accounts, closer: closer}
	})}
	go srv.Serve(l)
	defer srv.Close()

	// The database is held: only the socket can have done this.
	out, errOut, code := cli(t, dir, "user", "add", "ops@example.test")
	if code != 0 || !strings.Contains(out, "https://example.test/signin/t/") {
		t.Fatalf("user add over the socket: %d %q %q", code, out, errOut)
	}
	u, err := store.UserByEmail(context.Background(), "ops@example.test")
	if err != nil {
		t.Fatal(err)
	}
	keyFile, fp := writePubKey(t)
	// The key file is read by the CLI, not the server: the relative path below is meaningless
	// to the server's working directory.
	t.Chdir(filepath.Dir(keyFile))
	if out, errOut, code = cli(t, dir, "key", "add", "--user", "ops@example.test", filepath.Base(keyFile)); code != 0 {
		t.Fatalf("key add over the socket: %d %q %q", code, out, errOut)
	}
	if out, errOut, code = cli(t, dir, "key", "revoke", fp); code != 0 || out != "revoked "+fp+"; 2 SSH connection(s) closed\n" {
		t.Fatalf("key revoke over the socket: %d %q %q", code, out, errOut)
	}
	if out, errOut, code = cli(t, dir, "user", "disable", "ops@example.test"); code != 0 || !strings.Contains(out, "1 SSH connection(s) closed") {
		t.Fatalf("user disable over the socket: %d %q %q", code, out, errOut)
	}
	want := []string{"key " + fp + ": this SSH key was revoked", "owner " + u.ID + ": your account was disabled"}
	if strings.Join(closer.calls, "\n") != strings.Join(want, "\n") {
		t.Fatalf("connections closed: %q, want %q", closer.calls, want)
	}
	// Usage errors come back with the server's exit code.
	if _, errOut, code = cli(t, dir, "key"); code != 2 || !strings.Contains(errOut, "usage:") {
		t.Fatalf("bare key over the socket: %d %q", code, errOut)
	}
}
