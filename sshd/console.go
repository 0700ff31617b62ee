package sshd

import (
	"fmt"
	"io"
	"strings"
	"sync"
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
}

func newConsole(max int) *console {
	return &console{max: max, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

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
// "\r\n" line ends, which a terminal in raw mode (a pty session) needs. Only one writer is
// attached at a time; a second attach while one runs is ignored.
func (c *console) attach(w io.Writer, crlf bool, stop <-chan struct{}) {
	c.mu.Lock()
	if c.writing || c.closed {
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.mu.Unlock()
	eol := "\n"
	if crlf {
		eol = "\r\n"
	}
	go func() {
		defer func() {
			c.mu.Lock()
			c.writing = false
			c.mu.Unlock()
		}()
		var b strings.Builder
		for {
			c.mu.Lock()
			lines, dropped := c.lines, c.dropped
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
