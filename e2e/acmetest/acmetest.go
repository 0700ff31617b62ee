// Package acmetest runs an ACME certificate authority inside a test process: Let's Encrypt's
// pebble (its ca, va and wfe packages) behind an httptest HTTPS server, plus a tiny DNS server
// that resolves every name to 127.0.0.1.
//
// With real validation (the default), pebble's validation authority looks names up in that DNS
// server and connects to 127.0.0.1 on Config.TLSALPNPort (TLS-ALPN-01) or Config.HTTPPort
// (HTTP-01), so the server under test must answer challenges there, exactly as it would for a
// public CA. Nothing leaves the loopback interface.
//
// Start sets environment variables with t.Setenv, so tests that use it cannot call t.Parallel.
package acmetest

import (
	"context"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// Pebble's own default challenge ports (test/config/pebble-config.json).
const (
	defaultTLSALPNPort = 5001
	defaultHTTPPort    = 5002
)

// Config configures Start. Every field is read once, by Start.
type Config struct {
	// TLSALPNPort is the port on 127.0.0.1 that pebble's validation authority connects to for
	// TLS-ALPN-01. Default 0: 5001 (pebble's default). Set it to the test's HTTPS listener port.
	TLSALPNPort int

	// HTTPPort is the port on 127.0.0.1 that pebble connects to for HTTP-01. Default 0: 5002.
	HTTPPort int

	// AlwaysValid makes pebble mark every challenge valid without contacting anything
	// (PEBBLE_VA_ALWAYS_VALID). Default false: challenges are really validated.
	AlwaysValid bool

	// Verbose sends pebble's log to t.Log. Default false: discarded.
	Verbose bool
}

// Server is a running in-process ACME CA. Its fields are set by Start and must not be changed.
type Server struct {
	// DirectoryURL is the ACME directory (https://127.0.0.1:PORT/dir).
	DirectoryURL string

	// Roots verifies the ACME API's HTTPS certificate (pass it as the client's trusted roots).
	Roots *x509.CertPool

	// IssuedRoots verifies certificates the CA issues.
	IssuedRoots *x509.CertPool

	// DNSAddr is the address (TCP, 127.0.0.1) of the DNS server pebble resolves names with.
	DNSAddr string
}

// Start runs pebble and the DNS server until the test ends (t.Cleanup). It fails the test if
// either cannot start.
//
// One goroutine outlives the cleanup: pebble's va.New starts a task loop over a channel that
// nothing ever closes.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.TLSALPNPort == 0 {
		cfg.TLSALPNPort = defaultTLSALPNPort
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = defaultHTTPPort
	}

	// These are read inside va.New and wfe.New, so they must be set before constructing.
	// NOSLEEP removes the random 0-5 s delay before each validation; NONCEREJECT=0 stops the
	// WFE from rejecting 5% of good nonces (which exists to exercise client retries); AUTHZREUSE=0
	// makes every order validate afresh instead of reusing a valid authorization half the time.
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	if cfg.AlwaysValid {
		t.Setenv("PEBBLE_VA_ALWAYS_VALID", "1")
	} else {
		t.Setenv("PEBBLE_VA_ALWAYS_VALID", "0") // in case the environment set it
	}

	logger := log.New(io.Discard, "", 0)
	if cfg.Verbose {
		lw := &testLogWriter{t: t}
		t.Cleanup(lw.stop)
		logger = log.New(lw, "pebble ", log.Lmicroseconds)
	}

	dnsAddr := startDNS(t)

	store := db.NewMemoryStore()
	// keyAlg "ecdsa" is faster to generate than "rsa"; one chain (no alternate roots) with one
	// intermediate; the profile map must not be empty, since the WFE picks a random profile
	// from it for orders that name none.
	c := ca.New(logger, store, "", "ecdsa", 0, 1,
		map[string]ca.Profile{"default": {Description: "acmetest default profile"}})
	v := va.New(logger, cfg.HTTPPort, cfg.TLSALPNPort, false, dnsAddr, store)
	w := wfe.New(logger, store, v, c, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	// ACME is HTTPS-only (RFC 8555 §6.1); httptest binds 127.0.0.1.
	api := httptest.NewTLSServer(w.Handler())
	t.Cleanup(api.Close)

	s := &Server{
		DirectoryURL: api.URL + wfe.DirectoryPath,
		Roots:        x509.NewCertPool(),
		IssuedRoots:  x509.NewCertPool(),
		DNSAddr:      dnsAddr,
	}
	s.Roots.AddCert(api.Certificate())
	s.IssuedRoots.AddCert(c.GetRootCert(0).Cert)
	return s
}

// startDNS serves DNS over TCP on 127.0.0.1 (pebble's resolver client uses TCP only): A
// 127.0.0.1 for every name, and an empty answer for every other type, so AAAA, CAA and TXT
// lookups succeed with no records.
func startDNS(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("acmetest: DNS listener: %v", err)
	}
	started := make(chan struct{})
	srv := &dns.Server{
		Listener:          ln,
		Handler:           dns.HandlerFunc(answerLoopback),
		NotifyStartedFunc: func() { close(started) },
	}
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-served:
		t.Fatalf("acmetest: DNS server: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("acmetest: DNS server did not start")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.ShutdownContext(ctx); err != nil {
			t.Errorf("acmetest: DNS shutdown: %v", err)
		}
		<-served
	})
	return ln.Addr().String()
}

// answerLoopback answers every A question with 127.0.0.1 and everything else with no records.
func answerLoopback(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	for _, q := range req.Question {
		if q.Qtype != dns.TypeA || q.Qclass != dns.ClassINET {
			continue
		}
		resp.Answer = append(resp.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
			A:   net.IPv4(127, 0, 0, 1),
		})
	}
	_ = w.WriteMsg(resp) // the client gone is not our problem
}

// testLogWriter sends each line written by a log.Logger to t.Log until stop. Pebble's validation
// goroutines can log after the test ends, and t.Log then panics, so later lines are dropped.
type testLogWriter struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}
