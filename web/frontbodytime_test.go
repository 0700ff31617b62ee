package web

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// bodyTimeoutServers serves pf.f over real connections, where read deadlines exist: plain
// HTTP/1.1, and HTTP/2 over TLS.
func bodyTimeoutServers(t *testing.T, pf *policyFront) map[string]*httptest.Server {
	h1 := httptest.NewServer(pf.f)
	t.Cleanup(h1.Close)
	h2 := httptest.NewUnstartedServer(pf.f)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	return map[string]*httptest.Server{"HTTP/1.1": h1, "HTTP/2.0": h2}
}

// stalledPost sends a POST to host over proto that announces 200 bytes of body, sends 46 and
// stalls. It returns the answer and how long it took. The test's own bound is 5 s.
func stalledPost(t *testing.T, proto string, ts *httptest.Server, host string) (status int, body string, took time.Duration) {
	t.Helper()
	pipe, send := io.Pipe()
	defer send.Close()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/mcp", pipe)
	req.Host = host
	req.ContentLength = 200
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer owner")
	go send.Write([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call",`)) //nolint:errcheck
	start := time.Now()
	// The transport waits on the body too, so ending the body is what ends the request.
	bound := time.AfterFunc(5*time.Second, func() { send.CloseWithError(errors.New("the test's bound")) })
	defer bound.Stop()
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Proto != proto {
		t.Fatalf("served over %s, not %s", resp.Proto, proto)
	}
	return resp.StatusCode, string(got), time.Since(start)
}

// TestBodyTimeout: a client that sends the headers and part of an MCP body, then stalls, gets
// 408 once BodyTimeout has passed, and nothing reaches the local server.
func TestBodyTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	pf := newPolicyFrontWith(t, func(c *FrontConfig) { c.BodyTimeout = timeout })
	pf.setServe(answerWith(callAnswer, false))
	for proto, ts := range bodyTimeoutServers(t, pf) {
		t.Run(proto, func(t *testing.T) {
			status, body, took := stalledPost(t, proto, ts, "tools.test.localhost")
			if status != http.StatusRequestTimeout || !strings.Contains(body, "did not arrive within 300ms") {
				t.Fatalf("%d: %s", status, body)
			}
			if took < timeout {
				t.Fatalf("408 after %v, before the timeout", took)
			}
			if n := pf.reachedCount(); n != 0 {
				t.Fatalf("%d requests reached the local server", n)
			}
		})
	}
}

// TestBodyTimeoutApex: the apex's handlers (OAuth and sign-in forms) read under the same
// deadline: a stalled body is a read error there once BodyTimeout has passed.
func TestBodyTimeoutApex(t *testing.T) {
	const timeout = 300 * time.Millisecond
	apex := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "reading: "+err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, "read it all") //nolint:errcheck
	})
	pf := newPolicyFrontWith(t, func(c *FrontConfig) { c.BodyTimeout = timeout; c.Apex = apex })
	for proto, ts := range bodyTimeoutServers(t, pf) {
		t.Run(proto, func(t *testing.T) {
			status, body, took := stalledPost(t, proto, ts, "test.localhost")
			if status != http.StatusBadRequest || !strings.Contains(body, os.ErrDeadlineExceeded.Error()) {
				t.Fatalf("%d: %s", status, body)
			}
			if took < timeout {
				t.Fatalf("answered after %v, before the timeout", took)
			}
		})
	}
}

// TestBodyTimeoutLifted: the deadline ends with the body. A response that streams for longer
// than BodyTimeout is not cut (on HTTP/1 an expired connection deadline would end the
// request's context, and with it the stream).
func TestBodyTimeoutLifted(t *testing.T) {
	const timeout = 200 * time.Millisecond
	pf := newPolicyFrontWith(t, func(c *FrontConfig) { c.BodyTimeout = timeout })
	pf.setServe(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: message\ndata: 1\n\n") //nolint:errcheck
		http.NewResponseController(w).Flush()            //nolint:errcheck
		select {
		case <-time.After(4 * timeout):
			io.WriteString(w, "event: message\ndata: 2\n\n") //nolint:errcheck
		case <-r.Context().Done():
		}
	})
	for proto, ts := range bodyTimeoutServers(t, pf) {
		t.Run(proto, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/mcp", strings.NewReader(callRequest("1", "x")))
			req.Host = "tools.test.localhost"
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Authorization", "Bearer owner")
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(got), "data: 2") {
				t.Fatalf("%d %v: %q", resp.StatusCode, err, got)
			}
		})
	}
}

// TestBodyTimeoutClosesHTTP1: after a 408 the rest of the body is unread, so an HTTP/1
// connection says it is closing, and does.
func TestBodyTimeoutClosesHTTP1(t *testing.T) {
	pf := newPolicyFrontWith(t, func(c *FrontConfig) { c.BodyTimeout = 200 * time.Millisecond })
	pf.setServe(answerWith(callAnswer, false))
	ts := httptest.NewServer(pf.f)
	defer ts.Close()
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /mcp HTTP/1.1\r\nHost: tools.test.localhost\r\nAuthorization: Bearer owner\r\n"+ //nolint:errcheck
		"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"")
	c.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("%d, close %v", resp.StatusCode, resp.Close)
	}
	// EOF, not the test's own deadline: the server closed its end.
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("the connection stayed open: read %d, %v", n, err)
	}
}
