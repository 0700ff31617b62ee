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
// results alias the buffer) come from a pool and go back to it when neither the handler nor
// the proxy can still read them.

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
// it: a reader over the pooled buffer. The buffer goes back to the pool when both the handler
// (tunnelRequest.finish) and the reader's user (Close) are done with it, whichever is last;
// if the reader is never closed, the buffer is left to the garbage collector. http.Transport
// may still read a request body after the handler has returned, and may close it from another
// goroutine than the one reading, so reads and Close hold mu: a Read after Close gets an
// error, never a byte of a later request.
type requestBody struct {
	pool   *bodyPool
	mu     sync.Mutex
	sc     *bodyScratch // until it goes back to the pool
	off    int
	closed bool
	// refs counts the holds on sc: the handler's, and the reader's once handed on.
	refs atomic.Int32
}

// hold gives the handler the scratch it reads the body into.
func (b *requestBody) hold(pool *bodyPool, sc *bodyScratch) {
	b.pool, b.sc = pool, sc
	b.refs.Store(1)
}

// reader hands the body on as the request's Body.
func (b *requestBody) reader() io.ReadCloser {
	b.refs.Add(1)
	return b
}

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.sc == nil {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.off >= len(b.sc.buf) {
		return 0, io.EOF
	}
	n := copy(p, b.sc.buf[b.off:])
	b.off += n
	return n, nil
}

// Close ends the reader's hold; later calls do nothing.
func (b *requestBody) Close() error {
	b.mu.Lock()
	first := !b.closed
	b.closed = true
	b.mu.Unlock()
	if first {
		b.unref()
	}
	return nil
}

// release ends the handler's hold. Nothing read from the body (the inspected request, its
// arguments and ids) may be used after it.
func (b *requestBody) release() {
	if b.pool != nil {
		b.unref()
	}
}

func (b *requestBody) unref() {
	if b.refs.Add(-1) != 0 {
		return
	}
	b.mu.Lock()
	sc := b.sc
	b.sc = nil
	b.closed = true // a reader never handed on has nothing more to read either
	b.mu.Unlock()
	b.pool.put(sc)
}
