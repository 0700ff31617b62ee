package sshd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection: real sockets, so that write
// blocking and deadlines behave as they do in production.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		acc <- c
	}()
	a, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// Writes from one goroutine at a time (as x/crypto's transport issues them) arrive whole and in
// order, and a burst needs fewer syscalls than writes.
func TestBatchConnOrderAndCoalescing(t *testing.T) {
	a, b := tcpPair(t)
	cc := &countingConn{Conn: a}
	bc := newBatchConn(cc, newBatchConnPool())

	const n = 2000
	var want bytes.Buffer
	var mu sync.Mutex // serialises writers, like x/crypto's transport lock
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/4; i++ {
				mu.Lock()
				msg := fmt.Appendf(nil, "[%d:%d:%s]", w, i, bytes.Repeat([]byte{'x'}, i%700))
				want.Write(msg)
				if _, err := bc.Write(msg); err != nil {
					mu.Unlock()
					t.Error(err)
					return
				}
				mu.Unlock()
			}
		}()
	}
	got := make(chan []byte)
	go func() {
		buf, _ := io.ReadAll(b)
		got <- buf
	}()
	wg.Wait()
	if err := bc.Close(); err != nil {
		t.Fatal(err)
	}
	if g := <-got; !bytes.Equal(g, want.Bytes()) {
		t.Fatalf("stream differs: got %d bytes, want %d", len(g), want.Len())
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.writes >= n {
		t.Errorf("%d writes reached the socket for %d packets: nothing was coalesced", cc.writes, n)
	}
	t.Logf("%d packets in %d socket writes", n, cc.writes)
}

// A peer that stops reading fills the socket buffer; Write must then block at maxPending rather
// than queue without bound, and Close must still return (its write deadline fails the flusher).
func TestBatchConnBackpressureAndStuckClose(t *testing.T) {
	a, b := tcpPair(t) // b never reads
	// Small kernel buffers, so the socket fills after kilobytes rather than the megabytes
	// loopback autotuning allows.
	a.(*net.TCPConn).SetWriteBuffer(16 << 10)
	b.(*net.TCPConn).SetReadBuffer(16 << 10)
	bc := newBatchConn(a, newBatchConnPool())
	chunk := make([]byte, 32<<10)
	wrote := make(chan int64)
	var accepted atomic.Int64
	go func() {
		var total int64
		for {
			if _, err := bc.Write(chunk); err != nil {
				break
			}
			total += int64(len(chunk))
			accepted.Store(total)
			if total > 64<<20 {
				break
			}
		}
		wrote <- total
	}()
	// Wait until the writer is stuck, then check how much is queued in user space.
	deadline := time.Now().Add(5 * time.Second)
	for {
		time.Sleep(50 * time.Millisecond)
		bc.mu.Lock()
		p, flushing := bc.queued(), bc.flushing
		bc.mu.Unlock()
		if p > maxPending {
			t.Fatalf("%d bytes queued, more than maxPending %d", p, maxPending)
		}
		if flushing && p+len(chunk) > maxPending {
			break // the writer is blocked on backpressure
		}
		if time.Now().After(deadline) {
			t.Fatalf("writer never hit backpressure: %d bytes queued, flushing=%v, err=%v, accepted %d", p, flushing, bc.err, accepted.Load())
		}
	}
	start := time.Now()
	if err := bc.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > closeFlushTimeout+2*time.Second {
		t.Errorf("Close took %v with a stuck peer", d)
	}
	select {
	case total := <-wrote:
		if total > 64<<20 {
			t.Errorf("writer was never held back (%d bytes accepted)", total)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a Write blocked on backpressure did not return after Close")
	}
}

// A socket error is sticky: later writes return it instead of queuing into a dead connection.
func TestBatchConnStickyError(t *testing.T) {
	a, b := tcpPair(t)
	b.Close()
	a.(*net.TCPConn).SetLinger(0)
	bc := newBatchConn(a, newBatchConnPool())
	a.Close() // writes on a closed socket fail at once
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = bc.Write([]byte("hello"))
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after the socket closed, Write returned %v; want net.ErrClosed", err)
	}
	if _, err2 := bc.Write([]byte("again")); !errors.Is(err2, net.ErrClosed) {
		t.Fatalf("the error is not sticky: %v", err2)
	}
}

// An idle batchConn holds no goroutine and no buffer: the flusher exits when the queue is
// empty and gives its buffers back to the pool.
func TestBatchConnIdleHasNoGoroutine(t *testing.T) {
	a, b := tcpPair(t)
	go io.Copy(io.Discard, b)
	before := runtime.NumGoroutine()
	bc := newBatchConn(a, newBatchConnPool())
	for i := 0; i < 100; i++ {
		bc.Write([]byte("packet"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		bc.mu.Lock()
		idle := !bc.flushing
		bc.mu.Unlock()
		if idle && runtime.NumGoroutine() <= before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines %d, before %d; flushing=%v", runtime.NumGoroutine(), before, !idle)
		}
		time.Sleep(10 * time.Millisecond)
	}
	bc.mu.Lock()
	if bc.pending != nil || bc.spare != nil {
		t.Errorf("idle batchConn holds buffers: pending %v, spare %v", bc.pending != nil, bc.spare != nil)
	}
	bc.mu.Unlock()
	bc.Close()
}
