package tunnel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/toolgate/toolgate/data"
)

// Whom a tunnel is shared with comes from two places, and the tunnel serves their union:
//
//   - the owner's ssh commands (share=…), each for as long as its connection serves the
//     tunnel: set by package sshd with SetCommandShares, and dropped when the connection's
//     forward goes (a tunnel served by several connections of its owner is shared with what
//     each of them says, not with what the last one to speak said);
//   - the shares saved for the name (toolgate tunnel share), which outlive connections: read
//     from the [ShareStore] when the name goes live, and again whenever the caller that
//     changed them says so with [Registry.ReloadShares].
//
// The union is computed when either part changes and published with one atomic store, so the
// request path (Shares, once per request) reads a pointer and never takes a lock.

// ShareStore reads the shares saved for a name. data.Store implements it.
type ShareStore interface {
	// GetNameShares returns whom name is shared with; data.ErrNotFound if nobody holds it.
	GetNameShares(ctx context.Context, name string) (data.NameShares, error)
}

// shareState is a Tunnel's two share lists and their union.
type shareState struct {
	// mu serializes loads of the saved list (read the store, then publish) so that a load
	// that read the store earlier can never publish after one that read it later, and
	// guards the two lists.
	mu      sync.Mutex
	command map[Conn][]string // by the connection whose ssh command said it
	saved   []string
	union   atomic.Pointer[[]string] // commands ∪ saved, sorted; nil for nobody
}

// publish recomputes the union. Called with mu held.
func (s *shareState) publish() {
	u := slices.Clone(s.saved)
	for _, with := range s.command {
		u = append(u, with...)
	}
	if len(u) == 0 {
		s.union.Store(nil)
		return
	}
	slices.Sort(u)
	u = slices.Compact(u)
	s.union.Store(&u)
}

// SetCommandShares replaces whom the ssh command of the owner's connection c shares the
// tunnel with: emails, and "group:NAME" for everyone in a group. It lasts while c serves the
// tunnel. The saved shares and other connections' stay; the tunnel is shared with all of
// them. What sharing lets people do is the policy's business.
func (t *Tunnel) SetCommandShares(c Conn, with []string) {
	t.shares.mu.Lock()
	defer t.shares.mu.Unlock()
	if t.shares.command == nil {
		t.shares.command = make(map[Conn][]string)
	}
	if len(with) == 0 {
		delete(t.shares.command, c)
	} else {
		t.shares.command[c] = slices.Clone(with)
	}
	t.shares.publish()
}

// dropCommandShares forgets what c's ssh command shared: c no longer serves the tunnel.
func (t *Tunnel) dropCommandShares(c Conn) {
	t.shares.mu.Lock()
	defer t.shares.mu.Unlock()
	if _, ok := t.shares.command[c]; ok {
		delete(t.shares.command, c)
		t.shares.publish()
	}
}

// Shares returns whom the tunnel is shared with, from the ssh command and saved, sorted; nil
// for nobody. Do not change it.
func (t *Tunnel) Shares() []string {
	if p := t.shares.union.Load(); p != nil {
		return *p
	}
	return nil
}

// CommandShares returns the part of Shares that came from the ssh commands of the
// connections serving the tunnel, sorted.
func (t *Tunnel) CommandShares() []string {
	t.shares.mu.Lock()
	defer t.shares.mu.Unlock()
	var out []string
	for _, with := range t.shares.command {
		out = append(out, with...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// SavedShares returns the part of Shares that was saved for the name.
func (t *Tunnel) SavedShares() []string {
	t.shares.mu.Lock()
	defer t.shares.mu.Unlock()
	return slices.Clone(t.shares.saved)
}

// ReloadShares reads the shares saved for name again and applies them to the live tunnel of
// that name; call it after changing them in the store. It returns the live tunnel, or nil if
// the name is not live (it will read them when it goes live).
//
// A change made in the store before this call is in force when it returns: either this load
// sees it, or the tunnel went live after the lookup here and its own load, which starts after
// that, sees it.
func (r *Registry) ReloadShares(ctx context.Context, name string) (*Tunnel, error) {
	t := r.Lookup(name)
	if t == nil || r.cfg.Shares == nil {
		return t, nil
	}
	return t, r.loadShares(ctx, t)
}

// loadShares reads t's saved shares and publishes them. A list saved for anyone but the
// tunnel's owner does not apply. When the store cannot be read the saved part is emptied:
// a failure must not keep a share the owner may just have removed.
func (r *Registry) loadShares(ctx context.Context, t *Tunnel) error {
	t.shares.mu.Lock()
	defer t.shares.mu.Unlock()
	sh, err := r.cfg.Shares.GetNameShares(ctx, t.name)
	switch {
	case errors.Is(err, data.ErrNotFound):
		// The claim went away under a live tunnel (an operator's release); nothing saved.
		sh, err = data.NameShares{}, nil
	case err != nil:
		t.shares.saved = nil
		t.shares.publish()
		return fmt.Errorf("tunnel: shares of %q: %w", t.name, err)
	}
	t.shares.saved = nil
	if sh.Owner == t.owner {
		t.shares.saved = slices.Clone(sh.With)
	}
	t.shares.publish()
	return nil
}
