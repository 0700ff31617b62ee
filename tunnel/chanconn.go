package tunnel

import (
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// chanConn adapts an ssh.Channel to net.Conn, with deadlines that work.
//
// ssh.Channel has no deadlines, and its Read and Write block on internal condition variables
// that nothing outside x/crypto can wake. Code written against net.Conn expects a deadline set
// from another goroutine to unblock a pending Read or Write (net/http's Hijack relies on it;
// golang/go#67152 is the classic hang). So each direction goes through one helper goroutine that
// does the blocking call, and Read and Write wait for it or for the deadline, whichever comes
// first. The helpers never touch a caller's buffer: the reader fills its own chunk and Read copies
// out; Write copies its argument into a chunk the writer owns. A timed-out operation therefore
// leaves nothing racing on memory the caller may reuse.
type chanConn struct {
	ch            ssh.Channel
	local, remote net.Addr

	closeOnce sync.Once
	closed    chan struct{}

	rmu      sync.Mutex // serialises Read; guards the fields below it
	rdl      deadline
	rstart   sync.Once
	rch      chan readChunk // reader -> Read
	rdone    chan struct{}  // Read -> reader: the chunk's buffer may be reused
	rcur     []byte         // unread part of the current chunk
	rerr     error          // sticky: what the channel returned last
	rholding bool           // rcur aliases the reader's buffer

	wmu    sync.Mutex // serialises Write and CloseWrite
	wdl    deadline
	wstart sync.Once
	wch    chan writeChunk // Write -> writer
	wack   chan error      // writer -> Write, one per chunk
	wbusy  bool            // a chunk was handed over and not yet acknowledged
	werr   error           // sticky write error
	wbuf   []byte          // the writer's chunk; only touched by Write while !wbusy
}

type readChunk struct {
	b   []byte
	err error
}

type writeChunk struct {
	b          []byte
	closeWrite bool
}

// chunkSize bounds one hand-off. It is the SSH packet payload limit x/crypto uses, so a chunk
// is never split into a runt packet, and it bounds what an idle pooled connection holds.
const chunkSize = 32 << 10

func newChanConn(ch ssh.Channel, local, remote net.Addr) *chanConn {
	return &chanConn{
		ch:     ch,
		local:  local,
		remote: remote,
		closed: make(chan struct{}),
		rdl:    makeDeadline(),
		wdl:    makeDeadline(),
		rch:    make(chan readChunk),
		rdone:  make(chan struct{}, 1),
		wch:    make(chan writeChunk),
		wack:   make(chan error, 1),
	}
}

func (c *chanConn) readLoop() {
	buf := make([]byte, chunkSize)
	for {
		n, err := c.ch.Read(buf)
		select {
		case c.rch <- readChunk{buf[:n], err}:
		case <-c.closed:
			return
		}
		if err != nil {
			return
		}
		select {
		case <-c.rdone:
		case <-c.closed:
			return
		}
	}
}

func (c *chanConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.isClosed() {
		return 0, net.ErrClosed
	}
	for len(c.rcur) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if c.rholding {
			c.rholding = false
			c.rdone <- struct{}{}
		}
		c.rstart.Do(func() { go c.readLoop() })
		select {
		case r := <-c.rch:
			c.rcur, c.rerr, c.rholding = r.b, r.err, true
		case <-c.rdl.wait():
			return 0, os.ErrDeadlineExceeded
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	select {
	case <-c.rdl.wait():
		// Go's own connections fail a read whose deadline has passed even when data is
		// waiting; callers depend on that to interrupt themselves.
		return 0, os.ErrDeadlineExceeded
	default:
	}
	n := copy(p, c.rcur)
	c.rcur = c.rcur[n:]
	if len(c.rcur) == 0 && c.rerr == nil && c.rholding {
		c.rholding = false
		c.rdone <- struct{}{}
	}
	return n, nil
}

func (c *chanConn) writeLoop() {
	for {
		var w writeChunk
		select {
		case w = <-c.wch:
		case <-c.closed:
			return
		}
		var err error
		if w.closeWrite {
			err = c.ch.CloseWrite()
		} else {
			_, err = c.ch.Write(w.b)
		}
		c.wack <- err
	}
}

// waitWriter waits until the writer has finished the previous chunk, which it may still be
// working on if an earlier Write timed out.
func (c *chanConn) waitWriter() error {
	if !c.wbusy {
		return c.werr
	}
	select {
	case err := <-c.wack:
		c.wbusy = false
		if err != nil && c.werr == nil {
			c.werr = err
		}
		return c.werr
	case <-c.wdl.wait():
		return os.ErrDeadlineExceeded
	case <-c.closed:
		return net.ErrClosed
	}
}

func (c *chanConn) send(w writeChunk) error {
	if err := c.waitWriter(); err != nil {
		return err
	}
	c.wstart.Do(func() { go c.writeLoop() })
	select {
	case c.wch <- w:
		c.wbusy = true
	case <-c.wdl.wait():
		return os.ErrDeadlineExceeded
	case <-c.closed:
		return net.ErrClosed
	}
	return c.waitWriter()
}

func (c *chanConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.isClosed() {
		return 0, net.ErrClosed
	}
	select {
	case <-c.wdl.wait():
		return 0, os.ErrDeadlineExceeded
	default:
	}
	n := 0
	for n < len(p) {
		// The buffer is shared with the writer, so wait for it to be done with the previous
		// chunk (it may still be at work on one an earlier Write gave up on) before reusing it.
		if err := c.waitWriter(); err != nil {
			return n, err
		}
		m := min(len(p)-n, chunkSize)
		if cap(c.wbuf) < m {
			c.wbuf = make([]byte, max(m, 4<<10))
		}
		b := c.wbuf[:m]
		copy(b, p[n:n+m])
		if err := c.send(writeChunk{b: b}); err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// CloseWrite sends EOF on the channel: the local server sees its read side end while it can
// still answer.
func (c *chanConn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.isClosed() {
		return net.ErrClosed
	}
	return c.send(writeChunk{closeWrite: true})
}

func (c *chanConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		close(c.closed)
		err = c.ch.Close()
		if err == io.EOF {
			err = nil // the client closed first; nothing to report
		}
	})
	return err
}

func (c *chanConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *chanConn) LocalAddr() net.Addr  { return c.local }
func (c *chanConn) RemoteAddr() net.Addr { return c.remote }

func (c *chanConn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}
func (c *chanConn) SetReadDeadline(t time.Time) error  { c.rdl.set(t); return nil }
func (c *chanConn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); return nil }

// deadline is a resettable point in time that closes a channel when it passes, the same
// construction net.Pipe uses for its deadlines.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{} // closed once the deadline has passed
}

func makeDeadline() deadline { return deadline{cancel: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired; wait for it to close cancel
	}
	d.timer = nil
	closed := isClosedChan(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosedChan(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// peerClosed reports, without blocking, whether data or the end of the stream has arrived since
// the last Read. The proxy asks it of an idle pooled stream: either means the stream can't carry
// another request. What it received stays to be read.
func (c *chanConn) peerClosed() bool {
	if !c.rmu.TryLock() {
		return true // someone is reading an idle stream: not ours to reuse
	}
	defer c.rmu.Unlock()
	if c.isClosed() || len(c.rcur) > 0 || c.rerr != nil {
		return true
	}
	select {
	case r := <-c.rch:
		c.rcur, c.rerr, c.rholding = r.b, r.err, true
		return true
	default:
		return false
	}
}
