package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/toolgate/toolgate/e2e/sshtest"
)

// serveOn runs an HTTP server on a given loopback port (one that was free a moment ago).
func serveOn(t testing.TB, port int, h http.Handler) {
	t.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("listen on %d: %v", port, err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

// say answers every request with body.
func say(body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, body)
	})
}

// quickClient fails a request that hangs, instead of the whole test.
func quickClient(t testing.TB, in *instance) *http.Client {
	return &http.Client{Transport: tracked(t, in.transport()), Timeout: 30 * time.Second}
}

// TestLocalServerDown: the ssh client cannot connect to the local server. API clients get 502
// JSON local_unreachable, a browser navigation gets an HTML page; the session survives, and the
// tunnel works as soon as a server listens on the port.
func TestLocalServerDown(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	port := freePort(t)
	host, ssh := openTunnel(t, in, nil, port)
	c := quickClient(t, in)

	resp := do(t, c, "POST", in.url(host, "/mcp"), strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`),
		"Content-Type", "application/json", "Accept", "application/json, text/event-stream")
	wantError(t, resp, http.StatusBadGateway, "local_unreachable")

	resp = do(t, c, "GET", in.url(host, "/"), nil,
		"Accept", "text/html,application/xhtml+xml,*/*;q=0.8", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document")
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("browser: %d %q, want 502 HTML", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(string(page), "<html") || !strings.Contains(string(page), "local_unreachable") {
		t.Fatalf("browser page does not explain the error:\n%s", page)
	}

	if ssh.Exited() {
		t.Fatalf("ssh exited after the failed local connects:\n%s", ssh.Output())
	}
	serveOn(t, port, say("up now"))
	if code, body := getStatus(t, c, in.url(host, "/")); code != 200 || body != "up now" {
		t.Fatalf("after the local server started: %d %q", code, body)
	}
}

// TestLocalServerHangs: a local server that never sends response headers gets 504 local_timeout
// after --response-header-timeout.
func TestLocalServerHangs(t *testing.T) {
	t.Parallel()
	in := startToolgate(t, "--response-header-timeout", "1s")
	var hits atomic.Int32
	release := make(chan struct{})
	port := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}), 0)
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	host, _ := openTunnel(t, in, nil, port)

	start := time.Now()
	resp := do(t, quickClient(t, in), "POST", in.url(host, "/mcp"), strings.NewReader(`{}`), "Content-Type", "application/json")
	elapsed := time.Since(start)
	wantError(t, resp, http.StatusGatewayTimeout, "local_timeout")
	if hits.Load() != 1 {
		t.Fatalf("the local handler ran %d times, want 1", hits.Load())
	}
	if elapsed < time.Second {
		t.Fatalf("504 after %s, before the 1s response-header timeout", elapsed)
	}
}

// TestSSHClientKilled: SIGKILL on the ssh client removes its tunnel promptly; requests then get
// 502 tunnel_offline at once, and the same key with the same -R gets the same name back.
func TestSSHClientKilled(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	port := localServer(t, say("hello"), 0)
	key := sshtest.NewKey(t)
	host, ssh := openTunnel(t, in, key, port)
	c := quickClient(t, in)
	if code, _ := getStatus(t, c, in.url(host, "/")); code != 200 {
		t.Fatalf("before the kill: %d", code)
	}

	ssh.Signal(syscall.SIGKILL)
	waitFor(t, 5*time.Second, "the tunnel to be removed", func() bool { return in.metric("toolgate_tunnels") == 0 })
	// At once, not after a dial timeout: a client that gives up after 5s must get the answer.
	impatient := &http.Client{Transport: c.Transport, Timeout: 5 * time.Second}
	wantError(t, do(t, impatient, "GET", in.url(host, "/"), nil), http.StatusBadGateway, "tunnel_offline")

	again, _ := openTunnel(t, in, key, port)
	if again != host {
		t.Fatalf("reconnected as %s, was %s", again, host)
	}
	if code, body := getStatus(t, c, in.url(host, "/")); code != 200 || body != "hello" {
		t.Fatalf("after reconnecting: %d %q", code, body)
	}
}

// TestSSHClientFrozenKeepalive: a client stopped with SIGSTOP keeps its TCP connection open but
// answers nothing; keepalives (300ms × 2) remove its tunnel after about a second.
func TestSSHClientFrozenKeepalive(t *testing.T) {
	in := startToolgate(t, "--ssh-keepalive-interval", "300ms", "--ssh-keepalive-count", "2")
	host, ssh := openTunnel(t, in, nil, localServer(t, say("hello"), 0))
	c := quickClient(t, in)
	if code, _ := getStatus(t, c, in.url(host, "/")); code != 200 {
		t.Fatalf("before freezing: %d", code)
	}
	// The keepalive must not remove a live client: wait several keepalive rounds first.
	time.Sleep(1500 * time.Millisecond)
	if n := in.metric("toolgate_tunnels"); n != 1 {
		t.Fatalf("a live, answering client lost its tunnel to keepalives (tunnels=%v)", n)
	}

	ssh.Signal(syscall.SIGSTOP)
	t.Cleanup(func() { ssh.Signal(syscall.SIGCONT) })
	frozen := time.Now()
	waitFor(t, 10*time.Second, "keepalives to remove the frozen client's tunnel", func() bool {
		return in.metric("toolgate_tunnels") == 0
	})
	t.Logf("tunnel removed %s after SIGSTOP (keepalive 300ms x 2)", time.Since(frozen).Round(10*time.Millisecond))
	waitFor(t, 5*time.Second, "the frozen connection to be closed", func() bool {
		return in.metric("toolgate_ssh_connections") == 0
	})
	wantError(t, do(t, c, "GET", in.url(host, "/"), nil), http.StatusBadGateway, "tunnel_offline")
}

// TestSSHClientFrozenReconnect: while a client is frozen (and keepalives, at their 15s default,
// have not noticed), a new connection with the same key and arguments gets the same name within
// a few seconds: toolgate probes the old connection and evicts it.
func TestSSHClientFrozenReconnect(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	key := sshtest.NewKey(t)
	args := func(port int) []string {
		return []string{"-T", "-R", fmt.Sprintf("0:127.0.0.1:%d", port), "-R", fmt.Sprintf("fixed:80:127.0.0.1:%d", port)}
	}
	// Both connections forward to the same local port, as a reconnecting client does. While
	// the old client is frozen, any answer comes through the new connection.
	port := localServer(t, say("hello"), 0)
	old := in.sshClient(key, args(port))
	hosts := tunnelHost(t, old, 2)
	c := quickClient(t, in)
	for _, h := range hosts {
		if code, _ := getStatus(t, c, in.url(h, "/")); code != 200 {
			t.Fatalf("%s before freezing: %d", h, code)
		}
	}

	old.Signal(syscall.SIGSTOP)
	t.Cleanup(func() { old.Signal(syscall.SIGCONT) })
	start := time.Now()
	fresh := in.sshClient(key, args(port))
	again := tunnelHost(t, fresh, 2)
	t.Logf("names back %s after the reconnect started", time.Since(start).Round(10*time.Millisecond))
	if again[0] != hosts[0] || again[1] != hosts[1] {
		t.Fatalf("while the old client is frozen, the new connection got %v, want %v", again, hosts)
	}
	// Right away, without waiting for the eviction to finish: a request must not be lost to
	// the frozen member of the pool.
	for _, h := range append(again, again...) {
		if code, body := getStatus(t, c, in.url(h, "/")); code != 200 || body != "hello" {
			t.Fatalf("%s through the new connection: %d %q", h, code, body)
		}
	}
	if fresh.Exited() {
		t.Fatalf("the new connection exited:\n%s", fresh.Output())
	}
	waitFor(t, 5*time.Second, "the evicted connection to be gone", func() bool {
		return in.metric("toolgate_ssh_connections") == 1
	})
}

// TestTwoForwardsAndNames: two -R in one session are two working tunnels; -R myname:80 asks for
// myname; another key asking for myname is refused and its ssh (ExitOnForwardFailure=yes)
// exits non-zero, leaving the owner's tunnel alone.
func TestTwoForwardsAndNames(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	p1 := localServer(t, say("one"), 0)
	p2 := localServer(t, say("two"), 0)
	key := sshtest.NewKey(t)
	ssh := in.sshClient(key, []string{"-T",
		"-R", fmt.Sprintf("0:127.0.0.1:%d", p1),
		"-R", fmt.Sprintf("myname:80:127.0.0.1:%d", p2)})
	hosts := tunnelHost(t, ssh, 2)
	if hosts[0] == hosts[1] {
		t.Fatalf("two forwards share %s", hosts[0])
	}
	if hosts[1] != "myname."+in.domain {
		t.Fatalf("-R myname:80 got %s", hosts[1])
	}
	c := quickClient(t, in)
	for i, want := range []string{"one", "two"} {
		if code, body := getStatus(t, c, in.url(hosts[i], "/")); code != 200 || body != want {
			t.Fatalf("%s: %d %q, want %q", hosts[i], code, body, want)
		}
	}

	other := in.sshClient(sshtest.NewKey(t), []string{"-T", "-R", fmt.Sprintf("myname:80:127.0.0.1:%d", p1)})
	if code := other.Wait(10 * time.Second); code == 0 {
		t.Fatalf("ssh asking for a name another key holds exited 0:\n%s", other.Output())
	}
	if !strings.Contains(other.Output(), "remote port forwarding failed") {
		t.Fatalf("ssh did not report the failed forward:\n%s", other.Output())
	}
	// The refusal changed nothing for the owner.
	if code, body := getStatus(t, c, in.url(hosts[1], "/")); code != 200 || body != "two" {
		t.Fatalf("myname after the refused claim: %d %q", code, body)
	}
	if ssh.Exited() {
		t.Fatalf("the owner's ssh exited:\n%s", ssh.Output())
	}
}

// TestRefusedNameReasonOnTerminal: a refused -R must tell the user why on the session's terminal,
// also with ExitOnForwardFailure=yes (which sshtest sets and the README recommends). OpenSSH
// sends the forward requests and opens the session together; it exits on the failure reply, so
// the reason must be on the session before that reply.
func TestRefusedNameReasonOnTerminal(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	port := localServer(t, say("one"), 0)
	owner := in.sshClient(sshtest.NewKey(t), []string{"-T", "-R", fmt.Sprintf("myname:80:127.0.0.1:%d", port)})
	tunnelHost(t, owner, 1)
	for _, spec := range []string{"myname:80", "www:80"} { // another's name; a reserved one
		other := in.sshClient(sshtest.NewKey(t), []string{"-T", "-R", fmt.Sprintf("%s:127.0.0.1:%d", spec, port)})
		if code := other.Wait(10 * time.Second); code == 0 {
			t.Fatalf("-R %s: ssh exited 0", spec)
		}
		if out := other.Output(); !strings.Contains(out, "-R "+spec+" refused") {
			t.Errorf("-R %s: the terminal does not say why the forward was refused; it shows only:\n%s", spec, out)
		}
	}
}

// TestCancelForward: `ssh -O cancel -R …` on a control master sends cancel-tcpip-forward; the
// tunnel goes away, the master stays connected, and `-O forward` brings the tunnel back.
func TestCancelForward(t *testing.T) {
	t.Parallel()
	sshBin := sshtest.Require(t)
	in := startToolgate(t)
	port := localServer(t, say("hi"), 0)
	dir, err := os.MkdirTemp("", "tgctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	spec := fmt.Sprintf("gone:80:127.0.0.1:%d", port)
	master := in.sshClient(sshtest.NewKey(t), []string{"-M", "-S", sock, "-N", "-R", spec})
	host := "gone." + in.domain
	c := quickClient(t, in)
	waitFor(t, 10*time.Second, "the master's tunnel", func() bool {
		if master.Exited() {
			t.Fatalf("master exited:\n%s", master.Output())
		}
		code, _ := getStatus(t, c, in.url(host, "/"))
		return code == 200
	})

	control := func(op string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, sshBin, "-F", "/dev/null", "-S", sock, "-O", op, "-R", spec, "dev@127.0.0.1").CombinedOutput()
		if err != nil {
			t.Fatalf("ssh -O %s: %v\n%s", op, err, out)
		}
	}
	control("cancel")
	waitFor(t, 5*time.Second, "the cancelled tunnel to go", func() bool { return in.metric("toolgate_tunnels") == 0 })
	wantError(t, do(t, c, "GET", in.url(host, "/"), nil), http.StatusBadGateway, "tunnel_offline")
	if master.Exited() || in.metric("toolgate_ssh_connections") != 1 {
		t.Fatalf("the master did not stay connected:\n%s", master.Output())
	}

	control("forward")
	waitFor(t, 5*time.Second, "the tunnel to come back", func() bool {
		code, _ := getStatus(t, c, in.url(host, "/"))
		return code == 200
	})
}

// TestKeepAliveRace: the local server closes idle connections after 5s; a POST, 6s of quiet, and
// another POST both succeed (the pooled stream is not reused after the server closed it).
func TestKeepAliveRace(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	var conns atomic.Int32
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:     say("ok"),
		IdleTimeout: 5 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	host, _ := openTunnel(t, in, nil, l.Addr().(*net.TCPAddr).Port)
	c := quickClient(t, in)
	post := func(n int) {
		t.Helper()
		resp := do(t, c, "POST", in.url(host, "/mcp"), strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), "Content-Type", "application/json")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("POST %d: %d %s", n, resp.StatusCode, b)
		}
	}
	post(1)
	post(2)
	time.Sleep(6 * time.Second)
	post(3)
	// For the record: how many local connections served the three (2 when the first two shared
	// a pooled stream, which a fast client can race).
	t.Logf("local connections: %d", conns.Load())
}

// TestNoGoroutineLeak: ten ssh clients with a tunnel each, some requests and a stream left open,
// all killed: toolgate's goroutine count returns to where it was.
func TestNoGoroutineLeak(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	streaming := make(chan struct{}, 100)
	port := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: open\n\n")
			http.NewResponseController(w).Flush()
			streaming <- struct{}{}
			<-r.Context().Done()
			return
		}
		io.WriteString(w, "ok")
	}), 0)
	tr := tracked(t, in.transport())
	c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	settle := func() {
		t.Helper()
		waitFor(t, 10*time.Second, "tunnels and connections to close", func() bool {
			return in.metric("toolgate_tunnels") == 0 && in.metric("toolgate_ssh_connections") == 0
		})
		tr.CloseIdleConnections()
	}

	// Warm-up: the first handshake and request start background goroutines (certificate
	// maintenance, the pool's machinery) that live on; they are part of the baseline.
	host, warm := openTunnel(t, in, nil, port)
	if code, _ := getStatus(t, c, in.url(host, "/")); code != 200 {
		t.Fatalf("warm-up: %d", code)
	}
	warm.Kill()
	settle()
	time.Sleep(500 * time.Millisecond)
	base := in.metric("go_goroutines")

	var clients []*sshtest.Client
	var streams []*http.Response
	for range 10 {
		host, ssh := openTunnel(t, in, nil, port)
		clients = append(clients, ssh)
		for i := range 3 {
			resp := do(t, c, "POST", in.url(host, fmt.Sprintf("/r%d", i)), strings.NewReader("x"))
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("request %d: %d", i, resp.StatusCode)
			}
		}
		resp := do(t, &http.Client{Transport: tr}, "GET", in.url(host, "/stream"), nil)
		streams = append(streams, resp)
		<-streaming
	}
	during := in.metric("go_goroutines")
	for _, ssh := range clients {
		ssh.Signal(syscall.SIGKILL)
	}
	for _, resp := range streams {
		// The stream ends (with an error: its tunnel died mid-response) instead of hanging.
		done := make(chan struct{})
		go func() { io.Copy(io.Discard, resp.Body); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("a stream through a killed tunnel did not end")
		}
		resp.Body.Close()
	}
	settle()
	var now float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		now = in.metric("go_goroutines")
		if now <= base+1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("goroutines: baseline %v, with 10 tunnels %v, after %v", base, during, now)
	if now > base+5 {
		t.Fatalf("goroutines did not return to the baseline: %v now, %v before (+5 allowed)", now, base)
	}
}
