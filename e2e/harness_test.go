// Package e2e runs the toolgate binary as users run it, against real clients: the OpenSSH
// client for tunnels, the MCP Go SDK client and server, and plain HTTP, TLS and WebSocket
// clients for streaming. Nothing here reaches past loopback.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/toolgate/toolgate/e2e/sshtest"
)

// binaries built once for the whole package.
var (
	toolgateBin   string
	everythingBin string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "toolgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		toolgateBin = filepath.Join(dir, "toolgate")
		everythingBin = filepath.Join(dir, "everything-server")
		args := []string{"build"}
		if raceEnabled {
			// The binary under test runs with the race detector too, so e2e traffic checks
			// the server's concurrency, not just the test's.
			args = append(args, "-race")
		}
		for _, b := range []struct{ out, pkg string }{
			{toolgateBin, "github.com/toolgate/toolgate/cmd/toolgate"},
			{everythingBin, "github.com/modelcontextprotocol/go-sdk/conformance/everything-server"},
		} {
			cmd := exec.Command("go", append(args, "-o", b.out, b.pkg)...)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "building %s: %v\n", b.pkg, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// instance is one running toolgate process.
type instance struct {
	t        testing.TB
	cmd      *exec.Cmd
	dataDir  string
	domain   string
	https    string // host:port
	ssh      int    // port
	admin    string // host:port
	caPEM    []byte // development CA, if any
	roots    *x509.CertPool
	logs     *lockedBuffer
	stdout   *lockedBuffer
	done     chan struct{}
	waitErr  error
	stopOnce sync.Once

	mu     sync.Mutex
	linked map[string]bool // key fingerprints linkKey has linked in this process
}

// startToolgate runs the binary with loopback listeners on free ports plus args, and waits
// until it reports it is serving.
func startToolgate(t testing.TB, args ...string) *instance {
	t.Helper()
	return startToolgateEnv(t, nil, args...)
}

// startToolgateEnv is startToolgate with extra environment variables (NAME=VALUE).
func startToolgateEnv(t testing.TB, env []string, args ...string) *instance {
	t.Helper()
	dataDir := filepath.Join(t.TempDir(), "data")
	full := append([]string{"serve",
		"--data-dir", dataDir,
		"--https-listen", "127.0.0.1:0",
		"--ssh-listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0",
		"--log-format", "json",
		"--log-level", "debug",
		// Most tests are about tunnels, not tokens; the OAuth tests turn it back on.
		"--tunnel-auth", "none",
	}, args...)
	return startToolgateArgsEnv(t, dataDir, env, full...)
}

func startToolgateArgs(t testing.TB, dataDir string, args ...string) *instance {
	t.Helper()
	return startToolgateArgsEnv(t, dataDir, nil, args...)
}

func startToolgateArgsEnv(t testing.TB, dataDir string, env []string, args ...string) *instance {
	t.Helper()
	in := &instance{t: t, dataDir: dataDir, logs: &lockedBuffer{}, stdout: &lockedBuffer{}, done: make(chan struct{})}
	in.cmd = exec.Command(toolgateBin, args...)
	in.cmd.Stdout = in.stdout
	in.cmd.Stderr = in.logs
	in.cmd.Env = append(append(os.Environ(), "GORACE=halt_on_error=1"), env...)
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		in.waitErr = in.cmd.Wait()
		close(in.done)
	}()
	t.Cleanup(func() {
		in.stop()
		if t.Failed() {
			t.Logf("toolgate logs:\n%s\nstdout:\n%s", in.logs.String(), in.stdout.String())
		}
		if strings.Contains(in.logs.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector fired in toolgate:\n%s", in.logs.String())
		}
	})
	var serving struct {
		Domain, HTTPS, SSH, Admin, CA string
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, line := range strings.Split(in.logs.String(), "\n") {
			if !strings.Contains(line, `"msg":"toolgate serving"`) {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("bad log line %q: %v", line, err)
			}
			serving.Domain, _ = m["domain"].(string)
			serving.HTTPS, _ = m["https"].(string)
			serving.SSH, _ = m["ssh"].(string)
			serving.Admin, _ = m["admin"].(string)
			serving.CA, _ = m["ca"].(string)
		}
		if serving.HTTPS != "" {
			break
		}
		select {
		case <-in.done:
			t.Fatalf("toolgate exited (%v) before serving:\n%s", in.waitErr, in.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("toolgate did not start within 60s:\n%s", in.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	in.domain, in.https, in.admin = serving.Domain, serving.HTTPS, serving.Admin
	_, sshPort, _ := net.SplitHostPort(serving.SSH)
	in.ssh, _ = strconv.Atoi(sshPort)
	in.roots = x509.NewCertPool()
	if serving.CA != "" {
		pem, err := os.ReadFile(serving.CA)
		if err != nil {
			t.Fatal(err)
		}
		in.caPEM = pem
		in.roots.AppendCertsFromPEM(pem)
	}
	return in
}

// stop sends SIGTERM and waits for a graceful exit.
func (in *instance) stop() {
	in.stopOnce.Do(func() {
		in.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-in.done:
		case <-time.After(20 * time.Second):
			in.cmd.Process.Kill()
			<-in.done
			in.t.Errorf("toolgate did not exit within 20s of SIGTERM")
		}
	})
}

// httpsPort is the port of the public listener.
func (in *instance) httpsPort() string {
	_, p, _ := net.SplitHostPort(in.https)
	return p
}

// client returns an HTTP client that reaches every name under the domain at the instance's
// HTTPS listener (Go does not resolve *.localhost) and trusts its CA.
func (in *instance) client() *http.Client {
	return &http.Client{Transport: in.transport()}
}

func (in *instance) transport() *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, in.https)
		},
		TLSClientConfig:   &tls.Config{RootCAs: in.roots},
		ForceAttemptHTTP2: true,
	}
}

// url is the public URL of a host under the domain plus path.
func (in *instance) url(host, path string) string {
	return "https://" + host + ":" + in.httpsPort() + path
}

// sshClient links the key (to a user of its own, unless linked already) and starts the OpenSSH
// client with it against the instance.
func (in *instance) sshClient(key *sshtest.Key, args []string, command ...string) *sshtest.Client {
	in.linkKey(key)
	return sshtest.Start(in.t, sshtest.Options{Key: key, Port: in.ssh, Args: args, Command: command})
}

// keyOwner is the user the harness links a key to: one per key, so that keys stand for
// different people, as they did when a key was its own owner.
func keyOwner(key *sshtest.Key) string {
	sum := sha256.Sum256([]byte(key.Fingerprint))
	return "owner-" + hex.EncodeToString(sum[:5]) + "@e2e.test"
}

// linkKey links key to keyOwner(key), creating that user on first use, as an operator does with
// `toolgate user add` and `toolgate key add`; the database remembers both across restarts.
func (in *instance) linkKey(key *sshtest.Key) {
	in.t.Helper()
	in.linkKeyTo(key, keyOwner(key))
}

func (in *instance) linkKeyTo(key *sshtest.Key, email string) {
	in.t.Helper()
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.linked[key.Fingerprint] {
		return
	}
	if _, stderr, code := in.adminRun("user", "add", email); code != 0 && !strings.Contains(stderr, "already exists") {
		in.t.Fatalf("toolgate user add %s: exit %d: %s", email, code, stderr)
	}
	if _, stderr, code := in.adminRun("key", "add", "--user", email, strings.TrimSpace(key.AuthorizedKey())); code != 0 {
		in.t.Fatalf("toolgate key add: exit %d: %s", code, stderr)
	}
	if in.linked == nil {
		in.linked = make(map[string]bool)
	}
	in.linked[key.Fingerprint] = true
}

// adminRun runs an account or key command inside the running server, over the admin socket
// in its data directory, as `toolgate user|key …` does when a server holds the database.
func (in *instance) adminRun(args ...string) (stdout, stderr string, code int) {
	in.t.Helper()
	sock := filepath.Join(in.dataDir, "admin.sock")
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(map[string]any{"args": args})
	resp, err := client.Post("http://toolgate/run", "application/json", bytes.NewReader(body))
	if err != nil {
		in.t.Fatalf("admin socket: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		in.t.Fatalf("admin socket: %s: %s", resp.Status, b)
	}
	var out struct {
		Stdout, Stderr string
		Code           int
	}
	readJSON(in.t, resp.Body, &out)
	return out.Stdout, out.Stderr, out.Code
}

// tunnelHost waits for the session to print a tunnel URL and returns its host.
func tunnelHost(t testing.TB, c *sshtest.Client, n int) []string {
	t.Helper()
	re := regexp.MustCompile(`https://([a-z0-9-]+\.[a-z0-9.-]+):\d+/mcp  ->  `)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ms := re.FindAllStringSubmatch(c.Stdout(), -1)
		if len(ms) >= n {
			hosts := make([]string, n)
			for i := range hosts {
				hosts[i] = ms[i][1]
			}
			return hosts
		}
		if time.Now().After(deadline) || c.Exited() {
			t.Fatalf("want %d tunnel lines; ssh output:\n%s", n, c.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metric reads one value from the admin listener's /metrics.
func (in *instance) metric(name string) float64 {
	in.t.Helper()
	resp, err := http.Get("http://" + in.admin + "/metrics")
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				in.t.Fatal(err)
			}
			return v
		}
	}
	in.t.Fatalf("metric %s not found", name)
	return 0
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// localServer runs an HTTP server on loopback, as the developer's local server.
func localServer(t testing.TB, h http.Handler, keepAlive time.Duration) (port int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, IdleTimeout: keepAlive}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects a process's output while tests read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// readJSON decodes a response body.
func readJSON(t testing.TB, r io.Reader, v any) {
	t.Helper()
	if err := json.NewDecoder(r).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func regexpMust(s string) *regexp.Regexp { return regexp.MustCompile(s) }
