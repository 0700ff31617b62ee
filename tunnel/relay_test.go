package tunnel

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// relayRig is a front server whose handler is Proxy.Serve, one tunnel over a real x/crypto SSH
// connection (streams are chanConns, as in production), and a local server the test defines.
type relayRig struct {
	front  *httptest.Server
	client *http.Client
	local  *httptest.Server
	proxy  *Proxy

	mu     sync.Mutex
	states map[http.ConnState]int // the local server's connection events
}

func newRelayRig(t *testing.T, local http.Handler, cfg ProxyConfig, localIdle time.Duration) *relayRig {
	t.Helper()
	rig := &relayRig{states: make(map[http.ConnState]int)}
	rig.local = httptest.NewUnstartedServer(local)
	rig.local.Config.IdleTimeout = localIdle
	rig.local.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		rig.mu.Lock()
		rig.states[s]++
		rig.mu.Unlock()
	}
	rig.local.Start()
	t.Cleanup(rig.local.Close)

	tun := openSSHTunnel(t, ssh.CipherAES128GCM, rig.local.Listener.Addr().String())
	var err error
	if rig.proxy, err = NewProxy(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rig.proxy.CloseIdleConnections)
	rig.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from, _ := netip.ParseAddrPort(r.RemoteAddr)
		rig.proxy.Serve(w, r, tun, from)
	}))
	t.Cleanup(rig.front.Close)
	rig.client = rig.front.Client()
	t.Cleanup(rig.client.CloseIdleConnections)
	return rig
}

func (rig *relayRig) state(s http.ConnState) int {
	rig.mu.Lock()
	defer rig.mu.Unlock()
	return rig.states[s]
}

func (rig *relayRig) do(t *testing.T, method, path string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, rig.front.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	res, err := rig.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return res, string(b)
}

func echoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Write(b)
	})
}

func TestRelayReusesStreams(t *testing.T) {
	rig := newRelayRig(t, echoHandler(), ProxyConfig{}, 0)
	for i := range 20 {
		body := strings.Repeat("x", i*100)
		res, got := rig.do(t, http.MethodPost, "/mcp", strings.NewReader(body))
		if res.StatusCode != 200 || got != body {
			t.Fatalf("request %d: status %d, body %d bytes, want 200 and %d", i, res.StatusCode, len(got), len(body))
		}
	}
	if n := rig.state(http.StateNew); n != 1 {
		t.Errorf("20 sequential requests opened %d local connections, want 1", n)
	}
}

// The local server closes an idle connection on its own while it sits in the pool: the next
// request must not be written into it (no 502), with a body or without.
func TestRelayLocalServerClosedIdleStream(t *testing.T) {
	rig := newRelayRig(t, echoHandler(), ProxyConfig{IdleConnTimeout: time.Minute}, 150*time.Millisecond)
	for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodPost} {
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader(`{"jsonrpc":"2.0"}`)
		}
		res, _ := rig.do(t, method, "/mcp", body)
		if res.StatusCode != 200 {
			t.Fatalf("%s after the local server closed the idle stream: status %d", method, res.StatusCode)
		}
		time.Sleep(400 * time.Millisecond)
	}
	if n := rig.state(http.StateNew); n != 3 {
		t.Errorf("local connections opened: %d, want 3 (each closed by the server while idle)", n)
	}
}

// Streams idle longer than IdleConnTimeout are closed by toolgate, before the local server's
// own keep-alive timeout can race a request.
func TestRelayClosesIdleStreams(t *testing.T) {
	rig := newRelayRig(t, echoHandler(), ProxyConfig{IdleConnTimeout: 100 * time.Millisecond}, 0)
	rig.do(t, http.MethodPost, "/mcp", strings.NewReader("a"))
	deadline := time.Now().Add(5 * time.Second)
	for rig.state(http.StateClosed) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("an idle pooled stream was never closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	rig.do(t, http.MethodPost, "/mcp", strings.NewReader("b"))
	if n := rig.state(http.StateNew); n != 2 {
		t.Errorf("local connections opened: %d, want 2", n)
	}
}

func TestRelayResponseHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	rig := newRelayRig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}), ProxyConfig{ResponseHeaderTimeout: 200 * time.Millisecond}, 0)
	start := time.Now()
	res, _ := rig.do(t, http.MethodPost, "/mcp", strings.NewReader("{}"))
	if res.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("status %d, want 504", res.StatusCode)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("504 after %v", d)
	}
}

// A public client that goes away ends the local request, even while the local server streams
// nothing (an idle SSE stream).
func TestRelayClientGoneEndsLocalRequest(t *testing.T) {
	ended := make(chan struct{})
	rig := newRelayRig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(ended)
	}), ProxyConfig{}, 0)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rig.front.URL+"/mcp", nil)
	res, err := rig.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	res.Body.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the local server's request never ended after the public client left")
	}
}

// A local server that refuses a large upload without reading it: the answer comes back, and the
// next request works.
func TestRelayEarlyAnswerToLargeUpload(t *testing.T) {
	rig := newRelayRig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Header().Set("Connection", "close")
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		io.Copy(io.Discard, r.Body)
	}), ProxyConfig{}, 0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// 8 MiB: far past syncBodyMax and the SSH window, so it streams from its own goroutine.
		res, _ := rig.do(t, http.MethodPost, "/big", bytes.NewReader(make([]byte, 8<<20)))
		if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d, want 413", res.StatusCode)
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the early answer to an upload never arrived")
	}
	if res, _ := rig.do(t, http.MethodPost, "/small", strings.NewReader("x")); res.StatusCode != 200 {
		t.Errorf("the next request: status %d", res.StatusCode)
	}
}

// Informational responses are passed on (ReverseProxy forwards them through the client trace),
// trailers arrive, and a local Connection: close is honoured.
func TestRelayInformationalTrailersAndClose(t *testing.T) {
	rig := newRelayRig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Write([]byte("final"))
		case "/trailer":
			w.Header().Set("Trailer", "X-Digest")
			w.Write([]byte("body"))
			w.Header().Set("X-Digest", "abc")
		case "/close":
			w.Header().Set("Connection", "close")
			w.Write([]byte("bye"))
		}
	}), ProxyConfig{}, 0)

	var got1xx atomic.Int32
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
			if code == http.StatusEarlyHints {
				got1xx.Add(1)
			}
			return nil
		},
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rig.front.URL+"/hints", nil)
	res, err := rig.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(b) != "final" || got1xx.Load() != 1 {
		t.Errorf("early hints: status %d, body %q, 103s seen %d; want 200, final, 1", res.StatusCode, b, got1xx.Load())
	}

	res, body := rig.do(t, http.MethodGet, "/trailer", nil)
	if body != "body" || res.Trailer.Get("X-Digest") != "abc" {
		t.Errorf("trailer: body %q, X-Digest %q", body, res.Trailer.Get("X-Digest"))
	}

	before := rig.state(http.StateNew)
	rig.do(t, http.MethodGet, "/close", nil)
	rig.do(t, http.MethodGet, "/trailer", nil)
	if n := rig.state(http.StateNew) - before; n != 1 {
		t.Errorf("after a local Connection: close, %d new local connections, want 1", n)
	}
}
