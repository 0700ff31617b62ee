package sshd

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/tunnel"
)

// firstAllocatedPort is where ports handed out for "-R 0:…" start. They are virtual (nothing
// listens on them) but OpenSSH records them and matches forwarded-tcpip channels on them, so
// each must be unique within its connection; starting high keeps them from looking like the
// well-known ports a developer might use locally.
const firstAllocatedPort = 10000

// conn is one authenticated SSH connection. It implements tunnel.Conn.
type conn struct {
	srv     *Server
	sc      *ssh.ServerConn
	nc      net.Conn
	id      Identity
	keyFP   string // fingerprint of the key that authenticated; set before serve
	console *console
	ctx     context.Context // ends when the connection does
	cancel  context.CancelFunc

	mu        sync.Mutex
	forwards  map[forwardKey]*forwardState
	nextPort  uint32
	ordinal   int
	passHost  bool
	shares    []string // the share= option: applied to every forward of the connection, for its life
	done      bool     // no more forwards may be added
	reason    string
	closeOnce sync.Once

	probeMu sync.Mutex
	probe   *probeFlight

	global globalQueue // the global requests: lets a session's options wait for earlier forwards

	kaTimer  *time.Timer // guarded by mu
	kaMisses int         // only touched by the keepalive callback, which never overlaps itself
}

// forwardKey identifies a forward as the client does: bind address (exact string) and port
// (allocated one for port 0). cancel-tcpip-forward names forwards the same way.
type forwardKey struct {
	addr string
	port uint32
}

type forwardState struct {
	f       *tunnel.Forward
	spec    string // how the user wrote it, roughly: "0", "80", "myname:80"
	ordinal int
}

type probeFlight struct {
	done chan struct{}
	err  error
}

func newConn(s *Server, sc *ssh.ServerConn, nc net.Conn, id Identity) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{
		srv:      s,
		sc:       sc,
		nc:       nc,
		id:       id,
		console:  newConsole(256),
		ctx:      ctx,
		cancel:   cancel,
		forwards: make(map[forwardKey]*forwardState),
		nextPort: firstAllocatedPort,
	}
}

// serve runs the connection until it closes, then removes its tunnels.
func (c *conn) serve(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	c.global.reqs = reqs
	globalDone := make(chan struct{})
	go func() {
		defer close(globalDone)
		c.handleGlobal(reqs)
	}()
	c.mu.Lock()
	c.kaTimer = time.AfterFunc(c.srv.cfg.KeepaliveInterval, c.keepalive)
	c.mu.Unlock()

	for nch := range chans {
		switch nch.ChannelType() {
		case "session":
			go c.session(nch)
		case "direct-tcpip":
			nch.Reject(ssh.Prohibited, "toolgate offers remote forwards (-R) only")
		default:
			nch.Reject(ssh.UnknownChannelType, "unsupported channel type")
		}
	}
	// chans is closed: the connection is gone.
	c.close("connection closed")
	c.mu.Lock()
	c.kaTimer.Stop()
	c.mu.Unlock()
	<-globalDone
	c.mu.Lock()
	c.done = true
	fs := make([]*forwardState, 0, len(c.forwards))
	for _, f := range c.forwards {
		fs = append(fs, f)
	}
	c.forwards = nil
	c.mu.Unlock()
	for _, f := range fs {
		f.f.Close()
	}
	c.console.Close()
}

// close closes the connection once; serve then cleans up.
func (c *conn) close(reason string) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.reason = reason
		c.mu.Unlock()
		c.cancel()
		c.sc.Close()
	})
}

// closeWithNotice prints reason on the terminal, gives it a moment to reach the client, then
// closes the connection.
func (c *conn) closeWithNotice(reason string) {
	c.console.Notify("toolgate: " + reason)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	c.console.Flush(ctx)
	cancel()
	c.close(reason)
}

func (c *conn) closeReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// handleGlobal answers global requests strictly in order: OpenSSH pairs replies with its
// requests by order, so a slow tcpip-forward must hold back the replies behind it.
func (c *conn) handleGlobal(reqs <-chan *ssh.Request) {
	defer c.global.settle()
	for req := range reqs {
		c.global.begin()
		switch req.Type {
		case "tcpip-forward":
			c.forward(req)
		case "cancel-tcpip-forward":
			c.cancelForward(req)
		default:
			// keepalive@openssh.com and anything unknown: a failure reply is the correct
			// answer and still proves we are alive.
			req.Reply(false, nil)
		}
		if len(reqs) == 0 {
			c.global.settle()
		}
	}
}

// globalQueue tells a session whether every global request received so far has been answered.
//
// OpenSSH sends its tcpip-forward requests before it opens the session whose exec carries the
// options (share=, host-header=), but x/crypto/ssh hands global requests and channels to
// different goroutines, and opening a forward (choosing and saving a name) takes longer than
// the client's round trip to open the session. Without waiting, share= could reach the
// connection before its first forward: the terminal would show the share before the URL, and
// the Shared hook would hear of no tunnel.
//
// The SSH reader queues a global request on reqs before it reads any later packet, so "the
// loop is busy or reqs is not empty" covers every request that arrived before the exec.
type globalQueue struct {
	reqs <-chan *ssh.Request // set before the loop starts; len is safe from any goroutine

	mu      sync.Mutex
	busy    bool          // the loop is handling a request
	settled chan struct{} // closed by the next settle; made by a waiter, nil otherwise
}

func (q *globalQueue) begin() {
	q.mu.Lock()
	q.busy = true
	q.mu.Unlock()
}

func (q *globalQueue) settle() {
	q.mu.Lock()
	q.busy = false
	if q.settled != nil {
		close(q.settled)
		q.settled = nil
	}
	q.mu.Unlock()
}

// wait returns once every global request queued before the call has been answered, or when
// ctx ends.
func (q *globalQueue) wait(ctx context.Context) {
	for {
		q.mu.Lock()
		if !q.busy && len(q.reqs) == 0 {
			q.mu.Unlock()
			return
		}
		if q.settled == nil {
			q.settled = make(chan struct{})
		}
		ch := q.settled
		q.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// ForwardRequest is the payload of tcpip-forward and cancel-tcpip-forward (RFC 4254 §7.1).
type ForwardRequest struct {
	BindAddr string
	BindPort uint32
}

// ParseForwardRequest decodes a tcpip-forward or cancel-tcpip-forward payload. Ports above
// 65535 are refused.
func ParseForwardRequest(payload []byte) (ForwardRequest, error) {
	var p ForwardRequest
	if err := ssh.Unmarshal(payload, &p); err != nil {
		return ForwardRequest{}, fmt.Errorf("sshd: malformed forward request: %w", err)
	}
	if p.BindPort > 65535 {
		return ForwardRequest{}, fmt.Errorf("sshd: forward port %d out of range", p.BindPort)
	}
	return p, nil
}

func (p ForwardRequest) spec() string {
	port := strconv.FormatUint(uint64(p.BindPort), 10)
	switch p.BindAddr {
	case "localhost":
		return port
	case "":
		return ":" + port
	}
	return p.BindAddr + ":" + port
}

func (c *conn) forward(req *ssh.Request) {
	p, err := ParseForwardRequest(req.Payload)
	if err != nil {
		c.refuse(req, "toolgate: "+err.Error())
		return
	}
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		req.Reply(false, nil)
		return
	}
	port := p.BindPort
	if port == 0 {
		// Each "-R 0" needs its own port: the client routes channels by (address, port), so two
		// forwards sharing both would send every stream to the first.
		c.nextPort++
		port = c.nextPort
	}
	key := forwardKey{p.BindAddr, port}
	if _, dup := c.forwards[key]; dup {
		c.mu.Unlock()
		c.refuse(req, fmt.Sprintf("toolgate: -R %s: this connection already forwards that address and port; use -R 0:… or a name for a second tunnel", p.spec()))
		return
	}
	c.ordinal++
	ordinal := c.ordinal
	c.mu.Unlock()

	f, err := c.srv.cfg.Tunnels.Open(c.ctx, tunnel.OpenRequest{
		Owner:     c.id.Owner,
		Conn:      c,
		Dialer:    &tunnel.SSHForward{Conn: c.sc, BindAddr: p.BindAddr, BindPort: port},
		BindAddr:  p.BindAddr,
		LocalHost: "localhost:" + strconv.FormatUint(uint64(port), 10),
		Hint:      fmt.Sprintf("%s:%d#%d", p.BindAddr, p.BindPort, ordinal),
	})
	if err != nil {
		c.refuse(req, fmt.Sprintf("toolgate: -R %s refused: %v", p.spec(), err))
		c.srv.cfg.Logger.Info("forward refused", "owner", c.id.Owner, "bind", p.BindAddr, "port", p.BindPort, "err", err)
		return
	}
	c.mu.Lock()
	if c.done {
		// The connection ended while the name was being chosen: undo, or the name would
		// stay live with nobody behind it (sish#374).
		c.mu.Unlock()
		f.Close()
		req.Reply(false, nil)
		return
	}
	c.forwards[key] = &forwardState{f: f, spec: p.spec(), ordinal: ordinal}
	if c.passHost {
		f.Tunnel().SetPassHost(true)
	}
	if c.shares != nil {
		f.Tunnel().SetCommandShares(c, c.shares)
	}
	c.mu.Unlock()

	if p.BindPort == 0 {
		req.Reply(true, ssh.Marshal(struct{ Port uint32 }{port}))
	} else {
		req.Reply(true, nil)
	}
	c.announce(f.Tunnel(), p, port)
}

// refuseWait bounds how long a refusal waits for its reason to reach the terminal.
const refuseWait = 2 * time.Second

// refuse answers a tcpip-forward with failure, after showing why. OpenSSH with
// ExitOnForwardFailure (which we recommend) exits the moment the failure arrives, so the reason
// is put on the terminal first: the session it will appear in usually opens right after the
// forwards. Without a session (-N) nothing can be shown and the wait is cut short only by the
// bound.
func (c *conn) refuse(req *ssh.Request, reason string) {
	c.console.Notify(reason)
	ctx, cancel := context.WithTimeout(c.ctx, refuseWait)
	c.console.Flush(ctx)
	cancel()
	req.Reply(false, nil)
}

// announce prints the forward's URL: the first thing the user looks for.
func (c *conn) announce(t *tunnel.Tunnel, p ForwardRequest, port uint32) {
	spec := "-R " + p.spec()
	if p.BindPort == 0 {
		spec += fmt.Sprintf(" (port %d)", port)
	}
	c.console.Notify(fmt.Sprintf("%s/mcp  ->  %s", c.srv.cfg.PublicURL(t.Host()), spec))
	if c.srv.cfg.HostsHint {
		c.console.Notify(fmt.Sprintf("  Go and Node clients on this machine need: echo '127.0.0.1 %s' | sudo tee -a /etc/hosts", t.Host()))
	}
	// The shares saved for the name apply from the start; the owner should not have to
	// remember who can reach it.
	if with := t.Shares(); len(with) > 0 {
		c.console.Notify("  shared with " + strings.Join(with, ", "))
	}
}

func (c *conn) cancelForward(req *ssh.Request) {
	p, err := ParseForwardRequest(req.Payload)
	if err != nil {
		req.Reply(false, nil)
		return
	}
	key := forwardKey{p.BindAddr, p.BindPort}
	c.mu.Lock()
	fs, ok := c.forwards[key]
	if ok {
		delete(c.forwards, key)
	}
	c.mu.Unlock()
	if !ok {
		req.Reply(false, nil)
		return
	}
	fs.f.Close()
	req.Reply(true, nil)
	c.console.Notify(fmt.Sprintf("toolgate: %s closed (-R %s cancelled)", c.srv.cfg.PublicURL(fs.f.Tunnel().Host()), fs.spec))
}

// setPassHost applies the host-header option to current and future forwards.
func (c *conn) setPassHost(pass bool) {
	c.mu.Lock()
	c.passHost = pass
	for _, fs := range c.forwards {
		fs.f.Tunnel().SetPassHost(pass)
	}
	c.mu.Unlock()
}

// addShares applies the share option to current and future forwards. It returns the
// connection's whole list, and the tunnels it serves now. Past data.MaxShares in all it
// changes nothing.
func (c *conn) addShares(with []string) ([]string, []*tunnel.Tunnel, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := slices.Clone(c.shares)
	for _, w := range with {
		if !slices.Contains(next, w) {
			next = append(next, w)
		}
	}
	if len(next) > data.MaxShares {
		return nil, nil, fmt.Errorf("share= takes at most %d people and groups in all; share with a group instead", data.MaxShares)
	}
	c.shares = next
	var ts []*tunnel.Tunnel
	for _, fs := range c.forwards {
		fs.f.Tunnel().SetCommandShares(c, c.shares)
		if !slices.Contains(ts, fs.f.Tunnel()) {
			ts = append(ts, fs.f.Tunnel())
		}
	}
	slices.SortFunc(ts, func(a, b *tunnel.Tunnel) int { return strings.Compare(a.Name(), b.Name()) })
	return slices.Clone(c.shares), ts, nil
}

// Probe implements tunnel.Conn: one keepalive round trip. Concurrent probes share the request in
// flight, so a dead connection accumulates at most one blocked sender.
func (c *conn) Probe(ctx context.Context) error {
	fl := c.startProbe()
	select {
	case <-fl.done:
		return fl.err
	case <-ctx.Done():
		return fmt.Errorf("sshd: no keepalive answer: %w", ctx.Err())
	}
}

// startProbe returns the keepalive in flight, sending one if there is none.
func (c *conn) startProbe() *probeFlight {
	c.probeMu.Lock()
	defer c.probeMu.Unlock()
	if c.probe != nil {
		return c.probe
	}
	fl := &probeFlight{done: make(chan struct{})}
	c.probe = fl
	go func() {
		// SendRequest blocks until the reply or the connection's end; on a half-open TCP
		// connection that can be a long time, hence the shared flight and the callers' timeouts.
		_, _, err := c.sc.SendRequest("keepalive@openssh.com", true, nil)
		c.probeMu.Lock()
		fl.err = err
		c.probe = nil
		c.probeMu.Unlock()
		close(fl.done)
	}()
	return fl
}

// Evict implements tunnel.Conn.
func (c *conn) Evict(reason string) {
	c.console.Notify("toolgate: " + reason)
	c.close("evicted: " + reason)
}

// Notify implements tunnel.Conn.
func (c *conn) Notify(line string) { c.console.Notify(line) }

// keepalive runs on a timer, every KeepaliveInterval, like OpenSSH's ClientAliveInterval: if the
// previous keepalive is still unanswered that is a miss, otherwise a new one is sent. After
// KeepaliveCountMax misses in a row the connection is closed, so a dead client is dropped
// (KeepaliveCountMax+1) intervals after it last answered. A timer instead of a goroutine per
// connection means idle connections spend no stack on it.
func (c *conn) keepalive() {
	if c.ctx.Err() != nil {
		return
	}
	c.probeMu.Lock()
	pending := c.probe != nil
	c.probeMu.Unlock()
	if pending {
		c.kaMisses++
		if c.kaMisses >= c.srv.cfg.KeepaliveCountMax {
			c.close(fmt.Sprintf("no answer to %d keepalives", c.kaMisses))
			return
		}
	} else {
		c.kaMisses = 0
		c.startProbe()
	}
	c.mu.Lock()
	if c.reason == "" {
		c.kaTimer.Reset(c.srv.cfg.KeepaliveInterval)
	}
	c.mu.Unlock()
}
