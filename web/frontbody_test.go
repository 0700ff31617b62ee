package web

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/tunnel"
)

func TestReadBody(t *testing.T) {
	const limit = 100
	errRead := errors.New("connection reset")
	for _, tc := range []struct {
		name    string
		r       io.Reader
		bufCap  int
		want    string // the body read, when no error
		wantErr error
	}{
		{"empty", strings.NewReader(""), 0, "", nil},
		{"small, buffer too small", strings.NewReader("hello"), 2, "hello", nil},
		{"small, buffer large", strings.NewReader("hello"), 4096, "hello", nil},
		{"one byte at a time", iotest.OneByteReader(strings.NewReader(strings.Repeat("a", 99))), 1, strings.Repeat("a", 99), nil},
		{"exactly the limit", strings.NewReader(strings.Repeat("b", limit)), 10, strings.Repeat("b", limit), nil},
		{"one past the limit", strings.NewReader(strings.Repeat("c", limit+1)), 10, "", errBodyTooLarge},
		{"far past the limit", strings.NewReader(strings.Repeat("d", 10*limit)), 4096, "", errBodyTooLarge},
		{"data then EOF together", iotest.DataErrReader(strings.NewReader("xyz")), 8, "xyz", nil},
		{"read error", io.MultiReader(strings.NewReader("ab"), iotest.ErrReader(errRead)), 8, "", errRead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &countingReader{r: tc.r}
			got, err := readBody(make([]byte, 0, tc.bufCap), r, limit)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if err == nil && string(got) != tc.want {
				t.Fatalf("read %q, want %q", got, tc.want)
			}
			if r.n > limit+1 {
				t.Errorf("read %d bytes from a body limited to %d: more than one past the limit", r.n, limit)
			}
		})
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestRequestBodyRelease: whether or not the proxy closed the body, the handler's release
// closes it and takes the buffer back; a read after that fails.
func TestRequestBodyRelease(t *testing.T) {
	for _, order := range []string{"closed by the proxy", "still being read", "never handed on"} {
		t.Run(order, func(t *testing.T) {
			var pool bodyPool
			var b requestBody
			sc := pool.get(5)
			sc.buf = append(sc.buf, "hello"...)
			b.hold(&pool, sc)
			var rc io.ReadCloser
			if order != "never handed on" {
				rc = b.reader()
				p := make([]byte, 2)
				if n, err := rc.Read(p); n != 2 || err != nil || string(p) != "he" {
					t.Fatalf("Read = %d %v %q", n, err, p)
				}
			}
			if order == "closed by the proxy" {
				rc.Close()
				if _, err := rc.Read(make([]byte, 1)); !errors.Is(err, http.ErrBodyReadAfterClose) {
					t.Fatalf("Read after Close: %v", err)
				}
				if b.sc == nil {
					t.Fatal("the buffer went back before the handler's release")
				}
			}
			b.release()
			if b.sc != nil {
				t.Fatal("the buffer was not given back")
			}
			if rc != nil {
				if _, err := rc.Read(make([]byte, 1)); !errors.Is(err, http.ErrBodyReadAfterClose) {
					t.Fatalf("Read after release: %v", err)
				}
				rc.Close() // again: nothing happens
			}
		})
	}
}

// rpProxy is the tunnel proxy's engine, httputil.ReverseProxy, to an upstream server.
type rpProxy struct{ rp *httputil.ReverseProxy }

func (p rpProxy) Serve(w http.ResponseWriter, r *http.Request, _ *tunnel.Tunnel, _ netip.AddrPort) {
	p.rp.ServeHTTP(w, r)
}

// TestPooledBodiesThroughReverseProxy: bodies read into pooled buffers reach an upstream
// through httputil.ReverseProxy whole, many at once, buffers reused between them.
func TestPooledBodiesThroughReverseProxy(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body) // whole, before writing: a response cuts an HTTP/1 body short
		w.Write(b)
	}))
	defer upstream.Close()
	target, _ := url.Parse(upstream.URL)
	tt := newTestTunnel(t)
	f := tt.front(t, FrontConfig{Auth: fakeTokens{access: tt.access(tt.owner.ID)}, Proxy: rpProxy{httputil.NewSingleHostReverseProxy(target)},
		Policy: benchPolicy{authz.DefaultPolicy(time.Hour)}, Users: tt.st, Audit: &auditSink{}})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100 {
				fill := strings.Repeat(string(rune('a'+(g+i)%26)), 50+(i*97)%9000)
				body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"t","arguments":{"f":%q}}}`, i, fill)
				r := tunnelRequestFor("POST", "/mcp", body)
				r.Header.Set("Authorization", "Bearer x")
				w := httptest.NewRecorder()
				f.ServeHTTP(w, r)
				if w.Code != 200 || w.Body.String() != body {
					t.Errorf("status %d, upstream got %d bytes, want %d: %q", w.Code, w.Body.Len(), len(body), w.Body.String()[max(0, w.Body.Len()-80):])
					return
				}
			}
		})
	}
	wg.Wait()
	// One at a time, buffers come back for the next request: whatever the pool drops (it
	// may, on a collection, and does at random under the race detector) is far from all.
	before := f.bodies.misses.Load()
	const n = 200
	for i := range n {
		r := tunnelRequestFor("POST", "/mcp", fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, i))
		r.Header.Set("Authorization", "Bearer x")
		f.ServeHTTP(httptest.NewRecorder(), r)
	}
	if misses := f.bodies.misses.Load() - before; misses > n/2 {
		t.Errorf("%d of %d requests found no buffer in the pool: buffers do not come back", misses, n)
	}
}

// lateReader is a proxy that hands the body to a goroutine reading it slowly, and closes it
// and returns at once, as http.Transport may: reads that come too late must fail, never
// return another request's bytes.
type lateReader struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []string
}

func (p *lateReader) Serve(w http.ResponseWriter, r *http.Request, _ *tunnel.Tunnel, _ netip.AddrPort) {
	want := r.Header.Get("X-Want")
	body := r.Body
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var got []byte
		buf := make([]byte, 7)
		for {
			n, err := body.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
			time.Sleep(time.Microsecond)
		}
		if !strings.HasPrefix(want, string(got)) {
			p.mu.Lock()
			p.errs = append(p.errs, fmt.Sprintf("read %.40q… of a body %.40q…", got, want))
			p.mu.Unlock()
		}
	}()
	time.Sleep(time.Duration(len(want)%3) * time.Microsecond)
	body.Close()
	w.WriteHeader(http.StatusOK)
}

// TestPooledBodiesNeverLeak: many requests at once, their bodies pooled and reused, each read
// late by the proxy: none ever sees a byte of another.
func TestPooledBodiesNeverLeak(t *testing.T) {
	tt := newTestTunnel(t)
	proxy := &lateReader{}
	f := tt.front(t, FrontConfig{Auth: fakeTokens{access: tt.access(tt.owner.ID)}, Proxy: proxy,
		Policy: benchPolicy{authz.DefaultPolicy(time.Hour)}, Users: tt.st, Audit: &auditSink{}})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				fill := strings.Repeat(string(rune('a'+(g+i)%26)), 50+(i*37)%3000)
				body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"t","arguments":{"f":%q}}}`, i, fill)
				r := tunnelRequestFor("POST", "/mcp", body)
				r.Header.Set("Authorization", "Bearer x")
				r.Header.Set("X-Want", body)
				w := httptest.NewRecorder()
				f.ServeHTTP(w, r)
				if w.Code != 200 {
					t.Errorf("status %d: %s", w.Code, w.Body)
					return
				}
			}
		})
	}
	wg.Wait()
	proxy.wg.Wait()
	for _, e := range proxy.errs {
		t.Error(e)
	}
}
