// Command loadgen is toolgate's benchmark tool: the small local HTTP service the tunnels point
// at, a closed-loop HTTP/1.1 load generator, the tunnel-setup timer, the 1,000-tunnel scale
// test (x/crypto/ssh clients), and the report that turns the recorded samples into the table in
// docs/PERFORMANCE.md. e2e/perf/run.sh drives it; every subcommand also runs on its own.
//
//	loadgen backend  -listen 127.0.0.1:3950
//	loadgen freeports -n 6
//	loadgen name     -- ssh -T -R 0:127.0.0.1:3950 ... (prints the tunnel host the session announces)
//	loadgen bench    -round 1 -target a=http://127.0.0.1:3950 -target c=https://NAME.toolgate.localhost:8443 -ca ca.pem -out r.jsonl \
//	                 [-cpu c=TOOLGATE_PID,SSH_PID] [-ours PID,...]   (CPU per request; CPU of other programs)
//	                 [-auth d=ACCESS_TOKEN]                          (Authorization: Bearer on every request to d)
//	loadgen wait     -url https://NAME.toolgate.localhost:8443/mcp -ca ca.pem [-token T] [-status 401] (until a POST answers 200)
//	loadgen token    -apex https://toolgate.localhost:8443 -dial 127.0.0.1:8443 -ca ca.pem -admin-socket DATA/admin.sock \
//	                 -email OWNER -resource https://NAME.toolgate.localhost:8443 (sign in, consent, print an access token)
//	loadgen setup    -path c -url https://NAME.toolgate.localhost:8443/mcp -ca ca.pem -out r.jsonl -- ssh -N -R ...
//	loadgen scale    -ssh 127.0.0.1:2222 -admin 127.0.0.1:9180 -n 1000 -out r.jsonl
//	loadgen report   -in r.jsonl
//
// Every host is dialled at 127.0.0.1:PORT (Go does not resolve *.localhost); TLS uses the CA
// file given with -ca and the URL's host as server name. Load is closed-loop: each connection
// sends its next request when the previous response has been read, so latencies are service
// times under that concurrency, not corrected for coordinated omission.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("loadgen: ")
	if len(os.Args) < 2 {
		log.Fatal("usage: loadgen backend|freeports|name|wait|bench|wrk|setup|scale|token|report [flags]")
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "backend":
		err = runBackend(args)
	case "freeports":
		err = runFreePorts(args)
	case "name":
		err = runName(args)
	case "bench":
		err = runBench(args)
	case "wait":
		err = runWait(args)
	case "setup":
		err = runSetup(args)
	case "scale":
		err = runScale(args)
	case "wrk":
		err = runWrk(args)
	case "report":
		err = runReport(args)
	case "token":
		err = runToken(args)
	default:
		err = fmt.Errorf("unknown subcommand %q", cmd)
	}
	if err != nil {
		log.Fatalf("%s: %v", cmd, err)
	}
}

// ---------------------------------------------------------------------------------------------
// backend: the developer's local server.

const (
	sseEvents   = 5
	sseInterval = 100 * time.Millisecond
)

// mcpReply is a ~100-byte JSON-RPC answer, the size of a small MCP tool result.
var mcpReply = []byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"pong"}],"isError":false}}` + "\n")

// mcpRequest is what the load generator posts.
var mcpRequest = []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ping","arguments":{}}}`)

func runBackend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:3950", "listen address")
	fs.Parse(args)
	block := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	mux := http.NewServeMux()
	mux.HandleFunc("POST /mcp", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(mcpReply)))
		w.Write(mcpReply)
	})
	mux.HandleFunc("GET /bulk", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
		if err != nil || n <= 0 {
			n = 200 << 20
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			m := min(n, int64(len(block)))
			if _, err := w.Write(block[:m]); err != nil {
				return
			}
			n -= m
		}
	})
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		rc := http.NewResponseController(w)
		for i := range sseEvents {
			if i > 0 {
				select {
				case <-time.After(sseInterval):
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":%d}}\n\n", i)
			if err := rc.Flush(); err != nil {
				return
			}
		}
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Printf("backend listening %s\n", l.Addr())
	return srv.Serve(l)
}

// ---------------------------------------------------------------------------------------------
// freeports: ports for run.sh (closed again at once; a race with other programs is possible but
// unlikely on a benchmark machine).

func runFreePorts(args []string) error {
	fs := flag.NewFlagSet("freeports", flag.ExitOnError)
	n := fs.Int("n", 1, "how many")
	fs.Parse(args)
	var ls []net.Listener
	for range *n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ls = append(ls, l)
	}
	var ports []string
	for _, l := range ls {
		ports = append(ports, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
		l.Close()
	}
	fmt.Println(strings.Join(ports, " "))
	return nil
}

// ---------------------------------------------------------------------------------------------
// name: runs a command (ssh -T -R 0:… to toolgate), waits for the tunnel URL it prints, prints
// the host and stops the command. With the same key and the same -R, a later ssh -N gets the
// same name back: toolgate keeps a key's random names.

func runName(args []string) error {
	fs := flag.NewFlagSet("name", flag.ExitOnError)
	timeout := fs.Duration("timeout", 15*time.Second, "wait this long for the URL")
	fs.Parse(args)
	if fs.NArg() == 0 {
		return errors.New("usage: loadgen name -- CMD ARGS")
	}
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	var out lockedBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return err
	}
	defer stopCmd(cmd)
	re := regexp.MustCompile(`https://([a-z0-9-]+\.[a-z0-9.-]+):\d+/mcp`)
	deadline := time.Now().Add(*timeout)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			fmt.Println(m[1])
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no tunnel URL within %s; output:\n%s", *timeout, out.String())
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func stopCmd(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// ---------------------------------------------------------------------------------------------
// Results: one JSON line per measurement; report aggregates them.

type record struct {
	Round  int     `json:"round"`
	Path   string  `json:"path"` // a, b, c
	Metric string  `json:"metric"`
	Conc   int     `json:"conc,omitempty"`
	Value  float64 `json:"value"`
}

type recorder struct {
	mu sync.Mutex
	f  *os.File
}

func openRecorder(path string) (*recorder, error) {
	if path == "" || path == "-" {
		return &recorder{f: os.Stdout}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	return &recorder{f: f}, nil
}

func (r *recorder) add(rec record) {
	b, _ := json.Marshal(rec)
	r.mu.Lock()
	r.f.Write(append(b, '\n'))
	r.mu.Unlock()
}

// ---------------------------------------------------------------------------------------------
// HTTP clients.

type target struct {
	name  string // a, b, c, d
	base  *url.URL
	dial  string // 127.0.0.1:PORT
	token string // OAuth access token sent as "Authorization: Bearer" on every request; "" for none
}

func parseTarget(s string) (target, error) {
	name, raw, ok := strings.Cut(s, "=")
	if !ok {
		return target{}, fmt.Errorf("target %q: want NAME=URL", s)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return target{name: name, base: u, dial: net.JoinHostPort("127.0.0.1", port)}, nil
}

func (t target) url(path string) string {
	u := *t.base
	u.Path = path
	return u.String()
}

func loadRoots(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", caFile)
	}
	return pool, nil
}

// newTransport returns an HTTP/1.1 keep-alive transport holding at most one connection, which
// dials t.dial whatever the host; dials counts the connections it opened.
func newTransport(t target, roots *x509.CertPool, dials *atomic.Int64) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			if dials != nil {
				dials.Add(1)
			}
			return d.DialContext(ctx, network, t.dial)
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}},
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // no HTTP/2
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ReadBufferSize:      64 << 10,
		WriteBufferSize:     16 << 10,
	}
}

// bearer adds "Authorization: Bearer token" to req, unless token is "".
func bearer(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}

// post sends the small MCP request to u, with the access token if there is one, and reads the
// whole response.
func post(c *http.Client, u, token string) (int, error) {
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(mcpRequest))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	bearer(req, token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

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
					Value: float64(busy1-busy0) / clockTicks / secs / float64(runtime.NumCPU()) * 100})
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

// ---------------------------------------------------------------------------------------------
// wait: until a POST to the URL answers 200 (or -status). With tunnel-auth oauth and no token,
// 401 is the sign that the tunnel is up: toolgate answers 404 or 502 for one that is not.

func runWait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	rawURL := fs.String("url", "", "URL to POST to")
	caFile := fs.String("ca", "", "PEM CA for https")
	token := fs.String("token", "", "OAuth access token to send (Authorization: Bearer)")
	want := fs.Int("status", http.StatusOK, "the status to wait for")
	timeout := fs.Duration("timeout", 15*time.Second, "give up after")
	fs.Parse(args)
	t, err := parseTarget("x=" + *rawURL)
	if err != nil {
		return err
	}
	roots, err := loadRoots(*caFile)
	if err != nil {
		return err
	}
	tr := newTransport(t, roots, nil)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	deadline := time.Now().Add(*timeout)
	for {
		code, err := post(client, *rawURL, *token)
		if code == *want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %d within %s (last: %d %v)", *rawURL, *want, *timeout, code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------------------------
// setup: time from starting the ssh client to the tunnel answering a POST with 200.

func runSetup(args []string) error {
	fs := flag.NewFlagSet("setup", flag.ExitOnError)
	path := fs.String("path", "c", "path name for the record")
	rawURL := fs.String("url", "", "URL to poll (POST) until it answers 200")
	caFile := fs.String("ca", "", "PEM CA for https")
	round := fs.Int("round", 1, "round number")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after")
	out := fs.String("out", "-", "JSONL results file (append)")
	fs.Parse(args)
	if fs.NArg() == 0 || *rawURL == "" {
		return errors.New("usage: loadgen setup -url URL [flags] -- CMD ARGS")
	}
	t, err := parseTarget("x=" + *rawURL)
	if err != nil {
		return err
	}
	roots, err := loadRoots(*caFile)
	if err != nil {
		return err
	}
	rec, err := openRecorder(*out)
	if err != nil {
		return err
	}
	tr := newTransport(t, roots, nil)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	// The tunnel must be down before we start (a previous round's may still be closing), and a
	// connection to toolgate is opened now so that its TLS handshake is not counted.
	deadline := time.Now().Add(*timeout)
	for {
		code, _ := post(client, *rawURL, "")
		if code != 200 {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the tunnel is already up before ssh started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	var outBuf lockedBuffer
	cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
	s := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer stopCmd(cmd)
	polls := 0
	for {
		polls++
		code, _ := post(client, *rawURL, "")
		if code == 200 {
			break
		}
		if time.Since(s) > *timeout {
			return fmt.Errorf("no 200 within %s (last status %d); ssh output:\n%s", *timeout, code, outBuf.String())
		}
		time.Sleep(500 * time.Microsecond)
	}
	el := time.Since(s)
	fmt.Fprintf(os.Stderr, "round %d  %s  setup %7.1f ms (%d polls)\n", *round, *path, ms(el), polls)
	rec.add(record{Round: *round, Path: *path, Metric: "setup_ms", Value: ms(el)})
	stopCmd(cmd)
	// Wait for the tunnel to go away so that the next round starts from nothing.
	for time.Since(s) < *timeout+10*time.Second {
		if code, _ := post(client, *rawURL, ""); code != 200 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("the tunnel stayed up after ssh exited")
}

// ---------------------------------------------------------------------------------------------
// scale: n SSH connections, each with its own key and one tunnel (client.Listen on 0.0.0.0:0),
// opened at most par at a time; toolgate's /metrics before and after.

// adminRun runs a `toolgate user|key` command over a running server's admin socket.
func adminRun(sock string, args ...string) (string, error) {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(map[string]any{"args": args})
	resp, err := client.Post("http://toolgate/run", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Stdout, Stderr string
		Code           int
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("admin socket: %s: %w", resp.Status, err)
	}
	if out.Code != 0 {
		return out.Stdout, fmt.Errorf("toolgate %s: %s", strings.Join(args[:2], " "), strings.TrimSpace(out.Stderr))
	}
	return out.Stdout, nil
}

func runScale(args []string) error {
	fs := flag.NewFlagSet("scale", flag.ExitOnError)
	sshAddr := fs.String("ssh", "127.0.0.1:2222", "toolgate SSH address")
	admin := fs.String("admin", "127.0.0.1:9180", "toolgate admin address")
	n := fs.Int("n", 1000, "connections, one tunnel each")
	par := fs.Int("par", 8, "connections being opened at once (toolgate allows 16 handshakes per IP)")
	settle := fs.Duration("settle", 3*time.Second, "wait after the last tunnel before reading metrics")
	out := fs.String("out", "-", "JSONL results file (append)")
	sock := fs.String("admin-socket", "", "toolgate's admin socket (DATA-DIR/admin.sock), to link the keys")
	domain := fs.String("user-domain", "bench.test", "key i is linked to user scale-i@DOMAIN")
	fs.Parse(args)
	rec, err := openRecorder(*out)
	if err != nil {
		return err
	}
	signers := make([]ssh.Signer, *n)
	for i := range signers {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		if signers[i], err = ssh.NewSignerFromKey(priv); err != nil {
			return err
		}
	}
	// toolgate accepts only linked keys; link each to a user of its own, as `toolgate key add`
	// would, before the baseline is read. One user for all would not do: a person gets the
	// same random name back for the same -R, so every connection would land on one name.
	if *sock != "" {
		for i, sg := range signers {
			user := fmt.Sprintf("scale-%d@%s", i, *domain)
			if _, err := adminRun(*sock, "user", "add", user); err != nil && !strings.Contains(err.Error(), "already exists") {
				return err
			}
			line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sg.PublicKey())))
			if _, err := adminRun(*sock, "key", "add", "--user", user, "--ttl", "0", line); err != nil {
				return err
			}
		}
	}
	before, err := metrics(*admin)
	if err != nil {
		return err
	}
	clients := make([]*ssh.Client, *n)
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr atomic.Value
	s := time.Now()
	var wg sync.WaitGroup
	for range *par {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				c, err := ssh.Dial("tcp", *sshAddr, &ssh.ClientConfig{
					User:            "bench",
					Auth:            []ssh.AuthMethod{ssh.PublicKeys(signers[i])},
					HostKeyCallback: ssh.InsecureIgnoreHostKey(),
					Timeout:         10 * time.Second,
				})
				if err == nil {
					if _, lerr := c.Listen("tcp", "0.0.0.0:0"); lerr != nil {
						c.Close()
						err = lerr
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				clients[i] = c
			}
		})
	}
	wg.Wait()
	openTime := time.Since(s)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d connections failed; first: %v", f, *n, firstErr.Load())
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		m, err := metrics(*admin)
		if err == nil && int(m["toolgate_tunnels"]) >= *n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("toolgate_tunnels did not reach %d", *n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(*settle)
	// Three samples: a keepalive round may be in flight (one short-lived goroutine per
	// connection); take the smallest.
	var after map[string]float64
	for i := range 3 {
		m, err := metrics(*admin)
		if err != nil {
			return err
		}
		if after == nil || m["go_goroutines"] < after["go_goroutines"] {
			after = m
		}
		if i < 2 {
			time.Sleep(500 * time.Millisecond)
		}
	}
	per := func(k string) float64 { return (after[k] - before[k]) / float64(*n) }
	res := map[string]float64{
		"scale_rss_kib_per_tunnel":        per("process_resident_memory_bytes") / 1024,
		"scale_heap_inuse_kib_per_tunnel": per("go_memstats_heap_inuse_bytes") / 1024,
		"scale_stack_kib_per_tunnel":      per("go_memstats_stack_inuse_bytes") / 1024,
		"scale_goroutines_per_tunnel":     per("go_goroutines"),
		"scale_open_s":                    openTime.Seconds(),
		"scale_rss_before_mib":            before["process_resident_memory_bytes"] / (1 << 20),
		"scale_rss_after_mib":             after["process_resident_memory_bytes"] / (1 << 20),
		"scale_goroutines_before":         before["go_goroutines"],
		"scale_goroutines_after":          after["go_goroutines"],
	}
	fmt.Fprintf(os.Stderr, "scale: %d tunnels opened in %.1fs; RSS %.1f -> %.1f MiB = %.1f KiB/tunnel (heap %.1f, stacks %.1f KiB); goroutines %.0f -> %.0f = %.2f/tunnel\n",
		*n, openTime.Seconds(), res["scale_rss_before_mib"], res["scale_rss_after_mib"], res["scale_rss_kib_per_tunnel"],
		res["scale_heap_inuse_kib_per_tunnel"], res["scale_stack_kib_per_tunnel"], before["go_goroutines"], after["go_goroutines"],
		res["scale_goroutines_per_tunnel"])
	for k, v := range res {
		rec.add(record{Path: "c", Metric: k, Value: v})
	}
	// Close everything and check that toolgate lets go of it.
	for i, c := range clients {
		c.Close()
		clients[i] = nil
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		m, err := metrics(*admin)
		if err == nil && m["toolgate_tunnels"] == 0 && m["toolgate_ssh_connections"] == 0 {
			time.Sleep(time.Second)
			if m, err = metrics(*admin); err == nil {
				fmt.Fprintf(os.Stderr, "scale: after closing all: goroutines %.0f (before %.0f)\n", m["go_goroutines"], before["go_goroutines"])
				rec.add(record{Path: "c", Metric: "scale_goroutines_after_close", Value: m["go_goroutines"]})
			}
			break
		}
	}
	return nil
}

// metrics reads the unlabelled samples of toolgate's /metrics.
func metrics(admin string) (map[string]float64, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.Contains(line, "{") {
			continue
		}
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			m[k] = f
		}
	}
	return m, sc.Err()
}

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
