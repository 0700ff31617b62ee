package web

import (
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/toolgate/toolgate/authz"
)

// RequestLimits bounds how fast, and how much at once, one client address and one signed-in
// user may ask of tunnels (SPEC §2). Past a limit the client gets 429 with Retry-After, the
// owner's terminal shows the refusal, and the audit log records it through the refusal gate
// (frontrefusal.go), so a flood costs a few records, not one each. A zero field is no limit.
//
// Addresses are counted as authz.AddrKey does: IPv4 by address, IPv6 by /64.
type RequestLimits struct {
	// RatePerIP is requests a second from one client address, to all tunnels together, in
	// bursts of up to twice that (at least 1). Checked before the token, so that a flood of
	// bad tokens costs no token checks.
	RatePerIP float64
	// RatePerUser is the same per signed-in user, whatever their clients and addresses.
	// Only with Auth.
	RatePerUser float64
	// StreamsPerIP is requests in flight at once from one client address; an open event
	// stream counts for as long as it is open.
	StreamsPerIP int
	// StreamsPerUser is the same per signed-in user. Only with Auth.
	StreamsPerUser int
}

// maxRateKeys bounds each rate limiter's table (see authz.RateLimiter).
const maxRateKeys = 100_000

// requestLimiter applies RequestLimits. Its zero value applies none.
type requestLimiter struct {
	cfg                    RequestLimits
	ipRate, userRate       *authz.RateLimiter // nil: no limit
	ipStreams, userStreams *streamCounter     // nil: no limit
}

func newRequestLimiter(cfg RequestLimits) *requestLimiter {
	l := &requestLimiter{cfg: cfg}
	if cfg.RatePerIP > 0 {
		l.ipRate = authz.NewRateLimiter(cfg.RatePerIP, burstFor(cfg.RatePerIP), maxRateKeys)
	}
	if cfg.RatePerUser > 0 {
		l.userRate = authz.NewRateLimiter(cfg.RatePerUser, burstFor(cfg.RatePerUser), maxRateKeys)
	}
	if cfg.StreamsPerIP > 0 {
		l.ipStreams = &streamCounter{max: cfg.StreamsPerIP, n: make(map[string]int)}
	}
	if cfg.StreamsPerUser > 0 {
		l.userStreams = &streamCounter{max: cfg.StreamsPerUser, n: make(map[string]int)}
	}
	return l
}

func burstFor(perSecond float64) int { return max(1, int(math.Ceil(2*perSecond))) }

// limitRefusal is a request refused by a limit: what the client is told, and the rule the
// terminal line and the audit record name.
type limitRefusal struct {
	rule       string
	message    string
	retryAfter time.Duration
}

// admission is a request counted as in flight under a key; release ends it. The zero value
// counts nothing. (A value, not a closure: admitting costs no allocation.)
type admission struct {
	sc  *streamCounter
	key string
}

func (a admission) release() {
	if a.sc != nil {
		a.sc.release(a.key)
	}
}

// limitKind is what admit says of one kind of key.
type limitKind struct {
	rate                  float64
	who                   string // "from " or "by "
	rateRule, streamsRule string
}

// admit counts one request under key against a rate and a stream limit (either may be nil).
// It returns the admission to release when the request is done, or why not; text is the key
// as the client is told it.
func admit(rl *authz.RateLimiter, sc *streamCounter, key, text string, now time.Time, kind limitKind) (admission, *limitRefusal) {
	if rl != nil {
		if ok, wait := rl.Allow(key, now); !ok {
			return admission{}, &limitRefusal{rule: kind.rateRule, retryAfter: wait, message: fmt.Sprintf(
				"Too many requests %s%s: at most %s a second. Retry in %ds.", kind.who, text,
				strconv.FormatFloat(kind.rate, 'f', -1, 64), retrySeconds(wait))}
		}
	}
	if sc == nil {
		return admission{}, nil
	}
	if !sc.acquire(key) {
		return admission{}, &limitRefusal{rule: kind.streamsRule, retryAfter: time.Second, message: fmt.Sprintf(
			"Too many requests %s%s at once: at most %d, open event streams included.", kind.who, text, sc.max)}
	}
	return admission{sc, key}, nil
}

// addr admits a request from the client address from (text: the address as shown).
func (l *requestLimiter) addr(from netip.Addr, text string, now time.Time) (admission, *limitRefusal) {
	if l.ipRate == nil && l.ipStreams == nil {
		return admission{}, nil
	}
	key := text // an IPv4 address's text is its key, and costs nothing more
	if from.Unmap().Is6() || !from.IsValid() {
		key = authz.AddrKey(from)
	}
	return admit(l.ipRate, l.ipStreams, key, text, now,
		limitKind{l.cfg.RatePerIP, "from ", "rate_per_ip", "streams_per_ip"})
}

// user admits a request by the signed-in user id.
func (l *requestLimiter) user(id string, now time.Time) (admission, *limitRefusal) {
	if l.userRate == nil && l.userStreams == nil {
		return admission{}, nil
	}
	return admit(l.userRate, l.userStreams, id, "your account", now,
		limitKind{l.cfg.RatePerUser, "by ", "rate_per_user", "streams_per_user"})
}

// refuseForLimit answers a request refused by a limit: 429 with Retry-After in whole seconds
// (at least 1). It is a denial like any other on the terminal, and a refusal in the audit
// log, coalesced by the refusal gate when it floods.
func (f *Front) refuseForLimit(w http.ResponseWriter, r *http.Request, tr *tunnelRequest, lr *limitRefusal) {
	tr.info.refused, tr.info.decision, tr.info.rule = true, "deny", lr.rule
	w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(lr.retryAfter)))
	writeError(w, r, http.StatusTooManyRequests, lr.rule, lr.message)
}

// retrySeconds is a wait in whole seconds, rounded up, at least 1: Retry-After's unit.
func retrySeconds(d time.Duration) int { return max(1, int(math.Ceil(d.Seconds()))) }

// streamCounter counts requests in flight per key. Its table holds only keys with a request in
// flight, so it is bounded by the server's own concurrency.
type streamCounter struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

// acquire counts one more request under key, unless key has max already.
func (c *streamCounter) acquire(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] >= c.max {
		return false
	}
	c.n[key]++
	return true
}

// release counts one request under key as done.
func (c *streamCounter) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] <= 1 {
		delete(c.n, key)
		return
	}
	c.n[key]--
}
