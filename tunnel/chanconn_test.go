package tunnel

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/net/nettest"
)

// sshPair connects an x/crypto SSH client and server over loopback TCP and returns both ends.
func sshPair(t testing.TB) (client ssh.Conn, server ssh.Conn, serverChans <-chan ssh.NewChannel) {
	t.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(hostSigner)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type res struct {
		c     ssh.Conn
		chans <-chan ssh.NewChannel
		err   error
	}
	done := make(chan res, 1)
	go func() {
		nc, err := l.Accept()
		if err != nil {
			done <- res{err: err}
			return
		}
		sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
		if err == nil {
			go ssh.DiscardRequests(reqs)
		}
		done <- res{sc, chans, err}
	}()
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc, cchans, creqs, err := ssh.NewClientConn(nc, l.Addr().String(), &ssh.ClientConfig{
		User: "test", HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(creqs)
	go func() {
		for nch := range cchans {
			nch.Reject(ssh.Prohibited, "no")
		}
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { cc.Close(); r.c.Close() })
	return cc, r.c, r.chans
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
