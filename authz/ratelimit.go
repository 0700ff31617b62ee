package authz

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimiter is a token bucket per key: a client address (see [AddrKey]) or a user. It bounds
// how often one of them may ask for something (requests to tunnels, dynamic registrations),
// and says how long to wait when the answer is no, for a Retry-After header.
//
// Its table forgets a key once its bucket is full again, which is indistinguishable from a new
// key, and never holds more than MaxKeys: past that, new keys share one overflow bucket, so a
// flood from many addresses slows newcomers instead of growing memory.
type RateLimiter struct {
	limit   rate.Limit
	burst   int
	maxKeys int

	mu        sync.Mutex
	entries   map[string]*rate.Limiter
	overflow  *rate.Limiter // shared by new keys while entries is full
	lastPrune time.Time
}

// NewRateLimiter returns a limiter allowing perSecond requests a second per key, with bursts
// of up to burst (at least 1), for at most maxKeys keys at once (at least 1).
func NewRateLimiter(perSecond float64, burst, maxKeys int) *RateLimiter {
	burst, maxKeys = max(burst, 1), max(maxKeys, 1)
	return &RateLimiter{
		limit: rate.Limit(perSecond), burst: burst, maxKeys: maxKeys,
		entries:  make(map[string]*rate.Limiter),
		overflow: rate.NewLimiter(rate.Limit(perSecond), burst),
	}
}

// Allow takes one token from key's bucket at now. When none is left it reports how long until
// one is.
func (l *RateLimiter) Allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastPrune) >= time.Minute || len(l.entries) >= l.maxKeys {
		l.prune(now)
	}
	lim, known := l.entries[key]
	if !known {
		if len(l.entries) >= l.maxKeys {
			lim = l.overflow
		} else {
			lim = rate.NewLimiter(l.limit, l.burst)
			l.entries[key] = lim
		}
	}
	if lim.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - lim.TokensAt(now)
	return false, time.Duration(missing / float64(l.limit) * float64(time.Second))
}

// Keys is how many keys the table holds now.
func (l *RateLimiter) Keys() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// prune drops limiters whose bucket is full again. At most once a minute, unless the table is
// full, and then at most once a second: a full table must not be swept on every request.
func (l *RateLimiter) prune(now time.Time) {
	if len(l.entries) >= l.maxKeys && now.Sub(l.lastPrune) < time.Second {
		return
	}
	l.lastPrune = now
	for k, lim := range l.entries {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.entries, k)
		}
	}
}

// AddrKey is the key limits count a client address under: the address for IPv4, its /64 for
// IPv6, since one host usually holds a whole /64 and can pick any address in it.
func AddrKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
