package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// ProxyConfig configures a [Proxy]. Fields are read once, by [NewProxy].
type ProxyConfig struct {
	// ResponseHeaderTimeout bounds the wait for the local server's response headers; past it
	// the client gets 504. It does not limit a response once headers arrived, so streams may
	// idle forever. Default 5 minutes: MCP tool calls answered with plain JSON can be slow.
	ResponseHeaderTimeout time.Duration
	// DialTimeout bounds opening a stream: one round trip to the ssh client plus its local
	// connect. Default 15s.
	DialTimeout time.Duration
	// IdleConnTimeout is how long a finished stream is kept for reuse. It must stay below the
	// local server's keep-alive timeout, or a request can be written to a connection the
	// server is closing at that moment and fail with 502 (Node and uvicorn close after 5s).
	// Default 3s.
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerTunnel bounds the reusable streams kept per tunnel. Too small and busy
	// tunnels open a channel and a local connection per request (sish's flaw). Default 256.
	MaxIdleConnsPerTunnel int
	// WriteError renders an error response. Default: plain text.
	WriteError func(w http.ResponseWriter, r *http.Request, e *ProxyError)
	// Logger receives proxy errors other than clients going away. Default: discard.
	Logger *slog.Logger
}

// ProxyError is an error the proxy answers itself, instead of the local server.
type ProxyError struct {
	Status  int    // HTTP status: 502 or 504
	Code    string // stable machine-readable code, e.g. "tunnel_offline"
	Message string // what happened and what to do, for a person
	Err     error  // the underlying error, for logs
}

// Proxy forwards HTTP requests to tunnels. It is an http.Handler for requests whose context
// carries the tunnel (see [Proxy.Serve]).
type Proxy struct {
	cfg   ProxyConfig
	relay *relay
	rp    *httputil.ReverseProxy
}

type ctxKey int

const (
	tunnelKey ctxKey = iota
	clientKey
)

// NewProxy returns a proxy. It serves whichever tunnel each request is given in [Proxy.Serve].
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = 5 * time.Minute
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 15 * time.Second
	}
	if cfg.IdleConnTimeout <= 0 {
		cfg.IdleConnTimeout = 3 * time.Second
	}
	if cfg.MaxIdleConnsPerTunnel <= 0 {
		cfg.MaxIdleConnsPerTunnel = 256
	}
	if cfg.WriteError == nil {
		cfg.WriteError = func(w http.ResponseWriter, _ *http.Request, e *ProxyError) {
			http.Error(w, e.Message, e.Status)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p := &Proxy{cfg: cfg}
	p.relay = newRelay(p.dial, cfg.ResponseHeaderTimeout, cfg.IdleConnTimeout, cfg.MaxIdleConnsPerTunnel)
	p.rp = &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: p.relay,
		// Streams are flushed on every write: Go does that itself for text/event-stream and for
		// responses of unknown length, and markStreams makes declared-length ndjson/jsonl
		// streams count as unknown-length. Forcing a flush for everything (FlushInterval -1)
		// made ReverseProxy write each small response twice, headers then body: 21% of the
		// proxy's CPU at 64 connections (docs/PERFORMANCE.md).
		FlushInterval:  0,
		ModifyResponse: markStreams,
		BufferPool:     newBufferPool(),
		ErrorHandler:   p.errorHandler,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// Serve proxies r to t. from is the public client's address.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, t *Tunnel, from netip.AddrPort) {
	ctx := context.WithValue(r.Context(), tunnelKey, t)
	ctx = context.WithValue(ctx, clientKey, from)
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

// CloseIdleConnections closes every idle pooled stream.
func (p *Proxy) CloseIdleConnections() { p.relay.closeIdle() }

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	t := pr.In.Context().Value(tunnelKey).(*Tunnel)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = t.host // not sent: the relay writes Out.Host, set below
	// ReverseProxy has removed any client-supplied Forwarded and X-Forwarded-*; these are ours.
	pr.SetXForwarded()
	pr.Out.Header.Del("X-Real-Ip")
	if t.PassHost() {
		pr.Out.Host = pr.In.Host
		return
	}
	// The MCP SDKs refuse a non-loopback Host (DNS-rebinding protection): Go's answers 403,
	// Python's 421, and Python's default allow-list is "localhost:*", which needs a port.
	pr.Out.Host = t.LocalHost()
	// The same servers check a browser's Origin (Python's allow-list, Go's
	// CrossOriginProtection, x/net/websocket, gorilla) against that Host, and some refuse a
	// request that has none. toolgate has already decided the browser's origin at its edge, so
	// past the edge the request is presented as a same-origin one: Origin, if the browser sent
	// one, becomes the local origin, and Sec-Fetch-Site, which would contradict it, goes. The
	// public origin stays visible in X-Forwarded-Host.
	if pr.In.Header.Get("Origin") != "" {
		pr.Out.Header.Set("Origin", "http://"+t.LocalHost())
	}
	pr.Out.Header.Del("Sec-Fetch-Site")
}

func (p *Proxy) dial(ctx context.Context, t *Tunnel, from netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	c, err := t.DialContext(ctx, from)
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		return nil, &dialTimeoutError{err}
	}
	return c, err
}

type dialTimeoutError struct{ err error }

func (e *dialTimeoutError) Error() string { return "ssh client did not answer: " + e.err.Error() }
func (e *dialTimeoutError) Unwrap() error { return e.err }

func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The public client went away; nobody is left to tell.
		return
	}
	t, _ := r.Context().Value(tunnelKey).(*Tunnel)
	host := ""
	if t != nil {
		host = t.Host()
	}
	e := &ProxyError{Status: http.StatusBadGateway, Code: "bad_gateway", Err: err,
		Message: fmt.Sprintf("toolgate could not get a response from the server behind %s: %v", host, err)}
	var dte *dialTimeoutError
	var ne net.Error
	switch {
	case errors.Is(err, ErrTunnelGone):
		e.Code = "tunnel_offline"
		e.Message = fmt.Sprintf("The tunnel %s is not connected. Its owner can bring it back with ssh -R.", host)
	case errors.Is(err, ErrLocalUnreachable):
		e.Code = "local_unreachable"
		e.Message = fmt.Sprintf("toolgate reached the ssh client of %s, but it could not connect to the local server: is it running on the port given to -R? (%v)", host, err)
	case errors.As(err, &dte):
		e.Status, e.Code = http.StatusGatewayTimeout, "tunnel_timeout"
		e.Message = fmt.Sprintf("The ssh client of %s did not open a stream within %s.", host, p.cfg.DialTimeout)
	case errors.As(err, &ne) && ne.Timeout():
		e.Status, e.Code = http.StatusGatewayTimeout, "local_timeout"
		e.Message = fmt.Sprintf("The local server behind %s sent no response headers within %s.", host, p.cfg.ResponseHeaderTimeout)
	}
	p.cfg.Logger.Info("proxy error", "host", host, "code", e.Code, "err", err)
	p.cfg.WriteError(w, r, e)
}

// bufferPool recycles the 32 KiB copy buffers ReverseProxy uses for bodies.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }

// markStreams makes ReverseProxy flush streaming media types even when they declare a length:
// with ContentLength -1 its flushInterval is "every write"; the Content-Length header itself is
// copied to the client unchanged.
func markStreams(res *http.Response) error {
	ct := res.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/x-ndjson") || strings.HasPrefix(ct, "application/jsonl") ||
		strings.HasPrefix(ct, "application/stream+json") {
		res.ContentLength = -1 // flushInterval() then flushes every write; the header is kept
	}
	return nil
}
