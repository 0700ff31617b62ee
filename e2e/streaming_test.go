package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/toolgate/toolgate/e2e/sshtest"
)

// ---- helpers shared by streaming_test.go, faults_test.go and edge_test.go ----

// openTunnel runs `ssh -T -R 0:127.0.0.1:port` with key (a fresh one if nil) and returns the
// tunnel's public host once the session printed it.
func openTunnel(t testing.TB, in *instance, key *sshtest.Key, port int) (string, *sshtest.Client) {
	t.Helper()
	if key == nil {
		key = sshtest.NewKey(t)
	}
	c := in.sshClient(key, []string{"-T", "-R", fmt.Sprintf("0:127.0.0.1:%d", port)})
	return tunnelHost(t, c, 1)[0], c
}

// tracked closes tr's idle connections when the test ends, before the instance stops: toolgate's
// graceful shutdown otherwise waits out HTTP/2's GOAWAY grace period for each one.
func tracked(t testing.TB, tr *http.Transport) *http.Transport {
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// h1Transport is the instance's transport restricted to HTTP/1.1.
func h1Transport(in *instance) *http.Transport {
	tr := in.transport()
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	return tr
}

type protocol struct {
	name  string
	major int
	tr    *http.Transport
}

// protocols are the two ways a public client reaches toolgate: HTTP/2 (what the harness
// transport negotiates) and HTTP/1.1.
func protocols(t testing.TB, in *instance) []protocol {
	return []protocol{{"h2", 2, tracked(t, in.transport())}, {"h1", 1, tracked(t, h1Transport(in))}}
}

// toolgateError is the JSON body of an error toolgate answers itself.
type toolgateError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// wantError checks that resp is toolgate's JSON error with status and code.
func wantError(t testing.TB, resp *http.Response, status int, code string) {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want JSON; body %s", ct, body)
	}
	var e toolgateError
	readJSON(t, bytes.NewReader(body), &e)
	if e.Error != code || e.Message == "" {
		t.Fatalf("error body %s, want error %q with a message", body, code)
	}
}

// do sends a request and fails the test on a transport error.
func do(t testing.TB, c *http.Client, method, url string, body io.Reader, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp
}

// getStatus sends a GET and returns the status and body.
func getStatus(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	resp := do(t, c, "GET", url, nil)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// detReader is deterministic pseudo-random data: the same seed gives the same bytes on both
// sides of a transfer, without holding the data in memory.
func detReader(seed byte, n int64) io.Reader {
	var s [32]byte
	s[0] = seed
	return io.LimitReader(rand.NewChaCha8(s), n)
}

// ---- incremental delivery ----

// stepGate paces one streamed response: the local handler writes a record, then waits until the
// client says it has received that record before it writes the next. A proxy that buffered the
// response would leave the client waiting for a record the handler never gets to finish past,
// and the handler reports it.
type stepGate struct {
	ack      chan int     // client -> handler: record i arrived
	writing  atomic.Int32 // the record the handler is at: set before it writes it
	problems chan string
}

// streamKinds are the response shapes that must be flushed record by record.
var streamKinds = []struct {
	name, method, contentType string
	sse, declareLength        bool
	origin                    string // a browser client's Origin, if any
}{
	{"sse-get", "GET", "text/event-stream", true, false, ""},
	{"sse-post", "POST", "text/event-stream", true, false, ""},
	// A browser MCP client (the Inspector) goes through toolgate's CORS handling as well.
	{"sse-post-browser", "POST", "text/event-stream", true, false, "http://localhost:6274"},
	{"ndjson", "POST", "application/x-ndjson", false, false, ""},
	{"ndjson-with-length", "GET", "application/x-ndjson", false, true, ""},
	{"unknown-length", "GET", "application/octet-stream", false, false, ""},
}

const streamRecords = 5

func streamRecord(sse bool, i int) string {
	if sse {
		return fmt.Sprintf("id: %d\nevent: message\ndata: {\"n\":%d,\"pad\":\"%s\"}\n\n", i, i, strings.Repeat("x", 40))
	}
	return fmt.Sprintf("{\"n\":%d,\"pad\":\"%s\"}\n", i, strings.Repeat("x", 40))
}

type stepServer struct {
	mu    sync.Mutex
	gates map[string]*stepGate
}

func (s *stepServer) gate(id string) *stepGate {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.gates[id]
	if g == nil {
		g = &stepGate{ack: make(chan int, 1), problems: make(chan string, 10)}
		s.gates[id] = g
	}
	return g
}

func (s *stepServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	g := s.gate(q.Get("id"))
	sse := q.Get("sse") == "1"
	if r.Method == "POST" {
		if b, _ := io.ReadAll(r.Body); string(b) != `{"jsonrpc":"2.0","id":1,"method":"tools/call"}` {
			g.problems <- fmt.Sprintf("POST body %q", b)
		}
	}
	w.Header().Set("Content-Type", q.Get("ct"))
	w.Header().Set("Cache-Control", "no-cache")
	if q.Get("len") == "1" {
		n := 0
		for i := 1; i <= streamRecords; i++ {
			n += len(streamRecord(sse, i))
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
	}
	rc := http.NewResponseController(w)
	for i := 1; i <= streamRecords; i++ {
		g.writing.Store(int32(i))
		io.WriteString(w, streamRecord(sse, i))
		if err := rc.Flush(); err != nil {
			g.problems <- fmt.Sprintf("flush: %v", err)
			return
		}
		if i == streamRecords {
			break
		}
		select {
		case got := <-g.ack:
			if got != i {
				g.problems <- fmt.Sprintf("client acknowledged record %d, expected %d", got, i)
				return
			}
		case <-time.After(15 * time.Second):
			g.problems <- fmt.Sprintf("record %d never reached the client while the handler held record %d back: the response is buffered", i, i+1)
			return
		case <-r.Context().Done():
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readRecord reads one SSE event (up to the blank line) or one line.
func readRecord(br *bufio.Reader, sse bool) (string, error) {
	if !sse {
		return br.ReadString('\n')
	}
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if line == "\n" {
			return b.String(), nil
		}
	}
}

// TestStreamsArriveIncrementally: SSE (GET and POST), ndjson (with and without a declared
// length) and unknown-length responses cross the tunnel record by record, over HTTP/2 and
// HTTP/1.1. Each record must reach the public client before the local handler writes the next
// one, so the first arrives long before the upstream response is finished.
func TestStreamsArriveIncrementally(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	srv := &stepServer{gates: map[string]*stepGate{}}
	host, _ := openTunnel(t, in, nil, localServer(t, srv, 0))

	for _, proto := range protocols(t, in) {
		client := &http.Client{Transport: proto.tr, Timeout: 60 * time.Second}
		for _, kind := range streamKinds {
			t.Run(proto.name+"/"+kind.name, func(t *testing.T) {
				t.Parallel()
				id := proto.name + "-" + kind.name
				g := srv.gate(id)
				q := fmt.Sprintf("/mcp?id=%s&ct=%s", id, strings.ReplaceAll(kind.contentType, "/", "%2F"))
				if kind.sse {
					q += "&sse=1"
				}
				if kind.declareLength {
					q += "&len=1"
				}
				var body io.Reader
				if kind.method == "POST" {
					body = strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`)
				}
				req, _ := http.NewRequest(kind.method, in.url(host, q), body)
				req.Header.Set("Accept", "application/json, text/event-stream")
				req.Header.Set("Content-Type", "application/json")
				if kind.origin != "" {
					req.Header.Set("Origin", kind.origin)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("%v; local handler: %v", err, drain(g.problems))
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 || resp.ProtoMajor != proto.major {
					t.Fatalf("%s %d, want %d over HTTP/%d", resp.Proto, resp.StatusCode, 200, proto.major)
				}
				if ct := resp.Header.Get("Content-Type"); ct != kind.contentType {
					t.Fatalf("Content-Type %q, want %q", ct, kind.contentType)
				}
				if acao := resp.Header.Get("Access-Control-Allow-Origin"); acao != kind.origin {
					t.Fatalf("Access-Control-Allow-Origin %q, want %q", acao, kind.origin)
				}
				if proto.major == 1 && !kind.declareLength && (resp.ContentLength != -1 || !equalStrings(resp.TransferEncoding, []string{"chunked"})) {
					t.Fatalf("unknown-length response: ContentLength %d, Transfer-Encoding %v; want -1, chunked",
						resp.ContentLength, resp.TransferEncoding)
				}
				br := bufio.NewReader(resp.Body)
				for i := 1; i <= streamRecords; i++ {
					rec, err := readRecord(br, kind.sse)
					if err != nil {
						t.Fatalf("record %d: %q, %v; handler: %v", i, rec, err, drain(g.problems))
					}
					if want := streamRecord(kind.sse, i); rec != want {
						t.Fatalf("record %d = %q, want %q", i, rec, want)
					}
					// The handler has not gone past record i: we got it before the upstream
					// wrote the next record, let alone finished.
					if w := g.writing.Load(); int(w) != i {
						t.Fatalf("record %d arrived when the handler was at record %d", i, w)
					}
					if i < streamRecords {
						g.ack <- i
					}
				}
				if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
					t.Fatalf("after the last record: %q, %v; want a clean end", rest, err)
				}
				if p := drain(g.problems); len(p) > 0 {
					t.Fatalf("local handler: %v", p)
				}
			})
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func drain(c chan string) []string {
	var out []string
	for {
		select {
		case s := <-c:
			out = append(out, s)
		default:
			return out
		}
	}
}

// TestIdleStreamSurvivesTimeouts: with every timeout and keepalive configured far below it, an
// SSE stream that stays silent for 4 s between two events is not cut, and ends normally.
func TestIdleStreamSurvivesTimeouts(t *testing.T) {
	in := startToolgate(t,
		"--ssh-keepalive-interval", "300ms", "--ssh-keepalive-count", "2",
		"--read-header-timeout", "1s", "--tunnel-idle-timeout", "500ms",
		"--response-header-timeout", "2s")
	var finished atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-time.After(4 * time.Second):
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "data: second\n\n")
		finished.Add(1)
	})
	host, ssh := openTunnel(t, in, nil, localServer(t, h, 0))

	for _, proto := range protocols(t, in) {
		t.Run(proto.name, func(t *testing.T) {
			t.Parallel()
			resp := do(t, &http.Client{Transport: proto.tr}, "GET", in.url(host, "/mcp"), nil, "Accept", "text/event-stream")
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != proto.major {
				t.Fatalf("%s %d", resp.Proto, resp.StatusCode)
			}
			br := bufio.NewReader(resp.Body)
			first, err := readRecord(br, true)
			if err != nil || first != "data: first\n\n" {
				t.Fatalf("first event %q, %v", first, err)
			}
			quietFrom := time.Now()
			second, err := readRecord(br, true)
			if err != nil || second != "data: second\n\n" {
				t.Fatalf("after %s of silence: %q, %v; the idle stream was cut", time.Since(quietFrom).Round(time.Millisecond), second, err)
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Fatalf("stream end: %q, %v; want a normal end", rest, err)
			}
		})
	}
	t.Cleanup(func() {
		if finished.Load() != 2 {
			t.Errorf("the local handler finished %d streams, want 2", finished.Load())
		}
		if ssh.Exited() {
			t.Errorf("the ssh client exited during the idle stream:\n%s", ssh.Output())
		}
	})
}

// ---- bulk bodies ----

const bulkSize = 50 << 20

// TestBulkDownload: 50 MB from the local server arrive byte-exact.
func TestBulkDownload(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	sent := make(chan string, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(bulkSize))
		sum := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, sum), detReader(7, bulkSize))
		if err != nil || n != bulkSize {
			sent <- fmt.Sprintf("error after %d bytes: %v", n, err)
			return
		}
		sent <- hex.EncodeToString(sum.Sum(nil))
	})
	host, _ := openTunnel(t, in, nil, localServer(t, h, 0))
	resp := do(t, quickClient(t, in), "GET", in.url(host, "/big"), nil)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != bulkSize {
		t.Fatalf("status %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	sum := sha256.New()
	n, err := io.Copy(sum, resp.Body)
	if err != nil || n != bulkSize {
		t.Fatalf("received %d bytes, %v; want %d", n, err, bulkSize)
	}
	got := hex.EncodeToString(sum.Sum(nil))
	if want := <-sent; got != want {
		t.Fatalf("received sha256 %s, the local server sent %s", got, want)
	}
}

// TestBulkUploadStreams: a 50 MB request body arrives byte-exact, and it is streamed: the local
// handler starts reading while the client is still holding back most of the body.
func TestBulkUploadStreams(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	for _, proto := range protocols(t, in) {
		t.Run(proto.name, func(t *testing.T) {
			started := make(chan struct{})
			var once sync.Once
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sum := sha256.New()
				buf := make([]byte, 32<<10)
				var total int64
				for {
					n, err := r.Body.Read(buf)
					if n > 0 {
						once.Do(func() { close(started) })
					}
					sum.Write(buf[:n])
					total += int64(n)
					if err == io.EOF {
						break
					}
					if err != nil {
						http.Error(w, err.Error(), 500)
						return
					}
				}
				fmt.Fprintf(w, "%d %s", total, hex.EncodeToString(sum.Sum(nil)))
			})
			host, _ := openTunnel(t, in, nil, localServer(t, h, 0))

			pr, pw := io.Pipe()
			clientSum := make(chan string, 1)
			go func() {
				sum := sha256.New()
				src := detReader(9, bulkSize)
				dst := io.MultiWriter(sum, pw)
				if _, err := io.CopyN(dst, src, 1<<20); err != nil {
					pw.CloseWithError(err)
					return
				}
				select {
				case <-started:
				case <-time.After(20 * time.Second):
					pw.CloseWithError(errors.New("the local server saw nothing of the body while the client held back 49 MB: the upload is buffered"))
					return
				}
				if _, err := io.Copy(dst, src); err != nil {
					pw.CloseWithError(err)
					return
				}
				clientSum <- hex.EncodeToString(sum.Sum(nil))
				pw.Close()
			}()
			req, _ := http.NewRequest("POST", in.url(host, "/upload"), pr)
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err := (&http.Client{Transport: proto.tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || resp.ProtoMajor != proto.major {
				t.Fatalf("%s %d: %s", resp.Proto, resp.StatusCode, body)
			}
			var want string
			select {
			case want = <-clientSum:
			default:
				t.Fatalf("response %q before the client finished sending", body)
			}
			if got := string(body); got != fmt.Sprintf("%d %s", bulkSize, want) {
				t.Fatalf("local server received %q, client sent %d %s", got, bulkSize, want)
			}
		})
	}
}

// ---- WebSocket ----

// wsDial opens a WebSocket to host's path through toolgate, over TLS with the tunnel's SNI.
func wsDial(t testing.TB, in *instance, host, path string) *websocket.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", in.https, &tls.Config{ServerName: host, RootCAs: in.roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := websocket.NewConfig("wss://"+host+":"+in.httpsPort()+path, "https://"+host+":"+in.httpsPort())
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(cfg, conn)
	if err != nil {
		conn.Close()
		t.Fatalf("WebSocket handshake through the tunnel: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// TestWebSocketEcho: a WebSocket upgrade passes through the tunnel; text and binary messages
// round-trip; a close from either side ends the other side.
func TestWebSocketEcho(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	ended := make(chan string, 10)
	var sawOrigin atomic.Value
	var handshakes atomic.Int32
	ws := websocket.Server{
		// x/net/websocket's default check: the handshake must carry a parseable Origin.
		// toolgate checks the browser's origin at its edge and presents the local one.
		Handshake: func(cfg *websocket.Config, r *http.Request) error {
			handshakes.Add(1)
			sawOrigin.Store(r.Header.Get("Origin"))
			var err error
			cfg.Origin, err = websocket.Origin(cfg, r)
			if err == nil && cfg.Origin == nil {
				return fmt.Errorf("null origin")
			}
			return err
		},
		Handler: func(c *websocket.Conn) {
			for {
				var f wsFrame
				if err := wsFrames.Receive(c, &f); err != nil {
					ended <- c.Request().URL.Path + ": client closed: " + err.Error()
					return
				}
				if string(f.data) == "server, please close" {
					ended <- c.Request().URL.Path + ": server closed"
					return // the handler's return closes the connection
				}
				if f.typ == websocket.TextFrame {
					f.data = append([]byte("echo: "), f.data...)
				}
				wsFrames.Send(c, f)
			}
		},
	}
	host, _ := openTunnel(t, in, nil, localServer(t, ws, 0))

	waitEnded := func(want string) {
		t.Helper()
		select {
		case got := <-ended:
			if !strings.HasPrefix(got, want) {
				t.Fatalf("local handler: %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the local handler did not end (%s)", want)
		}
	}

	t.Run("client-closes", func(t *testing.T) {
		c := wsDial(t, in, host, "/a")
		for i := range 5 {
			msg := fmt.Sprintf("message %d %s", i, strings.Repeat("y", i*5000))
			if err := websocket.Message.Send(c, msg); err != nil {
				t.Fatal(err)
			}
			var got string
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if err := websocket.Message.Receive(c, &got); err != nil || got != "echo: "+msg {
				t.Fatalf("echo of message %d: %.40q, %v", i, got, err)
			}
		}
		bin := []byte{0, 1, 2, 0xff, 0xfe}
		if err := websocket.Message.Send(c, bin); err != nil {
			t.Fatal(err)
		}
		var got wsFrame
		if err := wsFrames.Receive(c, &got); err != nil || !bytes.Equal(got.data, bin) || got.typ != websocket.BinaryFrame {
			t.Fatalf("binary echo: %+v, %v", got, err)
		}
		if o, _ := sawOrigin.Load().(string); !strings.HasPrefix(o, "http://localhost:") {
			t.Errorf("the local server saw Origin %q, want the local origin", o)
		}
		c.Close()
		waitEnded("/a: client closed")
	})

	t.Run("foreign-origin", func(t *testing.T) {
		conn, err := tls.Dial("tcp", in.https, &tls.Config{ServerName: host, RootCAs: in.roots, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		before := handshakes.Load()
		cfg, _ := websocket.NewConfig("wss://"+host+":"+in.httpsPort()+"/evil", "https://evil.example")
		if ws, err := websocket.NewClient(cfg, conn); err == nil {
			ws.Close()
			t.Fatal("a WebSocket from https://evil.example was let through")
		} else if !strings.Contains(err.Error(), "bad status") {
			t.Fatalf("handshake from a foreign origin: %v, want a refusal status", err)
		}
		if handshakes.Load() != before {
			t.Fatal("the refused upgrade reached the local server")
		}
	})

	t.Run("server-closes", func(t *testing.T) {
		c := wsDial(t, in, host, "/b")
		if err := websocket.Message.Send(c, "server, please close"); err != nil {
			t.Fatal(err)
		}
		waitEnded("/b: server closed")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var got string
		err := websocket.Message.Receive(c, &got)
		if err == nil {
			t.Fatalf("read %q after the server closed", got)
		}
		if isTimeout(err) {
			t.Fatalf("the client's read did not end when the server closed: %v", err)
		}
	})
}

// wsFrame is a message with its frame type, so the echo answers binary with binary.
type wsFrame struct {
	data []byte
	typ  byte
}

var wsFrames = websocket.Codec{
	Marshal: func(v any) ([]byte, byte, error) {
		f := v.(wsFrame)
		return f.data, f.typ, nil
	},
	Unmarshal: func(data []byte, typ byte, v any) error {
		*v.(*wsFrame) = wsFrame{append([]byte(nil), data...), typ}
		return nil
	},
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
