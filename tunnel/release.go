package tunnel

import (
	"context"
	"slices"
)

// CloseName closes every live forward of name at once, whichever connections carry them, and
// shows line on the terminal of each of those connections, once per connection. The
// connections themselves stay up, with their other forwards: this closes a name, not a
// session. A forward closed this way is gone from the registry (requests to name find no
// tunnel from now on) and its own Close later does nothing. It returns how many forwards it
// closed: 0 when name is not live.
//
// A forward that joins name while CloseName runs may survive it; [Registry.ReleaseName] rules
// that out for the owner's connections.
func (r *Registry) CloseName(name, line string) int {
	t := r.Lookup(name)
	if t == nil {
		return 0
	}
	var told []Conn
	n := 0
	for _, ep := range t.endpoints() {
		if !r.remove(t, ep) {
			continue // closed by its connection meanwhile
		}
		n++
		if !slices.Contains(told, ep.conn) {
			told = append(told, ep.conn)
		}
	}
	for _, c := range told {
		c.Notify(line)
	}
	if n > 0 {
		r.cfg.Logger.Info("tunnel name closed", "name", name, "owner", t.owner, "forwards", n)
	}
	return n
}

// ReleaseName is the operator's release of a live name: owner's claim on name is deleted
// (NameStore.ReleaseName), then its forwards are closed with line on their terminals
// (CloseName), and it returns how many were closed. The claim is deleted with the owner's
// lock held, the one every Open of that owner takes to claim or join a name, so none of the
// owner's connections can claim name again in between or keep a forward on it: afterwards the
// name is free for anyone, its old owner included, through a new forward.
//
// The claim must still be owner's: data.ErrNameTaken if someone else holds it, data.ErrNotFound
// if nobody does; then nothing is closed.
func (r *Registry) ReleaseName(ctx context.Context, name, owner, line string) (int, error) {
	lock := r.ownerLock(owner)
	lock.Lock()
	defer lock.Unlock()
	if err := r.cfg.Names.ReleaseName(ctx, name, owner); err != nil {
		return 0, err
	}
	return r.CloseName(name, line), nil
}
