package web

import (
	"compress/gzip"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/authz"
)

// legacyStream is a GET event stream as a 2024-11-05 HTTP+SSE server sends it: the endpoint
// for the session's POSTs, then every response, here a tools/list answer with a tool of each
// class and a tool call's answer.
var legacyStream = []string{
	"event: endpoint\ndata: /message?sessionId=abc\n\n",
	"event: message\ndata: " + toolsAnswer("1", annotated("r", annRead), annotated("w", annWrite), annotated("d", annNone)) + "\n\n",
	"event: message\ndata: " + callAnswer + "\n\n",
}

// TestPolicyListingsOnGETStream: the tools/list answers on a GET's event stream (the legacy
// transport's every response, a resumed stream's replay) are filtered for a shared user, who
// sees the read tool only; the owner gets the stream byte for byte. Nothing is learned from
// them, and other answers pass as they are.
func TestPolicyListingsOnGETStream(t *testing.T) {
	const sse = "text/event-stream"
	listingFor := func(tools ...string) string {
		return "event: message\ndata: " + toolsAnswer("1", tools...) + "\n\n"
	}
	for _, tc := range []struct {
		name  string
		user  string
		hdr   []string
		serve func(http.ResponseWriter, *http.Request)
		want  string
	}{
		{name: "a legacy session, shared user", user: "friend", serve: streaming(200, sse, legacyStream...),
			want: legacyStream[0] + listingFor(annotated("r", annRead)) + legacyStream[2]},
		{name: "a legacy session, owner", user: "owner", serve: streaming(200, sse, legacyStream...),
			want: strings.Join(legacyStream, "")},
		{name: "a replay after Last-Event-ID", user: "friend", hdr: []string{"Last-Event-ID", "0_3"},
			serve: streaming(200, sse+"; charset=utf-8", "id: 0_4\r\ndata: "+toolsAnswer(`"x"`, annotated("r", annRead), annotated("d", annNone))+"\r\n\r\n"),
			want:  "id: 0_4\r\ndata: " + toolsAnswer(`"x"`, annotated("r", annRead)) + "\r\n\r\n"},
		{name: "an event split across writes", user: "friend",
			serve: streaming(200, sse, legacyStream[1][:60], legacyStream[1][60:]+legacyStream[2]),
			want:  listingFor(annotated("r", annRead)) + legacyStream[2]},
		{name: "an unreadable event is left out, the stream goes on", user: "friend",
			serve: streaming(200, sse, `data: {"jsonrpc":"2.0","id":2,"result":{"tools":{"d":{"name":"d"}}}}`+"\n\n", legacyStream[2]),
			want:  "\n" + legacyStream[2]},
		{name: "not an event stream", user: "friend", serve: streaming(200, "application/json", toolsAnswer("1", annotated("d", annNone))),
			want: toolsAnswer("1", annotated("d", annNone))},
		{name: "an error status", user: "friend", serve: streaming(http.StatusNotFound, sse, legacyStream[1]),
			want: legacyStream[1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pf := newPolicyFront(t)
			pf.setServe(tc.serve)
			w := pf.do(nil, tc.user, http.MethodGet, "", tc.hdr...)
			if got := w.Body.String(); got != tc.want {
				t.Errorf("%d\ngot  %q\nwant %q", w.Code, got, tc.want)
			}
			if got := classesOf(pf.t, "r", "w", "d"); got != "r=? w=? d=?" {
				t.Errorf("learned %s from a GET stream", got)
			}
		})
	}
}

// TestPolicyListingsStreamEventByEvent: the filtered GET stream is not buffered: each event
// reaches the client as soon as it is complete, while the server keeps the stream open, idle,
// until the client has it.
func TestPolicyListingsStreamEventByEvent(t *testing.T) {
	pf := newPolicyFront(t)
	client := &flushWriter{ResponseRecorder: httptest.NewRecorder(), got: make(chan string, 16)}
	ack := make(chan struct{})
	pf.setServe(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for _, ev := range legacyStream {
			// An event in two writes, then nothing until the client has it.
			io.WriteString(w, ev[:len(ev)/2])     //nolint:errcheck
			http.NewResponseController(w).Flush() //nolint:errcheck
			io.WriteString(w, ev[len(ev)/2:])     //nolint:errcheck
			http.NewResponseController(w).Flush() //nolint:errcheck
			select {
			case <-ack:
			case <-time.After(10 * time.Second):
				return
			}
		}
	})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		pf.do(client, "friend", http.MethodGet, "")
	}()
	for i, want := range []string{legacyStream[0], "event: message\ndata: " + toolsAnswer("1", annotated("r", annRead)) + "\n\n", legacyStream[2]} {
		select {
		case got := <-client.got:
			if got != want {
				t.Fatalf("event %d: got %q, want %q", i, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d never reached the client while the stream was open", i)
		}
		ack <- struct{}{}
	}
	<-finished
}

// flushWriter is a client's end that hands on what each flush brings.
type flushWriter struct {
	*httptest.ResponseRecorder
	got     chan string
	pending strings.Builder
}

func (c *flushWriter) Write(b []byte) (int, error) { return c.pending.Write(b) }

func (c *flushWriter) Flush() {
	if c.pending.Len() > 0 {
		c.got <- c.pending.String()
		c.pending.Reset()
	}
}

// TestPolicyListingsOwnerUnfiltered: the owner, under the built-in policy, may see every tool
// and costs the stream nothing; under a policy that reads tool names the owner is filtered
// too (the policy may hide some), and a shared user always is.
func TestPolicyListingsOwnerUnfiltered(t *testing.T) {
	pf := newPolicyFront(t)
	named, err := authz.ParsePolicy("test", []byte("rules:\n  - name: owner\n    when: user.id == tunnel.owner && tool.name != \"d\"\n    effect: allow\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		policy   *authz.Policy
		user     string
		filtered bool
		want     string
	}{
		{authz.DefaultPolicy(time.Hour), "owner", false, strings.Join(legacyStream, "")},
		{authz.DefaultPolicy(time.Hour), "friend", true,
			legacyStream[0] + "event: message\ndata: " + toolsAnswer("1", annotated("r", annRead)) + "\n\n" + legacyStream[2]},
		{named, "owner", true,
			legacyStream[0] + "event: message\ndata: " + toolsAnswer("1", annotated("r", annRead), annotated("w", annWrite)) + "\n\n" + legacyStream[2]},
	} {
		pf.f.cfg.Policy = benchPolicy{tc.policy}
		var filtered bool
		pf.setServe(func(w http.ResponseWriter, r *http.Request) {
			_, filtered = unwrapTo[*listingWriter](w)
			streaming(200, "text/event-stream", legacyStream...)(w, r)
		})
		w := pf.do(nil, tc.user, http.MethodGet, "")
		if filtered != tc.filtered || w.Body.String() != tc.want {
			t.Errorf("%v, %s: filtered %v, want %v; got %q", tc.policy.Rules(), tc.user, filtered, tc.filtered, w.Body)
		}
	}
}

// unwrapTo finds a writer of type T among w and the writers it wraps.
func unwrapTo[T http.ResponseWriter](w http.ResponseWriter) (T, bool) {
	for {
		if t, ok := w.(T); ok {
			return t, true
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			var zero T
			return zero, false
		}
		w = u.Unwrap()
	}
}

// TestPolicyListingsUnderTheWatcher: the tools/list_changed watcher sees the server's own
// stream, so a notification in an event the filter leaves out still makes the tunnel forget.
func TestPolicyListingsUnderTheWatcher(t *testing.T) {
	pf := newPolicyFront(t)
	var log strings.Builder
	pf.f.cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
	if err := TunnelTools(pf.t).Learn([]byte(`{"tools":[`+annotated("a", annRead)+`]}`), true); err != nil {
		t.Fatal(err)
	}
	pf.setServe(streaming(200, "text/event-stream",
		"data: ["+listChanged+`,{"jsonrpc":"2.0","id":3,"result":{"tools":7}}]`+"\n\n", legacyStream[2]))
	w := pf.do(nil, "friend", http.MethodGet, "")
	if w.Body.String() != "\n"+legacyStream[2] {
		t.Errorf("got %q", w.Body)
	}
	if got := classesOf(pf.t, "a"); got != "a=?" {
		t.Errorf("classes %s after a dropped list_changed", got)
	}
	if !strings.Contains(log.String(), "left out") {
		t.Errorf("nothing logged for the dropped event: %q", log.String())
	}
}

// TestPolicyListingsEncoded: a GET event stream the server encoded anyway (toolgate asked for
// identity) is refused with a 502 rather than passed on unfiltered.
func TestPolicyListingsEncoded(t *testing.T) {
	pf := newPolicyFront(t)
	pf.setServe(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		io.WriteString(zw, strings.Join(legacyStream, "")) //nolint:errcheck
		zw.Close()
	})
	w := pf.do(nil, "friend", http.MethodGet, "", "Accept-Encoding", "gzip")
	if w.Code != http.StatusBadGateway || w.Header().Get("Content-Encoding") != "" || strings.Contains(w.Body.String(), "event:") {
		t.Errorf("%d %v %q; want a 502", w.Code, w.Header(), w.Body)
	}
}
