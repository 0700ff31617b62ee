package tunnel

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/toolgate/toolgate/data"
)

// pausingShares is a ShareStore over a real store whose first read can be held after it has
// read, to put a ReloadShares between a load's read and its publishing.
type pausingShares struct {
	*data.Store
	mu      sync.Mutex
	err     error
	pause   bool
	read    chan struct{} // closed when the paused read has read
	release chan struct{} // the paused read returns when this is closed
}

func (p *pausingShares) GetNameShares(ctx context.Context, name string) (data.NameShares, error) {
	sh, err := p.Store.GetNameShares(ctx, name)
	p.mu.Lock()
	pause, injected := p.pause, p.err
	p.pause = false
	p.mu.Unlock()
	if pause {
		close(p.read)
		<-p.release
	}
	if injected != nil {
		return data.NameShares{}, injected
	}
	return sh, err
}

func newShareRegistry(t *testing.T) (*Registry, *pausingShares) {
	t.Helper()
	st, err := data.Open(data.Config{Path: filepath.Join(t.TempDir(), "t.db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ps := &pausingShares{Store: st}
	r, err := NewRegistry(Config{Domain: "toolgate.localhost", Names: st, Shares: ps, ProbeTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r, ps
}

// TestSavedAndCommandShares: a tunnel is shared with the union of its saved shares and its
// ssh command's; saved ones apply when the name goes live, on every reconnect, and at once
// after ReloadShares; the command's end with the tunnel.
func TestSavedAndCommandShares(t *testing.T) {
	r, st := newShareRegistry(t)
	ctx := context.Background()
	conn := &fakeConn{}
	f := mustOpen(t, r, "alice", conn, "notes", "h")
	tun := f.Tunnel()
	if got := tun.Shares(); got != nil {
		t.Fatalf("a new tunnel is shared with %q", got)
	}
	if _, err := st.ShareName(ctx, "notes", "alice", []string{"group:eng", "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	if got := tun.Shares(); got != nil {
		t.Fatalf("a saved change applied before ReloadShares: %q", got)
	}
	if live, err := r.ReloadShares(ctx, "notes"); err != nil || live != tun {
		t.Fatalf("ReloadShares = %v, %v; want the live tunnel", live, err)
	}
	tun.SetCommandShares(conn, []string{"bob@example.com", "ada@example.com"})
	check := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}
	check("union", tun.Shares(), []string{"ada@example.com", "bob@example.com", "group:eng"})
	check("saved", tun.SavedShares(), []string{"ada@example.com", "group:eng"})
	check("command", tun.CommandShares(), []string{"ada@example.com", "bob@example.com"})

	// Reconnect: the saved shares come back, the command's do not.
	f.Close()
	if live, err := r.ReloadShares(ctx, "notes"); err != nil || live != nil {
		t.Fatalf("ReloadShares of a closed tunnel = %v, %v", live, err)
	}
	conn = &fakeConn{}
	f = mustOpen(t, r, "alice", conn, "notes", "h")
	check("after reconnect", f.Tunnel().Shares(), []string{"ada@example.com", "group:eng"})

	// Unsharing everything saved leaves nobody.
	if _, err := st.UnshareName(ctx, "notes", "", []string{"ada@example.com", "group:eng"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReloadShares(ctx, "notes"); err != nil {
		t.Fatal(err)
	}
	check("after unshare", f.Tunnel().Shares(), nil)

	// A store that cannot be read drops the saved part (it may hold a revoked share) and
	// keeps the command's.
	if _, err := st.ShareName(ctx, "notes", "", []string{"ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReloadShares(ctx, "notes"); err != nil {
		t.Fatal(err)
	}
	f.Tunnel().SetCommandShares(conn, []string{"bob@example.com"})
	st.mu.Lock()
	st.err = errors.New("disk on fire")
	st.mu.Unlock()
	if _, err := r.ReloadShares(ctx, "notes"); err == nil {
		t.Fatal("ReloadShares hid the store's error")
	}
	check("after a failed read", f.Tunnel().Shares(), []string{"bob@example.com"})
}

// TestSharesLoadRacesReload: a tunnel going live reads its saved shares while an operator
// removes one and calls ReloadShares. Whatever the interleaving, the removal holds: the
// reload waits for the load it raced with, and then reads the store itself.
func TestSharesLoadRacesReload(t *testing.T) {
	r, st := newShareRegistry(t)
	ctx := context.Background()
	mustOpen(t, r, "alice", &fakeConn{}, "notes", "h").Close() // claim the name
	if _, err := st.ShareName(ctx, "notes", "alice", []string{"ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.pause, st.read, st.release = true, make(chan struct{}), make(chan struct{})
	st.mu.Unlock()

	opened := make(chan *Forward)
	go func() {
		f, err := open(t, r, "alice", &fakeConn{}, "notes", "h")
		if err != nil {
			t.Error(err)
		}
		opened <- f
	}()
	<-st.read // the load has read [ada] and not yet published it
	if _, err := st.UnshareName(ctx, "notes", "", []string{"ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	reloaded := make(chan error)
	go func() {
		_, err := r.ReloadShares(ctx, "notes")
		reloaded <- err
	}()
	time.Sleep(50 * time.Millisecond) // give a reload that does not wait the time to finish
	close(st.release)
	f := <-opened
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	if got := f.Tunnel().Shares(); got != nil {
		t.Fatalf("a removed share is in force: %q", got)
	}
}

// TestSharesSavedForAnotherOwner: a list the store returns for someone other than the live
// tunnel's owner does not apply (the claim changed hands under a live tunnel).
func TestSharesSavedForAnotherOwner(t *testing.T) {
	fs := fakeShares{"notes": {Name: "notes", Owner: "bob", With: []string{"ada@example.com"}}}
	r := newTestRegistry(t, func(c *Config) { c.Shares = fs })
	f := mustOpen(t, r, "alice", &fakeConn{}, "notes", "h")
	if got := f.Tunnel().Shares(); got != nil {
		t.Fatalf("alice's tunnel took bob's shares: %q", got)
	}
}

type fakeShares map[string]data.NameShares

func (f fakeShares) GetNameShares(_ context.Context, name string) (data.NameShares, error) {
	if sh, ok := f[name]; ok {
		return sh, nil
	}
	return data.NameShares{}, data.ErrNotFound
}

// TestCommandSharesPerConnection: a tunnel served by two of its owner's connections is shared
// with what each one's ssh command says, and what one said ends with its forward, not with
// the tunnel.
func TestCommandSharesPerConnection(t *testing.T) {
	r, _ := newShareRegistry(t)
	a, b := &fakeConn{}, &fakeConn{}
	fa := mustOpen(t, r, "alice", a, "notes", "h")
	fb := mustOpen(t, r, "alice", b, "notes", "h")
	tun := fa.Tunnel()
	if fb.Tunnel() != tun {
		t.Fatal("the second connection got a tunnel of its own")
	}
	tun.SetCommandShares(a, []string{"ada@example.com"})
	tun.SetCommandShares(b, []string{"bob@example.com"})
	if got := tun.Shares(); !slices.Equal(got, []string{"ada@example.com", "bob@example.com"}) {
		t.Fatalf("shared with %q; want both connections' lists", got)
	}
	fa.Close()
	if got := tun.Shares(); !slices.Equal(got, []string{"bob@example.com"}) {
		t.Fatalf("after a's forward closed: shared with %q; want only b's", got)
	}
	tun.SetCommandShares(b, nil)
	if got := tun.Shares(); got != nil {
		t.Fatalf("after b's list was emptied: shared with %q", got)
	}
}
