package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkScript makes wrk send the benchmark's small POST. Its resolve override dials loopback for
// every target: wrk takes both the TLS server name and the Host header from the URL, and
// *.localhost does not resolve here, so without it wrk could not reach a toolgate tunnel at all.
const wrkScript = `wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ping","arguments":{}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.resolve = function(host, service)
  wrk.addrs = wrk.lookup("127.0.0.1", service)
end
`

// runWrk measures the small-POST cells with wrk, a C client that costs far less CPU per request
// than this program's Go client, so that more of the two cores is left to the paths under test.
// It records wrk_* metrics next to bench's, in the same rounds.
func runWrk(args []string) error {
	fs := flag.NewFlagSet("wrk", flag.ContinueOnError)
	round := fs.Int("round", 1, "round number, for the record and the order rotation")
	dur := fs.Duration("d", 2*time.Second, "duration per cell")
	concs := fs.String("conns", "1,16,64", "concurrencies")
	out := fs.String("out", "-", "JSONL results file (append)")
	var targetFlags, cpuFlags multiFlag
	fs.Var(&targetFlags, "target", "NAME=BASE_URL (repeat); POSTs go to BASE_URL/mcp")
	fs.Var(&cpuFlags, "cpu", "NAME=PID,PID...: processes that carry path NAME; their CPU time per request is recorded (repeat)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found (apt-get install -y wrk)")
	}
	rec, err := openRecorder(*out)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "loadgen-wrk")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "post.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return err
	}
	var ts []target
	for _, f := range targetFlags {
		t, err := parseTarget(f)
		if err != nil {
			return err
		}
		ts = append(ts, t)
	}
	if len(ts) == 0 {
		return errors.New("no -target")
	}
	k := (*round - 1) % len(ts)
	ts = append(ts[k:], ts[:k]...)
	cpuPids := parsePidFlags(cpuFlags)
	secs := max(1, int(dur.Round(time.Second).Seconds())) // wrk takes whole seconds
	for _, s := range strings.Split(*concs, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		threads := min(c, 2)
		for _, t := range ts {
			cpu0, busy0, t0 := cpuTicks(cpuPids[t.name]), machineBusy(), time.Now()
			cmd := exec.Command("wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(c),
				"-d", fmt.Sprintf("%ds", secs), "--latency", "-s", script,
				strings.TrimSuffix(t.base.String(), "/")+"/mcp")
			outb, err := cmd.CombinedOutput()
			busy := busyPercent(machineBusy()-busy0, time.Since(t0).Seconds())
			if err != nil {
				return fmt.Errorf("%s c=%d: wrk: %w: %s", t.name, c, err, outb)
			}
			w, err := parseWrk(string(outb))
			if err != nil {
				return fmt.Errorf("%s c=%d: %w:\n%s", t.name, c, err, outb)
			}
			rec.add(record{Round: *round, Path: t.name, Metric: "wrk_rps", Conc: c, Value: w.rps})
			rec.add(record{Round: *round, Path: t.name, Metric: "wrk_p50_ms", Conc: c, Value: w.p50})
			rec.add(record{Round: *round, Path: t.name, Metric: "wrk_p99_ms", Conc: c, Value: w.p99})
			rec.add(record{Round: *round, Path: t.name, Metric: "wrk_errors", Conc: c, Value: float64(w.errors)})
			rec.add(record{Round: *round, Path: t.name, Metric: "wrk_busy_pct", Conc: c, Value: busy})
			cpuNote := ""
			if len(cpuPids[t.name]) > 0 && w.requests > 0 {
				us := float64(cpuTicks(cpuPids[t.name])-cpu0) * 1e6 / clockTicks / float64(w.requests)
				rec.add(record{Round: *round, Path: t.name, Metric: "wrk_cpu_us", Conc: c, Value: us})
				cpuNote = fmt.Sprintf("  tunnel CPU %5.1f µs/req", us)
			}
			fmt.Fprintf(os.Stderr, "round %d  %s  wrk POST c=%-3d %8.0f req/s  p50 %6.3f  p99 %7.3f ms  errors %d%s  machine busy %3.0f%%\n",
				*round, t.name, c, w.rps, w.p50, w.p99, w.errors, cpuNote, busy)
		}
	}
	return nil
}

type wrkResult struct {
	rps      float64
	p50, p99 float64 // ms
	requests int64
	errors   int64 // socket errors and non-2xx/3xx answers
}

// parseWrk reads wrk's text report (wrk has no machine-readable output).
func parseWrk(out string) (wrkResult, error) {
	var w wrkResult
	var haveRPS, haveP50, haveP99 bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 2 && f[0] == "Requests/sec:":
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return w, fmt.Errorf("wrk report: %q: %w", sc.Text(), err)
			}
			w.rps, haveRPS = v, true
		case len(f) >= 2 && (f[0] == "50%" || f[0] == "99%"):
			v, err := parseWrkDuration(f[1])
			if err != nil {
				return w, fmt.Errorf("wrk report: %q: %w", sc.Text(), err)
			}
			if f[0] == "50%" {
				w.p50, haveP50 = v, true
			} else {
				w.p99, haveP99 = v, true
			}
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			w.requests, _ = strconv.ParseInt(f[0], 10, 64)
		case len(f) >= 2 && f[0] == "Non-2xx":
			n, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
			w.errors += n
		case len(f) >= 2 && f[0] == "Socket" && f[1] == "errors:":
			// "Socket errors: connect 0, read 0, write 0, timeout 0"
			for i := 2; i+1 < len(f); i += 2 {
				n, _ := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				w.errors += n
			}
		}
	}
	if !haveRPS || !haveP50 || !haveP99 {
		return w, errors.New("wrk report without Requests/sec or latency percentiles")
	}
	return w, nil
}

// parseWrkDuration turns wrk's "812.00us", "3.83ms" or "1.02s" into milliseconds.
func parseWrkDuration(s string) (float64, error) {
	for _, u := range []struct {
		suffix string
		ms     float64
	}{{"us", 1e-3}, {"ms", 1}, {"m", 60e3}, {"s", 1e3}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, err
			}
			return v * u.ms, nil
		}
	}
	return 0, fmt.Errorf("no unit in %q", s)
}

// reportWrk prints the wrk cells, if the run has any, as a table like bench's.
func reportWrk(recs []record, cell func(metric, path string, conc int, format string) string) bool {
	have := false
	for _, r := range recs {
		if r.Metric == "wrk_rps" {
			have = true
			break
		}
	}
	if !have {
		return false
	}
	fmt.Println("\nThe same small POSTs from wrk (C, one or two threads; TLS by OpenSSL for (c)), in the same rounds:")
	fmt.Println()
	fmt.Println("| wrk, POST /mcp | (a) direct | (b) OpenSSH sshd -R | (c) toolgate (HTTPS) |")
	fmt.Println("|---|---|---|---|")
	row := func(label, metric string, conc int, format string) {
		fmt.Printf("| %s | %s | %s | %s |\n", label, cell(metric, "a", conc, format), cell(metric, "b", conc, format), cell(metric, "c", conc, format))
	}
	for _, c := range []int{1, 16, 64} {
		row(fmt.Sprintf("req/s, %d conn", c), "wrk_rps", c, "%.0f")
	}
	for _, c := range []int{1, 64} {
		row(fmt.Sprintf("p50 ms, %d conn", c), "wrk_p50_ms", c, "%.3f")
		row(fmt.Sprintf("p99 ms, %d conn", c), "wrk_p99_ms", c, "%.2f")
	}
	row("tunnel CPU µs per POST (server+ssh client), 64 conn", "wrk_cpu_us", 64, "%.0f")
	row("machine busy, % of all cores, 64 conn", "wrk_busy_pct", 64, "%.0f")
	fmt.Printf("| (c)/(b) req/s per round, 64 conn | | | %s |\n", ratioCell(roundRatios(recs, "wrk_rps", 64, "c", "b")))
	return true
}
