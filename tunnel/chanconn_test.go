package tunnel

import (
	"net"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/net/nettest"
)

// sshPair connects an x/crypto SSH client and server over loopback TCP (see newBenchSSH).
func sshPair(t testing.TB) (client ssh.Conn, server ssh.Conn, serverChans <-chan ssh.NewChannel) {
	t.Helper()
	p := newBenchSSH(t, "")
	return p.client, p.server, p.serverChans
}

// TestChanConnConformance runs x/net's net.Conn conformance suite (deadlines that interrupt
// blocked reads and writes, concurrent use, close behaviour) over two wrapped SSH channels.
func TestChanConnConformance(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		client, _, chans := sshPair(t)
		accepted := make(chan ssh.Channel, 1)
		go func() {
			nch := <-chans
			ch, reqs, err := nch.Accept()
			if err != nil {
				close(accepted)
				return
			}
			go ssh.DiscardRequests(reqs)
			accepted <- ch
		}()
		ch, reqs, err := client.OpenChannel("test", nil)
		if err != nil {
			return nil, nil, nil, err
		}
		go ssh.DiscardRequests(reqs)
		sch := <-accepted
		a := forwardAddr{"a", 1}
		c1 = newChanConn(ch, a, a)
		c2 = newChanConn(sch, a, a)
		return c1, c2, func() { c1.Close(); c2.Close(); client.Close() }, nil
	})
}
