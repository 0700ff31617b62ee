package web

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/toolgate/toolgate/e2e/acmetest"
)

// tlsTestAllow allows a fixed set of names and records every question.
type tlsTestAllow struct {
	mu      sync.Mutex
	allowed []string
	asked   []string
}

func (a *tlsTestAllow) Allow(_ context.Context, name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, name)
	if slices.Contains(a.allowed, name) {
		return nil
	}
	return errors.New("no such tunnel")
}

func (a *tlsTestAllow) wasAsked(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.asked, name)
}

// tlsTestServe serves HTTPS on ln with cfg until the test ends. acmeHellos counts ClientHellos
// that offer only acme-tls/1, i.e. TLS-ALPN-01 validation attempts.
func tlsTestServe(t *testing.T, ln net.Listener, cfg *tls.Config) (acmeHellos func() int) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	get := cfg.GetCertificate
	cfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if len(h.SupportedProtos) == 1 && h.SupportedProtos[0] == acmeTLS1Protocol {
			mu.Lock()
			n++
			mu.Unlock()
		}
		return get(h)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		TLSConfig:         cfg,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // refused handshakes are expected
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeTLS(ln, "", "")
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// tlsTestHandshake does a verified TLS handshake with serverName and returns the leaf.
func tlsTestHandshake(addr, serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		Config:    &tls.Config{ServerName: serverName, RootCAs: roots, NextProtos: []string{"http/1.1"}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// tlsTestNoSNI does a handshake without SNI (no ServerName, so Go sends none) and returns the
// unverified leaf.
func tlsTestNoSNI(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		t.Fatalf("handshake without SNI: %v", err)
	}
	return c.ConnectionState().PeerCertificates[0]
}

// maintenanceRunning reports whether the cache's maintainAssets goroutine is alive; its
// receiver (the cache pointer) appears in the goroutine's stack.
func maintenanceRunning(cache *certmagic.Cache) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Contains(buf, []byte(fmt.Sprintf("certmagic.(*Cache).maintainAssets(%p", cache)))
}

// maintenanceStops waits briefly for the cache's maintenance goroutine to be gone: Cache.Stop
// returns once the goroutine has signalled completion, which is just before it returns.
func maintenanceStops(cache *certmagic.Cache) bool {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if !maintenanceRunning(cache) {
			return true
		}
	}
	return false
}

// certmagicGoroutines returns the top certmagic function of every goroutine running certmagic
// code, for the record.
func certmagicGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		for line := range strings.SplitSeq(g, "\n") {
			if strings.HasPrefix(line, "github.com/caddyserver/certmagic.") {
				out = append(out, strings.TrimPrefix(line[:strings.LastIndexByte(line, '(')], "github.com/caddyserver/certmagic."))
				break
			}
		}
	}
	return out
}

// tlsTestHandler is a comparable http.Handler.
type tlsTestHandler struct{ _ byte }

func (*tlsTestHandler) ServeHTTP(http.ResponseWriter, *http.Request) {}

// lockedBuffer is an io.Writer for a slog handler written from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestCertManagerLocalCA(t *testing.T) {
	const domain = "toolgate.localhost"
	ca := newTestLocalCA(t, &localCATestSecrets{}, domain)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	allow := &tlsTestAllow{allowed: []string{"quiet-fox." + domain}}
	logs := &lockedBuffer{}

	m, err := NewCertManager(CertManagerConfig{
		Domain: domain, Storage: storage, LocalCA: ca, Allow: allow.Allow,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsTestServe(t, ln, m.TLSConfig())
	addr := ln.Addr().String()

	apex, err := tlsTestHandshake(addr, domain, roots)
	if err != nil {
		t.Fatalf("apex handshake: %v", err)
	}
	if allow.wasAsked(domain) {
		t.Error("Allow was asked about the apex")
	}
	for _, sni := range []string{"quiet-fox." + domain, "Quiet-Fox." + domain} {
		leaf, err := tlsTestHandshake(addr, sni, roots)
		if err != nil {
			t.Fatalf("handshake %s: %v", sni, err)
		}
		if !slices.Equal(leaf.DNSNames, []string{"quiet-fox." + domain}) {
			t.Fatalf("handshake %s got names %v", sni, leaf.DNSNames)
		}
	}
	if _, err := tlsTestHandshake(addr, "evil."+domain, roots); err == nil {
		t.Fatal("handshake for a refused name succeeded")
	}
	if !allow.wasAsked("evil." + domain) {
		t.Fatal("Allow was not asked about evil." + domain)
	}

	// No SNI, and an IP literal in SNI (which Go's client never sends, hence the direct call):
	// both get the apex certificate.
	if leaf := tlsTestNoSNI(t, addr); !bytes.Equal(leaf.Raw, apex.Raw) {
		t.Fatalf("no-SNI handshake got %v", leaf.DNSNames)
	}
	c, err := m.TLSConfig().GetCertificate(&tls.ClientHelloInfo{ServerName: "127.0.0.1"})
	if err != nil || !bytes.Equal(c.Certificate[0], apex.Raw) {
		t.Fatalf("IP SNI: %v", err)
	}

	// Only DNS names are offered; h2 and http/1.1 ahead of acme-tls/1; TLS 1.2 at least.
	tc := m.TLSConfig()
	if !slices.Equal(tc.NextProtos, []string{"h2", "http/1.1", "acme-tls/1"}) || tc.MinVersion != tls.VersionTLS12 {
		t.Fatalf("TLSConfig = %+v", tc)
	}
	if next := (&tlsTestHandler{}); m.HTTPChallengeHandler(next) != http.Handler(next) {
		t.Fatal("HTTPChallengeHandler wraps with a local CA")
	}
	if !strings.Contains(logs.String(), "logger=certmagic") {
		t.Fatalf("no certmagic log reached slog:\n%s", logs.String())
	}

	// A second manager over the same storage loads the apex certificate instead of issuing.
	m2, err := NewCertManager(CertManagerConfig{Domain: domain, Storage: storage, LocalCA: ca})
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c, err = m2.TLSConfig().GetCertificate(&tls.ClientHelloInfo{})
	m2.Stop()
	if err != nil || !bytes.Equal(c.Certificate[0], apex.Raw) {
		t.Fatalf("restarted manager did not reuse the stored certificate (err %v)", err)
	}

	if !maintenanceRunning(m.cache) {
		t.Fatal("maintenance goroutine not found; the stack check is broken")
	}
	m.Stop()
	m.Stop() // idempotent
	if !maintenanceStops(m.cache) || !maintenanceStops(m2.cache) {
		t.Fatal("cache maintenance still running after Stop")
	}
}

func TestCertManagerACME(t *testing.T) {
	const domain = "toolgate.test"
	start := time.Now()

	// The listener must exist first: pebble is told its port for TLS-ALPN-01, and certmagic,
	// finding the port in use, leaves the answer to this server's GetCertificate.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	srv := acmetest.Start(t, acmetest.Config{TLSALPNPort: port})

	storage := &certmagic.FileStorage{Path: t.TempDir()}
	allow := &tlsTestAllow{allowed: []string{"quiet-fox." + domain}}
	m, err := NewCertManager(CertManagerConfig{
		Domain:  domain,
		Storage: storage,
		ACME: &ACMEConfig{
			CA: srv.DirectoryURL, Email: "ops@toolgate.test", TrustedRoots: srv.Roots,
			ListenHost: "127.0.0.1", AltTLSALPNPort: port, DisableHTTPChallenge: true,
		},
		Allow: allow.Allow,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	acmeHellos := tlsTestServe(t, ln, m.TLSConfig())
	addr := ln.Addr().String()

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if acmeHellos() == 0 {
		t.Fatal("pebble issued without a TLS-ALPN-01 validation against our listener")
	}
	if _, err := tlsTestHandshake(addr, domain, srv.IssuedRoots); err != nil {
		t.Fatalf("apex handshake: %v", err)
	}

	before := acmeHellos()
	leaf, err := tlsTestHandshake(addr, "quiet-fox."+domain, srv.IssuedRoots)
	if err != nil {
		t.Fatalf("on-demand handshake: %v", err)
	}
	if !slices.Equal(leaf.DNSNames, []string{"quiet-fox." + domain}) || acmeHellos() == before {
		t.Fatalf("on-demand certificate names %v, validations %d", leaf.DNSNames, acmeHellos()-before)
	}

	if _, err := tlsTestHandshake(addr, "evil."+domain, srv.IssuedRoots); err == nil {
		t.Fatal("handshake for a refused name succeeded")
	}
	keys, err := storage.List(ctx, "certificates", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.Contains(k, "evil") {
			t.Fatalf("storage holds %s", k)
		}
	}
	if next := (&tlsTestHandler{}); m.HTTPChallengeHandler(next) != http.Handler(next) {
		t.Fatal("HTTPChallengeHandler wraps with HTTP-01 disabled")
	}

	m.Stop()
	if !maintenanceStops(m.cache) {
		t.Fatal("cache maintenance still running after Stop")
	}
	t.Logf("certmagic goroutines left after Stop: %v (elapsed %v)", certmagicGoroutines(), time.Since(start).Round(time.Millisecond))
}

func TestCertManagerDecide(t *testing.T) {
	allow := &tlsTestAllow{allowed: []string{"ok-name.toolgate.localhost"}}
	m := &CertManager{domain: "toolgate.localhost", allow: allow.Allow}
	ctx := t.Context()
	if err := m.decide(ctx, "toolgate.localhost"); err != nil {
		t.Fatalf("apex refused: %v", err)
	}
	if err := m.decide(ctx, "ok-name.toolgate.localhost"); err != nil {
		t.Fatalf("allowed name refused: %v", err)
	}
	for _, bad := range []string{"OK-NAME.toolgate.localhost", "a_b.toolgate.localhost", "*.toolgate.localhost",
		"toolgate.localhost.", "127.0.0.1", "", "a..toolgate.localhost", "a b.toolgate.localhost"} {
		if err := m.decide(ctx, bad); !errors.Is(err, ErrCertNotAllowed) {
			t.Errorf("decide(%q) = %v", bad, err)
		}
		if allow.wasAsked(bad) {
			t.Errorf("Allow was asked about %q", bad)
		}
	}
	if err := m.decide(ctx, "nope.toolgate.localhost"); !errors.Is(err, ErrCertNotAllowed) || !strings.Contains(err.Error(), "no such tunnel") {
		t.Errorf("refused name: %v", err)
	}
	m.allow = nil
	if err := m.decide(ctx, "ok-name.toolgate.localhost"); !errors.Is(err, ErrCertNotAllowed) {
		t.Errorf("nil Allow allowed: %v", err)
	}
}

func TestNewCertManagerErrors(t *testing.T) {
	ca := newTestLocalCA(t, &localCATestSecrets{}, "toolgate.localhost")
	st := &certmagic.FileStorage{Path: t.TempDir()}
	acme := func(mod func(*ACMEConfig)) *ACMEConfig {
		a := &ACMEConfig{CA: "https://acme.example/dir", Email: "ops@example.com"}
		mod(a)
		return a
	}
	for field, cfg := range map[string]CertManagerConfig{
		"Domain":         {Storage: st, LocalCA: ca},
		"not a DNS name": {Domain: "toolgate_localhost", Storage: st, LocalCA: ca},
		"Storage":        {Domain: "toolgate.localhost", LocalCA: ca},
		"needs LocalCA":  {Domain: "toolgate.localhost", Storage: st},
		"exclusive":      {Domain: "toolgate.localhost", Storage: st, LocalCA: ca, ACME: acme(func(*ACMEConfig) {})},
		"may sign only":  {Domain: "toolgate.example.com", Storage: st, LocalCA: ca},
		"ACMEConfig.CA":  {Domain: "t.example.com", Storage: st, ACME: acme(func(a *ACMEConfig) { a.CA = "" })},
		"https":          {Domain: "t.example.com", Storage: st, ACME: acme(func(a *ACMEConfig) { a.CA = "http://acme.example/dir" })},
		"Email":          {Domain: "t.example.com", Storage: st, ACME: acme(func(a *ACMEConfig) { a.Email = "" })},
		"AltTLSALPNPort": {Domain: "t.example.com", Storage: st, ACME: acme(func(a *ACMEConfig) { a.AltTLSALPNPort = 70000 })},
	} {
		_, err := NewCertManager(cfg)
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v", field, err)
		}
	}
}
