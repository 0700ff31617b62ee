package sshd

import (
	"net"
	"sync"
	"time"
)

// batchConn coalesces the SSH transport's writes into fewer write(2) calls.
//
// x/crypto writes every SSH packet with its own Write, under a transport lock it holds until
// that Write returns, so it never hands the socket two packets at once. Under load, with many
// channels busy, that is one syscall and one TCP segment per packet, and the peer's event loop
// (OpenSSH's ssh client) wakes once per segment. Here Write copies the packet into a buffer and
// returns; one flusher goroutine at a time writes the buffer out, and whatever arrives while it
// is in the kernel goes out with its next write. A lone packet still leaves at once: there is
// no timer and no waiting for company, which would bring back Nagle-like stalls.
//
// Ordering is preserved (one buffer, one flusher). Memory is bounded: Write blocks while
// maxPending bytes are queued, which is the same backpressure a full socket buffer gives. A
// write error is sticky and returned by every later Write. Close waits briefly for queued
// bytes, so a disconnect message or a banner written just before Close is not dropped.
//
// Buffers are borrowed from a pool shared by the server's connections and given back when the
// flusher goes idle, so an idle connection (most of them, most of the time) holds none: about
// 2 KiB per idle tunnel at 1,000 tunnels.
type batchConn struct {
	net.Conn
	pool *sync.Pool // of *batchBuf; nil means allocate

	mu       sync.Mutex
	drained  *sync.Cond // signalled when pending shrinks or the flusher stops
	pending  *batchBuf  // bytes accepted by Write, not yet handed to the kernel; nil when idle
	spare    *batchBuf  // the flusher's previous buffer, reused while busy
	flushing bool       // a flusher goroutine is running
	err      error      // first write error; sticky
}

// batchBuf is a pooled buffer. The pool holds pointers to it, so that giving a buffer back
// does not allocate a new slice header each time.
type batchBuf struct{ b []byte }

// maxPending bounds the bytes a batchConn queues before Write blocks: a few full SSH packets.
const maxPending = 256 << 10

// closeFlushTimeout bounds how long Close waits to hand queued bytes to the kernel.
const closeFlushTimeout = 2 * time.Second

// newBatchConnPool returns the pool a server's batchConns share.
func newBatchConnPool() *sync.Pool {
	return &sync.Pool{New: func() any { return &batchBuf{b: make([]byte, 0, 4<<10)} }}
}

func newBatchConn(c net.Conn, pool *sync.Pool) *batchConn {
	b := &batchConn{Conn: c, pool: pool}
	b.drained = sync.NewCond(&b.mu)
	return b
}

// getBuf returns an empty buffer, from the pool when there is one.
func (b *batchConn) getBuf() *batchBuf {
	if b.pool == nil {
		return &batchBuf{}
	}
	x := b.pool.Get().(*batchBuf)
	x.b = x.b[:0]
	return x
}

// putBuf gives x back to the pool; buffers grown past twice maxPending are dropped so one
// burst does not pin a large buffer for good.
func (b *batchConn) putBuf(x *batchBuf) {
	if x == nil || b.pool == nil || cap(x.b) > maxPending*2 {
		return
	}
	x.b = x.b[:0]
	b.pool.Put(x)
}

// queued is how many bytes wait for the flusher; b.mu must be held.
func (b *batchConn) queued() int {
	if b.pending == nil {
		return 0
	}
	return len(b.pending.b)
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.err == nil && b.queued() > 0 && b.queued()+len(p) > maxPending {
		b.drained.Wait()
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.pending == nil {
		b.pending = b.getBuf()
	}
	b.pending.b = append(b.pending.b, p...)
	if !b.flushing {
		b.flushing = true
		go b.flush()
	}
	return len(p), nil
}

// flush writes pending out until it is empty, then exits; the next Write starts a new flusher.
// Exiting when idle keeps an idle connection at no extra goroutine.
func (b *batchConn) flush() {
	b.mu.Lock()
	for b.queued() > 0 && b.err == nil {
		buf := b.pending
		b.pending, b.spare = b.spare, nil
		if b.pending == nil {
			b.pending = b.getBuf()
		}
		b.drained.Broadcast() // writers blocked on a full queue can fill the other buffer now
		b.mu.Unlock()
		_, err := b.Conn.Write(buf.b)
		b.mu.Lock()
		if err != nil && b.err == nil {
			b.err = err
		}
		if cap(buf.b) <= maxPending*2 {
			buf.b = buf.b[:0]
			b.spare = buf
		}
		b.drained.Broadcast()
	}
	// Idle: give both buffers back. pending is empty here unless a write error stopped the loop,
	// and then nothing will be sent from it.
	b.putBuf(b.spare)
	b.putBuf(b.pending)
	b.spare, b.pending = nil, nil
	b.flushing = false
	b.drained.Broadcast()
	b.mu.Unlock()
}

func (b *batchConn) Close() error {
	b.mu.Lock()
	if b.flushing || b.queued() > 0 {
		// A stuck peer must not hold Close: the deadline fails the flusher's write.
		b.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
		for b.flushing {
			b.drained.Wait()
		}
	}
	b.mu.Unlock()
	return b.Conn.Close()
}
