package web

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/toolgate/toolgate/data"
)

// Requests refused at the token step (no token, an invalid one, one for another tunnel) are
// audited too, but not one record each without limit: anyone on the internet can send them, as
// fast as they like, and the audit log keeps a bounded number of records (1,000,000 by
// default). A scanner hammering a tunnel URL could otherwise push every real record out of
// the log within minutes, and cost a commit per request while doing it.
//
// So they pass a gate that works in fixed windows of a minute. In each window a source (an
// IPv4 address or an IPv6 /64, per tunnel, decision and reason) gets its first 10 refusals
// recorded one by one, and all sources together at most 60; the rest are counted. When the
// window ends, each source with refusals counted gets one summary record saying how many,
// between when and when: the 20 with the most, and one record for all the others (sources
// past the 4,096 a window tracks included). That is at most 81 records a minute however
// large the flood, about 117,000 a day: a flood from many addresses that never stops takes
// over a week to cycle a million-record log, one from a single address (11 a minute) longer
// than the 30 days records are kept. Nothing is lost from the count; only the detail of each
// request beyond the first ones of a window. A window's summaries are written when it ends
// (a timer, armed only when something was counted), so a server stopped in the middle of a
// flood loses at most one window's summaries.

// refusalLimits are the gate's limits; zero fields take the defaults above.
type refusalLimits struct {
	Window    time.Duration
	PerSource int // records one by one per source and window
	Total     int // records one by one per window, all sources
	Summaries int // summary records per window, besides the one for all the others
	Sources   int // sources tracked per window
	// Now and AfterFunc are the clock and timer (time.Now and time.AfterFunc), for tests.
	Now       func() time.Time
	AfterFunc func(d time.Duration, f func())
}

// refusalKey is what a refusal is counted under.
type refusalKey struct {
	tunnel, source   string // source: the IP, or its /64 for IPv6
	decision, reason string
}

type refusalCount struct {
	owner       string
	recorded    int // records let through this window
	counted     int // refusals counted instead
	first, last time.Time
}

// refusalGate lets a bounded number of refused requests' records through; see above.
type refusalGate struct {
	lim  refusalLimits
	emit func(data.AuditRecord)

	mu      sync.Mutex
	start   time.Time // of the current window; zero before the first refusal
	total   int       // records let through in this window
	counted int       // refusals counted in this window, for its summaries
	counts  map[refusalKey]*refusalCount
	// others counts the refusals of sources past lim.Sources, without telling them apart.
	others refusalAggregate
	armed  bool // a timer will end the window
}

// refusalAggregate counts refusals of several sources together: how many, when, and the
// tunnel and decision if they all had the same.
type refusalAggregate struct {
	refusalCount
	tunnel, decision string
	mixedTunnel      bool
	mixedDecision    bool
}

func (a *refusalAggregate) add(k refusalKey, n int, first, last time.Time) {
	if a.counted == 0 {
		a.first, a.last, a.tunnel, a.decision = first, last, k.tunnel, k.decision
	}
	a.counted += n
	a.first, a.last = minTime(a.first, first), maxTime(a.last, last)
	a.mixedTunnel = a.mixedTunnel || k.tunnel != a.tunnel
	a.mixedDecision = a.mixedDecision || k.decision != a.decision
}

func newRefusalGate(lim refusalLimits, emit func(data.AuditRecord)) *refusalGate {
	if lim.Window <= 0 {
		lim.Window = time.Minute
	}
	if lim.PerSource <= 0 {
		lim.PerSource = 10
	}
	if lim.Total <= 0 {
		lim.Total = 60
	}
	if lim.Summaries <= 0 {
		lim.Summaries = 20
	}
	if lim.Sources <= 0 {
		lim.Sources = 4096
	}
	if lim.Now == nil {
		lim.Now = time.Now
	}
	if lim.AfterFunc == nil {
		lim.AfterFunc = func(d time.Duration, f func()) { time.AfterFunc(d, f) }
	}
	return &refusalGate{lim: lim, emit: emit, counts: make(map[refusalKey]*refusalCount)}
}

// record passes ar, the record of a refused request from source (its IP as text), to the
// audit log, or counts it for its window's summary.
func (g *refusalGate) record(ar data.AuditRecord, source string) {
	now := g.lim.Now()
	key := refusalKey{tunnel: ar.Tunnel, source: sourceGroup(source), decision: ar.Decision, reason: ar.Rule}
	g.mu.Lock()
	summaries := g.roll(now)
	c := g.counts[key]
	if c == nil && len(g.counts) < g.lim.Sources {
		c = &refusalCount{owner: ar.Owner}
		g.counts[key] = c
	}
	pass := c != nil && c.recorded < g.lim.PerSource && g.total < g.lim.Total
	switch {
	case pass:
		c.recorded++
		g.total++
	case c != nil:
		c.count(now)
	default:
		g.others.add(key, 1, now, now)
	}
	if !pass {
		g.counted++
		if !g.armed {
			g.armed = true
			g.lim.AfterFunc(g.start.Add(g.lim.Window).Sub(now), g.flush)
		}
	}
	g.mu.Unlock()
	for _, s := range summaries {
		g.emit(s)
	}
	if pass {
		g.emit(ar)
	}
}

func (c *refusalCount) count(now time.Time) {
	if c.counted == 0 {
		c.first = now
	}
	c.counted++
	c.last = now
}

// flush is the timer's: it ends the window if it is over, and arms the timer again if the
// window now current has refusals counted (record started it before the timer fired).
func (g *refusalGate) flush() {
	now := g.lim.Now()
	g.mu.Lock()
	summaries := g.roll(now)
	g.armed = g.counted > 0
	if g.armed {
		g.lim.AfterFunc(g.start.Add(g.lim.Window).Sub(now), g.flush)
	}
	g.mu.Unlock()
	for _, s := range summaries {
		g.emit(s)
	}
}

// roll starts a new window if the current one is over, returning its summary records.
func (g *refusalGate) roll(now time.Time) []data.AuditRecord {
	if !g.start.IsZero() && now.Before(g.start.Add(g.lim.Window)) {
		return nil
	}
	var out []data.AuditRecord
	if g.counted > 0 {
		out = g.summaries(now)
	}
	g.start, g.total, g.counted = now, 0, 0
	g.others = refusalAggregate{}
	clear(g.counts)
	return out
}

// summaries are the records for what the ending window counted: one per source for the
// sources with the most, one for all the others.
func (g *refusalGate) summaries(now time.Time) []data.AuditRecord {
	type counted struct {
		key refusalKey
		c   *refusalCount
	}
	var all []counted
	for k, c := range g.counts {
		if c.counted > 0 {
			all = append(all, counted{k, c})
		}
	}
	slices.SortFunc(all, func(a, b counted) int {
		return cmp.Or(cmp.Compare(b.c.counted, a.c.counted), cmp.Compare(a.key.source, b.key.source),
			cmp.Compare(a.key.tunnel, b.key.tunnel), cmp.Compare(a.key.decision, b.key.decision),
			cmp.Compare(a.key.reason, b.key.reason))
	})
	top := all[:min(len(all), g.lim.Summaries)]
	var out []data.AuditRecord
	for _, e := range top {
		out = append(out, data.AuditRecord{
			Time: now, Kind: "mcp", Tunnel: e.key.tunnel, Owner: e.c.owner, SourceIP: e.key.source,
			Decision: e.key.decision, Rule: e.key.reason,
			Detail: "coalesced: " + strconv.Itoa(e.c.counted) + " more refused requests like this from " + e.key.source +
				" between " + stamp(e.c.first) + " and " + stamp(e.c.last) + ", not recorded one by one",
		})
	}
	rest := g.others
	for _, e := range all[len(top):] {
		rest.add(e.key, e.c.counted, e.c.first, e.c.last)
	}
	if rest.counted > 0 {
		ar := data.AuditRecord{Time: now, Kind: "mcp", Tunnel: rest.tunnel, Decision: rest.decision, Rule: "coalesced"}
		if rest.mixedTunnel {
			ar.Tunnel = ""
		}
		if rest.mixedDecision {
			ar.Decision = DecisionUnauthenticated // by far the most common; the detail says "refused"
		}
		var from []string
		if n := len(all) - len(top); n > 0 {
			from = append(from, strconv.Itoa(n)+" other sources")
		}
		if g.others.counted > 0 {
			from = append(from, "sources past the "+strconv.Itoa(g.lim.Sources)+" a window tells apart")
		}
		ar.Detail = "coalesced: " + strconv.Itoa(rest.counted) + " more refused requests from " + strings.Join(from, " and ") +
			" between " + stamp(rest.first) + " and " + stamp(rest.last) + ", not recorded one by one"
		out = append(out, ar)
	}
	return out
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// sourceGroup is what refusals from an address are counted under: the IPv4 address, or the
// IPv6 /64 (one host can have a whole /64 to cycle through).
func sourceGroup(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is6() {
		return ip
	}
	return netip.PrefixFrom(a, 64).Masked().String()
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
