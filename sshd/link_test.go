package sshd_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/toolgate/toolgate/e2e/sshtest"
	"github.com/toolgate/toolgate/sshd"
)

// onlyKnown accepts the keys in its map (fingerprint -> owner) and calls every other key unknown.
type onlyKnown map[string]string

func (k onlyKnown) Authenticate(_ context.Context, _ ssh.ConnMetadata, key ssh.PublicKey) (sshd.Identity, error) {
	fp := ssh.FingerprintSHA256(key)
	if owner, ok := k[fp]; ok {
		return sshd.Identity{Owner: owner, Display: owner}, nil
	}
	return sshd.Identity{}, sshd.ErrUnknownKey
}

// fakeLinker shows a fixed text and then waits for the test's decision.
type fakeLinker struct {
	mu       sync.Mutex
	requests []sshd.LinkRequest
	started  chan struct{} // a link is waiting
	decide   chan error    // nil approves
	ended    chan error    // what the wait ended with (ctx errors included)
	identity sshd.Identity // returned on approval
}

func newFakeLinker() *fakeLinker {
	return &fakeLinker{
		started:  make(chan struct{}, 4),
		decide:   make(chan error, 1),
		ended:    make(chan error, 4),
		identity: sshd.Identity{Owner: "u_alice", Display: "alice@example.com"},
	}
}

func (f *fakeLinker) Link(ctx context.Context, req sshd.LinkRequest, show func(string) error) (sshd.Identity, error) {
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()
	if err := show("Open https://toolgate.localhost/link/ABCD-EFGH to link this key.\n"); err != nil {
		f.ended <- err
		return sshd.Identity{}, err
	}
	f.started <- struct{}{}
	select {
	case err := <-f.decide:
		f.ended <- err
		if err != nil {
			return sshd.Identity{}, err
		}
		return f.identity, nil
	case <-ctx.Done():
		f.ended <- ctx.Err()
		return sshd.Identity{}, ctx.Err()
	}
}

// linkClient dials with a fresh key, answering keyboard-interactive and recording what it was
// shown. It returns when the handshake does.
type linkResult struct {
	client      *ssh.Client
	err         error
	instruction string
	banners     string
}

func dialLinking(addr string, signer ssh.Signer) linkResult {
	var mu sync.Mutex
	var r linkResult
	cfg := &ssh.ClientConfig{
		User: "dev",
		Auth: []ssh.AuthMethod{
			ssh.PublicKeys(signer),
			ssh.KeyboardInteractive(func(name, instruction string, questions []string, echos []bool) ([]string, error) {
				mu.Lock()
				r.instruction += instruction
				mu.Unlock()
				return make([]string, len(questions)), nil
			}),
		},
		BannerCallback: func(msg string) error {
			mu.Lock()
			r.banners += msg
			mu.Unlock()
			return nil
		},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         5 * time.Second,
	}
	c, err := ssh.Dial("tcp", addr, cfg)
	mu.Lock()
	defer mu.Unlock()
	r.client, r.err = c, err
	return r
}

func newSigner(t *testing.T) ssh.Signer {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLinkUnknownKey(t *testing.T) {
	for _, tc := range []struct {
		name     string
		decision error
		wantErr  string // in the banner; "" means the connection is approved
	}{
		{"approved", nil, ""},
		{"denied", errors.New("the key was not approved"), "toolgate: the key was not approved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lk := newFakeLinker()
			h := newHarness(t, func(c *sshd.Config) {
				c.Auth = onlyKnown{}
				c.Linker = lk
			})
			signer := newSigner(t)
			done := make(chan linkResult, 1)
			go func() { done <- dialLinking(h.sshAddr, signer) }()
			select {
			case <-lk.started:
			case r := <-done:
				t.Fatalf("handshake ended before the link waited: %v", r.err)
			case <-time.After(5 * time.Second):
				t.Fatal("the link never started")
			}
			// The handshake timeout (2s in the harness) must not cut a waiting link.
			time.Sleep(2500 * time.Millisecond)
			approvedAt := time.Now()
			lk.decide <- tc.decision
			var r linkResult
			select {
			case r = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("handshake did not finish after the decision")
			}
			if !strings.Contains(r.instruction, "https://toolgate.localhost/link/ABCD-EFGH") {
				t.Errorf("the client was shown %q, not the link", r.instruction)
			}
			lk.mu.Lock()
			req := lk.requests[0]
			lk.mu.Unlock()
			if req.Fingerprint != ssh.FingerprintSHA256(signer.PublicKey()) || req.KeyType != "ssh-ed25519" || req.RemoteIP != "127.0.0.1" {
				t.Errorf("link request %+v", req)
			}
			if tc.wantErr == "" {
				if r.err != nil {
					t.Fatalf("approved link: %v (banners %q)", r.err, r.banners)
				}
				defer r.client.Close()
				if d := time.Since(approvedAt); d > 2*time.Second {
					t.Errorf("connection proceeded %v after approval", d)
				}
				if _, err := r.client.Listen("tcp", "0.0.0.0:0"); err != nil {
					t.Fatalf("linked connection cannot forward: %v", err)
				}
				if got := len(h.reg.Names()); got != 1 {
					t.Errorf("%d tunnels, want 1", got)
				}
				return
			}
			if r.err == nil {
				r.client.Close()
				t.Fatal("denied link connected")
			}
			if !strings.Contains(r.banners, tc.wantErr) {
				t.Errorf("banners %q, want %q", r.banners, tc.wantErr)
			}
			// One link per connection: OpenSSH retries keyboard-interactive, and that must not
			// open a second pending link.
			lk.mu.Lock()
			n := len(lk.requests)
			lk.mu.Unlock()
			if n != 1 {
				t.Errorf("%d link requests for one connection", n)
			}
		})
	}
}

// A client that hangs up while its link waits ends the wait within about a second, instead of
// holding a pending link until the code expires.
func TestLinkClientHangsUp(t *testing.T) {
	lk := newFakeLinker()
	h := newHarness(t, func(c *sshd.Config) {
		c.Auth = onlyKnown{}
		c.Linker = lk
	})
	signer := newSigner(t)
	// Dial by hand so the test can drop the TCP connection mid-handshake.
	cfgDone := make(chan struct{})
	nc, err := net.Dial("tcp", h.sshAddr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(cfgDone)
		ssh.NewClientConn(nc, h.sshAddr, &ssh.ClientConfig{
			User: "dev",
			Auth: []ssh.AuthMethod{ssh.PublicKeys(signer), ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) {
				return nil, nil
			})},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		})
	}()
	select {
	case <-lk.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the link never started")
	}
	closedAt := time.Now()
	nc.Close()
	select {
	case err := <-lk.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the wait ended with %v, want context.Canceled", err)
		}
		if d := time.Since(closedAt); d > 2*time.Second {
			t.Errorf("hang-up noticed after %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the link kept waiting after the client hung up")
	}
	<-cfgDone
}

// Without a Linker, an unknown key is refused outright, as before.
func TestUnknownKeyWithoutLinker(t *testing.T) {
	h := newHarness(t, func(c *sshd.Config) { c.Auth = onlyKnown{} })
	r := dialLinking(h.sshAddr, newSigner(t))
	if r.err == nil {
		r.client.Close()
		t.Fatal("unknown key connected without a Linker")
	}
	if r.instruction != "" {
		t.Errorf("the client was asked to link: %q", r.instruction)
	}
}

// CloseKey ends the connections of one key at once, with their tunnels, and leaves others.
func TestCloseKey(t *testing.T) {
	h := newHarness(t, nil)
	a, b := newSigner(t), newSigner(t)
	ca, err := h.dial(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	cb, err := h.dial(b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if _, err := ca.Listen("tcp", "0.0.0.0:0"); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Listen("tcp", "0.0.0.0:0"); err != nil {
		t.Fatal(err)
	}
	if n := h.srv.CloseKey(ssh.FingerprintSHA256(a.PublicKey()), "this key was revoked"); n != 1 {
		t.Fatalf("CloseKey closed %d connections, want 1", n)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- ca.Wait() }()
	select {
	case <-waitErr:
	case <-time.After(3 * time.Second):
		t.Fatal("the revoked key's connection is still open")
	}
	waitUntil(t, "the revoked key's tunnel to go", func() bool { return len(h.reg.Names()) == 1 })
	if _, _, err := cb.SendRequest("keepalive@openssh.com", true, nil); err != nil {
		t.Errorf("the other key's connection was closed too: %v", err)
	}
}

// The real OpenSSH client, under -N: it prints the link instruction, waits without a prompt
// while the link is pending, and forwards once it is approved. With BatchMode it does not try
// keyboard-interactive at all, so it fails fast instead of hanging.
func TestLinkOpenSSH(t *testing.T) {
	lk := newFakeLinker()
	h := newHarness(t, func(c *sshd.Config) {
		c.Auth = onlyKnown{}
		c.Linker = lk
	})
	key := sshtest.NewKey(t)
	c := sshtest.Start(t, sshtest.Options{Key: key, Port: h.port(), Interactive: true, Args: []string{"-N", "-R", "0:127.0.0.1:9"}})
	c.WaitFor(regexp.MustCompile(`Open https://toolgate\.localhost/link/ABCD-EFGH to link this key\.`), 10*time.Second)
	select {
	case <-lk.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the link never started")
	}
	lk.decide <- nil
	c.WaitFor(sshtest.AllocatedPort, 10*time.Second)
	waitUntil(t, "the linked client's tunnel", func() bool { return h.reg.Len() == 1 })
	if n := h.srv.CloseKey(key.Fingerprint, "this key was revoked"); n != 1 {
		t.Fatalf("CloseKey closed %d connections", n)
	}
	if code := c.Wait(10 * time.Second); code == 0 {
		t.Errorf("ssh exited 0 after its key was revoked")
	}
	// Under -N there is no session to print the reason on, and x/crypto cannot send a
	// disconnect message with one: the client only sees "closed by remote host".

	batch := sshtest.Start(t, sshtest.Options{Key: sshtest.NewKey(t), Port: h.port(), Args: []string{"-N", "-R", "0:127.0.0.1:9"}})
	if code := batch.Wait(10 * time.Second); code == 0 {
		t.Error("a BatchMode client with an unknown key connected")
	}
}
