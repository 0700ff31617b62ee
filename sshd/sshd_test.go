package sshd_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/e2e/sshtest"
	"github.com/toolgate/toolgate/sshd"
	"github.com/toolgate/toolgate/tunnel"
	"github.com/toolgate/toolgate/web"
)

const domain = "toolgate.localhost"

// harness is an in-process toolgate without TLS: data, registry, proxy, the web front on a
// plain-HTTP test server, and the SSH server under test.
type harness struct {
	t       *testing.T
	st      *data.Store
	reg     *tunnel.Registry
	srv     *sshd.Server
	sshAddr string
	front   *httptest.Server
	proxy   *tunnel.Proxy
}

func newHarness(t *testing.T, mod func(*sshd.Config)) *harness {
	t.Helper()
	return newHarnessWith(t, nil, mod)
}

// newHarnessWith is newHarness with a hook on the registry's configuration too.
func newHarnessWith(t *testing.T, regMod func(*tunnel.Config), mod func(*sshd.Config)) *harness {
	t.Helper()
	st, err := data.Open(data.Config{Path: filepath.Join(t.TempDir(), "db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rc := tunnel.Config{Domain: domain, Names: st, Shares: st, ProbeTimeout: 500 * time.Millisecond}
	if regMod != nil {
		regMod(&rc)
	}
	reg, err := tunnel.NewRegistry(rc)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := tunnel.NewProxy(tunnel.ProxyConfig{ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	front, err := web.NewFront(web.FrontConfig{Domain: domain, Tunnels: reg, Proxy: proxy})
	if err != nil {
		t.Fatal(err)
	}
	hts := httptest.NewServer(front)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, _ := ssh.NewSignerFromKey(priv)
	cfg := sshd.Config{HostKey: hostKey, Auth: anyKey{}, Tunnels: reg, HandshakeTimeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := sshd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	h := &harness{t: t, st: st, reg: reg, srv: srv, sshAddr: l.Addr().String(), front: hts, proxy: proxy}
	t.Cleanup(func() {
		srv.Close()
		hts.Close()
		proxy.CloseIdleConnections()
		st.Close()
	})
	return h
}

func (h *harness) port() int {
	_, p, _ := net.SplitHostPort(h.sshAddr)
	var n int
	fmt.Sscan(p, &n)
	return n
}

// get sends a request for host through the front.
func (h *harness) get(host, path string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.front.URL+path, nil)
	req.Host = host
	resp, err := h.front.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// dial connects a Go SSH client with a fresh key.
func (h *harness) dial(signer ssh.Signer) (*ssh.Client, error) {
	if signer == nil {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		signer, _ = ssh.NewSignerFromKey(priv)
	}
	return ssh.Dial("tcp", h.sshAddr, &ssh.ClientConfig{
		User: "dev", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second,
	})
}

func serveHello(l net.Listener, body string) {
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s host=%s", body, r.Host)
	}))
}

// TestGoClientListen drives the x/crypto client's Listen, the strictest peer about the
// forwarded-tcpip payload: it parses the originator as an IP and matches the bind address and
// port exactly as it asked.
func TestGoClientListen(t *testing.T) {
	h := newHarness(t, nil)
	c, err := h.dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	l0, err := c.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatalf("Listen 0.0.0.0:0: %v", err)
	}
	if p := l0.Addr().(*net.TCPAddr).Port; p <= 10000 || p > 65535 {
		t.Fatalf("allocated port %d", p)
	}
	serveHello(l0, "random")
	l1, err := c.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	if l1.Addr().(*net.TCPAddr).Port == l0.Addr().(*net.TCPAddr).Port {
		t.Fatal("two -R 0 forwards on one connection got the same port")
	}
	serveHello(l1, "second")

	named, err := c.Listen("tcp", "127.0.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	serveHello(named, "loopback-bind")

	if h.reg.Len() != 3 {
		t.Fatalf("%d tunnels live, want 3", h.reg.Len())
	}
	// Find the names through the registry: each tunnel answers with its own body.
	bodies := map[string]bool{}
	for _, name := range liveNames(t, h) {
		code, body := h.get(name+"."+domain, "/")
		if code != 200 {
			t.Fatalf("GET %s: %d %s", name, code, body)
		}
		bodies[strings.Fields(body)[0]] = true
		if !strings.Contains(body, "host=localhost:") {
			t.Errorf("local server saw %q, want Host localhost:PORT", body)
		}
	}
	if len(bodies) != 3 {
		t.Fatalf("tunnels answered %v: each forward must reach its own listener", bodies)
	}

	// Closing a listener sends cancel-tcpip-forward: that tunnel goes, the others stay.
	l1.Close()
	waitUntil(t, "cancel to remove the tunnel", func() bool { return h.reg.Len() == 2 })
}

func liveNames(t *testing.T, h *harness) []string {
	t.Helper()
	return h.reg.Names()
}

func TestRequestedNameAndRefusals(t *testing.T) {
	h := newHarness(t, func(c *sshd.Config) { c.MaxConnsPerOwner = 1 })
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	alice, _ := ssh.NewSignerFromKey(priv)
	c, err := h.dial(alice)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.Listen("tcp", "myname:80")
	if err != nil {
		t.Fatalf("Listen myname:80: %v", err)
	}
	serveHello(l, "mine")
	if code, body := h.get("myname."+domain, "/x"); code != 200 || !strings.HasPrefix(body, "mine host=localhost:80") {
		t.Fatalf("GET myname: %d %q", code, body)
	}
	// Same address and port twice on one connection: refused.
	if _, err := c.Listen("tcp", "myname:80"); err == nil {
		t.Fatal("a duplicate forward was accepted")
	}
	// Reserved names and names of others: refused.
	if _, err := c.Listen("tcp", "admin:80"); err == nil {
		t.Fatal("a reserved name was accepted")
	}
	bob, err := h.dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if _, err := bob.Listen("tcp", "myname:80"); err == nil {
		t.Fatal("another key took alice's name")
	}
	// Connection limit per key, explained in a banner.
	var banner string
	_, err = ssh.Dial("tcp", h.sshAddr, &ssh.ClientConfig{
		User: "dev", Auth: []ssh.AuthMethod{ssh.PublicKeys(alice)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		BannerCallback: func(m string) error { banner = m; return nil },
	})
	if err == nil || !strings.Contains(banner, "the limit") {
		t.Fatalf("second connection of a key with limit 1: err=%v banner=%q", err, banner)
	}
}

// TestConnectionLimitPerAddress: authenticated connections from one address are bounded
// whoever's keys they use; past the limit the client is told why in a banner, and a slot freed
// by a closed connection can be used again.
func TestConnectionLimitPerAddress(t *testing.T) {
	h := newHarness(t, func(c *sshd.Config) { c.MaxConnsPerIP = 2 })
	var open []*ssh.Client
	for range 2 {
		c, err := h.dial(nil) // a new key, so a new owner, each time
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	third, _ := ssh.NewSignerFromKey(priv)
	var banner string
	_, err := ssh.Dial("tcp", h.sshAddr, &ssh.ClientConfig{
		User: "dev", Auth: []ssh.AuthMethod{ssh.PublicKeys(third)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		BannerCallback: func(m string) error { banner = m; return nil },
	})
	if err == nil || !strings.Contains(banner, "2 SSH connections are open from your address, the limit") {
		t.Fatalf("a third connection from one address with limit 2: err=%v banner=%q", err, banner)
	}
	open[0].Close()
	waitUntil(t, "a freed slot", func() bool {
		c, err := h.dial(third)
		if err != nil {
			return false
		}
		open = append(open, c)
		return true
	})
	for _, c := range open[1:] {
		c.Close()
	}
}

func TestHandshakeTimeout(t *testing.T) {
	h := newHarness(t, func(c *sshd.Config) { c.HandshakeTimeout = 200 * time.Millisecond })
	nc, err := net.Dial("tcp", h.sshAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	// The server sends its version, then must hang up on a client that says nothing.
	_, err = io.Copy(io.Discard, nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("a silent client was not disconnected")
	}
}

// TestKeepaliveDropsDeadClient uses a client that stops reading its global requests: its
// connection stays open at the TCP level but never answers, as with a frozen laptop.
func TestKeepaliveDropsDeadClient(t *testing.T) {
	h := newHarness(t, func(c *sshd.Config) {
		c.KeepaliveInterval = 100 * time.Millisecond
		c.KeepaliveCountMax = 2
	})
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	nc, err := net.Dial("tcp", h.sshAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	conn, chans, reqs, err := ssh.NewClientConn(nc, h.sshAddr, &ssh.ClientConfig{
		User: "dev", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for nch := range chans {
			nch.Reject(ssh.Prohibited, "")
		}
	}()
	ok, _, err := conn.SendRequest("tcpip-forward", true, ssh.Marshal(sshd.ForwardRequest{BindAddr: "deadbeef", BindPort: 80}))
	if err != nil || !ok {
		t.Fatalf("tcpip-forward: %v %v", ok, err)
	}
	if h.reg.Lookup("deadbeef") == nil {
		t.Fatal("tunnel not registered")
	}
	// reqs is never read: the client's mux blocks on the first keepalive and answers nothing.
	_ = reqs
	start := time.Now()
	waitUntil(t, "the dead client's tunnel to go", func() bool { return h.reg.Lookup("deadbeef") == nil })
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("dropped after %s: before two keepalive intervals had passed", d)
	}
}

// TestGoroutinesReturnToBaseline opens and closes many connections with tunnels and traffic,
// then checks that nothing they started keeps running.
func TestGoroutinesReturnToBaseline(t *testing.T) {
	h := newHarness(t, func(c *sshd.Config) { c.MaxHandshakesPerIP = 64 })
	warm, _ := h.dial(nil)
	wl, _ := warm.Listen("tcp", "warmup:80")
	serveHello(wl, "warm")
	h.get("warmup."+domain, "/")
	warm.Close()
	waitUntil(t, "warm-up tunnel to go", func() bool { return h.reg.Len() == 0 })
	h.proxy.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()

	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			c, err := h.dial(nil)
			if err != nil {
				t.Error(err)
				return
			}
			name := fmt.Sprintf("leak-%d", i)
			l, err := c.Listen("tcp", name+":80")
			if err != nil {
				t.Error(err)
				return
			}
			serveHello(l, "x")
			for range 3 {
				if code, _ := h.get(name+"."+domain, "/"); code != 200 {
					t.Errorf("%s: %d", name, code)
				}
			}
			c.Close()
		})
	}
	wg.Wait()
	waitUntil(t, "all tunnels to go", func() bool { return h.reg.Len() == 0 })
	h.proxy.CloseIdleConnections()
	h.front.CloseClientConnections()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d after, %d before\n%s", runtime.NumGoroutine(), base, buf[:n])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAuthorizedKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "authorized_keys")
	_, p1, _ := ed25519.GenerateKey(rand.Reader)
	_, p2, _ := ed25519.GenerateKey(rand.Reader)
	k1, _ := ssh.NewSignerFromKey(p1)
	k2, _ := ssh.NewSignerFromKey(p2)
	line1 := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k1.PublicKey()))) + " alice@laptop\n"
	if err := os.WriteFile(path, []byte("# team keys\n\n"+line1), 0o600); err != nil {
		t.Fatal(err)
	}
	ak, err := sshd.NewAuthorizedKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *sshd.Config) { c.Auth = ak })
	c, err := h.dial(k1)
	if err != nil {
		t.Fatalf("listed key refused: %v", err)
	}
	c.Close()
	if _, err := h.dial(k2); err == nil {
		t.Fatal("unlisted key accepted")
	}
	// Adding a key takes effect without a restart.
	time.Sleep(10 * time.Millisecond) // let the modification time move
	os.WriteFile(path, []byte(line1+string(ssh.MarshalAuthorizedKey(k2.PublicKey()))), 0o600)
	if c, err := h.dial(k2); err != nil {
		t.Fatalf("added key refused: %v", err)
	} else {
		c.Close()
	}
	// A broken file keeps the previous keys.
	os.WriteFile(path, []byte("ssh-ed25519 not-base64!!\n"), 0o600)
	if c, err := h.dial(k1); err != nil {
		t.Fatalf("a broken file dropped the known keys: %v", err)
	} else {
		c.Close()
	}
	if _, err := sshd.NewAuthorizedKeys(path); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("a broken file at start: %v (want an error naming the line)", err)
	}
}

// TestOpenSSHSessions checks the three ways people run ssh -R: -N (no session, nothing
// printed), -T (a session without a terminal) and -tt (a terminal in raw mode, where Ctrl-C
// must close the tunnels).
func TestOpenSSHSessions(t *testing.T) {
	h := newHarness(t, nil)
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }))
	defer local.Close()
	_, lport, _ := net.SplitHostPort(strings.TrimPrefix(local.URL, "http://"))
	key := sshtest.NewKey(t)

	n := sshtest.Start(t, sshtest.Options{Key: key, Port: h.port(), Args: []string{"-N", "-R", "0:127.0.0.1:" + lport}})
	n.WaitFor(sshtest.AllocatedPort, 10*time.Second)
	waitUntil(t, "the -N tunnel", func() bool { return h.reg.Len() == 1 })

	tt := sshtest.Start(t, sshtest.Options{Key: key, Port: h.port(), Args: []string{"-tt", "-R", "MixedCase:80:127.0.0.1:" + lport}})
	tt.WaitFor(regexp.MustCompile(`https://mixedcase\.toolgate\.localhost/mcp  ->  -R MixedCase:80\r\n`), 10*time.Second)
	// OpenSSH matches the channel's bind address with strcmp: the case must come back as sent.
	if code, body := h.get("mixedcase."+domain, "/"); code != 200 || body != "hi" {
		t.Fatalf("GET through a mixed-case bind: %d %q", code, body)
	}
	tt.WaitFor(regexp.MustCompile(`GET +/ +200`), 5*time.Second)
	if err := tt.Write([]byte{0x03}); err != nil {
		t.Fatal(err)
	}
	if code := tt.Wait(10 * time.Second); code != 0 {
		t.Errorf("ssh -tt exit code after Ctrl-C: %d", code)
	}
	waitUntil(t, "Ctrl-C to close the -tt tunnel", func() bool { return h.reg.Lookup("mixedcase") == nil })
	if h.reg.Len() != 1 {
		t.Fatal("Ctrl-C in one session closed another connection's tunnel")
	}

	// -T with stdin at EOF: the session must stay (closing it would drop the forwards).
	tc := sshtest.Start(t, sshtest.Options{Key: key, Port: h.port(), Args: []string{"-T", "-R", "0:127.0.0.1:" + lport}})
	tc.WaitFor(regexp.MustCompile(`/mcp  ->  -R 0 \(port 1000\d\)\n`), 10*time.Second)
	tc.CloseStdin()
	time.Sleep(300 * time.Millisecond)
	if tc.Exited() || h.reg.Len() != 2 {
		t.Fatalf("stdin EOF ended a -T session (exited=%v, tunnels=%d)", tc.Exited(), h.reg.Len())
	}
	n.Signal(syscall.SIGTERM)
	tc.Signal(syscall.SIGTERM)
	waitUntil(t, "all tunnels to close", func() bool { return h.reg.Len() == 0 })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// anyKey accepts every key and names it by its fingerprint: these tests are about tunnels, not
// about who may open them.
type anyKey struct{}

func (anyKey) Authenticate(_ context.Context, _ ssh.ConnMetadata, key ssh.PublicKey) (sshd.Identity, error) {
	fp := ssh.FingerprintSHA256(key)
	return sshd.Identity{Owner: fp, Display: fp}, nil
}

// TestSharesOnTheTerminal: a name's saved shares apply as soon as it is live, and the owner's
// terminal says so under the URL; share= on the ssh command adds to them for the connection,
// and the terminal shows the tunnel's whole list.
// slowClaims delays every name claim, as a slow disk would.
type slowClaims struct {
	tunnel.NameStore
	delay time.Duration
}

func (s slowClaims) ClaimName(ctx context.Context, c data.NameClaim) (data.NameClaim, error) {
	time.Sleep(s.delay)
	return s.NameStore.ClaimName(ctx, c)
}

func TestSharesOnTheTerminal(t *testing.T) {
	type shared struct {
		owner   string
		with    []string
		tunnels map[string][]string
	}
	events := make(chan shared, 1)
	// A slow name claim holds the forward open while the session's exec arrives: share= must
	// still wait for it, and so come after the URL and apply to the tunnel.
	h := newHarnessWith(t, func(rc *tunnel.Config) { rc.Names = slowClaims{rc.Names, 300 * time.Millisecond} }, func(c *sshd.Config) {
		c.Shared = func(owner string, with []string, tunnels map[string][]string) { events <- shared{owner, with, tunnels} }
	})
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }))
	defer local.Close()
	_, lport, _ := net.SplitHostPort(strings.TrimPrefix(local.URL, "http://"))
	key := sshtest.NewKey(t)
	ctx := context.Background()
	if _, err := h.st.ClaimName(ctx, data.NameClaim{Name: "notes", Owner: key.Fingerprint, Kind: data.NameRequested}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.st.ShareName(ctx, "notes", "", []string{"ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	c := sshtest.Start(t, sshtest.Options{Key: key, Port: h.port(), Args: []string{"-T", "-R", "notes:80:127.0.0.1:" + lport},
		Command: []string{"share=Bob@Example.com,ada@example.com"}})
	c.WaitFor(regexp.MustCompile(`/mcp  ->  -R notes:80\n  shared with ada@example\.com\n`), 10*time.Second)
	c.WaitFor(regexp.MustCompile(`toolgate: notes shared with ada@example\.com, bob@example\.com \(`), 10*time.Second)
	tun := h.reg.Lookup("notes")
	if got := tun.Shares(); strings.Join(got, " ") != "ada@example.com bob@example.com" {
		t.Fatalf("the tunnel is shared with %q", got)
	}
	// The audit hook hears who shared what, and where it applies.
	select {
	case e := <-events:
		if e.owner != key.Fingerprint || strings.Join(e.with, " ") != "bob@example.com ada@example.com" ||
			len(e.tunnels) != 1 || strings.Join(e.tunnels["notes"], " ") != "ada@example.com bob@example.com" {
			t.Fatalf("Shared was told %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shared was not called")
	}
	c.Signal(syscall.SIGTERM)
	waitUntil(t, "the tunnel to close", func() bool { return h.reg.Len() == 0 })
}
