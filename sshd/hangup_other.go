//go:build !unix

package sshd

import (
	"context"
	"net"
)

// watchHangup is a no-op where peeking at a socket is not available: a link whose client hung
// up then waits for its code to expire.
func watchHangup(context.Context, net.Conn, func()) (stop func()) { return func() {} }
