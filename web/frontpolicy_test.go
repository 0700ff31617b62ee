package web

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/tunnel"
)

// policyFront is a Front under the built-in policy in front of one tunnel, in process: no TLS,
// no SSH. The tunnel's local server is the serve function the test sets. Bearer tokens name
// the caller: "owner" owns the tunnel, "friend" is someone it is shared with (who may call
// read tools only).
type policyFront struct {
	f *Front
	t *tunnel.Tunnel

	mu      sync.Mutex
	serve   func(w http.ResponseWriter, r *http.Request)
	reached []string // the bodies that reached the local server
}

func newPolicyFront(t *testing.T) *policyFront {
	t.Helper()
	return newPolicyFrontWith(t, nil)
}

// newPolicyFrontWith is newPolicyFront with a hook on the Front's configuration.
func newPolicyFrontWith(t *testing.T, mod func(*FrontConfig)) *policyFront {
	t.Helper()
	st, reg, fwd, users := openTestTunnel(t, "test.localhost", "tools", "owner@test.local", "friend@test.local")
	tokens := testTokens{}
	for i, name := range []string{"owner", "friend"} {
		tokens[name] = &oauth.Access{UserID: users[i].ID, ClientID: "c", ClientName: "test", Scopes: []string{"mcp"},
			Resource: "https://tools.test.localhost", AuthTime: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	}
	fwd.Tunnel().SetCommandShares(benchConn{}, []string{"friend@test.local"})

	pf := &policyFront{t: fwd.Tunnel()}
	var err error
	cfg := FrontConfig{Domain: "test.localhost", Tunnels: reg, Proxy: pf, Auth: tokens,
		Policy: benchPolicy{authz.DefaultPolicy(time.Hour)}, Users: st}
	if mod != nil {
		mod(&cfg)
	}
	pf.f, err = NewFront(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return pf
}

// Serve is the tunnel: it notes what reached the local server and hands it to serve.
func (pf *policyFront) Serve(w http.ResponseWriter, r *http.Request, _ *tunnel.Tunnel, _ netip.AddrPort) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	pf.mu.Lock()
	pf.reached = append(pf.reached, r.Method+" "+string(body))
	serve := pf.serve
	pf.mu.Unlock()
	serve(w, r)
}

func (pf *policyFront) setServe(serve func(w http.ResponseWriter, r *http.Request)) {
	pf.mu.Lock()
	pf.serve = serve
	pf.mu.Unlock()
}

// reachedCount is how many requests reached the local server so far.
func (pf *policyFront) reachedCount() int {
	pf.mu.Lock()
	defer pf.mu.Unlock()
	return len(pf.reached)
}

// do sends one request as user to the tunnel, writing the response to w (a recorder if nil),
// with the header name/value pairs hdr.
func (pf *policyFront) do(w http.ResponseWriter, user, method, body string, hdr ...string) *httptest.ResponseRecorder {
	var rec *httptest.ResponseRecorder
	if w == nil {
		rec = httptest.NewRecorder()
		w = rec
	}
	r := httptest.NewRequest(method, "https://tools.test.localhost/mcp", strings.NewReader(body))
	if method == http.MethodPost {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Accept", "application/json, text/event-stream")
	r.Header.Set("Authorization", "Bearer "+user)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	r.RemoteAddr = "127.0.0.1:5000"
	pf.f.ServeHTTP(w, r)
	return rec
}

type testTokens map[string]*oauth.Access

func (tt testTokens) Check(_ context.Context, token, _, _ string) (*oauth.Access, error) {
	if a, ok := tt[token]; ok {
		return a, nil
	}
	return nil, oauth.ErrInvalidToken
}
func (testTokens) ResourceMetadata(string) []byte     { return []byte("{}") }
func (testTokens) DefaultScopes() []string            { return []string{"mcp"} }
func (testTokens) StepUpIssued(*oauth.Access, string) {}

// Test servers' answers.

func annotated(name, ann string) string {
	if ann == "" {
		return fmt.Sprintf(`{"name":%q,"inputSchema":{"type":"object"}}`, name)
	}
	return fmt.Sprintf(`{"name":%q,"inputSchema":{"type":"object"},"annotations":%s}`, name, ann)
}

const (
	annRead  = `{"readOnlyHint":true}`
	annWrite = `{"destructiveHint":false}`
	annNone  = ``
)

// toolsAnswer is a tools/list answer with id listing tools (annotated JSON objects).
func toolsAnswer(id string, tools ...string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"result":{"tools":[` + strings.Join(tools, ",") + `]}}`
}

func listRequest(id, cursor string) string {
	if cursor == "" {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/list"}`
	}
	return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/list","params":{"cursor":` + cursor + `}}`
}

func callRequest(id, tool string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`
}

// answerWith makes a local server answering body, as JSON or as one SSE event.
func answerWith(body string, sse bool) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		if sse {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "event: message\ndata: "+body+"\n\n") //nolint:errcheck
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body) //nolint:errcheck
	}
}

const callAnswer = `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"done"}]}}`

// classesOf describes the tunnel's known classes, e.g. "a=read b=?" (? for unknown).
func classesOf(t *tunnel.Tunnel, names ...string) string {
	var out []string
	for _, n := range names {
		c, known := TunnelTools(t).Class(n)
		if !known {
			c = "?"
		}
		out = append(out, n+"="+string(c))
	}
	return strings.Join(out, " ")
}

// TestPolicyRelist: tools/list answers that come back through the policy step teach the
// tunnel's classes: one to a request without a cursor (a first page) replaces what was known,
// one to a request with a cursor adds to it. So a tool the server re-annotated from read to
// destructive, or dropped, does not keep its old class.
func TestPolicyRelist(t *testing.T) {
	type listing struct {
		request, answer string
	}
	for _, tc := range []struct {
		name     string
		listings []listing
		sse      bool
		want     string // classesOf a b c
	}{
		{"first page", []listing{{listRequest("1", ""), toolsAnswer("1", annotated("a", annRead), annotated("b", annWrite))}},
			false, "a=read b=write c=?"},
		{"a first page replaces", []listing{
			{listRequest("1", ""), toolsAnswer("1", annotated("a", annRead), annotated("b", annRead))},
			{listRequest("2", ""), toolsAnswer("2", annotated("a", annNone))}},
			false, "a=destructive b=? c=?"},
		{"a first page replaces, as an event stream", []listing{
			{listRequest("1", ""), toolsAnswer("1", annotated("a", annRead), annotated("b", annRead))},
			{listRequest("2", ""), toolsAnswer("2", annotated("a", annNone))}},
			true, "a=destructive b=? c=?"},
		{"an empty cursor is a first page", []listing{
			{listRequest("1", ""), toolsAnswer("1", annotated("a", annRead), annotated("b", annRead))},
			{listRequest("2", `""`), toolsAnswer("2", annotated("c", annRead))}},
			false, "a=? b=? c=read"},
		{"a cursor page adds", []listing{
			{listRequest("1", ""), toolsAnswer("1", annotated("a", annRead))},
			{listRequest(`"p"`, `"page-2"`), toolsAnswer(`"p"`, annotated("b", annWrite))}},
			false, "a=read b=write c=?"},
		{"a batch of both pages", []listing{
			{"[" + listRequest("1", "") + "," + listRequest("2", `"page-2"`) + "]",
				"[" + toolsAnswer("1", annotated("a", annRead)) + "," + toolsAnswer("2", annotated("b", annWrite)) + "]"},
			{"[" + listRequest("4", "") + "," + listRequest("3", `"page-2"`) + "]",
				"[" + toolsAnswer("4", annotated("b", annRead)) + "," + toolsAnswer("3", annotated("c", annRead)) + "]"}},
			false, "a=? b=read c=read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pf := newPolicyFront(t)
			for _, l := range tc.listings {
				pf.setServe(answerWith(l.answer, tc.sse))
				if w := pf.do(nil, "owner", http.MethodPost, l.request); w.Code != 200 {
					t.Fatalf("%s: %d %s", l.request, w.Code, w.Body)
				}
			}
			if got := classesOf(pf.t, "a", "b", "c"); got != tc.want {
				t.Errorf("classes %s, want %s", got, tc.want)
			}
		})
	}
}

// TestPolicyReadBecameDestructive: the shared user calls a read tool; the server re-annotates
// it destructive, and another tool from destructive to read; after the next listing the user
// no longer sees the first, and a call of it is denied without reaching the server, while the
// other is now shown and may be called.
func TestPolicyReadBecameDestructive(t *testing.T) {
	pf := newPolicyFront(t)
	pf.setServe(answerWith(toolsAnswer("1", annotated("notes", annRead), annotated("other", annNone)), false))
	if w := pf.do(nil, "friend", http.MethodPost, listRequest("1", "")); !strings.Contains(w.Body.String(), `"notes"`) ||
		strings.Contains(w.Body.String(), `"other"`) {
		t.Fatalf("the first listing: %d %s", w.Code, w.Body)
	}
	pf.setServe(answerWith(callAnswer, false))
	if w := pf.do(nil, "friend", http.MethodPost, callRequest("1", "notes")); !strings.Contains(w.Body.String(), "done") {
		t.Fatalf("calling a read tool: %d %s", w.Code, w.Body)
	}

	pf.setServe(answerWith(toolsAnswer("2", annotated("notes", annNone), annotated("other", annRead)), false))
	w := pf.do(nil, "friend", http.MethodPost, listRequest("2", ""))
	var answer struct {
		Result struct{ Tools []struct{ Name string } }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil || len(answer.Result.Tools) != 1 || answer.Result.Tools[0].Name != "other" {
		t.Fatalf("the listing after the change shows %+v (%v); want only other", answer.Result.Tools, err)
	}
	reached := pf.reachedCount()
	pf.setServe(answerWith(callAnswer, false))
	w = pf.do(nil, "friend", http.MethodPost, callRequest("3", "notes"))
	if !strings.Contains(w.Body.String(), fmt.Sprint(DenyCode)) {
		t.Errorf("calling the tool after it became destructive: %d %s; want a denial", w.Code, w.Body)
	}
	if pf.reachedCount() != reached {
		t.Errorf("the denied call reached the server")
	}
	if w := pf.do(nil, "friend", http.MethodPost, callRequest("4", "other")); !strings.Contains(w.Body.String(), "done") {
		t.Errorf("calling the tool that became read: %d %s", w.Code, w.Body)
	}
}

// TestPolicyLearnErrorIsLogged: a listing over the limits is still learned as far as it goes,
// and the operator is told about the rest.
func TestPolicyLearnErrorIsLogged(t *testing.T) {
	pf := newPolicyFront(t)
	var log strings.Builder
	pf.f.cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
	long := strings.Repeat("x", authz.MaxToolName+1)
	pf.setServe(answerWith(toolsAnswer("1", annotated("a", annRead), annotated(long, annRead)), false))
	pf.do(nil, "owner", http.MethodPost, listRequest("1", ""))
	if got := classesOf(pf.t, "a"); got != "a=read" {
		t.Errorf("classes %s", got)
	}
	if !strings.Contains(log.String(), "learning the tools") || !strings.Contains(log.String(), "names over") {
		t.Errorf("log: %q", log.String())
	}
	if !slices.ContainsFunc(pf.reached, func(s string) bool { return strings.Contains(s, "tools/list") }) {
		t.Errorf("the listing did not reach the server")
	}
}

// TestPolicyEncodedAnswers: under the policy toolgate asks the local server for unencoded
// answers, whatever the client accepts: the tools/list filter and the list_changed watcher
// read them. A server that gzips a tools/list answer anyway gets a 502 instead of an
// unfiltered list reaching a shared user.
func TestPolicyEncodedAnswers(t *testing.T) {
	pf := newPolicyFront(t)
	var asked []string
	for _, ct := range []string{"application/json", "text/event-stream"} {
		pf.setServe(func(w http.ResponseWriter, r *http.Request) {
			asked = append(asked, r.Header.Get("Accept-Encoding"))
			w.Header().Set("Content-Type", ct)
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			body := toolsAnswer("1", annotated("secret_delete", annNone), annotated("a", annRead))
			if ct == "text/event-stream" {
				body = "event: message\ndata: " + body + "\n\n"
			}
			io.WriteString(zw, body) //nolint:errcheck
			zw.Close()
		})
		w := pf.do(nil, "friend", http.MethodPost, listRequest("1", ""), "Accept-Encoding", "gzip, br")
		if w.Code != http.StatusBadGateway || w.Header().Get("Content-Encoding") != "" || !strings.Contains(w.Body.String(), `"id":1`) {
			t.Errorf("%s: %d %v %q; want a 502 JSON-RPC error", ct, w.Code, w.Header(), w.Body)
		}
		if zr, err := gzip.NewReader(bytes.NewReader(w.Body.Bytes())); err == nil {
			plain, _ := io.ReadAll(zr)
			t.Errorf("%s: the encoded answer went on: %s", ct, plain)
		}
		if got := classesOf(pf.t, "a", "secret_delete"); got != "a=? secret_delete=?" {
			t.Errorf("%s: learned %s from an answer it could not read", ct, got)
		}
	}
	pf.setServe(func(w http.ResponseWriter, r *http.Request) { asked = append(asked, r.Header.Get("Accept-Encoding")) })
	pf.do(nil, "friend", http.MethodGet, "", "Accept-Encoding", "gzip")
	if want := []string{"identity", "identity", "identity"}; !slices.Equal(asked, want) {
		t.Errorf("the server was asked for encodings %q, want %q", asked, want)
	}
}

// TestPolicyUnreadableListAnswer: a JSON tools/list answer is filtered whole when it ends, and
// its status waits for that, so one that can't be read (not JSON, or over the limit) becomes a
// 502 JSON-RPC error rather than a 200 with an empty body; a readable one keeps its status.
func TestPolicyUnreadableListAnswer(t *testing.T) {
	pf := newPolicyFront(t)
	for _, c := range []struct {
		name, body   string
		sent, status int
		want         string
	}{
		{"not JSON", `{"jsonrpc":"2.0","id":1,"result":{"tools":[`, http.StatusOK, http.StatusBadGateway, `"code":-32603`},
		{"readable, status kept", toolsAnswer("1", annotated("a", annRead)), http.StatusAccepted, http.StatusAccepted, `"name":"a"`},
	} {
		pf.setServe(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(c.sent)
			io.WriteString(w, c.body) //nolint:errcheck
		})
		w := pf.do(nil, "friend", http.MethodPost, listRequest("1", ""))
		if w.Code != c.status || !strings.Contains(w.Body.String(), c.want) {
			t.Errorf("%s: %d %q; want %d with %s", c.name, w.Code, w.Body, c.status, c.want)
		}
	}
}
