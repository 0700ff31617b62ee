package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
)

// ---------------------------------------------------------------------------------------------
// report: medians over rounds, the spread, and the targets.

type key struct {
	metric, path string
	conc         int
}

type stat struct {
	med, lo, hi float64
	n           int
}

func runReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("in", "", "JSONL results")
	fs.Parse(args)
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	vals := map[key][]float64{}
	var recs []record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return err
		}
		k := key{r.Metric, r.Path, r.Conc}
		vals[k] = append(vals[k], r.Value)
		recs = append(recs, r)
	}
	stats := map[key]stat{}
	rounds := 0
	for k, v := range vals {
		sort.Float64s(v)
		med := v[len(v)/2]
		if len(v)%2 == 0 {
			med = (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		stats[k] = stat{med, v[0], v[len(v)-1], len(v)}
		rounds = max(rounds, len(v))
	}
	get := func(metric, path string, conc int) (stat, bool) {
		s, ok := stats[key{metric, path, conc}]
		return s, ok
	}
	cell := func(metric, path string, conc int, format string) string {
		s, ok := get(metric, path, conc)
		if !ok {
			return "—"
		}
		if s.n == 1 {
			return fmtNum(format, s.med)
		}
		return fmt.Sprintf("%s [%s–%s]", fmtNum(format, s.med), fmtNum(format, s.lo), fmtNum(format, s.hi))
	}
	fmt.Printf("Medians over %d rounds, [min–max] across rounds.\n\n", rounds)
	fmt.Println("| figure | (a) direct | (b) OpenSSH sshd -R | (c) toolgate (HTTPS) |")
	fmt.Println("|---|---|---|---|")
	row := func(label, metric string, conc int, format string) {
		fmt.Printf("| %s | %s | %s | %s |\n", label, cell(metric, "a", conc, format), cell(metric, "b", conc, format), cell(metric, "c", conc, format))
	}
	for _, c := range []int{1, 16, 64} {
		row(fmt.Sprintf("POST req/s, %d conn", c), "post_rps", c, "%.0f")
	}
	for _, c := range []int{1, 16, 64} {
		row(fmt.Sprintf("POST p50 ms, %d conn", c), "post_p50_ms", c, "%.3f")
		row(fmt.Sprintf("POST p90 ms, %d conn", c), "post_p90_ms", c, "%.3f")
		row(fmt.Sprintf("POST p99 ms, %d conn", c), "post_p99_ms", c, "%.2f")
	}
	row("POST max ms, 1 conn", "post_max_ms", 1, "%.2f")
	for _, c := range []int{1, 64} {
		row(fmt.Sprintf("tunnel CPU µs per POST (server+ssh client), %d conn", c), "post_cpu_us", c, "%.0f")
	}
	for _, c := range []int{16, 64} {
		row(fmt.Sprintf("machine busy, %% of all cores, %d conn", c), "machine_busy_pct", c, "%.0f")
	}
	row("connections opened, 64 conn cell", "post_conns", 64, "%.0f")
	row("bulk 200 MiB, MB/s", "bulk_mbps", 0, "%.0f")
	row("tunnel CPU ms per MB of bulk (server+ssh client)", "bulk_cpu_ms_per_mb", 0, "%.2f")
	row("SSE first event, ms", "sse_first_ms", 0, "%.2f")
	row("SSE worst gap deviation from 100 ms, ms", "sse_gap_dev_ms", 0, "%.2f")
	row("setup: ssh -N -R start to first 200, ms", "setup_ms", 0, "%.0f")
	_, haveD := get("post_rps", "d", 1)
	if haveD {
		reportOAuth(recs, get, cell)
	}
	haveWrk := reportWrk(recs, cell)
	{
		var fs []float64
		for k, v := range vals {
			if k.metric == "foreign_cpu_pct" {
				fs = append(fs, v...)
			}
		}
		if len(fs) > 0 {
			sort.Float64s(fs)
			// The estimate is machine busy time minus ours, both in 10 ms ticks, and softirq
			// time is not always charged to the process that caused it: it reads a few
			// percent either side of the truth, so small negatives are shown as 0.
			fmt.Printf("\nCPU used by other programs on the machine during the small-request and bulk cells (100%% = one core; ±10%%): median %.0f%%, worst %.0f%% (%d cells)\n",
				max(0, fs[len(fs)/2]), max(0, fs[len(fs)-1]), len(fs))
		}
	}
	errTotal := 0.0
	for k, v := range vals {
		if k.metric == "post_errors" {
			for _, x := range v {
				errTotal += x
			}
		}
	}
	fmt.Printf("\nRequest errors in all small-request cells: %.0f\n", errTotal)
	if s, ok := get("scale_rss_kib_per_tunnel", "c", 0); ok {
		g, _ := get("scale_goroutines_per_tunnel", "c", 0)
		h, _ := get("scale_heap_inuse_kib_per_tunnel", "c", 0)
		st, _ := get("scale_stack_kib_per_tunnel", "c", 0)
		o, _ := get("scale_open_s", "c", 0)
		rb, _ := get("scale_rss_before_mib", "c", 0)
		ra, _ := get("scale_rss_after_mib", "c", 0)
		gb, _ := get("scale_goroutines_before", "c", 0)
		ga, _ := get("scale_goroutines_after", "c", 0)
		gc, okc := get("scale_goroutines_after_close", "c", 0)
		fmt.Printf("\nScale (toolgate, 1,000 idle tunnels, one SSH connection and key each): RSS %.1f -> %.1f MiB = %.1f KiB per tunnel "+
			"(Go heap in use %.1f KiB, goroutine stacks %.1f KiB); goroutines %.0f -> %.0f = %.2f per tunnel; opened in %.1f s",
			rb.med, ra.med, s.med, h.med, st.med, gb.med, ga.med, g.med, o.med)
		if okc {
			fmt.Printf("; goroutines after all closed: %.0f", gc.med)
		}
		fmt.Println()
	}

	fmt.Println("\n| target | measured (medians) | result |")
	fmt.Println("|---|---|---|")
	target := func(name, measured string, met, ok bool) {
		res := "not met"
		if !ok {
			res = "not measured"
		} else if met {
			res = "met"
		}
		fmt.Printf("| %s | %s | %s |\n", name, measured, res)
	}
	{
		a, okA := get("post_p50_ms", "a", 1)
		c, okC := get("post_p50_ms", "c", 1)
		d := c.med - a.med
		target("p50 overhead of (c) over (a), 1 conn < 1 ms", fmt.Sprintf("%.3f ms (%.3f − %.3f)", d, c.med, a.med), d < 1, okA && okC)
	}
	{
		c, ok := get("post_p99_ms", "c", 1)
		target("p99 of (c), 1 conn < 5 ms", fmt.Sprintf("%.2f ms", c.med), c.med < 5, ok)
	}
	{
		b, okB := get("post_rps", "b", 64)
		c, okC := get("post_rps", "c", 64)
		target("req/s of (c) ≥ (b), 64 conn", fmt.Sprintf("%.0f vs %.0f (%.0f%%; per round %s)", c.med, b.med, 100*c.med/b.med,
			ratioCell(roundRatios(recs, "post_rps", 64, "c", "b"))), c.med >= b.med, okB && okC)
	}
	if haveWrk {
		b, okB := get("wrk_rps", "b", 64)
		c, okC := get("wrk_rps", "c", 64)
		target("req/s of (c) ≥ (b), 64 conn, wrk", fmt.Sprintf("%.0f vs %.0f (%.0f%%; per round %s)", c.med, b.med, 100*c.med/b.med,
			ratioCell(roundRatios(recs, "wrk_rps", 64, "c", "b"))), c.med >= b.med, okB && okC)
	}
	{
		b, okB := get("bulk_mbps", "b", 0)
		c, okC := get("bulk_mbps", "c", 0)
		target("bulk (c) ≥ 80% of (b)", fmt.Sprintf("%.0f vs %.0f MB/s (%.0f%%; per round %s)", c.med, b.med, 100*c.med/b.med,
			ratioCell(roundRatios(recs, "bulk_mbps", 0, "c", "b"))), c.med >= 0.8*b.med, okB && okC)
	}
	{
		a, okA := get("sse_first_ms", "a", 0)
		c, okC := get("sse_first_ms", "c", 0)
		d := c.med - a.med
		target("SSE first event (c) within 2 ms of (a)", fmt.Sprintf("+%.2f ms (%.2f vs %.2f)", d, c.med, a.med), d <= 2, okA && okC)
	}
	{
		c, ok := get("setup_ms", "c", 0)
		target("setup (c) < 300 ms", fmt.Sprintf("%.0f ms", c.med), c.med < 300, ok)
	}
	{
		c, ok := get("scale_rss_kib_per_tunnel", "c", 0)
		target("RSS per idle tunnel < 90 KiB", fmt.Sprintf("%.1f KiB", c.med), c.med < 90, ok)
	}
	if haveD {
		measured, met, ok := oauthTarget(recs)
		target("req/s with OAuth on (d) ≥ 90% of off (c), same rounds, every conn count", measured, met, ok)
	}
	return nil
}

func fmtNum(format string, v float64) string {
	s := fmt.Sprintf(format, v)
	if format == "%.0f" && math.Abs(v) >= 10000 {
		// thousands separators for readability
		neg := strings.HasPrefix(s, "-")
		s = strings.TrimPrefix(s, "-")
		var b strings.Builder
		for i, r := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(r)
		}
		s = b.String()
		if neg {
			s = "-" + s
		}
	}
	return s
}
