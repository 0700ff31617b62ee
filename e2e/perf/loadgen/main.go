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
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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
