package tunnel

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Benchmarks for the SSH channel under the proxy: an x/crypto client and server on loopback TCP,
// one channel, bytes pushed one way (throughput) or bounced back (round trip), through the raw
// ssh.Channel and through chanConn, the net.Conn adapter the proxy uses. Run them with
//
//	go test -run XXX -bench . -benchmem ./tunnel/
//
// The cipher sub-benchmarks matter: OpenSSH clients prefer chacha20-poly1305@openssh.com, for
// which x/crypto has no amd64 assembly; x/crypto clients prefer aes128-gcm@openssh.com.

// benchCiphers are the ciphers an OpenSSH client (first choice) and an x/crypto client (first
// choice) end up with against toolgate.
var benchCiphers = []string{ssh.CipherChaCha20Poly1305, ssh.CipherAES128GCM}

// benchSSH is a connected x/crypto client and server. The server plays toolgate, the client the
// developer's ssh client; either side may open channels to the other.
type benchSSH struct {
	client, server           ssh.Conn
	clientChans, serverChans <-chan ssh.NewChannel
}

// newBenchSSH connects a client and server over loopback TCP with the given cipher ("" for
// x/crypto's default preference).
func newBenchSSH(tb testing.TB, cipher string) *benchSSH {
	tb.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		tb.Fatal(err)
	}
	var ciphers []string
	if cipher != "" {
		ciphers = []string{cipher}
	}
	scfg := &ssh.ServerConfig{NoClientAuth: true}
	scfg.Ciphers = ciphers
	scfg.AddHostKey(hostSigner)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
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
		sc, chans, reqs, err := ssh.NewServerConn(nc, scfg)
		if err == nil {
			go ssh.DiscardRequests(reqs)
		}
		done <- res{sc, chans, err}
	}()
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	ccfg := &ssh.ClientConfig{User: "bench", HostKeyCallback: ssh.InsecureIgnoreHostKey()}
	ccfg.Ciphers = ciphers
	cc, cchans, creqs, err := ssh.NewClientConn(nc, l.Addr().String(), ccfg)
	if err != nil {
		tb.Fatal(err)
	}
	go ssh.DiscardRequests(creqs)
	r := <-done
	if r.err != nil {
		tb.Fatal(r.err)
	}
	tb.Cleanup(func() { cc.Close(); r.c.Close() })
	return &benchSSH{client: cc, server: r.c, clientChans: cchans, serverChans: r.chans}
}

// channelPair opens one channel from the server to the client (as toolgate opens
// forwarded-tcpip) and returns the server's end and the client's end.
func (p *benchSSH) channelPair(tb testing.TB) (server, client ssh.Channel) {
	tb.Helper()
	accepted := make(chan ssh.Channel, 1)
	go func() {
		nch := <-p.clientChans
		ch, reqs, err := nch.Accept()
		if err != nil {
			close(accepted)
			return
		}
		go ssh.DiscardRequests(reqs)
		accepted <- ch
	}()
	ch, reqs, err := p.server.OpenChannel("bench", nil)
	if err != nil {
		tb.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	c, ok := <-accepted
	if !ok {
		tb.Fatal("client did not accept the channel")
	}
	return ch, c
}

// BenchmarkChannelThroughput pushes 32 KiB writes from the developer's side to toolgate's side,
// the direction of a response body, and reads them on toolgate's side either from the raw
// channel or through chanConn. MB/s is the figure; the gap between raw and chanConn is what the
// adapter's helper goroutines and extra copy cost.
func BenchmarkChannelThroughput(b *testing.B) {
	for _, cipher := range benchCiphers {
		for _, mode := range []string{"raw", "chanConn"} {
			b.Run(cipher+"/"+mode, func(b *testing.B) {
				p := newBenchSSH(b, cipher)
				sch, cch := p.channelPair(b)
				var r io.Reader = sch
				if mode == "chanConn" {
					cc := newChanConn(sch, forwardAddr{"localhost", 1}, forwardAddr{"client", 1})
					defer cc.Close()
					r = cc
				}
				const chunk = 32 << 10
				total := int64(b.N) * chunk
				go func() {
					buf := make([]byte, chunk)
					for range b.N {
						if _, err := cch.Write(buf); err != nil {
							return
						}
					}
				}()
				buf := make([]byte, 32<<10) // what ReverseProxy's copy buffer reads with
				b.SetBytes(chunk)
				b.ReportAllocs()
				b.ResetTimer()
				var got int64
				for got < total {
					n, err := r.Read(buf)
					got += int64(n)
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkChannelUpload is the other direction: toolgate's side writes (a request body), through
// the raw channel or chanConn, and the developer's side reads.
func BenchmarkChannelUpload(b *testing.B) {
	for _, mode := range []string{"raw", "chanConn"} {
		b.Run(ssh.CipherAES128GCM+"/"+mode, func(b *testing.B) {
			p := newBenchSSH(b, ssh.CipherAES128GCM)
			sch, cch := p.channelPair(b)
			var w io.Writer = sch
			if mode == "chanConn" {
				cc := newChanConn(sch, forwardAddr{"localhost", 1}, forwardAddr{"client", 1})
				defer cc.Close()
				w = cc
			}
			const chunk = 32 << 10
			total := int64(b.N) * chunk
			done := make(chan error, 1)
			go func() {
				buf := make([]byte, chunk)
				var got int64
				for got < total {
					n, err := cch.Read(buf)
					got += int64(n)
					if err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			buf := make([]byte, chunk)
			b.SetBytes(chunk)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := w.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkChannelRoundTrip bounces 100 bytes (a small request, a small answer) off the
// developer's side: the latency floor of one proxied exchange on an open channel, without HTTP.
func BenchmarkChannelRoundTrip(b *testing.B) {
	for _, mode := range []string{"raw", "chanConn"} {
		b.Run(ssh.CipherAES128GCM+"/"+mode, func(b *testing.B) {
			p := newBenchSSH(b, ssh.CipherAES128GCM)
			sch, cch := p.channelPair(b)
			var rw io.ReadWriter = sch
			if mode == "chanConn" {
				cc := newChanConn(sch, forwardAddr{"localhost", 1}, forwardAddr{"client", 1})
				defer cc.Close()
				rw = cc
			}
			go func() {
				buf := make([]byte, 100)
				for {
					if _, err := io.ReadFull(cch, buf); err != nil {
						return
					}
					if _, err := cch.Write(buf); err != nil {
						return
					}
				}
			}()
			msg := make([]byte, 100)
			buf := make([]byte, 100)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := rw.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(rw, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
