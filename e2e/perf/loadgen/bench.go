package main

import (
	"bufio"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ---------------------------------------------------------------------------------------------
// bench: one round of the small-request, bulk and SSE measurements, for every target, in an
// order rotated by the round number so that no path always runs first or last.

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func runBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	var targets multiFlag
	fs.Var(&targets, "target", "NAME=BASE_URL (repeat)")
	caFile := fs.String("ca", "", "PEM CA for https targets")
	round := fs.Int("round", 1, "round number, for the record and the order rotation")
	dur := fs.Duration("d", 2*time.Second, "measured duration per small-request cell")
	warm := fs.Duration("warm", 300*time.Millisecond, "warm-up per small-request cell (not recorded)")
	concs := fs.String("conns", "1,16,64", "concurrencies")
	bulkBytes := fs.Int64("bulk-bytes", 200<<20, "bulk download size")
	sseSamples := fs.Int("sse", 3, "SSE streams per target")
	what := fs.String("what", "small,bulk,sse", "which measurements")
	ours := fs.String("ours", "", "PID,PID...: every process of this benchmark besides loadgen (backend, sshd, ssh, toolgate); CPU used by anything else is recorded as interference")
	var authFlags multiFlag
	fs.Var(&authFlags, "auth", "NAME=TOKEN: every request to target NAME carries \"Authorization: Bearer TOKEN\" (repeat)")
	var cpuFlags multiFlag
	fs.Var(&cpuFlags, "cpu", "NAME=PID,PID...: processes that carry path NAME (the tunnel's server and client); their CPU time per request is recorded (repeat)")
	out := fs.String("out", "-", "JSONL results file (append)")
	fs.Parse(args)

	roots, err := loadRoots(*caFile)
	if err != nil {
		return err
	}
	rec, err := openRecorder(*out)
	if err != nil {
		return err
	}
	tokens := map[string]string{}
	for _, f := range authFlags {
		name, tok, ok := strings.Cut(f, "=")
		if !ok || tok == "" {
			return fmt.Errorf("auth %q: want NAME=TOKEN", f)
		}
		tokens[name] = tok
	}
	var ts []target
	for _, s := range targets {
		t, err := parseTarget(s)
		if err != nil {
			return err
		}
		t.token = tokens[t.name]
		delete(tokens, t.name)
		ts = append(ts, t)
	}
	if len(ts) == 0 {
		return errors.New("no -target")
	}
	for name := range tokens {
		return fmt.Errorf("-auth %s: no such -target", name)
	}
	// Rotate the order by round.
	k := (*round - 1) % len(ts)
	ts = append(ts[k:], ts[:k]...)
	cpuPids := parsePidFlags(cpuFlags)
	ourPids := []int{os.Getpid()}
	for _, p := range strings.Split(*ours, ",") {
		if pid, err := strconv.Atoi(strings.TrimSpace(p)); err == nil {
			ourPids = append(ourPids, pid)
		}
	}
	var cs []int
	for _, s := range strings.Split(*concs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		cs = append(cs, n)
	}
	parts := strings.Split(*what, ",")
	if slices.Contains(parts, "small") {
		for _, c := range cs {
			for _, t := range ts {
				cpu0 := cpuTicks(cpuPids[t.name])
				busy0, ours0, t0 := machineBusy(), cpuTicks(ourPids), time.Now()
				r, err := smallCell(t, roots, c, *warm, *dur)
				busy1, secs := machineBusy(), time.Since(t0).Seconds()
				foreign := float64((busy1-busy0)-(cpuTicks(ourPids)-ours0)) / clockTicks / secs * 100
				rec.add(record{Round: *round, Path: t.name, Metric: "foreign_cpu_pct", Conc: c, Value: foreign})
				// How much of the machine the cell kept busy tells a path limited by CPU (near
				// 100%) from one limited by its own round trips, with cores left idle.
				rec.add(record{Round: *round, Path: t.name, Metric: "machine_busy_pct", Conc: c,
					Value: busyPercent(busy1-busy0, secs)})
				if err != nil {
					return fmt.Errorf("%s c=%d: %w", t.name, c, err)
				}
				cpuNote := ""
				if len(cpuPids[t.name]) > 0 {
					// clock ticks are 10 ms; over a cell of a few seconds that is well under 1%
					us := float64(cpuTicks(cpuPids[t.name])-cpu0) * 1e6 / clockTicks / float64(r.total)
					rec.add(record{Round: *round, Path: t.name, Metric: "post_cpu_us", Conc: c, Value: us})
					cpuNote = fmt.Sprintf("  tunnel CPU %5.1f µs/req", us)
				}
				fmt.Fprintf(os.Stderr, "round %d  %s  POST c=%-3d %8.0f req/s  p50 %6.3f  p90 %6.3f  p99 %7.3f ms  conns %d  errors %d%s  other CPU %3.0f%%\n",
					*round, t.name, c, r.rps, r.p50, r.p90, r.p99, r.conns, r.errors, cpuNote, foreign)
				for m, v := range map[string]float64{"post_rps": r.rps, "post_p50_ms": r.p50, "post_p90_ms": r.p90,
					"post_p99_ms": r.p99, "post_max_ms": r.max, "post_errors": float64(r.errors), "post_conns": float64(r.conns)} {
					rec.add(record{Round: *round, Path: t.name, Metric: m, Conc: c, Value: v})
				}
			}
		}
	}
	if slices.Contains(parts, "bulk") {
		for _, t := range ts {
			cpu0 := cpuTicks(cpuPids[t.name])
			busy0, ours0, t0 := machineBusy(), cpuTicks(ourPids), time.Now()
			mbps, err := bulk(t, roots, *bulkBytes)
			if err != nil {
				return fmt.Errorf("%s bulk: %w", t.name, err)
			}
			foreign := float64((machineBusy()-busy0)-(cpuTicks(ourPids)-ours0)) / clockTicks / time.Since(t0).Seconds() * 100
			cpuNote := ""
			if len(cpuPids[t.name]) > 0 {
				// includes the warm-up POST, which is negligible next to the body
				msPerMB := float64(cpuTicks(cpuPids[t.name])-cpu0) * 1e3 / clockTicks / (float64(*bulkBytes) / 1e6)
				rec.add(record{Round: *round, Path: t.name, Metric: "bulk_cpu_ms_per_mb", Value: msPerMB})
				cpuNote = fmt.Sprintf("  tunnel CPU %5.2f ms/MB", msPerMB)
			}
			fmt.Fprintf(os.Stderr, "round %d  %s  bulk %d MiB  %7.1f MB/s%s  other CPU %3.0f%%\n", *round, t.name, *bulkBytes>>20, mbps, cpuNote, foreign)
			rec.add(record{Round: *round, Path: t.name, Metric: "bulk_mbps", Value: mbps})
			rec.add(record{Round: *round, Path: t.name, Metric: "foreign_cpu_pct", Conc: -1, Value: foreign})
		}
	}
	if slices.Contains(parts, "sse") {
		for _, t := range ts {
			first, gapDev, err := sse(t, roots, *sseSamples)
			if err != nil {
				return fmt.Errorf("%s sse: %w", t.name, err)
			}
			fmt.Fprintf(os.Stderr, "round %d  %s  SSE first event %6.3f ms (median of %d)  worst gap deviation %6.3f ms\n",
				*round, t.name, first, *sseSamples, gapDev)
			rec.add(record{Round: *round, Path: t.name, Metric: "sse_first_ms", Value: first})
			rec.add(record{Round: *round, Path: t.name, Metric: "sse_gap_dev_ms", Value: gapDev})
		}
	}
	return nil
}

type cellResult struct {
	rps, p50, p90, p99, max float64
	errors                  int64
	conns                   int64
	total                   int64 // successful requests, warm-up included
}

// machineBusy is the CPU time all processes used since boot (user, nice, system, irq,
// softirq, steal), in clock ticks, from /proc/stat.
func machineBusy() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var sum int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait, guest (already in user)
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		sum += n
	}
	return sum
}

// parsePidFlags reads -cpu NAME=PID,PID... flags into the pids of each path.
func parsePidFlags(flags []string) map[string][]int {
	pids := map[string][]int{}
	for _, f := range flags {
		name, list, _ := strings.Cut(f, "=")
		for _, p := range strings.Split(list, ",") {
			if pid, err := strconv.Atoi(strings.TrimSpace(p)); err == nil {
				pids[name] = append(pids[name], pid)
			}
		}
	}
	return pids
}

// busyPercent is how much of all cores ticks of machine busy time over secs seconds make.
func busyPercent(ticks int64, secs float64) float64 {
	return float64(ticks) / clockTicks / secs / float64(runtime.NumCPU()) * 100
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; 100 on every Linux this runs on.
const clockTicks = 100

// cpuTicks sums user and system time of pids, in clock ticks. Vanished processes count 0.
func cpuTicks(pids []int) int64 {
	var sum int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		// the command name is in parentheses and may hold spaces: fields start after ")"
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			k, _ := strconv.ParseInt(f[12], 10, 64)
			sum += u + k
		}
	}
	return sum
}

// smallCell runs c connections, each posting to /mcp in a closed loop, for warm then dur; only
// requests started within dur are recorded.
func smallCell(t target, roots *x509.CertPool, c int, warm, dur time.Duration) (cellResult, error) {
	var dials, errs, total atomic.Int64
	u := t.url("/mcp")
	start := time.Now()
	measureFrom := start.Add(warm)
	end := measureFrom.Add(dur)
	samples := make([][]time.Duration, c)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := range c {
		tr := newTransport(t, roots, &dials)
		client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		samples[i] = make([]time.Duration, 0, 1<<14)
		wg.Go(func() {
			defer tr.CloseIdleConnections()
			for {
				s := time.Now()
				if !s.Before(end) {
					return
				}
				code, err := post(client, u, t.token)
				el := time.Since(s)
				if err != nil || code != http.StatusOK {
					errs.Add(1)
					if err == nil {
						err = fmt.Errorf("status %d", code)
					}
					firstErr.CompareAndSwap(nil, err)
					time.Sleep(time.Millisecond)
					continue
				}
				total.Add(1)
				if !s.Before(measureFrom) {
					samples[i] = append(samples[i], el)
				}
			}
		})
	}
	wg.Wait()
	var all []time.Duration
	for _, s := range samples {
		all = append(all, s...)
	}
	if len(all) == 0 {
		err, _ := firstErr.Load().(error)
		return cellResult{}, fmt.Errorf("no successful request (errors %d, first %v)", errs.Load(), err)
	}
	slices.Sort(all)
	return cellResult{
		rps:    float64(len(all)) / dur.Seconds(),
		p50:    ms(quantile(all, 0.50)),
		p90:    ms(quantile(all, 0.90)),
		p99:    ms(quantile(all, 0.99)),
		max:    ms(all[len(all)-1]),
		errors: errs.Load(),
		conns:  dials.Load(),
		total:  total.Load(),
	}, nil
}

// quantile of sorted samples, nearest rank: exact, no histogram buckets.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// bulk downloads n bytes once over a connection that is already open (warmed by a POST) and
// returns MB/s (10^6 bytes per second).
func bulk(t target, roots *x509.CertPool, n int64) (float64, error) {
	tr := newTransport(t, roots, nil)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	if code, err := post(client, t.url("/mcp"), t.token); err != nil || code != 200 {
		return 0, fmt.Errorf("warm-up: %d %v", code, err)
	}
	u := t.url("/bulk") + "?bytes=" + strconv.FormatInt(n, 10)
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	bearer(req, t.token)
	s := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return 0, fmt.Errorf("%s: %s", resp.Status, b)
	}
	buf := make([]byte, 256<<10)
	var got int64
	for {
		m, err := resp.Body.Read(buf)
		got += int64(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	el := time.Since(s)
	if got != n {
		return 0, fmt.Errorf("got %d bytes, want %d", got, n)
	}
	return float64(n) / el.Seconds() / 1e6, nil
}

// sse opens k event streams one after another on a warm connection and returns the median
// time from sending the request to reading the first event, and the worst deviation of an
// inter-event gap from the server's 100 ms (Nagle or buffering stalls show there).
func sse(t target, roots *x509.CertPool, k int) (firstMs, worstGapDevMs float64, err error) {
	tr := newTransport(t, roots, nil)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	if code, err := post(client, t.url("/mcp"), t.token); err != nil || code != 200 {
		return 0, 0, fmt.Errorf("warm-up: %d %v", code, err)
	}
	var firsts []time.Duration
	var worst time.Duration
	for range k {
		s := time.Now()
		req, _ := http.NewRequest(http.MethodGet, t.url("/sse"), nil)
		req.Header.Set("Accept", "text/event-stream")
		bearer(req, t.token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, 0, err
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
			resp.Body.Close()
			return 0, 0, fmt.Errorf("%s: %s", resp.Status, b)
		}
		br := bufio.NewReader(resp.Body)
		var times []time.Duration
		for {
			line, err := br.ReadString('\n')
			if strings.HasPrefix(line, "data:") {
				times = append(times, time.Since(s))
			}
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		if len(times) != sseEvents {
			return 0, 0, fmt.Errorf("got %d events, want %d", len(times), sseEvents)
		}
		firsts = append(firsts, times[0])
		for i := 1; i < len(times); i++ {
			dev := times[i] - times[i-1] - sseInterval
			worst = max(worst, dev, -dev)
		}
	}
	slices.Sort(firsts)
	return ms(firsts[len(firsts)/2]), ms(worst), nil
}
