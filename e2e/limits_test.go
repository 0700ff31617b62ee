package e2e

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestLimits: the request limits of a real toolgate. Past --rate-per-ip, or with
// --max-streams-per-ip requests already in flight (an open event stream among them), a client
// gets 429 with Retry-After; nothing refused reaches the local server, and the owner's terminal
// shows each refusal.
func TestLimits(t *testing.T) {
	t.Parallel()
	t.Run("rate per address", func(t *testing.T) {
		t.Parallel()
		in := startToolgate(t, "--rate-per-ip", "2") // bursts of 4
		var hits atomic.Int32
		host, ssh := openTunnel(t, in, nil, recordingServer(t, &hits, make(chan seen), nil))
		c := quickClient(t, in)
		var statuses []int
		var refusal string
		for range 5 {
			resp := do(t, c, "GET", in.url(host, "/mcp"), nil)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			statuses = append(statuses, resp.StatusCode)
			if resp.StatusCode == http.StatusTooManyRequests {
				refusal = resp.Header.Get("Retry-After") + " " + string(b)
			}
		}
		// Five requests well within a second: the burst of four passes, the fifth does not.
		if got := statuses; got[3] != 200 || got[4] != 429 {
			t.Fatalf("statuses %v, want four 200 then 429", got)
		}
		if !strings.HasPrefix(refusal, "1 ") || !strings.Contains(refusal, `"error":"rate_per_ip"`) ||
			!strings.Contains(refusal, "at most 2 a second") {
			t.Errorf("the refusal: %s", refusal)
		}
		if n := hits.Load(); n != 4 {
			t.Errorf("the local server got %d requests, want 4", n)
		}
		ssh.WaitFor(regexpMust(`/mcp +429 .* DENIED by "rate_per_ip"`), 5*time.Second)
	})
	t.Run("streams per address", func(t *testing.T) {
		t.Parallel()
		in := startToolgate(t, "--max-streams-per-ip", "1")
		var hits atomic.Int32
		port := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			if r.URL.Path == "/events" {
				w.Header().Set("Content-Type", "text/event-stream")
				w.WriteHeader(200)
				w.(http.Flusher).Flush()
				<-r.Context().Done() // open until the client leaves
				return
			}
			io.WriteString(w, "ok")
		}), 0)
		host, ssh := openTunnel(t, in, nil, port)
		c := quickClient(t, in)
		stream := do(t, c, "GET", in.url(host, "/events"), nil)
		if stream.StatusCode != 200 {
			t.Fatalf("the event stream: %d", stream.StatusCode)
		}
		resp := do(t, c, "GET", in.url(host, "/mcp"), nil)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 429 || !strings.Contains(string(b), "at once: at most 1, open event streams included") {
			t.Fatalf("with the stream open: %d %s", resp.StatusCode, b)
		}
		ssh.WaitFor(regexpMust(`/mcp +429 .* DENIED by "streams_per_ip"`), 5*time.Second)
		stream.Body.Close()
		// Once the stream has ended, the next request gets in.
		waitFor(t, 5*time.Second, "a request after the stream ended", func() bool {
			resp := do(t, c, "GET", in.url(host, "/mcp"), nil)
			resp.Body.Close()
			return resp.StatusCode == 200
		})
		if n := hits.Load(); n != 2 {
			t.Errorf("the local server got %d requests, want 2", n)
		}
	})
}
