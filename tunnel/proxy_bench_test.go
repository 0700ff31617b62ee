package tunnel

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/toolgate/toolgate/data"
)

// Benchmarks for the proxy path in one process: an HTTP client, a front server whose handler is
// Proxy.Serve, an x/crypto SSH connection on loopback to a stand-in for the developer's ssh
// client (it accepts forwarded-tcpip channels and connects each to the local server over
// loopback TCP, copying both ways, as OpenSSH does), and the local server. Run with
//
//	go test -run XXX -bench Proxy -benchmem ./tunnel/
//
// ns/op and allocs/op cover the whole process, every side included; BenchmarkProxyPOST/direct
// is the client and local server alone, so the difference is what the tunnel adds (toolgate's
// side and the stand-in client's side together). A CPU or memory profile
// (-cpuprofile/-memprofile) separates them.

var (
	benchRequest = []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ping","arguments":{}}}`)
	benchReply   = []byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"pong"}],"isError":false}}` + "\n")
)

// benchLocalServer is the developer's local server: POST /mcp answers ~100 bytes of JSON, GET
// /bulk?bytes=N streams N bytes.
func benchLocalServer(tb testing.TB) *httptest.Server {
	block := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /mcp", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(benchReply)))
		w.Write(benchReply)
	})
	mux.HandleFunc("GET /bulk", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			m := min(n, int64(len(block)))
			if _, err := w.Write(block[:m]); err != nil {
				return
			}
			n -= m
		}
	})
	s := httptest.NewServer(mux)
	tb.Cleanup(s.Close)
	return s
}

// serveForwards plays the developer's ssh client: every forwarded-tcpip channel is connected to
// local (a host:port) and bytes are copied both ways until both sides are done.
func serveForwards(chans <-chan ssh.NewChannel, local string) {
	for nch := range chans {
		if nch.ChannelType() != "forwarded-tcpip" {
			nch.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		go func() {
			tc, err := net.Dial("tcp", local)
			if err != nil {
				nch.Reject(ssh.ConnectionFailed, err.Error())
				return
			}
			ch, reqs, err := nch.Accept()
			if err != nil {
				tc.Close()
				return
			}
			go ssh.DiscardRequests(reqs)
			go func() {
				io.Copy(tc, ch)
				tc.(*net.TCPConn).CloseWrite()
			}()
			io.Copy(ch, tc)
			ch.CloseWrite()
			ch.Close()
			tc.Close()
		}()
	}
}

// benchProxy is a proxy in front of one tunnel over a real SSH connection.
type benchProxy struct {
	front  *httptest.Server
	client *http.Client
	local  *httptest.Server
}

// openSSHTunnel opens a tunnel whose streams are forwarded-tcpip channels over a real x/crypto
// SSH connection with cipher, each connected by a stand-in ssh client to local (host:port).
func openSSHTunnel(tb testing.TB, cipher, local string) *Tunnel {
	tb.Helper()
	p := newBenchSSH(tb, cipher)
	go serveForwards(p.clientChans, local)
	st, err := data.Open(data.Config{Path: filepath.Join(tb.TempDir(), "bench.db"), NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	reg, err := NewRegistry(Config{Domain: "toolgate.localhost", Names: st})
	if err != nil {
		tb.Fatal(err)
	}
	fwd, err := reg.Open(context.Background(), OpenRequest{
		Owner:     "bench",
		Conn:      &fakeConn{},
		Dialer:    &SSHForward{Conn: p.server, BindAddr: "localhost", BindPort: 10001},
		BindAddr:  "localhost",
		LocalHost: "localhost:10001",
		Hint:      "bench",
	})
	if err != nil {
		tb.Fatal(err)
	}
	return fwd.Tunnel()
}

func newBenchProxy(b *testing.B, cipher string, tlsFront bool) *benchProxy {
	b.Helper()
	local := benchLocalServer(b)
	tun := openSSHTunnel(b, cipher, local.Listener.Addr().String())
	proxy, err := NewProxy(ProxyConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(proxy.CloseIdleConnections)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from, _ := netip.ParseAddrPort(r.RemoteAddr)
		proxy.Serve(w, r, tun, from)
	})
	var front *httptest.Server
	if tlsFront {
		front = httptest.NewTLSServer(h)
	} else {
		front = httptest.NewServer(h)
	}
	b.Cleanup(front.Close)
	client := front.Client()
	tr := client.Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = 1024
	tr.ForceAttemptHTTP2 = false
	b.Cleanup(tr.CloseIdleConnections)
	return &benchProxy{front: front, client: client, local: local}
}

func benchPost(b *testing.B, c *http.Client, url string) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(benchRequest))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n != int64(len(benchReply)) {
		b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
	}
}

// reportCPU adds cpu-ns/op: the process's user+system CPU time per operation. Unlike ns/op it
// barely moves when other programs compete for the machine's cores, so A/B comparisons of the
// proxy's cost stay meaningful on a busy machine. Use as defer reportCPU(b)().
func reportCPU(b *testing.B) func() {
	start := processCPU(b)
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProxyPOST is one small MCP-sized POST at a time on a keep-alive connection: direct to
// the local server, through the proxy with a plain-HTTP front, and with a TLS front (toolgate's
// configuration).
func BenchmarkProxyPOST(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		local := benchLocalServer(b)
		c := local.Client()
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			benchPost(b, c, local.URL+"/mcp")
		}
	})
	for _, front := range []string{"http", "https"} {
		b.Run("proxy-"+front, func(b *testing.B) {
			bp := newBenchProxy(b, ssh.CipherAES128GCM, front == "https")
			benchPost(b, bp.client, bp.front.URL+"/mcp") // open the connection and a channel
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				benchPost(b, bp.client, bp.front.URL+"/mcp")
			}
		})
	}
}

// BenchmarkProxyPOSTParallel is the same with 32 requests in flight (16 per core on this
// machine's 2), each goroutine on its own keep-alive connection: proxy requests per second
// under concurrency, as 1e9 / (ns/op).
func BenchmarkProxyPOSTParallel(b *testing.B) {
	for _, front := range []string{"http", "https"} {
		b.Run("proxy-"+front, func(b *testing.B) {
			bp := newBenchProxy(b, ssh.CipherAES128GCM, front == "https")
			b.SetParallelism(16)
			b.ResetTimer()
			b.ReportAllocs()
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					benchPost(b, bp.client, bp.front.URL+"/mcp")
				}
			})
		})
	}
}

// BenchmarkProxyBulk downloads 64 MiB per op through the proxy with a TLS front, per cipher: the
// bulk figure in one process.
func BenchmarkProxyBulk(b *testing.B) {
	const size = 64 << 20
	for _, cipher := range benchCiphers {
		b.Run(cipher, func(b *testing.B) {
			bp := newBenchProxy(b, cipher, true)
			url := bp.front.URL + "/bulk?bytes=" + strconv.Itoa(size)
			buf := make([]byte, 256<<10)
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := bp.client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				var got int64
				for {
					n, err := resp.Body.Read(buf)
					got += int64(n)
					if err != nil {
						break
					}
				}
				resp.Body.Close()
				if got != size {
					b.Fatalf("got %d bytes", got)
				}
			}
		})
	}
}
