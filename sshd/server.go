// Package sshd is toolgate's SSH server: it authenticates developers' keys, answers their
// tcpip-forward requests (RFC 4254 §7) by registering tunnels, keeps connections alive, and gives
// each connection a terminal where toolgate prints its public URLs and one line per request.
//
// Every connection belongs to an owner, the user its key is linked to ([UserKeys] reads the
// links); a key no one owns yet is offered linking inside the handshake, through a [Linker]
// that shows a sign-in URL and waits for the person's approval (link.go).
//
// It owns the SSH protocol and connection lifecycle. It does not choose tunnel names or proxy
// HTTP (package tunnel), does not run sign-in or approval pages (package web, behind Linker),
// and writes nothing to storage (names go through the tunnel registry, the host key is handed
// in, key links are only read).
package sshd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/tunnel"
)

// Config configures a [Server]. Fields are read once, by [New].
type Config struct {
	// HostKey is the server's host key. It must persist across restarts or every client
	// warns that the host identification changed. Required.
	HostKey ssh.Signer
	// Auth decides which keys may connect. Required.
	Auth Authenticator
	// Tunnels registers forwards. Required.
	Tunnels *tunnel.Registry
	// PublicURL turns a tunnel host name (NAME.D) into the URL shown to the user, e.g.
	// "https://NAME.D:8443". Default: "https://" + host.
	PublicURL func(host string) string
	// Greeting is printed on the terminal when a connection's first session starts, before the
	// tunnel lines (e.g. how to trust the development CA). Default none.
	Greeting []string
	// HostsHint, if true, prints the /etc/hosts line for each new tunnel: in the development
	// default *.localhost names resolve in browsers and curl but not in Go or Node programs.
	HostsHint bool
	// HandshakeTimeout bounds the SSH handshake and authentication. Default 15s.
	HandshakeTimeout time.Duration
	// KeepaliveInterval is how often the server checks that a client is alive. Default 15s.
	KeepaliveInterval time.Duration
	// KeepaliveCountMax is how many checks in a row may go unanswered before the connection is
	// closed and its tunnels removed: a dead client is dropped (KeepaliveCountMax+1) intervals
	// after it last answered, 60s with the defaults. Default 3.
	KeepaliveCountMax int
	// MaxConnsPerOwner bounds concurrent connections per owner (Identity.Owner: a user). Default 10.
	MaxConnsPerOwner int
	// MaxConnsPerIP bounds concurrent authenticated connections per client address (IPv6:
	// per /64, as authz.AddrKey), whoever's they are: a team behind one NAT address shares it.
	// Default 100.
	MaxConnsPerIP int
	// MaxHandshakesPerIP bounds concurrent unauthenticated connections per source address.
	// Default 16.
	MaxHandshakesPerIP int
	// Ciphers are the SSH ciphers offered. The client's order decides among them, and OpenSSH
	// puts chacha20-poly1305 first, for which x/crypto has no assembly: it costs toolgate about
	// a third of its CPU on bulk transfers, where AES-GCM runs on AES-NI. So the default offers
	// AES-GCM only, which every OpenSSH since 6.2 and x/crypto support (measured in
	// docs/PERFORMANCE.md). Default {aes128-gcm@openssh.com, aes256-gcm@openssh.com}.
	Ciphers []string
	// ServerVersion is the SSH identification string. Default "SSH-2.0-toolgate".
	ServerVersion string
	// Linker links keys that Auth does not know (ErrUnknownKey) to a person: the client is shown
	// a sign-in URL and the handshake waits for the approval. Default nil: unknown keys are
	// refused.
	Linker Linker
	// LinkTimeout bounds how long a handshake may wait for a link, in place of HandshakeTimeout.
	// The Linker's own code expiry normally ends the wait first. Default 11 minutes.
	LinkTimeout time.Duration
	// KeyUsed, if set, is called with the key fingerprint after each successful authentication,
	// outside the handshake's critical path (e.g. to record when a key was last used).
	KeyUsed func(fingerprint string)
	// Shared, if set, is told when the owner shares tunnels with share= on the ssh command:
	// a security event, for the audit log. tunnels are the names the connection serves now
	// (none if it has no forward yet), with the list each is now shared with; with is what
	// the command added. It must not block.
	Shared func(owner string, with []string, tunnels map[string][]string)
	// Logger receives connection events. Default: discard.
	Logger *slog.Logger
}

// Server is an SSH server for tunnels. Create it with [New], run it with [Server.Serve].
type Server struct {
	cfg    Config
	sshCfg *ssh.ServerConfig

	mu         sync.Mutex
	listeners  map[net.Listener]struct{}
	conns      map[*conn]struct{}
	perOwner   map[string]int
	perIP      map[string]int // authenticated connections, by handshakeKey
	handshakes map[string]int
	closed     bool
	wg         sync.WaitGroup

	writeBufs *sync.Pool // batchConn buffers, shared so idle connections hold none
}

// Extension keys under which authentication hands the identity to the connection.
const (
	extOwner   = "toolgate-owner"
	extDisplay = "toolgate-display"
	extKey     = "toolgate-key" // the SHA-256 fingerprint of the key that authenticated
)

// New returns a server. It does not listen; see [Server.Serve].
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.HostKey == nil:
		return nil, errors.New("sshd: Config.HostKey is required")
	case cfg.Auth == nil:
		return nil, errors.New("sshd: Config.Auth is required")
	case cfg.Tunnels == nil:
		return nil, errors.New("sshd: Config.Tunnels is required")
	}
	if cfg.PublicURL == nil {
		cfg.PublicURL = func(host string) string { return "https://" + host }
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 15 * time.Second
	}
	if cfg.KeepaliveInterval <= 0 {
		cfg.KeepaliveInterval = 15 * time.Second
	}
	if cfg.KeepaliveCountMax <= 0 {
		cfg.KeepaliveCountMax = 3
	}
	if cfg.MaxConnsPerOwner <= 0 {
		cfg.MaxConnsPerOwner = 10
	}
	if cfg.MaxConnsPerIP <= 0 {
		cfg.MaxConnsPerIP = 100
	}
	if cfg.MaxHandshakesPerIP <= 0 {
		cfg.MaxHandshakesPerIP = 16
	}
	if len(cfg.Ciphers) == 0 {
		cfg.Ciphers = []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM}
	}
	if cfg.ServerVersion == "" {
		cfg.ServerVersion = "SSH-2.0-toolgate"
	}
	if cfg.LinkTimeout <= 0 {
		cfg.LinkTimeout = 11 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		cfg:        cfg,
		listeners:  make(map[net.Listener]struct{}),
		conns:      make(map[*conn]struct{}),
		perOwner:   make(map[string]int),
		perIP:      make(map[string]int),
		handshakes: make(map[string]int),
		writeBufs:  newBatchConnPool(),
	}
	// VerifiedPublicKeyCallback is set per connection, in handle: key linking needs the socket.
	s.sshCfg = &ssh.ServerConfig{
		ServerVersion:     cfg.ServerVersion,
		PublicKeyCallback: s.publicKey,
		MaxAuthTries:      6,
	}
	s.sshCfg.Ciphers = cfg.Ciphers
	s.sshCfg.AddHostKey(cfg.HostKey)
	return s, nil
}

// publicKey answers "would this key be accepted?". It may run for keys the client never proves
// it holds, so it only looks up and returns the identity inside the permissions.
// An unknown key is accepted here when a Linker is configured, marked for linking; verifiedKey
// then asks for the link, only after the client proved it holds the key.
func (s *Server) publicKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	id, err := s.cfg.Auth.Authenticate(context.Background(), meta, key)
	if errors.Is(err, ErrUnknownKey) && s.cfg.Linker != nil {
		return &ssh.Permissions{Extensions: map[string]string{extLink: "1"}}, nil
	}
	if err != nil {
		return nil, err
	}
	fp := ssh.FingerprintSHA256(key)
	return &ssh.Permissions{Extensions: map[string]string{extOwner: id.Owner, extDisplay: id.Display, extKey: fp}}, nil
}

// verifiedKey runs once the client proved it holds the key: the place to refuse with a message,
// because a banner sent now is shown by OpenSSH even with -N, and the place to start linking
// an unknown key (x/crypto allows partial success from here, not from PublicKeyCallback).
// ip is the connection's handshakeKey.
func (s *Server) verifiedKey(nc net.Conn, ip string, attempt *linkAttempt, key ssh.PublicKey, perms *ssh.Permissions) (*ssh.Permissions, error) {
	if perms.Extensions[extLink] != "" {
		return nil, s.partialLink(nc, key, attempt)
	}
	owner := perms.Extensions[extOwner]
	s.mu.Lock()
	n, fromIP := s.perOwner[owner], s.perIP[ip]
	s.mu.Unlock()
	if n >= s.cfg.MaxConnsPerOwner {
		return nil, &ssh.BannerError{
			Err:     fmt.Errorf("sshd: %s has %d connections", owner, n),
			Message: fmt.Sprintf("toolgate: you already have %d SSH connections open, the limit. Close one and try again.\r\n", n),
		}
	}
	if fromIP >= s.cfg.MaxConnsPerIP {
		return nil, &ssh.BannerError{
			Err:     fmt.Errorf("sshd: %s has %d connections", ip, fromIP),
			Message: fmt.Sprintf("toolgate: %d SSH connections are open from your address, the limit. Close one and try again.\r\n", fromIP),
		}
	}
	return perms, nil
}

// Serve accepts connections on l until l fails or the server is closed. It always returns a
// non-nil error; after [Server.Close] it is net.ErrClosed.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and similar: back off as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			if s.isClosed() {
				return net.ErrClosed
			}
			return err
		}
		delay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(nc)
		}()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// handshakeKey is what MaxHandshakesPerIP counts under: the address for IPv4, its /64 for
// IPv6 (authz.AddrKey), since one host can pick any address in its /64.
func handshakeKey(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return authz.AddrKey(ta.AddrPort().Addr())
	}
	return remoteIP(a)
}

func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// handle runs one connection from TCP accept to close.
func (s *Server) handle(nc net.Conn) {
	ip := handshakeKey(nc.RemoteAddr())
	s.mu.Lock()
	if s.closed || s.handshakes[ip] >= s.cfg.MaxHandshakesPerIP {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.handshakes[ip]++
	s.mu.Unlock()

	// x/crypto has no handshake timeout: a deadline on the socket is the way to bound it.
	nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	nc = newBatchConn(nc, s.writeBufs)
	cfg := *s.sshCfg
	attempt := new(linkAttempt)
	cfg.VerifiedPublicKeyCallback = func(_ ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
		return s.verifiedKey(nc, ip, attempt, key, perms)
	}
	sc, chans, reqs, err := ssh.NewServerConn(nc, &cfg)

	s.mu.Lock()
	if s.handshakes[ip]--; s.handshakes[ip] <= 0 {
		delete(s.handshakes, ip)
	}
	s.mu.Unlock()
	if err != nil {
		s.cfg.Logger.Debug("ssh handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		nc.Close()
		return
	}
	nc.SetDeadline(time.Time{})

	id := Identity{Owner: sc.Permissions.Extensions[extOwner], Display: sc.Permissions.Extensions[extDisplay]}
	c := newConn(s, sc, nc, id)
	c.keyFP = sc.Permissions.Extensions[extKey]
	if s.cfg.KeyUsed != nil && c.keyFP != "" {
		go s.cfg.KeyUsed(c.keyFP)
	}
	s.mu.Lock()
	// verifiedKey checked the limits, but two handshakes may have passed them together.
	over := s.perOwner[id.Owner] >= s.cfg.MaxConnsPerOwner || s.perIP[ip] >= s.cfg.MaxConnsPerIP
	if s.closed || over {
		s.mu.Unlock()
		sc.Close()
		go ssh.DiscardRequests(reqs)
		for nch := range chans {
			nch.Reject(ssh.ResourceShortage, "too many connections")
		}
		return
	}
	s.perOwner[id.Owner]++
	s.perIP[ip]++
	s.conns[c] = struct{}{}
	s.mu.Unlock()

	s.cfg.Logger.Info("ssh connected", "owner", id.Owner, "user", id.Display, "key", c.keyFP, "remote", nc.RemoteAddr().String(), "client", string(sc.ClientVersion()))
	c.serve(chans, reqs)

	s.mu.Lock()
	delete(s.conns, c)
	if s.perOwner[id.Owner]--; s.perOwner[id.Owner] <= 0 {
		delete(s.perOwner, id.Owner)
	}
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.mu.Unlock()
	s.cfg.Logger.Info("ssh disconnected", "owner", id.Owner, "remote", nc.RemoteAddr().String(), "reason", c.closeReason())
}

// CloseKey closes every connection that authenticated with the key whose SHA-256 fingerprint is
// fp, telling each terminal why first, and returns how many it closed. Their tunnels go with
// them. It is how revoking a key takes effect at once.
func (s *Server) CloseKey(fp, reason string) int {
	return s.closeMatching(func(c *conn) bool { return c.keyFP == fp }, reason)
}

// CloseOwner closes every connection of owner (a user being disabled), as CloseKey does.
func (s *Server) CloseOwner(owner, reason string) int {
	return s.closeMatching(func(c *conn) bool { return c.id.Owner == owner }, reason)
}

func (s *Server) closeMatching(match func(*conn) bool, reason string) int {
	s.mu.Lock()
	var hit []*conn
	for c := range s.conns {
		if match(c) {
			hit = append(hit, c)
		}
	}
	s.mu.Unlock()
	for _, c := range hit {
		c.closeWithNotice(reason)
	}
	return len(hit)
}

// Close stops the listeners, closes every connection (removing their tunnels) and waits for the
// connection goroutines to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close("server shutting down")
	}
	s.wg.Wait()
	return nil
}

// Shutdown is Close, tells each terminal why first, and gives up waiting when ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		c.console.Notify("toolgate: server is shutting down; reconnect to get your names back")
		conns = append(conns, c)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		// Notify only queues the line; closing before the console has written it would lose
		// the one message that tells the user why their session ended. Each flush is bounded
		// by a second so a stalled client cannot hold shutdown.
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fctx, cancel := context.WithTimeout(ctx, time.Second)
				c.console.Flush(fctx)
				cancel()
			}()
		}
		wg.Wait()
		s.Close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Conns returns the number of authenticated connections.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
