package sshd_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/sshd"
	"github.com/toolgate/toolgate/tunnel"
)

// BenchmarkHandshake measures SSH connection setup for a known key: TCP connect, key exchange,
// public-key authentication (ed25519) and a session channel opened and confirmed, then closed.
// The reported conns/s is the figure of issue 3; run it with -cpu 2 on the 2-core machines.
//
//   - toolgate: an in-process server whose authenticator is the production one (UserKeys over a
//     bbolt store holding the linked key and its user).
//   - openssh: the same client against OpenSSH's sshd, when TOOLGATE_BENCH_SSHD (host:port),
//     TOOLGATE_BENCH_SSHD_KEY (private key file) and TOOLGATE_BENCH_SSHD_USER are set;
//     e2e/perf/handshake.sh starts ../shared/bench/sshd-reference and sets them.
//
// Client and server share the machine's cores in both cases (sshd in its own processes).
func BenchmarkHandshake(b *testing.B) {
	b.Run("toolgate", func(b *testing.B) {
		signer := benchSigner(b)
		addr := benchToolgate(b, signer)
		runHandshakes(b, addr, "dev", signer)
	})
	b.Run("openssh", func(b *testing.B) {
		addr, keyPath, user := os.Getenv("TOOLGATE_BENCH_SSHD"), os.Getenv("TOOLGATE_BENCH_SSHD_KEY"), os.Getenv("TOOLGATE_BENCH_SSHD_USER")
		if addr == "" || keyPath == "" || user == "" {
			b.Skip("set TOOLGATE_BENCH_SSHD, TOOLGATE_BENCH_SSHD_KEY and TOOLGATE_BENCH_SSHD_USER (e2e/perf/handshake.sh does)")
		}
		pem, err := os.ReadFile(keyPath)
		if err != nil {
			b.Fatal(err)
		}
		signer, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			b.Fatal(err)
		}
		runHandshakes(b, addr, user, signer)
	})
}

func benchSigner(b *testing.B) ssh.Signer {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// benchToolgate starts an sshd.Server with a store in which signer's key is linked to a user.
func benchToolgate(b *testing.B, signer ssh.Signer) string {
	ctx := context.Background()
	st, err := data.Open(data.Config{Path: filepath.Join(b.TempDir(), "db"), NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	u, err := st.CreateUser(ctx, data.User{Email: "bench@example.com"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.LinkKey(ctx, data.SSHKey{Fingerprint: ssh.FingerprintSHA256(signer.PublicKey()), Type: signer.PublicKey().Type(), UserID: u.ID}); err != nil {
		b.Fatal(err)
	}
	reg, err := tunnel.NewRegistry(tunnel.Config{Domain: domain, Names: st})
	if err != nil {
		b.Fatal(err)
	}
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, _ := ssh.NewSignerFromKey(hostPriv)
	srv, err := sshd.New(sshd.Config{HostKey: hostKey, Auth: sshd.UserKeys{Keys: st}, Tunnels: reg,
		MaxConnsPerOwner: 1 << 20, MaxHandshakesPerIP: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func runHandshakes(b *testing.B, addr, user string, signer ssh.Signer) {
	cfg := &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	}
	b.SetParallelism(2) // 2 × GOMAXPROCS handshakes in flight
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := ssh.Dial("tcp", addr, cfg)
			if err != nil {
				b.Error(err)
				return
			}
			ch, reqs, err := c.OpenChannel("session", nil)
			if err != nil {
				c.Close()
				b.Error(err)
				return
			}
			go ssh.DiscardRequests(reqs)
			ch.Close()
			c.Close()
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "conns/s")
}
