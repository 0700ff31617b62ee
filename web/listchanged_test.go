package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/tunnel"
)

const listChanged = `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`

// probeWriter is the client's end: for each write that reaches it, it notes whether the
// tunnel still knew the class of tool "a" at that moment.
type probeWriter struct {
	*httptest.ResponseRecorder
	t     *tunnel.Tunnel
	known []bool
}

func (p *probeWriter) Write(b []byte) (int, error) {
	_, known := TunnelTools(p.t).Class("a")
	p.known = append(p.known, known)
	return p.ResponseRecorder.Write(b)
}

// streaming makes a local server answering with status and content type, writing chunks one
// by one, each flushed.
func streaming(status int, ct string, chunks ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		if ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(status)
		for _, c := range chunks {
			io.WriteString(w, c)                  //nolint:errcheck
			http.NewResponseController(w).Flush() //nolint:errcheck
		}
	}
}

// TestPolicyListChanged: a notifications/tools/list_changed from the server, in an event
// stream, makes the tunnel forget its tools' classes, before the client gets the chunk that
// completes it; anything else leaves them alone.
func TestPolicyListChanged(t *testing.T) {
	const sse = "text/event-stream"
	progress := `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}`
	for _, tc := range []struct {
		name         string
		user, method string
		body         string // the request's
		serve        func(http.ResponseWriter, *http.Request)
		forgetAt     int // the chunk on whose way to the client the classes are forgotten; -1 never
		wantClasses  string
	}{
		{name: "on the GET stream", user: "friend", method: http.MethodGet,
			serve:    streaming(200, sse, ": stream open\n\n", "data: "+listChanged+"\n\n", ": more\n\n"),
			forgetAt: 1, wantClasses: "a=?"},
		// Split events: the owner's, whose stream is passed on write by write (a shared
		// user's is filtered for tools/list answers, and passed on event by event:
		// frontlisting.go), so that the chunk holding the event's start reaches the client
		// before the one completing it.
		{name: "split across two writes", user: "owner", method: http.MethodGet,
			serve:    streaming(200, sse, "event: message\ndata: "+listChanged[:40], listChanged[40:]+"\n\n"),
			forgetAt: 1, wantClasses: "a=?"},
		{name: "split between its blank line's CR and LF", user: "owner", method: http.MethodGet,
			serve:    streaming(200, sse+"; charset=utf-8", "data: "+listChanged+"\r\n", "\r", "\n: next\r\n"),
			forgetAt: 1, wantClasses: "a=?"},
		{name: "split, on a shared user's stream", user: "friend", method: http.MethodGet,
			serve:    streaming(200, sse, ": open\n\n", "event: message\ndata: "+listChanged[:40], listChanged[40:]+"\n\n"),
			forgetAt: 1, wantClasses: "a=?"},
		{name: "in a POST response stream", user: "friend", method: http.MethodPost, body: callRequest("1", "a"),
			serve: streaming(200, sse, "id: 1\ndata: "+progress+"\n\n", "id: 2\ndata: "+listChanged+"\n\n",
				"id: 3\ndata: "+callAnswer+"\n\n"),
			forgetAt: 1, wantClasses: "a=?"},
		{name: "after a listing in the same stream", user: "owner", method: http.MethodPost, body: listRequest("1", ""),
			serve:    streaming(200, sse, "data: "+toolsAnswer("1", annotated("a", annWrite))+"\n\n", "data: "+listChanged+"\n\n"),
			forgetAt: 1, wantClasses: "a=?"},
		// The answer may describe the tools from before the change: it is not learned from.
		{name: "before a listing in the same stream", user: "owner", method: http.MethodPost, body: listRequest("1", ""),
			serve:    streaming(200, sse, "data: "+listChanged+"\n\n", "data: "+toolsAnswer("1", annotated("a", annWrite))+"\n\n"),
			forgetAt: 0, wantClasses: "a=?"},

		{name: "a JSON response cannot carry it", user: "friend", method: http.MethodPost, body: callRequest("1", "a"),
			serve:    streaming(200, "application/json", listChanged),
			forgetAt: -1, wantClasses: "a=read"},
		{name: "sent by the client", user: "friend", method: http.MethodPost, body: listChanged,
			serve:    streaming(http.StatusAccepted, ""),
			forgetAt: -1, wantClasses: "a=read"},
		{name: "a stream that is not an event stream", user: "friend", method: http.MethodGet,
			serve:    streaming(200, "text/plain", "data: "+listChanged+"\n\n"),
			forgetAt: -1, wantClasses: "a=read"},
		{name: "an error status", user: "friend", method: http.MethodGet,
			serve:    streaming(http.StatusInternalServerError, sse, "data: "+listChanged+"\n\n"),
			forgetAt: -1, wantClasses: "a=read"},
		{name: "the words in a tool's result", user: "friend", method: http.MethodPost, body: callRequest("1", "a"),
			serve: streaming(200, sse, `data: {"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":`+
				`"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}"}]}}`+"\n\n"),
			forgetAt: -1, wantClasses: "a=read"},
		{name: "an unfinished event at the end", user: "friend", method: http.MethodGet,
			serve:    streaming(200, sse, "data: "+listChanged+"\n"),
			forgetAt: -1, wantClasses: "a=read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pf := newPolicyFront(t)
			if err := TunnelTools(pf.t).Learn([]byte(`{"tools":[`+annotated("a", annRead)+`]}`), true); err != nil {
				t.Fatal(err)
			}
			reached := pf.reachedCount()
			pf.setServe(tc.serve)
			w := &probeWriter{ResponseRecorder: httptest.NewRecorder(), t: pf.t}
			pf.do(w, tc.user, tc.method, tc.body)
			if pf.reachedCount() != reached+1 {
				t.Fatalf("the request did not reach the server: %d %s", w.Code, w.Body)
			}
			for i, known := range w.known {
				if want := tc.forgetAt < 0 || i < tc.forgetAt; known != want {
					t.Errorf("chunk %d reached the client with the classes known %v, want %v", i, known, want)
				}
			}
			if got := classesOf(pf.t, "a"); got != tc.wantClasses {
				t.Errorf("classes %s, want %s", got, tc.wantClasses)
			}
		})
	}
}

// TestPolicyListChangedThenRelist: after the server's notification, a shared user's call of a
// tool that was read is denied without reaching the server (its class is unknown, hence
// destructive); the client's next listing restores the classes the server now gives, and the
// call goes through.
func TestPolicyListChangedThenRelist(t *testing.T) {
	pf := newPolicyFront(t)
	pf.setServe(answerWith(toolsAnswer("1", annotated("a", annRead)), false))
	pf.do(nil, "friend", http.MethodPost, listRequest("1", ""))
	pf.setServe(streaming(200, "text/event-stream", "data: "+listChanged+"\n\n"))
	pf.do(nil, "friend", http.MethodGet, "")

	reached := pf.reachedCount()
	w := pf.do(nil, "friend", http.MethodPost, callRequest("2", "a"))
	if !strings.Contains(w.Body.String(), `rule \"default\"`) || pf.reachedCount() != reached {
		t.Fatalf("calling a tool of unknown class: %d %s (reached the server: %v)", w.Code, w.Body, pf.reachedCount() != reached)
	}

	pf.setServe(answerWith(toolsAnswer("3", annotated("a", annRead)), false))
	if w := pf.do(nil, "friend", http.MethodPost, listRequest("3", "")); !strings.Contains(w.Body.String(), `"a"`) {
		t.Fatalf("relisting: %d %s", w.Code, w.Body)
	}
	pf.setServe(answerWith(callAnswer, false))
	if w := pf.do(nil, "friend", http.MethodPost, callRequest("4", "a")); !strings.Contains(w.Body.String(), "done") {
		t.Errorf("calling the tool after relisting: %d %s", w.Code, w.Body)
	}
}
