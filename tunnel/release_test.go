package tunnel

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/toolgate/toolgate/data"
)

func (c *fakeConn) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.notes)
}

func (r *Registry) liveForwards(owner string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.perOwner[owner]
}

// TestCloseName: every forward of the name goes, on every connection of the pool; each of
// those connections is told once and stays up; other forwards stay.
func TestCloseName(t *testing.T) {
	r := newTestRegistry(t, nil)
	c1, c2 := &fakeConn{}, &fakeConn{}
	notes1 := mustOpen(t, r, "alice", c1, "notes", "notes:80#1")
	other := mustOpen(t, r, "alice", c1, "other", "other:80#2")
	mustOpen(t, r, "alice", c2, "notes", "notes:80#1") // the same owner's second connection joins
	const line = "toolgate: the operator released the name notes; this forward is closed"

	if n := r.CloseName("notes", line); n != 2 {
		t.Fatalf("CloseName closed %d forwards, want 2", n)
	}
	if r.Lookup("notes") != nil {
		t.Fatal("the name is still live")
	}
	if r.Lookup("other") != other.Tunnel() {
		t.Fatal("the connection's other forward went too")
	}
	if n := r.liveForwards("alice"); n != 1 {
		t.Fatalf("alice has %d live forwards counted, want 1", n)
	}
	for i, c := range []*fakeConn{c1, c2} {
		if got := c.lines(); !slices.Equal(got, []string{line}) {
			t.Errorf("connection %d was shown %q, want the line once", i+1, got)
		}
		if c.wasEvicted() {
			t.Errorf("connection %d was closed", i+1)
		}
	}
	if n := r.CloseName("notes", line); n != 0 {
		t.Fatalf("CloseName of a name no longer live closed %d", n)
	}
	// The forward's own close, when its connection ends later, changes nothing.
	notes1.Close()
	if n := r.liveForwards("alice"); n != 1 {
		t.Fatalf("after the closed forward's Close alice has %d live forwards counted, want 1", n)
	}
}

// TestReleaseName: the claim goes and the live forwards with it; another owner may then claim
// and serve the name, and the old forward's late Close leaves the new tunnel alone. A release
// in the wrong owner's name, or of nobody's name, closes nothing.
func TestReleaseName(t *testing.T) {
	r := newTestRegistry(t, nil)
	ctx := context.Background()
	c := &fakeConn{}
	old := mustOpen(t, r, "alice", c, "notes", "notes:80#1")
	const line = "toolgate: the operator released the name notes; this forward is closed"

	if n, err := r.ReleaseName(ctx, "notes", "bob", line); !errors.Is(err, data.ErrNameTaken) || n != 0 {
		t.Fatalf("ReleaseName in bob's name: %d, %v; want ErrNameTaken", n, err)
	}
	if n, err := r.ReleaseName(ctx, "nobody", "alice", line); !errors.Is(err, data.ErrNotFound) || n != 0 {
		t.Fatalf("ReleaseName of an unclaimed name: %d, %v; want ErrNotFound", n, err)
	}
	if r.Lookup("notes") != old.Tunnel() || len(c.lines()) != 0 {
		t.Fatal("a refused release touched the live tunnel")
	}

	if n, err := r.ReleaseName(ctx, "notes", "alice", line); err != nil || n != 1 {
		t.Fatalf("ReleaseName: %d, %v", n, err)
	}
	if _, err := r.cfg.Names.GetName(ctx, "notes"); !errors.Is(err, data.ErrNotFound) {
		t.Fatalf("the claim is still there: %v", err)
	}
	if r.Lookup("notes") != nil || !slices.Equal(c.lines(), []string{line}) {
		t.Fatalf("live after release: %v; terminal %q", r.Lookup("notes") != nil, c.lines())
	}

	bob := mustOpen(t, r, "bob", &fakeConn{}, "notes", "notes:80#1")
	old.Close()
	if r.Lookup("notes") != bob.Tunnel() {
		t.Fatal("the old forward's Close took bob's tunnel")
	}
	if cl, err := r.cfg.Names.GetName(ctx, "notes"); err != nil || cl.Owner != "bob" {
		t.Fatalf("after the old forward's Close the claim is %+v, %v; want bob's", cl, err)
	}
}

// releasingStore releases a name right after remove reads its claim, as an operator's release
// landing between the read and the write of the last forward's close would.
type releasingStore struct {
	*data.Store
	armed atomic.Bool
}

func (s *releasingStore) GetName(ctx context.Context, name string) (data.NameClaim, error) {
	c, err := s.Store.GetName(ctx, name)
	if s.armed.CompareAndSwap(true, false) {
		if rerr := s.Store.ReleaseName(ctx, name, ""); rerr != nil {
			panic(rerr)
		}
	}
	return c, err
}

// TestLastCloseDoesNotReclaim: the last forward's close records the name's use, but never
// claims it back once released.
func TestLastCloseDoesNotReclaim(t *testing.T) {
	var st *releasingStore
	r := newTestRegistry(t, func(cfg *Config) {
		st = &releasingStore{Store: cfg.Names.(*data.Store)}
		cfg.Names = st
	})
	f := mustOpen(t, r, "alice", &fakeConn{}, "notes", "notes:80#1")
	st.armed.Store(true)
	f.Close()
	if c, err := st.Store.GetName(context.Background(), "notes"); !errors.Is(err, data.ErrNotFound) {
		t.Fatalf("a name released while its last forward closed is claimed again: %+v, %v", c, err)
	}
}
