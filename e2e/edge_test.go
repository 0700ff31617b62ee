package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/e2e/sshtest"
)

// seen is what the local server got, for one request.
type seen struct {
	host   string
	header http.Header
}

// recordingServer answers "ok" and reports each request it gets.
func recordingServer(t testing.TB, hits *atomic.Int32, got chan<- seen, respond func(w http.ResponseWriter)) int {
	return localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
		select {
		case got <- seen{r.Host, r.Header.Clone()}:
		default:
		}
		if respond != nil {
			respond(w)
		}
		io.WriteString(w, "ok")
	}), 0)
}

// TestForwardedHeaders: the local server sees Host localhost:PORT with PORT the -R port (the
// allocated one for -R 0, 80 for -R name:80), and X-Forwarded-* set by toolgate: the client's
// own X-Forwarded-For, X-Real-Ip and Forwarded are dropped.
func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	var hits atomic.Int32
	got := make(chan seen, 1)
	port := recordingServer(t, &hits, got, nil)
	ssh := in.sshClient(sshtest.NewKey(t), []string{"-T",
		"-R", fmt.Sprintf("0:127.0.0.1:%d", port),
		"-R", fmt.Sprintf("hdr:80:127.0.0.1:%d", port)})
	hosts := tunnelHost(t, ssh, 2)
	allocated := ssh.WaitFor(sshtest.AllocatedPort, 5*time.Second)[1]
	wantHost := map[string]string{hosts[0]: "localhost:" + allocated, hosts[1]: "localhost:80"}

	for _, proto := range protocols(t, in) {
		for _, host := range hosts {
			t.Run(proto.name+"/"+strings.SplitN(host, ".", 2)[0], func(t *testing.T) {
				resp := do(t, &http.Client{Transport: proto.tr}, "POST", in.url(host, "/mcp"), strings.NewReader("{}"),
					"X-Forwarded-For", "203.0.113.9, 10.0.0.1",
					"X-Real-Ip", "203.0.113.10",
					"X-Forwarded-Proto", "http",
					"X-Forwarded-Host", "evil.example",
					"Forwarded", "for=203.0.113.11;proto=http")
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.ProtoMajor != proto.major {
					t.Fatalf("%s %d", resp.Proto, resp.StatusCode)
				}
				s := <-got
				public := host + ":" + in.httpsPort()
				for _, c := range []struct{ name, got, want string }{
					{"Host", s.host, wantHost[host]},
					{"X-Forwarded-For", strings.Join(s.header.Values("X-Forwarded-For"), ","), "127.0.0.1"},
					{"X-Real-Ip", strings.Join(s.header.Values("X-Real-Ip"), ","), ""},
					{"Forwarded", strings.Join(s.header.Values("Forwarded"), ","), ""},
					{"X-Forwarded-Proto", strings.Join(s.header.Values("X-Forwarded-Proto"), ","), "https"},
					{"X-Forwarded-Host", strings.Join(s.header.Values("X-Forwarded-Host"), ","), public},
				} {
					if c.got != c.want {
						t.Errorf("local server saw %s %q, want %q", c.name, c.got, c.want)
					}
				}
			})
		}
	}
}

// TestOriginAndCORS: toolgate decides browser origins at its edge. A foreign Origin gets 403
// and never reaches the local server; an allowed one (the MCP Inspector's http://localhost:6274)
// passes, with Origin rewritten to the local origin and Sec-Fetch-Site removed so the local server's own DNS-rebinding and
// cross-origin checks see a local request; preflights are answered by toolgate; a response
// carries exactly one Access-Control-Allow-Origin, toolgate's.
func TestOriginAndCORS(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	var hits atomic.Int32
	got := make(chan seen, 1)
	port := recordingServer(t, &hits, got, func(w http.ResponseWriter) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Credentials", "true")
	})
	host, _ := openTunnel(t, in, nil, port)
	c := quickClient(t, in)
	const inspector = "http://localhost:6274"

	t.Run("foreign-origin", func(t *testing.T) {
		for _, origin := range []string{"https://evil.example", "null", "http://localhost.evil.example:6274", "https://" + host + ".evil.example"} {
			before := hits.Load()
			resp := do(t, c, "POST", in.url(host, "/mcp"), strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`),
				"Origin", origin, "Content-Type", "application/json", "Sec-Fetch-Site", "cross-site")
			if resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("%s: refused response allows the origin", origin)
			}
			wantError(t, resp, http.StatusForbidden, "origin_not_allowed")
			if hits.Load() != before {
				t.Fatalf("%s: the request reached the local server", origin)
			}
			// Its preflight is refused too.
			resp = do(t, c, "OPTIONS", in.url(host, "/mcp"), nil, "Origin", origin, "Access-Control-Request-Method", "POST")
			wantError(t, resp, http.StatusForbidden, "origin_not_allowed")
			if hits.Load() != before {
				t.Fatalf("%s: the preflight reached the local server", origin)
			}
		}
	})

	t.Run("allowed-origin", func(t *testing.T) {
		for _, origin := range []string{inspector, "https://" + host + ":" + in.httpsPort()} {
			before := hits.Load()
			resp := do(t, c, "POST", in.url(host, "/mcp"), strings.NewReader(`{}`),
				"Origin", origin, "Content-Type", "application/json", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "cors")
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || hits.Load() != before+1 {
				t.Fatalf("%s: %d, local hits %d", origin, resp.StatusCode, hits.Load()-before)
			}
			s := <-got
			if v := s.header.Values("Origin"); len(v) != 1 || v[0] != "http://"+s.host {
				t.Errorf("%s: the local server saw Origin %q, want the local origin http://%s", origin, v, s.host)
			}
			if v := s.header.Values("Sec-Fetch-Site"); len(v) != 0 {
				t.Errorf("%s: the local server saw Sec-Fetch-Site %q", origin, v)
			}
			if v := resp.Header.Values("Access-Control-Allow-Origin"); len(v) != 1 || v[0] != origin {
				t.Errorf("%s: Access-Control-Allow-Origin %q, want exactly [%s]", origin, v, origin)
			}
			if v := resp.Header.Values("Access-Control-Allow-Credentials"); len(v) != 0 {
				t.Errorf("%s: the local server's Access-Control-Allow-Credentials %q passed through", origin, v)
			}
			if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Mcp-Session-Id") {
				t.Errorf("%s: Access-Control-Expose-Headers %q lacks Mcp-Session-Id", origin, resp.Header.Get("Access-Control-Expose-Headers"))
			}
		}
	})

	t.Run("preflight", func(t *testing.T) {
		before := hits.Load()
		resp := do(t, c, "OPTIONS", in.url(host, "/mcp"), nil,
			"Origin", inspector, "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "content-type,mcp-session-id,mcp-protocol-version")
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("preflight: %d, want 204", resp.StatusCode)
		}
		if v := resp.Header.Values("Access-Control-Allow-Origin"); len(v) != 1 || v[0] != inspector {
			t.Errorf("preflight Access-Control-Allow-Origin %q", v)
		}
		if m := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") {
			t.Errorf("preflight Access-Control-Allow-Methods %q", m)
		}
		allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
		for _, h := range []string{"content-type", "mcp-session-id", "mcp-protocol-version"} {
			if !strings.Contains(allowed, h) {
				t.Errorf("preflight Access-Control-Allow-Headers %q lacks %s", allowed, h)
			}
		}
		if hits.Load() != before {
			t.Fatal("the preflight reached the local server")
		}
	})
}

// TestCORSAfterEarlyHints: a local server that sends 103 Early Hints before its response still
// yields exactly one Access-Control-Allow-Origin, toolgate's, on the final response.
func TestCORSAfterEarlyHints(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	port := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		io.WriteString(w, "ok")
	}), 0)
	host, _ := openTunnel(t, in, nil, port)
	const origin = "http://localhost:6274"
	for _, proto := range protocols(t, in) {
		t.Run(proto.name, func(t *testing.T) {
			resp := do(t, &http.Client{Transport: proto.tr}, "GET", in.url(host, "/"), nil, "Origin", origin)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if v := resp.Header.Values("Access-Control-Allow-Origin"); len(v) != 1 || v[0] != origin {
				t.Errorf("after a 103, Access-Control-Allow-Origin is %q, want exactly [%s]", v, origin)
			}
		})
	}
}

// TestUnknownHosts: a name under the tunnel domain that nobody holds is 404 no_tunnel; a Host
// outside the domain is 404 unknown_host. Neither reaches a local server.
func TestUnknownHosts(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	var hits atomic.Int32
	host, _ := openTunnel(t, in, nil, recordingServer(t, &hits, make(chan seen), nil))

	// The development CA serves a wildcard for *.toolgate.localhost, so the TLS handshake for a
	// name nobody holds succeeds and the request itself gets the answer.
	resp := do(t, quickClient(t, in), "GET", in.url("nobody-holds-this."+in.domain, "/mcp"), nil)
	wantError(t, resp, http.StatusNotFound, "no_tunnel")

	// A host outside the domain gets no certificate (on-demand TLS refuses it), so it is sent
	// over a connection whose TLS server name is the live tunnel, with the foreign Host header.
	for _, proto := range protocols(t, in) {
		for _, foreign := range []string{"example.com", host + ".evil.example", "deeper." + host, "127.0.0.1:" + in.httpsPort()} {
			req, _ := http.NewRequest("GET", in.url(host, "/mcp"), nil)
			req.Host = foreign
			resp, err := (&http.Client{Transport: proto.tr, Timeout: 15 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			t.Run(proto.name+"/"+foreign, func(t *testing.T) { wantError(t, resp, http.StatusNotFound, "unknown_host") })
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("%d requests for unknown hosts reached the local server", hits.Load())
	}
}

// tlsH1 opens a TLS connection to the instance speaking HTTP/1.1.
func tlsH1(t testing.TB, in *instance, serverName string) *tls.Conn {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", in.https,
		&tls.Config{ServerName: serverName, RootCAs: in.roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// closedByServer waits (up to limit) for the server to close conn; it fails if the connection
// is still open then.
func closedByServer(t testing.TB, conn net.Conn, limit time.Duration) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, conn)
	if isTimeout(err) {
		t.Fatalf("the server kept the connection open for %s", limit)
	}
}

// TestSlowloris: with --read-header-timeout 1s, connections that stall in the TLS handshake or
// in the request headers are closed; headers over 64 KiB get 431.
func TestSlowloris(t *testing.T) {
	t.Parallel()
	in := startToolgate(t, "--read-header-timeout", "1s")
	var hits atomic.Int32
	host, _ := openTunnel(t, in, nil, recordingServer(t, &hits, make(chan seen), nil))

	t.Run("half-request-line", func(t *testing.T) {
		t.Parallel()
		conn := tlsH1(t, in, host)
		if _, err := io.WriteString(conn, "GET /mcp HT"); err != nil {
			t.Fatal(err)
		}
		closedByServer(t, conn, 8*time.Second)
	})
	t.Run("headers-trickle", func(t *testing.T) {
		t.Parallel()
		conn := tlsH1(t, in, host)
		io.WriteString(conn, "GET /mcp HTTP/1.1\r\nHost: "+host+"\r\n")
		stop := time.After(8 * time.Second)
		for i := 0; ; i++ {
			// One header line every 300ms: each write is "progress", the total is not.
			if _, err := fmt.Fprintf(conn, "X-Slow-%d: x\r\n", i); err != nil {
				return // closed by the server
			}
			select {
			case <-stop:
				t.Fatal("a client trickling headers kept its connection for 8s")
			case <-time.After(300 * time.Millisecond):
			}
		}
	})
	t.Run("no-tls-handshake", func(t *testing.T) {
		t.Parallel()
		conn, err := net.Dial("tcp", in.https)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		closedByServer(t, conn, 8*time.Second)
	})
	t.Run("huge-headers", func(t *testing.T) {
		t.Parallel()
		conn := tlsH1(t, in, host)
		big := strings.Repeat("a", 100<<10)
		fmt.Fprintf(conn, "GET /mcp HTTP/1.1\r\nHost: %s:%s\r\nX-Big: %s\r\n\r\n", host, in.httpsPort(), big)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no response to 100 KiB of headers: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("100 KiB of headers: %d, want 431", resp.StatusCode)
		}
	})
	t.Run("normal-request", func(t *testing.T) {
		t.Parallel()
		// Headers under the limit, sent at once, still work on this instance.
		resp := do(t, quickClient(t, in), "GET", in.url(host, "/mcp"), nil, "X-Medium", strings.Repeat("b", 16<<10))
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("normal request: %d", resp.StatusCode)
		}
	})
	t.Cleanup(func() {
		if hits.Load() != 1 {
			t.Errorf("the local server got %d requests, want only the normal one", hits.Load())
		}
	})
}
