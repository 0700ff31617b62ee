package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// Tunnel is a live public name and the forwards serving it. Several forwards (from several
// connections of the same owner) make a load-balanced pool.
type Tunnel struct {
	name, host, owner string
	passHost          atomic.Bool
	localHost         atomic.Pointer[string]
	shares            shareState // see shares.go
	values            sync.Map   // Value's store

	eps atomic.Pointer[[]*endpoint] // copy on write; guarded by Registry.mu for writers
	rr  atomic.Uint32
}

type endpoint struct {
	conn   Conn
	dialer Dialer
}

// Name returns the tunnel's label, e.g. "quiet-fox-7h3k2q".
func (t *Tunnel) Name() string { return t.name }

// Host returns the tunnel's public host name, NAME.Domain.
func (t *Tunnel) Host() string { return t.host }

// Owner returns who owns the tunnel.
func (t *Tunnel) Owner() string { return t.owner }

// SetPassHost chooses whether the local server sees the public Host (true) or LocalHost (false,
// the default). It applies to the whole tunnel, every forward of it.
func (t *Tunnel) SetPassHost(pass bool) { t.passHost.Store(pass) }

// PassHost reports the current Host choice.
func (t *Tunnel) PassHost() bool { return t.passHost.Load() }

// Value returns the value stored under key for this tunnel, creating it with create on first
// use. It lets the layers above keep per-tunnel state (the tools its server lists, say) that
// lives exactly as long as this incarnation of the tunnel.
func (t *Tunnel) Value(key any, create func() any) any {
	if v, ok := t.values.Load(key); ok {
		return v
	}
	v, _ := t.values.LoadOrStore(key, create())
	return v
}

// LocalHost returns the Host header sent to the local server when the public one is not passed.
func (t *Tunnel) LocalHost() string { return *t.localHost.Load() }

// Notify shows line on the terminal of every connection serving the tunnel.
func (t *Tunnel) Notify(line string) {
	eps := t.endpoints()
	for i, ep := range eps {
		dup := false
		for _, prev := range eps[:i] {
			if prev.conn == ep.conn {
				dup = true
				break
			}
		}
		if !dup {
			ep.conn.Notify(line)
		}
	}
}

// DialContext opens a stream to the local server through one of the tunnel's forwards, in
// round-robin order, trying the next forward when one fails.
func (t *Tunnel) DialContext(ctx context.Context, from netip.AddrPort) (net.Conn, error) {
	eps := t.endpoints()
	if len(eps) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrTunnelGone, t.host)
	}
	start := int(t.rr.Add(1))
	var first error
	for i := range eps {
		c, err := eps[(start+i)%len(eps)].dialer.DialContext(ctx, from)
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

func (t *Tunnel) endpoints() []*endpoint {
	if p := t.eps.Load(); p != nil {
		return *p
	}
	return nil
}

func (t *Tunnel) endpointCount() int { return len(t.endpoints()) }

func (t *Tunnel) hasConn(c Conn) bool {
	for _, ep := range t.endpoints() {
		if ep.conn == c {
			return true
		}
	}
	return false
}

// add and del are called with Registry.mu held.
func (t *Tunnel) add(ep *endpoint) {
	eps := append(slices.Clone(t.endpoints()), ep)
	t.eps.Store(&eps)
}

func (t *Tunnel) del(ep *endpoint) bool {
	old := t.endpoints()
	i := slices.Index(old, ep)
	if i < 0 {
		return false
	}
	eps := slices.Delete(slices.Clone(old), i, i+1)
	t.eps.Store(&eps)
	return true
}
