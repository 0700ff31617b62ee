package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/crypto/ssh"
)

// ErrLocalUnreachable means the developer's ssh client accepted the stream but could not connect
// to the local server (it answered the forwarded-tcpip open with a failure): the local server is
// down or listening elsewhere.
var ErrLocalUnreachable = errors.New("the ssh client could not connect to the local server")

// SSHForward is the [Dialer] for one tcpip-forward on an SSH connection: each stream is a new
// forwarded-tcpip channel (RFC 4254 §7.2) opened back to the client.
type SSHForward struct {
	// Conn is the client's SSH connection.
	Conn ssh.Conn
	// BindAddr is the bind address exactly as the client sent it in tcpip-forward. OpenSSH
	// matches incoming channels against its forwards with strcmp on this string, so it is
	// echoed byte for byte, case included (sish#237 is what happens otherwise).
	BindAddr string
	// BindPort is the port the client asked for, or the one we allocated when it asked for 0;
	// OpenSSH records the allocated port from our reply and matches on it.
	BindPort uint32
}

// forwardedTCPIP is the forwarded-tcpip channel-open payload (RFC 4254 §7.2).
type forwardedTCPIP struct {
	Addr       string
	Port       uint32
	OriginAddr string
	OriginPort uint32
}

// fallbackOrigin stands in when the public client's address is unknown: x/crypto's client
// refuses a channel whose originator is not an IP address or whose port is 0.
var fallbackOrigin = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 1)

// DialContext opens a forwarded-tcpip channel. from is the public client's address, reported to
// the client as the originator. Opening a channel is a round trip to the client plus its local
// connect; if ctx ends first the channel is closed as soon as it arrives.
func (f *SSHForward) DialContext(ctx context.Context, from netip.AddrPort) (net.Conn, error) {
	if !from.IsValid() || from.Port() == 0 {
		from = fallbackOrigin
	}
	payload := ssh.Marshal(forwardedTCPIP{
		Addr:       f.BindAddr,
		Port:       f.BindPort,
		OriginAddr: from.Addr().Unmap().String(),
		OriginPort: uint32(from.Port()),
	})
	type opened struct {
		ch   ssh.Channel
		reqs <-chan *ssh.Request
		err  error
	}
	done := make(chan opened, 1)
	go func() {
		ch, reqs, err := f.Conn.OpenChannel("forwarded-tcpip", payload)
		done <- opened{ch, reqs, err}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			var oce *ssh.OpenChannelError
			if errors.As(o.err, &oce) {
				return nil, fmt.Errorf("%w: %s", ErrLocalUnreachable, oce.Message)
			}
			return nil, fmt.Errorf("tunnel: open forwarded-tcpip: %w", o.err)
		}
		// The client may send channel requests (OpenSSH sends eow@openssh.com when the local
		// server half-closes); they must be drained or the connection's mux stalls.
		go ssh.DiscardRequests(o.reqs)
		return newChanConn(o.ch, forwardAddr{f.BindAddr, f.BindPort}, net.TCPAddrFromAddrPort(from)), nil
	case <-ctx.Done():
		go func() {
			if o := <-done; o.err == nil {
				go ssh.DiscardRequests(o.reqs)
				o.ch.Close()
			}
		}()
		return nil, fmt.Errorf("tunnel: open forwarded-tcpip: %w", ctx.Err())
	}
}

// forwardAddr names the forward a stream belongs to, as the local end of a tunnel stream.
type forwardAddr struct {
	bind string
	port uint32
}

func (a forwardAddr) Network() string { return "ssh-forward" }
func (a forwardAddr) String() string  { return net.JoinHostPort(a.bind, fmt.Sprint(a.port)) }
