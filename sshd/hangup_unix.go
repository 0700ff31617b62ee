//go:build unix

package sshd

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"
)

// hangupPoll is how often a waiting link checks whether its client is still there.
const hangupPoll = 500 * time.Millisecond

// watchHangup calls hangup when the peer of nc closes or resets the connection, checking every
// hangupPoll until ctx ends or stop is called. It peeks (MSG_PEEK|MSG_DONTWAIT), so no byte is
// taken from the SSH stream: it is for the time when the SSH library is blocked in an auth
// callback and nobody reads the socket.
func watchHangup(ctx context.Context, nc net.Conn, hangup func()) (stop func()) {
	if b, ok := nc.(*batchConn); ok {
		nc = b.Conn
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return func() {}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(hangupPoll)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if peerGone(raw) {
				hangup()
				return
			}
		}
	}()
	return func() { close(done) }
}

func peerGone(raw syscall.RawConn) bool {
	gone := false
	err := raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil:
			gone = n == 0 // orderly shutdown; n == 1 is data waiting, the peer is there
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
		default:
			gone = true // reset and the like
		}
		return true // never wait for readability
	})
	return gone || err != nil
}
