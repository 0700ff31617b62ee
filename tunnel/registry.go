package tunnel

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/toolgate/toolgate/data"
)

// More errors a forward can get; see also the name errors in names.go.
var (
	ErrTooManyTunnels = errors.New("too many tunnels")
	ErrDuplicate      = errors.New("this connection already forwards that name")
	ErrTunnelGone     = errors.New("tunnel is not connected")
)

// A Dialer opens streams to the developer's local server.
type Dialer interface {
	// DialContext opens one stream. from is the public client's address, passed on for
	// information; it may be the zero value.
	DialContext(ctx context.Context, from netip.AddrPort) (net.Conn, error)
}

// A Conn is the transport behind forwards: one SSH connection, possibly carrying several.
type Conn interface {
	// Probe returns nil if the connection answered a round trip before ctx ended.
	Probe(ctx context.Context) error
	// Evict closes the connection because a newer connection of the same owner needs its names.
	// reason is shown to the user if anyone still reads the terminal.
	Evict(reason string)
	// Notify shows line on the owner's terminal. It never blocks.
	Notify(line string)
}

// NameStore persists who owns which name. data.Store implements it.
type NameStore interface {
	// ClaimName claims or refreshes c.Name for c.Owner; data.ErrNameTaken if someone else holds it.
	ClaimName(ctx context.Context, c data.NameClaim) (data.NameClaim, error)
	// NamesByOwner lists an owner's claims, most recently used first.
	NamesByOwner(ctx context.Context, owner string) ([]data.NameClaim, error)
	// GetName returns a claim, or data.ErrNotFound.
	GetName(ctx context.Context, name string) (data.NameClaim, error)
	// TouchName records a use of a name the owner still holds; data.ErrNotFound if nobody
	// does, data.ErrNameTaken if someone else does. It never claims.
	TouchName(ctx context.Context, name, owner string, lastUsed time.Time, hint string, expiresAt time.Time) error
	// ReleaseName deletes owner's claim on name (see [Registry.ReleaseName]).
	ReleaseName(ctx context.Context, name, owner string) error
}

// Config configures a [Registry]. Fields are read once, by [NewRegistry].
type Config struct {
	// Domain is the tunnel domain: tunnels are served at NAME.Domain. Required.
	Domain string
	// Names persists name ownership. Required.
	Names NameStore
	// Reserved lists labels nobody may claim, in addition to the built-in list
	// ([ReservedNames]). Default none.
	Reserved []string
	// MaxTunnelsPerOwner bounds the live forwards of one owner across all connections.
	// Default 20.
	MaxTunnelsPerOwner int
	// MaxRandomNamesPerOwner bounds how many random names an owner holds. A free one is always
	// reused before a new one is minted, so the bound only bites when that many are live at
	// once. Default 10.
	MaxRandomNamesPerOwner int
	// RandomNameTTL is how long an unused random name stays its owner's (so that reconnecting
	// gets the same URL back). Default 30 days.
	RandomNameTTL time.Duration
	// RequestedNameTTL is how long an unused requested name stays its owner's. Default 90 days;
	// negative means forever.
	RequestedNameTTL time.Duration
	// ProbeTimeout bounds the liveness check of an owner's older connection when a new one
	// wants a name the older one holds. Default 3s.
	ProbeTimeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives tunnel lifecycle events. Default: discard.
	Logger *slog.Logger
	// Shares reads the shares saved for a name, when it goes live and on ReloadShares
	// (see shares.go). Default nil: tunnels are shared only from the ssh command.
	Shares ShareStore
	// Lifecycle is told when a name goes live ("tunnel_open", for its first forward) and
	// when it stops ("tunnel_close", with its last), for the audit log. It must not block.
	// Default nil.
	Lifecycle func(event, name, owner string)
}

// Registry is the table of live tunnels. It is safe for concurrent use.
type Registry struct {
	cfg      Config
	reserved map[string]bool

	ownerLocks [64]sync.Mutex // striped by owner: name choice for one owner is sequential
	seed       maphash.Seed

	mu       sync.RWMutex
	live     map[string]*Tunnel // by name
	perOwner map[string]int     // live forwards per owner
}

// NewRegistry returns an empty registry.
func NewRegistry(cfg Config) (*Registry, error) {
	if cfg.Domain == "" {
		return nil, errors.New("tunnel: Config.Domain is required")
	}
	if cfg.Names == nil {
		return nil, errors.New("tunnel: Config.Names is required")
	}
	if cfg.MaxTunnelsPerOwner <= 0 {
		cfg.MaxTunnelsPerOwner = 20
	}
	if cfg.MaxRandomNamesPerOwner <= 0 {
		cfg.MaxRandomNamesPerOwner = 10
	}
	if cfg.RandomNameTTL <= 0 {
		cfg.RandomNameTTL = 30 * 24 * time.Hour
	}
	if cfg.RequestedNameTTL == 0 {
		cfg.RequestedNameTTL = 90 * 24 * time.Hour
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 3 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &Registry{
		cfg:      cfg,
		reserved: make(map[string]bool),
		seed:     maphash.MakeSeed(),
		live:     make(map[string]*Tunnel),
		perOwner: make(map[string]int),
	}
	for _, n := range defaultReserved {
		r.reserved[n] = true
	}
	for _, n := range cfg.Reserved {
		r.reserved[n] = true
	}
	return r, nil
}

// Domain returns the tunnel domain.
func (r *Registry) Domain() string { return r.cfg.Domain }

// OpenRequest describes a new forward.
type OpenRequest struct {
	// Owner is who opens the forward; names belong to owners.
	Owner string
	// Conn is the connection the forward rides on.
	Conn Conn
	// Dialer opens streams for it.
	Dialer Dialer
	// BindAddr is the bind address the client sent; see [ParseBindAddr].
	BindAddr string
	// LocalHost is the Host header the local server gets unless the tunnel passes the public
	// one, e.g. "localhost:80".
	LocalHost string
	// Hint describes the forward's place in its connection (bind address, port, order), so
	// that a client that reconnects with the same command line gets the same random names
	// for the same forwards.
	Hint string
}

// Forward is one live forward: an endpoint of a [Tunnel].
type Forward struct {
	r       *Registry
	t       *Tunnel
	ep      *endpoint
	closeMu sync.Once
}

// Tunnel returns the tunnel the forward serves.
func (f *Forward) Tunnel() *Tunnel { return f.t }

// Close removes the forward. The tunnel disappears with its last forward; its name stays
// claimed by the owner until the claim expires.
func (f *Forward) Close() {
	f.closeMu.Do(func() { f.r.remove(f.t, f.ep) })
}

// Open registers a forward and decides its name: the requested one if the owner may have it,
// otherwise one of the owner's random names that is free (preferring the one this forward had
// last time), otherwise a new random name.
//
// When a name the owner needs is held by another of the owner's connections, that connection is
// probed; if it does not answer within ProbeTimeout it is evicted and the name handed over. This
// is how a client that reconnects after a network drop gets its URL back before keepalives have
// noticed the old connection is dead.
func (r *Registry) Open(ctx context.Context, req OpenRequest) (*Forward, error) {
	want, err := ParseBindAddr(req.BindAddr, r.cfg.Domain)
	if err != nil {
		return nil, err
	}
	lock := r.ownerLock(req.Owner)
	lock.Lock()
	defer lock.Unlock()

	r.mu.RLock()
	n := r.perOwner[req.Owner]
	r.mu.RUnlock()
	if n >= r.cfg.MaxTunnelsPerOwner {
		return nil, fmt.Errorf("%w: at most %d live tunnels per key", ErrTooManyTunnels, r.cfg.MaxTunnelsPerOwner)
	}

	now := r.cfg.Now()
	var name string
	if want.Name != "" {
		name = want.Name
		if r.reserved[name] {
			return nil, fmt.Errorf("%w: %q is kept for the service itself; pick another name", ErrReservedName, name)
		}
		if t := r.Lookup(name); t != nil && t.hasConn(req.Conn) {
			return nil, fmt.Errorf("%w: %q", ErrDuplicate, name)
		}
		_, err := r.cfg.Names.ClaimName(ctx, data.NameClaim{
			Name: name, Owner: req.Owner, Kind: data.NameRequested, Hint: req.Hint,
			LastUsed: now, ExpiresAt: r.expiry(data.NameRequested, now),
		})
		if errors.Is(err, data.ErrNameTaken) {
			return nil, fmt.Errorf("%w: %q was claimed by another user", ErrNameTaken, name)
		}
		if err != nil {
			return nil, fmt.Errorf("tunnel: claim %q: %w", name, err)
		}
	} else {
		name, err = r.pickRandom(ctx, req, now)
		if err != nil {
			return nil, err
		}
	}

	t, ep, joined, err := r.attach(name, req)
	if err != nil {
		return nil, err
	}
	if joined {
		// Load balancing across the owner's connections is a feature, but a dead member would
		// swallow a share of requests until its keepalive fails. Check the others now.
		go r.evictDead(t, req.Conn)
	}
	if !joined && r.cfg.Shares != nil {
		// After attach, so that a ReloadShares that finds no live tunnel cannot miss this
		// one: its change is in the store before this read (see ReloadShares). Until the
		// load is done the tunnel is shared with nobody, which fails closed.
		if err := r.loadShares(ctx, t); err != nil {
			r.cfg.Logger.Warn("could not read the tunnel's saved shares; it is shared with nobody for now", "name", name, "err", err)
		}
	}
	r.cfg.Logger.Info("tunnel open", "name", name, "owner", req.Owner, "forwards", t.endpointCount())
	if !joined && r.cfg.Lifecycle != nil {
		r.cfg.Lifecycle("tunnel_open", name, req.Owner)
	}
	return &Forward{r: r, t: t, ep: ep}, nil
}

// ownerLock is the lock that makes name choice sequential for owner.
func (r *Registry) ownerLock(owner string) *sync.Mutex {
	return &r.ownerLocks[maphash.String(r.seed, owner)%uint64(len(r.ownerLocks))]
}

func (r *Registry) expiry(kind data.NameKind, now time.Time) time.Time {
	ttl := r.cfg.RandomNameTTL
	if kind == data.NameRequested {
		ttl = r.cfg.RequestedNameTTL
	}
	if ttl < 0 {
		return time.Time{}
	}
	return now.Add(ttl)
}

// pickRandom chooses a random-kind name for req. Called with the owner's lock held.
func (r *Registry) pickRandom(ctx context.Context, req OpenRequest, now time.Time) (string, error) {
	claims, err := r.cfg.Names.NamesByOwner(ctx, req.Owner)
	if err != nil {
		return "", fmt.Errorf("tunnel: names of %s: %w", req.Owner, err)
	}
	var mine []data.NameClaim
	for _, c := range claims {
		if c.Kind == data.NameRandom && (c.ExpiresAt.IsZero() || c.ExpiresAt.After(now)) {
			mine = append(mine, c)
		}
	}
	// The forward's own name from last time first, then most recently used.
	slices.SortStableFunc(mine, func(a, b data.NameClaim) int {
		switch {
		case a.Hint == req.Hint && b.Hint != req.Hint:
			return -1
		case b.Hint == req.Hint && a.Hint != req.Hint:
			return 1
		}
		return 0
	})
	take := func(name string) (string, error) {
		_, err := r.cfg.Names.ClaimName(ctx, data.NameClaim{
			Name: name, Owner: req.Owner, Kind: data.NameRandom, Hint: req.Hint,
			LastUsed: now, ExpiresAt: r.expiry(data.NameRandom, now),
		})
		if err != nil {
			return "", fmt.Errorf("tunnel: claim %q: %w", name, err)
		}
		return name, nil
	}

	// 1. The same forward of the same command line whose holder does not answer: almost
	// certainly this client's own previous connection, dead but not yet timed out. Its URL is
	// the one the user's MCP clients are configured with, so it wins over a free name.
	var sameHint, busy []*Tunnel
	for _, c := range mine {
		if t := r.Lookup(c.Name); t != nil && !t.hasConn(req.Conn) {
			if c.Hint == req.Hint {
				sameHint = append(sameHint, t)
			} else {
				busy = append(busy, t)
			}
		}
	}
	if len(sameHint) > 0 {
		if t := r.firstDead(ctx, sameHint); t != nil {
			r.evictAll(t, "this key connected again; the new connection took over "+t.Host())
			return take(t.Name())
		}
	}
	// 2. A free name of the owner's, this forward's own first.
	for _, c := range mine {
		if r.Lookup(c.Name) == nil {
			return take(c.Name)
		}
	}
	// 3. Every name is live: take over one whose holders are all dead.
	if len(busy) > 0 {
		if t := r.firstDead(ctx, busy); t != nil {
			r.evictAll(t, "this key connected again; the new connection took over "+t.Host())
			return take(t.Name())
		}
	}
	if len(mine) >= r.cfg.MaxRandomNamesPerOwner {
		return "", fmt.Errorf("%w: all %d of this key's names are in use", ErrTooManyTunnels, len(mine))
	}
	for range 8 {
		name, err := RandomName()
		if err != nil {
			return "", err
		}
		_, err = r.cfg.Names.ClaimName(ctx, data.NameClaim{
			Name: name, Owner: req.Owner, Kind: data.NameRandom, Hint: req.Hint,
			LastUsed: now, ExpiresAt: r.expiry(data.NameRandom, now),
		})
		if errors.Is(err, data.ErrNameTaken) {
			continue // 43 bits make this rare; try another
		}
		if err != nil {
			return "", fmt.Errorf("tunnel: claim %q: %w", name, err)
		}
		return name, nil
	}
	return "", errors.New("tunnel: could not find a free random name")
}

// firstDead probes the connections behind tunnels (all at once) and returns the first tunnel,
// in the given order, all of whose connections failed the probe.
func (r *Registry) firstDead(ctx context.Context, ts []*Tunnel) *Tunnel {
	var conns []Conn
	for _, t := range ts {
		for _, ep := range t.endpoints() {
			if !slices.Contains(conns, ep.conn) {
				conns = append(conns, ep.conn)
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ProbeTimeout)
	defer cancel()
	dead := make([]bool, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() { dead[i] = c.Probe(ctx) != nil })
	}
	wg.Wait()
	for _, t := range ts {
		eps := t.endpoints()
		allDead := len(eps) > 0
		for _, ep := range eps {
			if i := slices.Index(conns, ep.conn); i < 0 || !dead[i] { // i < 0: joined since
				allDead = false
				break
			}
		}
		if allDead {
			return t
		}
	}
	return nil
}

// evictDead probes the connections serving t other than except, and evicts those that fail.
func (r *Registry) evictDead(t *Tunnel, except Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.ProbeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, ep := range t.endpoints() {
		if ep.conn == except {
			continue
		}
		wg.Go(func() {
			if err := ep.conn.Probe(ctx); err != nil {
				r.cfg.Logger.Info("evicting unresponsive connection", "name", t.Name(), "err", err)
				ep.conn.Evict("this connection stopped answering; " + t.Host() + " is served by the owner's newer connection")
				r.remove(t, ep)
			}
		})
	}
	wg.Wait()
}

// evictAll evicts every connection serving t and removes them from it at once, without waiting
// for their connections to finish closing.
func (r *Registry) evictAll(t *Tunnel, reason string) {
	for _, ep := range t.endpoints() {
		ep.conn.Evict(reason)
		r.remove(t, ep)
	}
}

func (r *Registry) attach(name string, req OpenRequest) (t *Tunnel, ep *endpoint, joined bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t = r.live[name]
	if t != nil && t.owner != req.Owner {
		// The claim said the owner may have it, so this is a claim released and taken while
		// the old tunnel lived on. Refuse rather than mix two owners in one pool.
		return nil, nil, false, fmt.Errorf("%w: %q is still served by its previous owner", ErrNameTaken, name)
	}
	if t == nil {
		t = &Tunnel{
			name:  name,
			host:  name + "." + r.cfg.Domain,
			owner: req.Owner,
		}
		t.localHost.Store(&req.LocalHost)
		r.live[name] = t
	} else {
		joined = true
	}
	ep = &endpoint{conn: req.Conn, dialer: req.Dialer}
	t.add(ep)
	r.perOwner[req.Owner]++
	return t, ep, joined, nil
}

// remove takes ep out of t and reports whether it was there (a forward is removed once, by
// whichever of its Close, an eviction or CloseName comes first).
func (r *Registry) remove(t *Tunnel, ep *endpoint) bool {
	r.mu.Lock()
	if !t.del(ep) {
		r.mu.Unlock()
		return false
	}
	if r.perOwner[t.owner]--; r.perOwner[t.owner] <= 0 {
		delete(r.perOwner, t.owner)
	}
	last := t.endpointCount() == 0
	if last && r.live[t.name] == t {
		delete(r.live, t.name)
	}
	r.mu.Unlock()
	// A connection serves a tunnel through one forward at most (ErrDuplicate), so its share=
	// ends with this one.
	t.dropCommandShares(ep.conn)
	if !last {
		return true
	}
	r.cfg.Logger.Info("tunnel closed", "name", t.name, "owner", t.owner)
	if r.cfg.Lifecycle != nil {
		r.cfg.Lifecycle("tunnel_close", t.name, t.owner)
	}
	// Remember when the name was last used, so it expires RandomNameTTL after this, not after
	// it was opened. A failed write only makes the name expire early. It is a touch, not a
	// claim: a name released meanwhile (by the operator, between the read and the write) must
	// stay released rather than go back to the owner of the forward that just closed.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := r.cfg.Names.GetName(ctx, t.name)
	if err != nil || c.Owner != t.owner {
		return true
	}
	now := r.cfg.Now()
	err = r.cfg.Names.TouchName(ctx, t.name, t.owner, now, c.Hint, r.expiry(c.Kind, now))
	if err != nil && !errors.Is(err, data.ErrNotFound) && !errors.Is(err, data.ErrNameTaken) {
		r.cfg.Logger.Warn("could not record name use", "name", t.name, "err", err)
	}
	return true
}

// Lookup returns the live tunnel with that name, or nil.
func (r *Registry) Lookup(name string) *Tunnel {
	r.mu.RLock()
	t := r.live[name]
	r.mu.RUnlock()
	return t
}

// Names returns the names of the live tunnels, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	names := make([]string, 0, len(r.live))
	for n := range r.live {
		names = append(names, n)
	}
	r.mu.RUnlock()
	slices.Sort(names)
	return names
}

// Len returns the number of live tunnels.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.live)
}

// Known reports whether name is a live tunnel or a name someone holds: the names toolgate is
// willing to obtain a certificate for.
func (r *Registry) Known(ctx context.Context, name string) bool {
	if r.Lookup(name) != nil {
		return true
	}
	c, err := r.cfg.Names.GetName(ctx, name)
	return err == nil && (c.ExpiresAt.IsZero() || c.ExpiresAt.After(r.cfg.Now()))
}

// Owner returns who holds name: the live tunnel's owner, or the owner of an unexpired claim.
func (r *Registry) Owner(ctx context.Context, name string) (string, bool) {
	if t := r.Lookup(name); t != nil {
		return t.Owner(), true
	}
	c, err := r.cfg.Names.GetName(ctx, name)
	if err != nil || (!c.ExpiresAt.IsZero() && !c.ExpiresAt.After(r.cfg.Now())) {
		return "", false
	}
	return c.Owner, true
}

// InUse reports whether name is live; data's expiry sweep uses it to keep live names.
func (r *Registry) InUse(name string) bool { return r.Lookup(name) != nil }
