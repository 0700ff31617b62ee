package authz

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

func TestRateLimiter(t *testing.T) {
	l := NewRateLimiter(2, 3, 100)
	now := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := l.Allow("a", now); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, wait := l.Allow("a", now)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("past the burst: ok=%v, retry after %v, want 500ms", ok, wait)
	}
	if ok, _ := l.Allow("b", now); !ok {
		t.Fatal("another key shares a's bucket")
	}
	if ok, _ := l.Allow("a", now.Add(500*time.Millisecond)); !ok {
		t.Fatal("a token did not come back after the wait")
	}
}

func TestRateLimiterBounded(t *testing.T) {
	l := NewRateLimiter(1, 1, 4)
	now := time.Unix(1000, 0)
	for i := range 4 {
		if ok, _ := l.Allow("k"+strconv.Itoa(i), now); !ok {
			t.Fatalf("key %d refused", i)
		}
	}
	// The table is full of empty buckets: new keys share the overflow bucket.
	if ok, _ := l.Allow("new1", now); !ok {
		t.Fatal("first overflow request refused")
	}
	if ok, wait := l.Allow("new2", now); ok || wait <= 0 {
		t.Fatalf("second overflow request: ok=%v wait=%v", ok, wait)
	}
	if n := l.Keys(); n > 4 {
		t.Fatalf("table grew to %d", n)
	}
	// Once the buckets refill they are pruned and new keys get their own.
	now = now.Add(2 * time.Second)
	if ok, _ := l.Allow("new3", now); !ok {
		t.Fatal("request after refill refused")
	}
	if n := l.Keys(); n != 1 {
		t.Errorf("table has %d entries after pruning, want 1", n)
	}
}

func TestAddrKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":          "203.0.113.7",
		"::ffff:203.0.113.7":   "203.0.113.7",
		"2001:db8:1:2::99":     "2001:db8:1:2::/64",
		"2001:db8:1:2:a:b:c:d": "2001:db8:1:2::/64",
	} {
		if got := AddrKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("AddrKey(%s) = %s, want %s", in, got, want)
		}
	}
}
