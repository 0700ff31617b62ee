package web

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/tunnel"
)

// The tunnel path in process, without TLS or SSH: what the front itself costs per request
// with the token, policy and audit steps on and off. The proxy is a stub that answers 200.

type benchConn struct{}

func (benchConn) Probe(context.Context) error { return nil }
func (benchConn) Evict(string)                {}
func (benchConn) Notify(string)               {}

type benchDialer struct{}

func (benchDialer) DialContext(context.Context, netip.AddrPort) (net.Conn, error) {
	return nil, io.EOF
}

type benchProxy struct{}

func (benchProxy) Serve(w http.ResponseWriter, r *http.Request, _ *tunnel.Tunnel, _ netip.AddrPort) {
	// Not closed: httputil.ReverseProxy does not close the body it was given either (it
	// wraps it in a reader whose Close does nothing beneath).
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"pong"}]}}`)
}

type benchTokens struct{ access *oauth.Access }

func (b benchTokens) Check(context.Context, string, string, string) (*oauth.Access, error) {
	return b.access, nil
}
func (benchTokens) ResourceMetadata(string) []byte     { return nil }
func (benchTokens) DefaultScopes() []string            { return []string{"mcp"} }
func (benchTokens) StepUpIssued(*oauth.Access, string) {}

type benchPolicy struct{ p *authz.Policy }

func (b benchPolicy) Current() *authz.Policy { return b.p }

type benchAudit struct{}

func (benchAudit) Append(data.AuditRecord) {}

func BenchmarkServeTunnel(b *testing.B) {
	st, reg, _, users := openTestTunnel(b, "bench.localhost", "bench", "bench@bench.test")
	u := users[0]
	access := &oauth.Access{UserID: u.ID, ClientID: "c", ClientName: "bench", Scopes: []string{"mcp"},
		Resource: "https://bench.bench.localhost", AuthTime: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ping","arguments":{"q":"` + strings.Repeat("x", 900) + `"}}}`

	// "audit" hands records to a sink that drops them: the request path's share. "auditlog"
	// hands them to a real audit log on its own database (with fsync, as in production), so
	// that the writer's encoding and commits, on another goroutine, count in cpu-ns/op.
	// "no-token+audit" is a request without a token, refused (401) and audited: what a
	// scanner's request costs.
	// "+limits" adds every request limit, high enough never to refuse: what counting costs.
	for _, mode := range []string{"open", "oauth", "oauth+policy", "oauth+policy+limits", "oauth+policy+audit", "oauth+policy+auditlog", "no-token+audit"} {
		b.Run(mode, func(b *testing.B) {
			cfg := FrontConfig{Domain: "bench.localhost", Tunnels: reg, Proxy: benchProxy{}}
			want := http.StatusOK
			if strings.HasPrefix(mode, "oauth") || strings.HasPrefix(mode, "no-token") {
				cfg.Auth = benchTokens{access}
			}
			if strings.HasPrefix(mode, "no-token") {
				want = http.StatusUnauthorized
			}
			if strings.Contains(mode, "policy") {
				cfg.Policy, cfg.Users = benchPolicy{authz.DefaultPolicy(time.Hour)}, st
			}
			if strings.Contains(mode, "limits") {
				cfg.Limits = RequestLimits{RatePerIP: 1e9, RatePerUser: 1e9, StreamsPerIP: 1 << 20, StreamsPerUser: 1 << 20}
			}
			var log *data.AuditLog
			switch {
			case strings.HasSuffix(mode, "+auditlog"):
				ast, err := data.Open(data.Config{Path: filepath.Join(b.TempDir(), "audit.db")})
				if err != nil {
					b.Fatal(err)
				}
				defer ast.Close()
				log = ast.AuditLog(data.AuditLogConfig{})
				defer log.Close(context.Background())
				cfg.Audit = log
			case strings.HasSuffix(mode, "+audit"):
				cfg.Audit = benchAudit{}
			}
			f, err := NewFront(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu := processCPU(b)
			for b.Loop() {
				r := httptest.NewRequest("POST", "https://bench.bench.localhost/mcp", strings.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				if want == http.StatusOK {
					r.Header.Set("Authorization", "Bearer x")
				}
				r.RemoteAddr = "127.0.0.1:5000"
				w := httptest.NewRecorder()
				f.ServeHTTP(w, r)
				if w.Code != want {
					b.Fatalf("%s: %d %s", mode, w.Code, w.Body)
				}
			}
			if log != nil {
				// The writer's last batch counts too; records dropped (the writer fell
				// behind) would flatter the figure, so they are reported.
				if err := log.Close(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(log.Dropped())/float64(b.N), "dropped/op")
			}
			b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time this process has used, every thread together, so that work off
// the benchmark's goroutine (the garbage collector, the audit writer) counts in cpu-ns/op.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
