package tunnel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"sync"
	"time"
)

// relay is the proxy's http.RoundTripper: HTTP/1.1 over the tunnel's streams, one request at a
// time per stream, with finished streams kept per tunnel for reuse.
//
// It replaces http.Transport, which did the same job with two goroutines per pooled connection
// (a read loop and a write loop) and several channel hand-offs per request between them and
// the caller. Those hand-offs were a third of the proxy's CPU per small request
// (docs/PERFORMANCE.md). Here the caller's goroutine writes the request and reads the response
// headers itself; a goroutine is started only to stream a request body of unknown or large size
// while the response is read. The wire work is net/http's own: Request.Write and ReadResponse,
// the same code http.Transport runs, so framing, chunking, trailers and 1xx parsing are not ours.
type relay struct {
	dial             func(ctx context.Context, t *Tunnel, from netip.AddrPort) (net.Conn, error)
	responseHeader   time.Duration
	idleTimeout      time.Duration
	maxIdlePerTunnel int
	bufPool          sync.Pool // *bufio.Writer, lent to a stream for one request's write

	mu    sync.Mutex
	pools map[*Tunnel]*streamPool // tunnels with idle streams
}

// syncBodyMax is the largest request body written in the caller's goroutine before the response
// is read. A body that size always fits in the SSH channel's window (OpenSSH's client opens
// forwarded-tcpip channels with 2 MiB), so the write cannot wait on a local server that answers
// without reading. Anything larger, or of unknown length, is written from its own goroutine
// while the response is read, as http.Transport does.
const syncBodyMax = 64 << 10

// max1xx bounds the informational responses skipped before the final one, as http.Transport
// does (it allows 5).
const max1xx = 5

// stream is one pooled connection to the local server: a tunnel stream and its read buffer.
type stream struct {
	conn    net.Conn
	br      *bufio.Reader
	t       *Tunnel
	reused  bool
	idleAt  time.Time
	idleGen uint64 // which stay in the pool the idle timer belongs to
	timer   *time.Timer
}

// streamPool is a tunnel's idle streams, most recently used last.
type streamPool struct {
	idle []*stream
	gen  uint64
}

func newRelay(dial func(context.Context, *Tunnel, netip.AddrPort) (net.Conn, error), responseHeader, idle time.Duration, maxIdle int) *relay {
	return &relay{
		dial:             dial,
		responseHeader:   responseHeader,
		idleTimeout:      idle,
		maxIdlePerTunnel: maxIdle,
		bufPool:          sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }},
		pools:            make(map[*Tunnel]*streamPool),
	}
}

// get returns an idle stream of t, or nil. The most recently used comes first: it is the least
// likely to be closed by the local server's keep-alive timeout.
func (rl *relay) get(t *Tunnel) *stream {
	now := time.Now()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	p := rl.pools[t]
	for p != nil && len(p.idle) > 0 {
		s := p.idle[len(p.idle)-1]
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
		p.gen++
		if len(p.idle) == 0 {
			delete(rl.pools, t)
		}
		s.idleGen = 0
		if now.Sub(s.idleAt) >= rl.idleTimeout || s.peerClosed() {
			go s.conn.Close()
			continue
		}
		return s
	}
	return nil
}

// put returns a stream whose exchange finished cleanly to its tunnel's pool.
func (rl *relay) put(s *stream) {
	rl.mu.Lock()
	p := rl.pools[s.t]
	if p == nil {
		p = &streamPool{}
		rl.pools[s.t] = p
	}
	if len(p.idle) >= rl.maxIdlePerTunnel || s.t.endpointCount() == 0 {
		rl.mu.Unlock()
		s.conn.Close()
		return
	}
	p.gen++
	s.idleAt, s.idleGen, s.reused = time.Now(), p.gen, true
	p.idle = append(p.idle, s)
	if s.timer == nil {
		s.timer = time.AfterFunc(rl.idleTimeout, func() { rl.expire(s) })
	} else {
		s.timer.Reset(rl.idleTimeout)
	}
	rl.mu.Unlock()
}

// expire closes s if it is still idle in the stay its timer was set for. The local server
// closes its side after its own keep-alive timeout; closing ours first, sooner, means a request
// is never written into a connection the server is closing at that moment.
func (rl *relay) expire(s *stream) {
	rl.mu.Lock()
	p := rl.pools[s.t]
	if p == nil || s.idleGen == 0 {
		rl.mu.Unlock()
		return
	}
	for i, x := range p.idle {
		if x == s {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			break
		}
	}
	if len(p.idle) == 0 {
		delete(rl.pools, s.t)
	}
	s.idleGen = 0
	rl.mu.Unlock()
	s.conn.Close()
}

// closeIdle closes every idle stream.
func (rl *relay) closeIdle() {
	rl.mu.Lock()
	pools := rl.pools
	rl.pools = make(map[*Tunnel]*streamPool)
	rl.mu.Unlock()
	for _, p := range pools {
		for _, s := range p.idle {
			if s.timer != nil {
				s.timer.Stop()
			}
			s.conn.Close()
		}
	}
}

// peerClosed reports, without blocking, whether the local server has closed an idle stream or
// sent something unasked: either way it cannot carry the next request.
func (s *stream) peerClosed() bool {
	if s.br.Buffered() > 0 {
		return true
	}
	if pc, ok := s.conn.(interface{ peerClosed() bool }); ok {
		return pc.peerClosed()
	}
	return false
}

// RoundTrip sends req to the tunnel in its context and returns the local server's response.
func (rl *relay) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	t, _ := ctx.Value(tunnelKey).(*Tunnel)
	if t == nil {
		return nil, errors.New("tunnel: request without a tunnel")
	}
	from, _ := ctx.Value(clientKey).(netip.AddrPort)
	for attempt := 0; ; attempt++ {
		s := rl.get(t)
		if s == nil {
			c, err := rl.dial(ctx, t, from)
			if err != nil {
				if req.Body != nil {
					req.Body.Close() // a RoundTripper closes the body, even on errors
				}
				return nil, err
			}
			s = &stream{conn: c, br: bufio.NewReaderSize(c, 32<<10), t: t}
		}
		res, err := rl.exchange(ctx, s, req)
		if err == nil {
			return res, nil
		}
		// A reused stream that fails before any response byte arrived was most likely closed
		// by the local server just as we picked it. http.Transport retries such a request on a
		// new connection when it can be sent again: it has no body, or a body it can get again.
		var nr *notReceived
		if attempt == 0 && s.reused && errors.As(err, &nr) && ctx.Err() == nil && rewindable(req) {
			if req.GetBody != nil {
				if req.Body, err = req.GetBody(); err != nil {
					return nil, err
				}
			}
			continue
		}
		return nil, err
	}
}

func rewindable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// notReceived marks an exchange that failed before the local server sent a byte.
type notReceived struct{ err error }

func (e *notReceived) Error() string { return e.err.Error() }
func (e *notReceived) Unwrap() error { return e.err }

// exchange writes req on s and reads the response headers. On success the response body owns
// s; on failure s is closed.
func (rl *relay) exchange(ctx context.Context, s *stream, req *http.Request) (*http.Response, error) {
	// Ending the request (the public client went away, or the server shuts down) closes the
	// stream, which unblocks whatever this exchange is waiting for, response headers or a body
	// that streams forever.
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	fail := func(err error) (*http.Response, error) {
		stop()
		s.conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}

	var bodyDone chan error
	bw := rl.bufPool.Get().(*bufio.Writer)
	bw.Reset(s.conn)
	if req.Body == nil || req.Body == http.NoBody || (req.ContentLength > 0 && req.ContentLength <= syncBodyMax) {
		err := req.Write(bw)
		if err == nil {
			err = bw.Flush()
		}
		bw.Reset(nil)
		rl.bufPool.Put(bw)
		if err != nil {
			return fail(fmt.Errorf("writing the request: %w", err))
		}
	} else {
		// Request.Write flushes the headers before a streamed body, so the local server can
		// answer (or refuse) while the body still flows.
		bodyDone = make(chan error, 1)
		go func() {
			err := req.Write(bw)
			if err == nil {
				err = bw.Flush()
			}
			bw.Reset(nil)
			rl.bufPool.Put(bw)
			bodyDone <- err
		}()
	}

	if rl.responseHeader > 0 {
		s.conn.SetReadDeadline(time.Now().Add(rl.responseHeader))
	}
	// Waiting for the first byte on its own tells "the server closed without answering"
	// (nothing received: the request may be sent again) from a broken response.
	if _, err := s.br.Peek(1); err != nil {
		if bodyDone != nil {
			select {
			case werr := <-bodyDone:
				if werr != nil {
					err = fmt.Errorf("%w (writing the request: %w)", err, werr)
				}
			default:
			}
		}
		if errors.Is(err, io.EOF) {
			err = &notReceived{err}
		}
		return fail(fmt.Errorf("reading the response: %w", err))
	}
	trace := httptrace.ContextClientTrace(ctx)
	var res *http.Response
	for n1xx := 0; ; {
		var err error
		res, err = http.ReadResponse(s.br, req)
		if err != nil {
			return fail(fmt.Errorf("reading the response: %w", err))
		}
		if res.StatusCode >= 200 || res.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if n1xx++; n1xx > max1xx {
			return fail(errors.New("reading the response: too many 1xx informational responses"))
		}
		if res.StatusCode != http.StatusContinue && trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(res.StatusCode, textproto.MIMEHeader(res.Header)); err != nil {
				return fail(err)
			}
		}
	}
	if rl.responseHeader > 0 {
		s.conn.SetReadDeadline(time.Time{})
	}

	if res.StatusCode == http.StatusSwitchingProtocols {
		// The stream becomes the upgraded connection; ReverseProxy copies it both ways and
		// closes it. It is never pooled.
		stop()
		if bodyDone != nil {
			<-bodyDone
		}
		res.Body = &upgradedStream{Reader: s.br, conn: s.conn}
		return res, nil
	}
	res.Body = &relayBody{rl: rl, s: s, body: res.Body, stop: stop, bodyDone: bodyDone,
		reuse: !res.Close && !req.Close}
	return res, nil
}

// relayBody is a response body that returns its stream to the pool when read to the end.
type relayBody struct {
	rl       *relay
	s        *stream
	body     io.ReadCloser
	stop     func() bool
	bodyDone chan error
	reuse    bool
	eof      bool
	closed   bool
}

func (b *relayBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, net.ErrClosed
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// Close ends the exchange. The stream goes back to the pool only if the response was read to
// its end, the request body was written in full, neither side asked to close, and the request
// was not cancelled; otherwise it is closed, since its framing state is unknown.
func (b *relayBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	reuse := b.reuse && b.eof
	if b.bodyDone != nil {
		select {
		case err := <-b.bodyDone:
			reuse = reuse && err == nil
		default:
			reuse = false // still writing: the server answered before reading it all
		}
	}
	if !b.stop() { // the request's context ended and closed the stream
		reuse = false
	}
	if reuse {
		b.rl.put(b.s)
		return nil
	}
	return b.s.conn.Close()
}

// upgradedStream is the body of a 101 response: the stream itself, read through the buffer
// that may already hold the first bytes of the new protocol.
type upgradedStream struct {
	io.Reader
	conn net.Conn
}

func (u *upgradedStream) Write(p []byte) (int, error) { return u.conn.Write(p) }
func (u *upgradedStream) Close() error                { return u.conn.Close() }
