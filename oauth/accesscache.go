package oauth

import (
	"sync"
	"time"
)

// accessCache remembers validated access tokens, so that the token step of a proxied request
// is a map lookup instead of two database reads and three JSON decodes. An entry is trusted
// only while the store's OAuthGeneration is what it was before the entry was read: any
// revocation, rotation or user change anywhere empties the cache in effect, which is cheap
// because those are rare next to requests. Expiry is checked on every hit.
//
// Keys are whole tokens, not signatures: only a token that passed the HMAC check once is
// ever stored, so a hit needs no HMAC, and a forged token never hits.
type accessCache struct {
	mu      sync.RWMutex
	entries map[string]cachedAccess
	max     int
}

type cachedAccess struct {
	access *Access
	gen    uint64
}

func newAccessCache(max int) *accessCache {
	return &accessCache{entries: make(map[string]cachedAccess), max: max}
}

func (c *accessCache) get(token string, gen uint64, now time.Time) (*Access, bool) {
	c.mu.RLock()
	e, ok := c.entries[token]
	c.mu.RUnlock()
	if !ok || e.gen != gen || !now.Before(e.access.ExpiresAt) {
		return nil, false
	}
	return e.access, true
}

func (c *accessCache) put(token string, gen uint64, a *Access) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		// Dropping everything is crude but bounded and rare: the cache holds the tokens of
		// the clients active in the last few minutes, far fewer than max.
		clear(c.entries)
	}
	c.entries[token] = cachedAccess{access: a, gen: gen}
}
