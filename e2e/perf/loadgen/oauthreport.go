package main

// The OAuth comparison of report: (c) is toolgate with tunnel-auth none, (d) a second toolgate
// with tunnel-auth oauth, every request carrying a bearer token. Both are measured in the same
// rounds, one after the other, so their ratio per round is the figure least moved by the
// machine's state; the table gives its median and [min–max] over rounds.

import (
	"fmt"
	"sort"
	"strings"
)

// oauthConcs are the small-request concurrencies compared.
var oauthConcs = []int{1, 16, 64}

// roundRatios returns num/den (two paths) of metric at conc for every round that measured
// both, sorted.
func roundRatios(recs []record, metric string, conc int, num, den string) []float64 {
	byRound := map[int]map[string]float64{}
	for _, r := range recs {
		if r.Metric != metric || r.Conc != conc || (r.Path != num && r.Path != den) {
			continue
		}
		if byRound[r.Round] == nil {
			byRound[r.Round] = map[string]float64{}
		}
		byRound[r.Round][r.Path] = r.Value
	}
	var out []float64
	for _, v := range byRound {
		d, okD := v[den]
		n, okN := v[num]
		if okD && okN && d > 0 {
			out = append(out, n/d)
		}
	}
	sort.Float64s(out)
	return out
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// ratioCell is the median per-round ratio in percent, with its [min–max].
func ratioCell(rs []float64) string {
	switch len(rs) {
	case 0:
		return "—"
	case 1:
		return fmt.Sprintf("%.0f%%", 100*rs[0])
	}
	return fmt.Sprintf("%.0f%% [%.0f–%.0f]", 100*median(rs), 100*rs[0], 100*rs[len(rs)-1])
}

func reportOAuth(recs []record, get func(metric, path string, conc int) (stat, bool),
	cell func(metric, path string, conc int, format string) string) {
	fmt.Println("\nOAuth on (d) vs off (c): two toolgates in the same rounds, (c) with tunnel-auth none, (d) with")
	fmt.Println("tunnel-auth oauth and an access token on every request. d/c is taken per round; median [min–max].")
	fmt.Println()
	fmt.Println("| POST /mcp | req/s (c) off | req/s (d) on | d/c req/s | p50 ms (c) | p50 ms (d) | p99 ms (c) | p99 ms (d) | tunnel CPU µs/req (c) | tunnel CPU µs/req (d) |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, c := range oauthConcs {
		fmt.Printf("| %d conn | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c,
			cell("post_rps", "c", c, "%.0f"), cell("post_rps", "d", c, "%.0f"),
			ratioCell(roundRatios(recs, "post_rps", c, "d", "c")),
			cell("post_p50_ms", "c", c, "%.3f"), cell("post_p50_ms", "d", c, "%.3f"),
			cell("post_p99_ms", "c", c, "%.2f"), cell("post_p99_ms", "d", c, "%.2f"),
			cell("post_cpu_us", "c", c, "%.0f"), cell("post_cpu_us", "d", c, "%.0f"))
	}
	var notes []string
	if _, ok := get("bulk_mbps", "d", 0); ok {
		notes = append(notes, fmt.Sprintf("bulk MB/s (c) %s, (d) %s, d/c %s", cell("bulk_mbps", "c", 0, "%.0f"),
			cell("bulk_mbps", "d", 0, "%.0f"), ratioCell(roundRatios(recs, "bulk_mbps", 0, "d", "c"))))
	}
	if _, ok := get("sse_first_ms", "d", 0); ok {
		notes = append(notes, fmt.Sprintf("SSE first event ms (c) %s, (d) %s", cell("sse_first_ms", "c", 0, "%.2f"),
			cell("sse_first_ms", "d", 0, "%.2f")))
	}
	errs := 0.0
	for _, r := range recs {
		if r.Path == "d" && r.Metric == "post_errors" {
			errs += r.Value
		}
	}
	notes = append(notes, fmt.Sprintf("request errors in (d)'s cells %.0f", errs))
	fmt.Printf("\nAlso with the token: %s.\n", strings.Join(notes, "; "))
}

// oauthTarget checks the issue figure: requests/s with OAuth on at least 90% of off, as the
// median per-round ratio, at every concurrency.
func oauthTarget(recs []record) (measured string, met, ok bool) {
	var parts []string
	met, ok = true, true
	for _, c := range oauthConcs {
		rs := roundRatios(recs, "post_rps", c, "d", "c")
		if len(rs) == 0 {
			ok = false
			parts = append(parts, fmt.Sprintf("— (%d conn)", c))
			continue
		}
		m := median(rs)
		met = met && m >= 0.9
		parts = append(parts, fmt.Sprintf("%.0f%% (%d conn)", 100*m, c))
	}
	return strings.Join(parts, ", "), met, ok
}
