package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/tunnel"
)

// auditSink keeps the records a Front appends.
type auditSink struct {
	mu   sync.Mutex
	recs []data.AuditRecord
}

func (s *auditSink) Append(r data.AuditRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, r)
}

func (s *auditSink) take() []data.AuditRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.recs
	s.recs = nil
	return out
}

// fakeTokens answers Check with access and err, whatever the token.
type fakeTokens struct {
	access *oauth.Access
	err    error
}

func (f fakeTokens) Check(context.Context, string, string, string) (*oauth.Access, error) {
	return f.access, f.err
}
func (fakeTokens) ResourceMetadata(string) []byte     { return nil }
func (fakeTokens) DefaultScopes() []string            { return []string{"mcp"} }
func (fakeTokens) StepUpIssued(*oauth.Access, string) {}

// echoProxy answers every request with its body, read to the end, so that a test sees what
// would have reached the local server.
type echoProxy struct{}

func (echoProxy) Serve(w http.ResponseWriter, r *http.Request, _ *tunnel.Tunnel, _ netip.AddrPort) {
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// testTunnel is a registry with one tunnel, "tun.test.localhost", owned by a user of st.
type testTunnel struct {
	st              *data.Store
	reg             *tunnel.Registry
	owner, stranger data.User
}

func newTestTunnel(t *testing.T) *testTunnel {
	t.Helper()
	st, reg, _, users := openTestTunnel(t, "test.localhost", "tun", "owner@test.example", "stranger@test.example")
	return &testTunnel{st: st, reg: reg, owner: users[0], stranger: users[1]}
}

func (tt *testTunnel) front(t *testing.T, cfg FrontConfig) *Front {
	t.Helper()
	cfg.Domain, cfg.Tunnels = "test.localhost", tt.reg
	if cfg.Proxy == nil {
		cfg.Proxy = echoProxy{}
	}
	f, err := NewFront(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (tt *testTunnel) access(userID string) *oauth.Access {
	return &oauth.Access{UserID: userID, ClientID: "c_1", ClientName: "Test Client", Scopes: []string{"mcp"},
		Resource: "https://tun.test.localhost", AuthTime: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
}

func tunnelRequestFor(method, target, body string) *http.Request {
	r := httptest.NewRequest(method, "https://tun.test.localhost"+target, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.RemoteAddr = "192.0.2.7:40000"
	return r
}

// TestTokenStepRefusalsAudited: a request refused at the token step leaves a record saying
// why, from where, for which tunnel and path, and nothing of the token.
func TestTokenStepRefusalsAudited(t *testing.T) {
	const secret = "sekrit-token-value"
	tt := newTestTunnel(t)
	stranger := tt.access("u_stranger")
	for _, tc := range []struct {
		name     string
		tokens   fakeTokens
		policy   bool
		auth     string // the Authorization header
		target   string
		status   int
		decision string
		rule     string
		user     string
	}{
		{"no token", fakeTokens{}, true, "", "/mcp", 401, "unauthenticated", "no_token", ""},
		{"token in the URL", fakeTokens{}, true, "", "/mcp?access_token=" + secret, 401, "unauthenticated", "no_token", ""},
		{"not a bearer token", fakeTokens{}, true, "Basic " + secret, "/mcp", 401, "unauthenticated", "no_token", ""},
		{"invalid token", fakeTokens{err: oauth.ErrInvalidToken}, true, "Bearer " + secret, "/mcp", 401, "unauthenticated", "invalid_token", ""},
		{"token for another server", fakeTokens{access: stranger, err: oauth.ErrWrongResource}, true, "Bearer " + secret, "/mcp", 401,
			"unauthenticated", "wrong_resource", "u_stranger"},
		{"check failed", fakeTokens{err: errors.New("disk on fire")}, true, "Bearer " + secret, "/mcp", 500, "error", "token_check", ""},
		{"not the owner, no policy", fakeTokens{access: stranger}, false, "Bearer " + secret, "/mcp", 403, "deny", "not_shared", "u_stranger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &auditSink{}
			cfg := FrontConfig{Auth: tc.tokens, Audit: sink}
			if tc.policy {
				cfg.Policy, cfg.Users = benchPolicy{authz.DefaultPolicy(time.Hour)}, tt.st
			}
			f := tt.front(t, cfg)
			r := tunnelRequestFor("POST", tc.target, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			f.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			recs := sink.take()
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1: %+v", len(recs), recs)
			}
			got := recs[0]
			want := data.AuditRecord{Kind: "mcp", User: tc.user, Tunnel: "tun", Owner: tt.owner.ID, Decision: tc.decision,
				Rule: tc.rule, Status: tc.status, SourceIP: "192.0.2.7", Detail: "POST /mcp", Bytes: got.Bytes}
			if tc.user != "" {
				want.Client, want.ClientName = "c_1", "Test Client"
			}
			if got.Time.IsZero() || got.Latency <= 0 || got.Bytes == 0 {
				t.Errorf("time %v, latency %v, bytes %d: want them set", got.Time, got.Latency, got.Bytes)
			}
			got.Time, got.Latency = time.Time{}, 0
			if !reflect.DeepEqual(got, want) {
				t.Errorf("record\n%+v\nwant\n%+v", got, want)
			}
			if b, _ := json.Marshal(recs[0]); strings.Contains(string(b), secret) {
				t.Errorf("the record carries the token: %s", b)
			}
		})
	}
}

// TestOriginRefusalAudited: a request from a browser origin the tunnel does not allow is refused
// before the token step, never reaches the local server, and is a denial like any other: an
// audit record (through the refusal gate) and a marked line on the owner's terminal.
func TestOriginRefusalAudited(t *testing.T) {
	tt := newTestTunnel(t)
	lc := &lineConn{lines: make(chan string, 10)}
	fwd, err := tt.reg.Open(t.Context(), tunnel.OpenRequest{Owner: tt.owner.ID, Conn: lc,
		Dialer: benchDialer{}, BindAddr: "lin", LocalHost: "localhost:80"})
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	sink := &auditSink{}
	proxied := &countingProxy{}
	f := tt.front(t, FrontConfig{Auth: fakeTokens{access: tt.access(tt.owner.ID)}, Audit: sink, Proxy: proxied})
	r := httptest.NewRequest("POST", "https://lin.test.localhost/mcp",
		strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`))
	r.Header.Set("Content-Type", "application/json")
	r.RemoteAddr = "192.0.2.7:40000"
	r.Header.Set("Authorization", "Bearer t")
	r.Header.Set("Origin", "https://evil.example\x1b[2J")
	w := httptest.NewRecorder()
	f.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || proxied.n.Load() != 0 {
		t.Fatalf("status %d, proxied %d times; want 403 and never", w.Code, proxied.n.Load())
	}
	recs := sink.take()
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1: %+v", len(recs), recs)
	}
	got := recs[0]
	want := data.AuditRecord{Kind: "mcp", Tunnel: "lin", Owner: tt.owner.ID, Decision: "deny", Rule: "origin_not_allowed",
		Status: 403, SourceIP: "192.0.2.7", Detail: "POST /mcp from origin https://evil.example?[2J", Bytes: got.Bytes}
	got.Time, got.Latency = time.Time{}, 0
	if !reflect.DeepEqual(got, want) {
		t.Errorf("record\n%+v\nwant\n%+v", got, want)
	}
	select {
	case line := <-lc.lines:
		if !strings.Contains(line, `403`) || !strings.Contains(line, `DENIED by "origin_not_allowed"`) {
			t.Errorf("terminal line %q: want the 403 marked as denied", line)
		}
	case <-time.After(time.Second):
		t.Error("no line on the owner's terminal")
	}

	// A preflight from an allowed origin is answered and leaves nothing behind.
	r = httptest.NewRequest("OPTIONS", "https://lin.test.localhost/mcp", nil)
	r.Header.Set("Origin", "http://localhost:6274")
	r.Header.Set("Access-Control-Request-Method", "POST")
	w = httptest.NewRecorder()
	f.ServeHTTP(w, r)
	if w.Code != http.StatusNoContent || len(sink.take()) != 0 || len(lc.lines) != 0 || proxied.n.Load() != 0 {
		t.Errorf("preflight: status %d, %d lines; want 204, no record, no line, not proxied", w.Code, len(lc.lines))
	}
}

// lineConn is a tunnel's terminal that keeps the lines shown on it.
type lineConn struct {
	benchConn
	lines chan string
}

func (c *lineConn) Notify(line string) { c.lines <- line }

// countingProxy counts the requests that reached the proxy step and answers 204.
type countingProxy struct{ n atomic.Int32 }

func (p *countingProxy) Serve(w http.ResponseWriter, r *http.Request, _ *tunnel.Tunnel, _ netip.AddrPort) {
	p.n.Add(1)
	w.WriteHeader(http.StatusNoContent)
}

// TestTokenRefusalFloodCoalesced: a flood of requests without a token is recorded one by one
// only up to the gate's limit per source; the rest wait for the window's summary.
func TestTokenRefusalFloodCoalesced(t *testing.T) {
	tt := newTestTunnel(t)
	sink := &auditSink{}
	f := tt.front(t, FrontConfig{Auth: fakeTokens{}, Audit: sink, Policy: benchPolicy{authz.DefaultPolicy(time.Hour)}, Users: tt.st})
	for _, ip := range []string{"192.0.2.1", "192.0.2.2"} {
		for range 100 {
			r := tunnelRequestFor("POST", "/mcp", "{}")
			r.RemoteAddr = ip + ":1234"
			w := httptest.NewRecorder()
			f.ServeHTTP(w, r)
			if w.Code != 401 {
				t.Fatalf("status %d", w.Code)
			}
		}
	}
	recs := sink.take()
	per := map[string]int{}
	for _, r := range recs {
		per[r.SourceIP]++
	}
	if want := map[string]int{"192.0.2.1": 10, "192.0.2.2": 10}; !reflect.DeepEqual(per, want) {
		t.Fatalf("records per source %v, want %v", per, want)
	}
}

// TestPolicyStepAudited: requests that pass the token step are recorded with what the
// policy step made of them, allowed or not, and the allowed ones reach the server whole.
func TestPolicyStepAudited(t *testing.T) {
	tt := newTestTunnel(t)
	call := func(id int, tool, args string) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, id, tool, args)
	}
	digest := func(args string) string { return authz.ArgumentsDigest(json.RawMessage(args)) }
	big := `{"q":"` + strings.Repeat("x", 70<<10) + `"}` // past the pool's large buffers
	for _, tc := range []struct {
		name     string
		stranger bool // the token's user is not the owner
		method   string
		body     string
		maxBody  int64
		status   int
		echoed   bool // the body reached the server
		want     data.AuditRecord
		wantArgs string // Args kept with AuditArgs
	}{
		{name: "owner calls a tool", body: call(1, "ping", `{"q":"a","password":"p"}`), status: 200, echoed: true,
			want: data.AuditRecord{Method: "tools/call", Tool: "ping", Class: "destructive", Decision: "allow", Rule: "owner",
				ArgsDigest: digest(`{"q":"a","password":"p"}`)},
			wantArgs: `{"password":"[redacted]","q":"a"}`},
		{name: "large body", body: call(1, "ping", big), status: 200, echoed: true,
			want: data.AuditRecord{Method: "tools/call", Tool: "ping", Class: "destructive", Decision: "allow", Rule: "owner",
				ArgsDigest: digest(big)}},
		{name: "batch", body: "[" + call(1, "a", "{}") + "," + call(2, "b", "{}") + "]", status: 200, echoed: true,
			want: data.AuditRecord{Method: "tools/call", Tool: "a", Class: "destructive", Decision: "allow", Rule: "owner",
				ArgsDigest: digest("{}"), Detail: "batch of 2 requests"}, wantArgs: "{}"},
		{name: "stranger denied", stranger: true, body: call(3, "ping", "{}"), status: 200,
			want: data.AuditRecord{Method: "tools/call", Tool: "ping", Class: "destructive", Decision: "deny", Rule: "default",
				ArgsDigest: digest("{}")}, wantArgs: "{}"},
		{name: "not JSON", body: `{"jsonrpc":`, status: 400,
			want: data.AuditRecord{Method: "(unreadable JSON-RPC)", Decision: "deny", Rule: "inspection"}},
		{name: "over the limit", body: call(1, "ping", `{"q":"`+strings.Repeat("x", 200)+`"}`), maxBody: 100, status: 413},
		{name: "event stream", method: "GET", status: 200, echoed: true,
			want: data.AuditRecord{Method: "get", Decision: "allow", Rule: "owner"}},
	} {
		for _, keepArgs := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/args=%v", tc.name, keepArgs), func(t *testing.T) {
				user := tt.owner
				if tc.stranger {
					user = tt.stranger
				}
				sink := &auditSink{}
				f := tt.front(t, FrontConfig{Auth: fakeTokens{access: tt.access(user.ID)}, Audit: sink, AuditArgs: keepArgs,
					Policy: benchPolicy{authz.DefaultPolicy(time.Hour)}, Users: tt.st, MaxBody: tc.maxBody})
				method := tc.method
				if method == "" {
					method = "POST"
				}
				// Twice: the second request reuses the first one's pooled buffer.
				for range 2 {
					r := tunnelRequestFor(method, "/mcp", tc.body)
					r.Header.Set("Authorization", "Bearer x")
					w := httptest.NewRecorder()
					f.ServeHTTP(w, r)
					if w.Code != tc.status {
						t.Fatalf("status %d, want %d: %.200s", w.Code, tc.status, w.Body)
					}
					if tc.echoed && w.Body.String() != tc.body {
						t.Fatalf("the server got %.200q, want the body as sent", w.Body)
					}
					recs := sink.take()
					if len(recs) != 1 {
						t.Fatalf("%d records, want 1", len(recs))
					}
					got := recs[0]
					want := tc.want
					want.Kind, want.User, want.Client, want.ClientName = "mcp", user.Email, "c_1", "Test Client"
					want.Tunnel, want.Owner, want.Status, want.SourceIP = "tun", tt.owner.ID, tc.status, "192.0.2.7"
					if keepArgs {
						want.Args = json.RawMessage(tc.wantArgs)
						if tc.wantArgs == "" && tc.want.ArgsDigest != "" {
							want.Args = authz.RedactArguments(json.RawMessage(big))
						}
					}
					if len(want.Args) == 0 {
						want.Args = nil
					}
					want.Time, want.Latency, want.Bytes = got.Time, got.Latency, got.Bytes
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("record\n%+v\nwant\n%+v", got, want)
					}
				}
			})
		}
	}
}

func TestSourceAddr(t *testing.T) {
	for _, tc := range []struct {
		remote, want string
	}{
		{"192.0.2.7:40000", "192.0.2.7"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[::ffff:192.0.2.7]:1", "192.0.2.7"}, // unmapped
		{"[2001:DB8:0::1]:1", "2001:db8::1"},  // not canonical as given
		{"[fe80::1%eth0]:1", "fe80::1%eth0"},  // zone kept
		{"not an address", ""},                // tests and odd listeners
		{"192.0.2.7", ""},                     // no port
	} {
		ap, got := sourceAddr(tc.remote)
		if got != tc.want {
			t.Errorf("sourceAddr(%q) = %q, want %q", tc.remote, got, tc.want)
		}
		if got != "" && ap.Addr().Unmap().String() != got {
			t.Errorf("sourceAddr(%q) = %v, %q: they disagree", tc.remote, ap, got)
		}
	}
}

// requestLineReference is requestLine as it was written with fmt, for a request that took
// elapsed: the appending version must print the same.
func requestLineReference(start time.Time, elapsed time.Duration, r *http.Request, rec *recorder, info *requestInfo) string {
	printable := func(s string) string { return string(appendPrintable(nil, s)) }
	round := func(d time.Duration) string { return roundDuration(d).String() }
	size := func(n int64) string {
		switch {
		case n < 1000:
			return fmt.Sprintf("%d B", n)
		case n < 1000*1000:
			return fmt.Sprintf("%.1f kB", float64(n)/1000)
		}
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	status := rec.status
	if status == 0 {
		status = 499
	}
	path := printable(r.URL.EscapedPath())
	if len(path) > 60 {
		path = path[:57] + "..."
	}
	note := ""
	switch {
	case rec.upgraded:
		note = "  upgraded"
	case status >= 500:
		note = "  <- check your local server"
	}
	if info != nil && info.method != "" {
		what := info.method
		if info.tool != "" {
			what += " " + info.tool
		}
		if info.class != "" {
			what += " [" + info.class + "]"
		}
		if info.more > 0 {
			what += fmt.Sprintf(" (+%d in batch)", info.more)
		}
		decision := info.decision
		switch info.decision {
		case "deny":
			decision = "DENIED by " + strconv.Quote(info.rule)
		case "step_up":
			decision = "STEP-UP by " + strconv.Quote(info.rule)
		}
		who := info.user
		if info.client != "" {
			who += " via " + strconv.Quote(info.client)
		}
		// The request's parts are made printable; the duration keeps its "µs".
		return printable(fmt.Sprintf("%s  %s  %s  %s", start.Format("15:04:05"), who, what, decision)) +
			fmt.Sprintf("  %d  %s  %s%s", status, round(elapsed), size(rec.bytes), note)
	}
	denied := ""
	if info != nil && info.refused && info.decision == "deny" {
		denied = "  DENIED by " + strconv.Quote(info.rule)
	}
	return fmt.Sprintf("%s  %-6s %-24s %d  %7s  %s%s%s", start.Format("15:04:05"), printable(r.Method), path, status,
		round(elapsed), size(rec.bytes), denied, note)
}

func TestRequestLineFormat(t *testing.T) {
	start := time.Date(2026, 11, 29, 14, 2, 11, 0, time.Local)
	mcpInfo := &requestInfo{user: "ada@example.com", client: "Claude", method: "tools/call", tool: "write_note",
		class: "write", decision: "deny", rule: "default"}
	longPath := "/" + strings.Repeat("a/", 40)
	durations := []time.Duration{0, 400, 999_499, 999_500, 523 * time.Microsecond, 1500 * time.Microsecond,
		12_345_678, 999_960_000, time.Second, 1_050_000_000, 59_999_600_000, time.Minute + 5*time.Millisecond, 3 * time.Hour}
	sizes := []int64{0, 171, 999, 1000, 1234, 999_949, 999_950, 5_000_000, 1 << 40}
	for _, tc := range []struct {
		name   string
		method string
		target string
		rec    recorder
		info   *requestInfo
	}{
		{"plain", "GET", "/", recorder{status: 200}, nil},
		{"no response", "POST", "/mcp", recorder{}, &requestInfo{}},
		{"long path", "DELETE", longPath, recorder{status: 204}, nil},
		{"escapes in the path", "GET", "/a%1b%5b2Jb/%e2%80%ae", recorder{status: 404}, nil},
		{"long method", "PROPFIND", "/x", recorder{status: 405}, nil},
		{"upgraded", "GET", "/ws", recorder{status: 101, upgraded: true}, nil},
		{"local server failed", "POST", "/mcp", recorder{status: 502}, nil},
		{"mcp denied", "POST", "/mcp", recorder{status: 200}, mcpInfo},
		{"mcp step-up", "POST", "/mcp", recorder{status: 403}, &requestInfo{user: "u", method: "tools/call", tool: "rm",
			class: "destructive", decision: "step_up", rule: "fresh \"sign-in\""}},
		{"mcp batch", "POST", "/mcp", recorder{status: 200}, &requestInfo{user: "u", client: "c\x1b[2J", method: "tools/list",
			decision: "allow", more: 3}},
		{"mcp resource", "POST", "/mcp", recorder{status: 500}, &requestInfo{user: "ünï", method: "resources/read",
			tool: "file:///\u202e", class: "read", decision: "allow"}},
		{"mcp get", "GET", "/mcp", recorder{status: 200}, &requestInfo{user: "u", method: "get", decision: "allow", rule: "owner"}},
		{"origin refused", "POST", "/mcp", recorder{status: 403}, &requestInfo{refused: true, decision: "deny", rule: "origin_not_allowed"}},
		{"no token", "POST", "/mcp", recorder{status: 401}, &requestInfo{refused: true, decision: "unauthenticated", rule: "no_token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.target, nil)
			for _, d := range durations {
				for _, n := range sizes {
					rec := tc.rec
					rec.bytes = n
					want := requestLineReference(start, d, r, &rec, tc.info)
					if got := string(appendRequestLine(nil, start, d, r, &rec, tc.info)); got != want {
						t.Fatalf("%v, %d bytes:\n got %q\nwant %q", d, n, got, want)
					}
				}
			}
		})
	}
}
