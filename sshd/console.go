package sshd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// console is a connection's terminal output: a bounded queue of lines that a session drains.
//
// Producers (the proxy logging a request, the registry evicting) must never wait on the user's
// terminal: nobody may be reading it (ssh -N has no session at all; a paused terminal stops
// granting window). So Notify only appends; when the queue is full the oldest lines are dropped
// and a count of them is printed once the terminal catches up. Lines queued before a session
// exists are shown when it starts, which is how URLs reach a client whose session request
// arrives after its forwards.
type console struct {
	max int

	mu      sync.Mutex
	lines   []string
	dropped int
	wake    chan struct{} // capacity 1: "there is something to write"
	closed  bool
	done    chan struct{}
	writing bool // a session's writer goroutine is attached

	queued, written uint64        // lines ever queued; lines written (or dropped) by a writer
	progress        chan struct{} // closed and replaced whenever written moves
	sync            func() error  // a round trip on the attached session, see Flush
}

func newConsole(max int) *console {
	return &console{max: max, wake: make(chan struct{}, 1), done: make(chan struct{}), progress: make(chan struct{})}
}

// Flush waits, at most until ctx ends, until every line queued so far has been written to a
// session and the client has answered a round trip on it, so the lines are on the user's
// screen. It is for the moment before something that may make the client exit (refusing a
// forward under ExitOnForwardFailure): without it the reason would die in the queue. It reports
// whether the lines got through; without a session they cannot.
func (c *console) Flush(ctx context.Context) bool {
	c.mu.Lock()
	target := c.queued
	c.mu.Unlock()
	// OpenSSH opens its session right behind its forward requests; a client that has none by
	// now (ssh -N, a program using Listen) will not get one, and its refusal should not wait.
	noSession := time.NewTimer(sessionGrace)
	defer noSession.Stop()
	for {
		c.mu.Lock()
		done, progress, sync := c.written >= target, c.progress, c.sync
		c.mu.Unlock()
		if done {
			if sync == nil {
				return false
			}
			errc := make(chan error, 1)
			go func() { errc <- sync() }()
			select {
			case err := <-errc:
				return err == nil
			case <-ctx.Done():
				return false
			}
		}
		select {
		case <-progress:
		case <-noSession.C:
			c.mu.Lock()
			attached := c.writing
			c.mu.Unlock()
			if !attached {
				return false
			}
		case <-ctx.Done():
			return false
		case <-c.done:
			return false
		}
	}
}

// sessionGrace is how long Flush waits for a session to appear at all.
const sessionGrace = 500 * time.Millisecond

// Notify queues one line. It never blocks.
func (c *console) Notify(line string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if len(c.lines) >= c.max {
		n := len(c.lines) - c.max + 1
		c.lines = append(c.lines[:0], c.lines[n:]...)
		c.dropped += n
	}
	c.lines = append(c.lines, line)
	c.queued++
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Close discards the queue and stops the writer.
func (c *console) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		c.lines = nil
		close(c.done)
	}
}

// attach starts writing the queue to w until stop is closed or a write fails. crlf selects
// "\r\n" line ends, which a terminal in raw mode (a pty session) needs; sync, if not nil, is a
// round trip on the session for Flush. Only one writer is attached at a time; a second attach
// while one runs is ignored.
func (c *console) attach(w io.Writer, crlf bool, stop <-chan struct{}, sync func() error) {
	c.mu.Lock()
	if c.writing || c.closed {
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.sync = sync
	c.mu.Unlock()
	eol := "\n"
	if crlf {
		eol = "\r\n"
	}
	go func() {
		defer func() {
			c.mu.Lock()
			c.writing = false
			c.sync = nil
			c.mu.Unlock()
		}()
		var b strings.Builder
		for {
			c.mu.Lock()
			lines, dropped, upTo := c.lines, c.dropped, c.queued
			c.lines, c.dropped = nil, 0
			c.mu.Unlock()
			b.Reset()
			if dropped > 0 {
				fmt.Fprintf(&b, "toolgate: %d lines dropped while the terminal was not reading%s", dropped, eol)
			}
			for _, l := range lines {
				b.WriteString(l)
				b.WriteString(eol)
			}
			if b.Len() > 0 {
				if _, err := io.WriteString(w, b.String()); err != nil {
					return
				}
			}
			c.mu.Lock()
			if upTo > c.written {
				c.written = upTo
				close(c.progress)
				c.progress = make(chan struct{})
			}
			c.mu.Unlock()
			select {
			case <-c.wake:
			case <-stop:
				return
			case <-c.done:
				return
			}
		}
	}()
}
