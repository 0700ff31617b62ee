package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/toolgate/toolgate/data"
)

// The figures of docs/PERFORMANCE.md: what the token check costs each proxied request, and
// how many code exchanges and refreshes the token endpoint does per second with the
// database on disk (fsync on, as in production).

type benchResources struct{}

func (benchResources) Known(_ context.Context, origin string) bool {
	return origin == "https://a.bench.localhost:8443"
}
func (benchResources) Only(context.Context) (string, bool) { return "", false }

type benchServer struct {
	srv    *Server
	store  *data.Store
	user   data.User
	client string
	h      http.Handler
}

func newBenchServer(b *testing.B, noSync bool) *benchServer {
	b.Helper()
	store, err := data.Open(data.Config{Path: filepath.Join(b.TempDir(), "bench.db"), NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	u, err := store.CreateUser(context.Background(), data.User{Email: "bench@bench.test"})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(Config{
		Issuer: "https://bench.localhost:8443", Store: store, Secret: []byte(strings.Repeat("k", 32)),
		Resources: benchResources{},
		Clients:   []StaticClient{{ID: "bench", RedirectURIs: []string{"http://127.0.0.1/cb"}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	return &benchServer{srv: srv, store: store, user: u, client: "bench", h: srv.Handler()}
}

// code runs one authorization and returns the code and its verifier.
func (bs *benchServer) code(b *testing.B) (code, verifier string) {
	verifier = oauth2.GenerateVerifier()
	q := url.Values{"client_id": {bs.client}, "response_type": {"code"}, "redirect_uri": {"http://127.0.0.1:5000/cb"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
		"resource": {"https://a.bench.localhost:8443/mcp"}, "state": {"benchstate"}}
	req, err := bs.srv.ParseAuthorize(context.Background(), httptest.NewRequest("GET", AuthorizePath+"?"+q.Encode(), nil))
	if err != nil {
		b.Fatal(err)
	}
	rec := httptest.NewRecorder()
	bs.srv.Approve(context.Background(), rec, req, Grantee{UserID: bs.user.ID, AuthTime: time.Now()})
	loc, err := url.Parse(rec.Header().Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		b.Fatalf("no code: %d %v", rec.Code, rec.Header())
	}
	return loc.Query().Get("code"), verifier
}

func (bs *benchServer) token(b *testing.B, form url.Values) (access, refresh string) {
	req := httptest.NewRequest("POST", TokenPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	bs.h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		b.Fatalf("token: %d %s", rec.Code, rec.Body)
	}
	var out struct{ AccessToken, RefreshToken string }
	var raw map[string]any
	json.Unmarshal(rec.Body.Bytes(), &raw)
	out.AccessToken, _ = raw["access_token"].(string)
	out.RefreshToken, _ = raw["refresh_token"].(string)
	return out.AccessToken, out.RefreshToken
}

func (bs *benchServer) exchange(b *testing.B, code, verifier string) (access, refresh string) {
	return bs.token(b, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"client_id": {bs.client}, "redirect_uri": {"http://127.0.0.1:5000/cb"}})
}

// BenchmarkCheck is the token step of every proxied request after a token's first: a cache
// hit, checked against the store's generation and the token's expiry. No writes.
func BenchmarkCheck(b *testing.B) {
	bs := newBenchServer(b, true)
	code, verifier := bs.code(b)
	access, _ := bs.exchange(b, code, verifier)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := bs.srv.Check(ctx, access, "https://a.bench.localhost:8443", "/mcp"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckUncached is the first request with a token (or the first after any
// revocation anywhere): HMAC, one read of the token and one of its user.
func BenchmarkCheckUncached(b *testing.B) {
	bs := newBenchServer(b, true)
	code, verifier := bs.code(b)
	access, _ := bs.exchange(b, code, verifier)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		clear(bs.srv.accessCache.entries)
		if _, err := bs.srv.Check(ctx, access, "https://a.bench.localhost:8443", "/mcp"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckForged is a request with a forged token: refused on the HMAC alone.
func BenchmarkCheckForged(b *testing.B) {
	bs := newBenchServer(b, true)
	code, verifier := bs.code(b)
	access, _ := bs.exchange(b, code, verifier)
	forged := access[:len(access)-3] + "AAA"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bs.srv.Check(ctx, forged, "https://a.bench.localhost:8443", "/mcp"); err == nil {
			b.Fatal("forged token accepted")
		}
	}
}

// BenchmarkCodeExchange is the token endpoint's authorization_code grant with the database
// on disk, fsync on (as in production) and off (the baseline: what the grant costs without
// waiting for the disk). The authorization before it is outside the timer.
func BenchmarkCodeExchange(b *testing.B) {
	for _, mode := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		b.Run(mode.name, func(b *testing.B) {
			bs := newBenchServer(b, mode.noSync)
			for b.Loop() {
				b.StopTimer()
				code, verifier := bs.code(b)
				b.StartTimer()
				bs.exchange(b, code, verifier)
			}
		})
	}
}

// BenchmarkRefresh is the refresh_token grant (rotation and the grace record included), fsync
// on and off.
func BenchmarkRefresh(b *testing.B) {
	for _, mode := range []struct {
		name   string
		noSync bool
		grace  time.Duration
	}{{"fsync", false, 30 * time.Second}, {"nosync", true, 30 * time.Second}, {"fsync-nograce", false, -1}} {
		b.Run(mode.name, func(b *testing.B) {
			bs := newBenchServer(b, mode.noSync)
			bs.srv.cfg.RefreshGrace = mode.grace
			code, verifier := bs.code(b)
			_, refresh := bs.exchange(b, code, verifier)
			for b.Loop() {
				_, refresh = bs.token(b, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {bs.client}})
			}
		})
	}
}
