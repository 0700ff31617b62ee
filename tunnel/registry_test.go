package tunnel

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/data"
)

type fakeConn struct {
	mu      sync.Mutex
	dead    bool
	evicted string
	notes   []string
}

func (c *fakeConn) Probe(ctx context.Context) error {
	c.mu.Lock()
	dead := c.dead
	c.mu.Unlock()
	if dead {
		<-ctx.Done() // a dead peer never answers
		return ctx.Err()
	}
	return nil
}

func (c *fakeConn) Evict(reason string) {
	c.mu.Lock()
	c.evicted = reason
	c.mu.Unlock()
}

func (c *fakeConn) Notify(line string) {
	c.mu.Lock()
	c.notes = append(c.notes, line)
	c.mu.Unlock()
}

func (c *fakeConn) wasEvicted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.evicted != ""
}

type countingDialer struct{ n atomic.Int32 }

func (d *countingDialer) DialContext(context.Context, netip.AddrPort) (net.Conn, error) {
	d.n.Add(1)
	a, b := net.Pipe()
	b.Close()
	return a, nil
}

func newTestRegistry(t *testing.T, mod func(*Config)) *Registry {
	t.Helper()
	st, err := data.Open(data.Config{Path: filepath.Join(t.TempDir(), "t.db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := Config{Domain: "toolgate.localhost", Names: st, ProbeTimeout: 200 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	r, err := NewRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func open(t *testing.T, r *Registry, owner string, c Conn, bind, hint string) (*Forward, error) {
	t.Helper()
	return r.Open(context.Background(), OpenRequest{Owner: owner, Conn: c, Dialer: &countingDialer{},
		BindAddr: bind, LocalHost: "localhost:80", Hint: hint})
}

func mustOpen(t *testing.T, r *Registry, owner string, c Conn, bind, hint string) *Forward {
	t.Helper()
	f, err := open(t, r, owner, c, bind, hint)
	if err != nil {
		t.Fatalf("Open(%s, %q): %v", owner, bind, err)
	}
	return f
}

func TestRandomNameComesBackOnReconnect(t *testing.T) {
	r := newTestRegistry(t, nil)
	c1 := &fakeConn{}
	a := mustOpen(t, r, "alice", c1, "localhost", "localhost:0#1")
	b := mustOpen(t, r, "alice", c1, "localhost", "localhost:0#2")
	if a.Tunnel().Name() == b.Tunnel().Name() {
		t.Fatalf("two forwards of one connection share %q", a.Tunnel().Name())
	}
	if r.Lookup(a.Tunnel().Name()) != a.Tunnel() {
		t.Fatal("Lookup does not find the new tunnel")
	}
	nameA, nameB := a.Tunnel().Name(), b.Tunnel().Name()
	a.Close()
	b.Close()
	if r.Lookup(nameA) != nil || r.Len() != 0 {
		t.Fatal("tunnels outlive their last forward")
	}
	// Reconnect, forwards in the other order: each gets its own name back by hint.
	c2 := &fakeConn{}
	b2 := mustOpen(t, r, "alice", c2, "localhost", "localhost:0#2")
	a2 := mustOpen(t, r, "alice", c2, "localhost", "localhost:0#1")
	if a2.Tunnel().Name() != nameA || b2.Tunnel().Name() != nameB {
		t.Fatalf("after reconnect got %s, %s; want %s, %s", a2.Tunnel().Name(), b2.Tunnel().Name(), nameA, nameB)
	}
	// Another owner never gets alice's names.
	o := mustOpen(t, r, "bob", &fakeConn{}, "localhost", "localhost:0#1")
	if n := o.Tunnel().Name(); n == nameA || n == nameB {
		t.Fatalf("bob got alice's name %s", n)
	}
}

func TestReconnectWhileOldConnectionIsDead(t *testing.T) {
	r := newTestRegistry(t, nil)
	old := &fakeConn{}
	f := mustOpen(t, r, "alice", old, "localhost", "localhost:0#1")
	name := f.Tunnel().Name()

	// The old connection is alive: a second session (another command line) gets a second name.
	alive := mustOpen(t, r, "alice", &fakeConn{}, "localhost", "localhost:0#1 other")
	if alive.Tunnel().Name() == name {
		t.Fatal("a live connection's name was handed to another connection")
	}
	alive.Close()

	// The same command line again while the old connection still answers: a new name too.
	twin := mustOpen(t, r, "alice", &fakeConn{}, "localhost", "localhost:0#1")
	if twin.Tunnel().Name() == name {
		t.Fatal("a live connection's name was taken over")
	}
	twin.Close()

	// Now the old connection stops answering (network gone, keepalive not yet expired).
	old.mu.Lock()
	old.dead = true
	old.mu.Unlock()
	start := time.Now()
	n := mustOpen(t, r, "alice", &fakeConn{}, "localhost", "localhost:0#1")
	if n.Tunnel().Name() != name {
		t.Fatalf("reconnect got %s, want the old name %s", n.Tunnel().Name(), name)
	}
	if !old.wasEvicted() {
		t.Fatal("the dead connection was not evicted")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("takeover took %s", d)
	}
	f.Close() // the old connection's cleanup arrives late; it must not disturb the new tunnel
	if r.Lookup(name) != n.Tunnel() {
		t.Fatal("the old connection's late Close removed the new tunnel")
	}
}

func TestRequestedNames(t *testing.T) {
	r := newTestRegistry(t, func(c *Config) { c.Reserved = []string{"corp"} })
	c := &fakeConn{}
	f := mustOpen(t, r, "alice", c, "MyApp", "MyApp:80#1")
	if f.Tunnel().Name() != "myapp" || f.Tunnel().Host() != "myapp.toolgate.localhost" {
		t.Fatalf("got %s / %s", f.Tunnel().Name(), f.Tunnel().Host())
	}
	for _, tc := range []struct {
		owner, bind string
		conn        Conn
		want        error
	}{
		{"bob", "myapp", &fakeConn{}, ErrNameTaken},
		{"alice", "myapp", c, ErrDuplicate},
		{"alice", "admin", c, ErrReservedName},
		{"alice", "corp", c, ErrReservedName},
		{"alice", "a.b", c, ErrInvalidName},
	} {
		if _, err := open(t, r, tc.owner, tc.conn, tc.bind, "x"); !errors.Is(err, tc.want) {
			t.Errorf("Open(%s, %s) = %v, want %v", tc.owner, tc.bind, err, tc.want)
		}
	}
	// The owner's name survives the tunnel closing: bob still cannot have it.
	f.Close()
	if _, err := open(t, r, "bob", &fakeConn{}, "myapp", "x"); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("bob took alice's closed name: %v", err)
	}
	if !r.Known(context.Background(), "myapp") || r.Known(context.Background(), "nobody-has-this") {
		t.Fatal("Known does not follow claims")
	}
}

func TestSameOwnerLoadBalances(t *testing.T) {
	r := newTestRegistry(t, nil)
	d1, d2 := &countingDialer{}, &countingDialer{}
	c1, c2 := &fakeConn{}, &fakeConn{}
	f1, err := r.Open(context.Background(), OpenRequest{Owner: "alice", Conn: c1, Dialer: d1, BindAddr: "balanced", LocalHost: "localhost:80"})
	if err != nil {
		t.Fatal(err)
	}
	f2, err := r.Open(context.Background(), OpenRequest{Owner: "alice", Conn: c2, Dialer: d2, BindAddr: "balanced", LocalHost: "localhost:80"})
	if err != nil {
		t.Fatal(err)
	}
	if f1.Tunnel() != f2.Tunnel() {
		t.Fatal("same owner, same name: expected one pooled tunnel")
	}
	for range 10 {
		c, err := f1.Tunnel().DialContext(context.Background(), netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if d1.n.Load() != 5 || d2.n.Load() != 5 {
		t.Fatalf("round robin: %d and %d dials, want 5 and 5", d1.n.Load(), d2.n.Load())
	}
	f1.Tunnel().Notify("hello")
	if len(c1.notes) != 1 || len(c2.notes) != 1 {
		t.Fatalf("Notify reached %d and %d terminals", len(c1.notes), len(c2.notes))
	}
	f1.Close()
	if r.Lookup("balanced") == nil {
		t.Fatal("tunnel gone while a forward remains")
	}
	f2.Close()
	if _, err := f2.Tunnel().DialContext(context.Background(), netip.AddrPort{}); !errors.Is(err, ErrTunnelGone) {
		t.Fatalf("dial after close: %v", err)
	}
}

func TestTunnelLimitPerOwner(t *testing.T) {
	r := newTestRegistry(t, func(c *Config) { c.MaxTunnelsPerOwner = 2 })
	c := &fakeConn{}
	mustOpen(t, r, "alice", c, "localhost", "1")
	f := mustOpen(t, r, "alice", c, "localhost", "2")
	if _, err := open(t, r, "alice", c, "localhost", "3"); !errors.Is(err, ErrTooManyTunnels) {
		t.Fatalf("third tunnel: %v, want ErrTooManyTunnels", err)
	}
	mustOpen(t, r, "bob", &fakeConn{}, "localhost", "1") // limits are per owner
	f.Close()
	mustOpen(t, r, "alice", c, "localhost", "3")
}
