package web

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/tunnel"
)

// writeCountingListener counts the writes on the connections it accepts.
type writeCountingListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *writeCountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	return &writeCountingConn{Conn: c, n: &l.writes}, err
}

type writeCountingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *writeCountingConn) Write(b []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(b)
}

// lengthProxy answers with a declared length, or chunked when chunked is set.
type lengthProxy struct{ chunked bool }

func (p lengthProxy) Serve(w http.ResponseWriter, r *http.Request, _ *tunnel.Tunnel, _ netip.AddrPort) {
	body := `{"jsonrpc":"2.0","id":1,"result":{}}`
	if !p.chunked {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.Write([]byte(body))
}

// orderConn is a tunnel's terminal whose Notify (the owner's line, made after the response)
// waits until the client says it has the response, or gives up after a while and says so.
type orderConn struct {
	benchConn
	got     chan struct{} // the client has read a response
	late    atomic.Int32  // lines made before the client had its response
	timeout time.Duration
}

func (c *orderConn) Notify(string) {
	select {
	case <-c.got:
	case <-time.After(c.timeout):
		c.late.Add(1)
	}
}

// A proxied response goes out in one write, whatever its framing, and one of declared length
// reaches the client before the owner's terminal line is made: the line and the audit record
// are not on the client's critical path.
func TestTunnelResponseLeavesBeforeTheLine(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			tt := newTestTunnel(t)
			oc := &orderConn{got: make(chan struct{}, 1), timeout: 2 * time.Second}
			if chunked {
				oc.timeout = 50 * time.Millisecond // it will wait: the response ends with the handler
			}
			fwd, err := tt.reg.Open(t.Context(), tunnel.OpenRequest{Owner: tt.owner.ID, Conn: oc,
				Dialer: benchDialer{}, BindAddr: "ord", LocalHost: "localhost:80"})
			if err != nil {
				t.Fatal(err)
			}
			defer fwd.Close()
			f := tt.front(t, FrontConfig{Proxy: lengthProxy{chunked: chunked}})
			l := &writeCountingListener{Listener: mustListen(t)}
			srv := httptest.NewUnstartedServer(f)
			srv.Listener = l
			var idle atomic.Int32
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateIdle {
					idle.Add(1)
				}
			}
			srv.Start()
			defer srv.Close()

			conn, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			for i := range 5 {
				before := l.writes.Load()
				req := "POST /mcp HTTP/1.1\r\nHost: ord.test.localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
				if _, err := conn.Write([]byte(req)); err != nil {
					t.Fatal(err)
				}
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, res.Body); err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				oc.got <- struct{}{}
				// Counted once the server is done with the request.
				for deadline := time.Now().Add(10 * time.Second); idle.Load() < int32(i+1); {
					if time.Now().After(deadline) {
						t.Fatal("the server never finished the request")
					}
					time.Sleep(time.Millisecond)
				}
				if n := l.writes.Load() - before; n != 1 {
					t.Errorf("request %d: %d writes on the connection, want 1", i, n)
				}
			}
			if n := oc.late.Load(); !chunked && n != 0 {
				t.Errorf("%d of 5 responses of declared length waited for the owner's line", n)
			}
		})
	}
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}
