package web

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/data"
)

// gateClock drives a refusalGate: the time, and the timer the gate arms.
type gateClock struct {
	now   time.Time
	timer func() // the function the gate's pending timer will call; nil: none
	due   time.Time
}

func (c *gateClock) afterFunc(d time.Duration, f func()) {
	c.timer, c.due = f, c.now.Add(d)
}

// advance moves the clock by d and fires the timer if it is due.
func (c *gateClock) advance(d time.Duration) {
	c.now = c.now.Add(d)
	if c.timer != nil && !c.now.Before(c.due) {
		f := c.timer
		c.timer = nil
		f()
	}
}

func newTestGate(lim refusalLimits) (*refusalGate, *gateClock, *auditSink) {
	c := &gateClock{now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	lim.Now, lim.AfterFunc = func() time.Time { return c.now }, c.afterFunc
	sink := &auditSink{}
	return newRefusalGate(lim, sink.Append), c, sink
}

func refusal(tunnel, ip, reason string) data.AuditRecord {
	return data.AuditRecord{Kind: "mcp", Tunnel: tunnel, Owner: "u_owner", Decision: DecisionUnauthenticated, Rule: reason,
		SourceIP: ip, Status: 401, Detail: "POST /mcp"}
}

// summary is a coalesced record, reduced to what the tests compare.
type summary struct {
	tunnel, source, rule, detail string
}

func summaries(recs []data.AuditRecord) (individual int, out []summary) {
	for _, r := range recs {
		if strings.HasPrefix(r.Detail, "coalesced: ") {
			out = append(out, summary{r.Tunnel, r.SourceIP, r.Rule, r.Detail})
		} else {
			individual++
		}
	}
	return individual, out
}

func TestRefusalGate(t *testing.T) {
	lim := refusalLimits{Window: time.Minute, PerSource: 3, Total: 5, Summaries: 2, Sources: 4}
	type send struct {
		n                  int
		tunnel, ip, reason string
	}
	for _, tc := range []struct {
		name           string
		sends          []send
		wantIndividual int
		wantSummaries  []string // "tunnel source rule: count"
	}{
		{"a few, all recorded", []send{{2, "a", "192.0.2.1", "no_token"}, {2, "a", "192.0.2.2", "no_token"}}, 4, nil},
		{"one source over its limit", []send{{10, "a", "192.0.2.1", "no_token"}}, 3,
			[]string{"a 192.0.2.1 no_token: 7"}},
		{"reasons counted apart", []send{{4, "a", "192.0.2.1", "no_token"}, {4, "a", "192.0.2.1", "invalid_token"}}, 5,
			[]string{"a 192.0.2.1 invalid_token: 2", "a 192.0.2.1 no_token: 1"}},
		{"all sources over the total", []send{{2, "a", "192.0.2.1", "no_token"}, {2, "a", "192.0.2.2", "no_token"},
			{2, "a", "192.0.2.3", "no_token"}}, 5, []string{"a 192.0.2.3 no_token: 1"}},
		{"an IPv6 /64 is one source", []send{{2, "a", "2001:db8:1:2::1", "no_token"}, {2, "a", "2001:db8:1:2:ffff::9", "no_token"}}, 3,
			[]string{"a 2001:db8:1:2::/64 no_token: 1"}},
		{"the rest in one record", []send{{5, "a", "192.0.2.1", "no_token"}, {6, "a", "192.0.2.2", "no_token"},
			{4, "b", "192.0.2.3", "no_token"}, {4, "b", "192.0.2.4", "no_token"}}, 5,
			[]string{"a 192.0.2.2 no_token: 4", "b 192.0.2.3 no_token: 4", " - coalesced: 6 more refused requests from 2 other sources"}},
		{"sources past the limit", []send{{1, "a", "192.0.2.1", "no_token"}, {1, "a", "192.0.2.2", "no_token"},
			{1, "a", "192.0.2.3", "no_token"}, {1, "a", "192.0.2.4", "no_token"}, {3, "a", "192.0.2.5", "no_token"},
			{2, "a", "192.0.2.6", "no_token"}}, 4,
			[]string{"a - coalesced: 5 more refused requests from sources past the 4 a window tells apart"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, clock, sink := newTestGate(lim)
			for _, s := range tc.sends {
				for range s.n {
					r := refusal(s.tunnel, s.ip, s.reason)
					g.record(r, s.ip)
					clock.advance(time.Second)
				}
			}
			if clock.timer == nil && tc.wantSummaries != nil {
				t.Fatal("refusals were counted but no timer is armed")
			}
			clock.advance(time.Minute) // the window ends: its summaries
			individual, sums := summaries(sink.take())
			if individual != tc.wantIndividual {
				t.Errorf("%d records one by one, want %d", individual, tc.wantIndividual)
			}
			if len(sums) != len(tc.wantSummaries) {
				t.Fatalf("summaries %+v, want %v", sums, tc.wantSummaries)
			}
			for i, want := range tc.wantSummaries {
				s := sums[i]
				got := fmt.Sprintf("%s %s %s: ", s.tunnel, s.source, s.rule)
				if head, rest, ok := strings.Cut(want, " - "); ok {
					if s.tunnel != strings.TrimSpace(head) || s.source != "" || s.rule != "coalesced" || !strings.HasPrefix(s.detail, rest) {
						t.Errorf("summary %d: %+v, want %q", i, s, want)
					}
					continue
				}
				n, _ := strings.CutPrefix(s.detail, "coalesced: ")
				n, _, _ = strings.Cut(n, " ")
				if got+n != want {
					t.Errorf("summary %d: %q (%s), want %q", i, got+n, s.detail, want)
				}
			}
			// A new window starts afresh.
			g.record(refusal("a", "192.0.2.1", "no_token"), "192.0.2.1")
			if individual, _ := summaries(sink.take()); individual != 1 {
				t.Errorf("after the window: %d records one by one, want 1", individual)
			}
		})
	}
}

// TestRefusalGateBound: whatever the flood, a window lets through at most Total records
// one by one plus Summaries+1 summaries, and every refusal is accounted for.
func TestRefusalGateBound(t *testing.T) {
	g, clock, sink := newTestGate(refusalLimits{})
	const floods = 3
	sent := 0
	for w := range floods {
		for i := range 20000 {
			ip := fmt.Sprintf("198.51.%d.%d", (i/250)%250, i%250)
			g.record(refusal("a", ip, "no_token"), ip)
			sent++
		}
		clock.advance(time.Minute)
		recs := sink.take()
		if max := 60 + 20 + 1; len(recs) > max {
			t.Fatalf("window %d: %d records, want at most %d", w, len(recs), max)
		}
		accounted := 0
		for _, r := range recs {
			if n, ok := strings.CutPrefix(r.Detail, "coalesced: "); ok {
				var c int
				fmt.Sscanf(n, "%d", &c)
				accounted += c
			} else {
				accounted++
			}
		}
		if accounted != 20000 {
			t.Errorf("window %d: records account for %d refusals, want 20000", w, accounted)
		}
	}
	if clock.timer != nil {
		t.Error("a timer is still armed with nothing counted")
	}
}

// TestRefusalGateWindowRolledByRequest: a refusal arriving after the window ended, before the
// timer fired, writes the ending window's summaries itself, once; the timer then finds
// nothing more to write.
func TestRefusalGateWindowRolledByRequest(t *testing.T) {
	g, clock, sink := newTestGate(refusalLimits{PerSource: 1})
	for range 3 {
		g.record(refusal("a", "192.0.2.1", "no_token"), "192.0.2.1")
	}
	timer := clock.timer
	clock.timer = nil // it fires late
	clock.now = clock.now.Add(61 * time.Second)
	g.record(refusal("a", "192.0.2.1", "no_token"), "192.0.2.1")
	if individual, sums := summaries(sink.take()); individual != 2 || len(sums) != 1 {
		t.Fatalf("%d one by one, summaries %+v; want 2 and one", individual, sums)
	}
	timer()
	if recs := sink.take(); len(recs) != 0 {
		t.Fatalf("the late timer wrote %+v", recs)
	}
}
