package web

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/toolgate/toolgate/authz"
)

// The policy step reads every POST body whole before deciding on it. This file keeps the
// memory that takes from one request to the next: a buffer and an inspector (whose parse
// results alias the buffer) come from a pool and go back to it when the request is done,
// once nothing can read them any more.

// bodyScratch is the memory for reading and inspecting one body.
type bodyScratch struct {
	buf  []byte
	insp authz.Inspector
}

// Buffers are kept in two sizes. Most MCP requests fit the small one; bodies over the large one
// (up to MaxBody, 1 MiB by default) get a buffer of their own that is left to the garbage
// collector, so that a few large uploads do not pin megabytes in the pool.
const (
	bodySmall = 4 << 10
	bodyLarge = 64 << 10
)

// bodyPool is the Front's pool of bodyScratch, by buffer size. sync.Pool lets the garbage
// collector empty it when requests stop.
type bodyPool struct {
	small, large sync.Pool
	// misses counts scratch allocated because the pool had none to give: a test checks that
	// bodies do come back.
	misses atomic.Uint64
}

// get returns scratch whose buffer holds a body of n bytes (n <= 0: unknown, so the small
// size to start with) and the byte past it that reading to EOF needs.
func (p *bodyPool) get(n int64) *bodyScratch {
	want := max(n, 0) + 1
	pool := &p.small
	if want > bodySmall {
		pool = &p.large
	}
	sc, _ := pool.Get().(*bodyScratch)
	if sc == nil {
		p.misses.Add(1)
		sc = &bodyScratch{}
	}
	if int64(cap(sc.buf)) < want {
		size := max(want, bodySmall)
		if want > bodySmall {
			size = max(want, bodyLarge) // over bodyLarge: a buffer of its own
		}
		sc.buf = make([]byte, 0, size)
	}
	sc.buf = sc.buf[:0]
	return sc
}

// put returns sc to the pool of its buffer's size. A buffer past bodyLarge (a large body, or
// one of unknown length that grew) is dropped, its scratch kept.
func (p *bodyPool) put(sc *bodyScratch) {
	switch c := cap(sc.buf); {
	case c > bodyLarge:
		sc.buf = nil
		p.small.Put(sc)
	case c == bodyLarge:
		p.large.Put(sc)
	default:
		p.small.Put(sc)
	}
}

// errBodyTooLarge is what readBody returns for a body over the limit.
var errBodyTooLarge = errors.New("web: request body over the limit")

// readBody reads r to its end into buf's spare capacity, growing it as needed, and returns
// buf with the body. A body longer than limit is not read further: errBodyTooLarge.
func readBody(buf []byte, r io.Reader, limit int64) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		// Never read more than one byte past the limit: that byte is enough to refuse.
		room := buf[len(buf):cap(buf)]
		if over := int64(len(buf)) + int64(len(room)) - (limit + 1); over > 0 {
			room = room[:int64(len(room))-over]
		}
		n, err := r.Read(room)
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return buf, errBodyTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// requestBody is the body handed on to the proxy once the policy step has read and decided
// it: a reader over the pooled buffer. The handler takes it back when the request is done
// (tunnelRequest.finish): it closes the reader, whoever else has or has not, and returns the
// buffer to the pool. The proxy cannot be relied on to close it: httputil.ReverseProxy
// wraps a request's body in a reader whose Close does nothing to the body beneath, and stops
// reading from it when it returns. http.Transport may still be reading from another goroutine
// then, so reads and Close hold mu: a read after Close gets an error, never a byte of a later
// request.
type requestBody struct {
	pool   *bodyPool
	mu     sync.Mutex
	sc     *bodyScratch // until it goes back to the pool
	off    int
	closed bool
}

// hold gives the handler the scratch it reads the body into.
func (b *requestBody) hold(pool *bodyPool, sc *bodyScratch) {
	b.pool, b.sc = pool, sc
}

// reader hands the body on as the request's Body.
func (b *requestBody) reader() io.ReadCloser { return b }

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.off >= len(b.sc.buf) {
		return 0, io.EOF
	}
	n := copy(p, b.sc.buf[b.off:])
	b.off += n
	return n, nil
}

// Close ends reading; later calls do nothing. The buffer stays the handler's until release.
func (b *requestBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// release closes the reader and returns the buffer to the pool. Nothing read from the body
// (the inspected request, its arguments and ids) may be used after it.
func (b *requestBody) release() {
	if b.pool == nil {
		return // no body was read
	}
	b.mu.Lock()
	b.closed = true
	sc := b.sc
	b.sc = nil
	b.mu.Unlock()
	if sc != nil {
		b.pool.put(sc)
	}
}
