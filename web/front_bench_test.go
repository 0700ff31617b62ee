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
	st, err := data.Open(data.Config{Path: filepath.Join(b.TempDir(), "b.db"), NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	u, err := st.CreateUser(context.Background(), data.User{Email: "bench@bench.test"})
	if err != nil {
		b.Fatal(err)
	}
	reg, err := tunnel.NewRegistry(tunnel.Config{Domain: "bench.localhost", Names: st})
	if err != nil {
		b.Fatal(err)
	}
	fwd, err := reg.Open(context.Background(), tunnel.OpenRequest{Owner: u.ID, Conn: benchConn{}, Dialer: benchDialer{},
		BindAddr: "bench", LocalHost: "localhost:80"})
	if err != nil {
		b.Fatal(err)
	}
	defer fwd.Close()
	access := &oauth.Access{UserID: u.ID, ClientID: "c", ClientName: "bench", Scopes: []string{"mcp"},
		Resource: "https://bench.bench.localhost", AuthTime: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ping","arguments":{"q":"` + strings.Repeat("x", 900) + `"}}}`

	for _, mode := range []string{"open", "oauth", "oauth+policy", "oauth+policy+audit"} {
		b.Run(mode, func(b *testing.B) {
			cfg := FrontConfig{Domain: "bench.localhost", Tunnels: reg, Proxy: benchProxy{}}
			if strings.HasPrefix(mode, "oauth") {
				cfg.Auth = benchTokens{access}
			}
			if strings.Contains(mode, "policy") {
				cfg.Policy, cfg.Users = benchPolicy{authz.DefaultPolicy(time.Hour)}, st
			}
			if strings.Contains(mode, "audit") {
				cfg.Audit = benchAudit{}
			}
			f, err := NewFront(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest("POST", "https://bench.bench.localhost/mcp", strings.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				r.Header.Set("Authorization", "Bearer x")
				r.RemoteAddr = "127.0.0.1:5000"
				w := httptest.NewRecorder()
				f.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatalf("%s: %d %s", mode, w.Code, w.Body)
				}
			}
		})
	}
}
