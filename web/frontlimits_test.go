package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// limitedRequest sends one POST (tools/list, which everyone may ask) to pf's tunnel as user
// from the client address remote.
func limitedRequest(pf *policyFront, user, remote string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "https://tools.test.localhost/mcp", strings.NewReader(listRequest("1", "")))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json, text/event-stream")
	r.Header.Set("Authorization", "Bearer "+user)
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	pf.f.ServeHTTP(w, r)
	return w
}

// TestLimitsRate: past a rate (in bursts of twice the rate), a client address or a user gets
// 429 with Retry-After and a message naming the limit; others are not held back, and nothing
// refused reaches the local server. Refusals are audited as denials, through the refusal gate.
func TestLimitsRate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits RequestLimits
		// Requests in order: who, from where, and the status wanted.
		steps []struct {
			user, remote string
			status       int
		}
		message, rule string
	}{
		{name: "per address", limits: RequestLimits{RatePerIP: 1},
			steps: []struct {
				user, remote string
				status       int
			}{
				{"owner", "203.0.113.7:1", 200}, {"friend", "203.0.113.7:2", 200}, {"owner", "203.0.113.7:3", 429},
				{"owner", "203.0.113.8:1", 200}, // another address
				{"owner", "[2001:db8:1:2::1]:1", 200}, {"owner", "[2001:db8:1:2::2]:1", 200},
				{"owner", "[2001:db8:1:2::3]:1", 429}, // the same /64
				{"owner", "[2001:db8:1:3::1]:1", 200}, // another /64
			},
			message: "Too many requests from 2001:db8:1:2::3: at most 1 a second. Retry in 1s.", rule: "rate_per_ip"},
		{name: "per user", limits: RequestLimits{RatePerUser: 0.5},
			steps: []struct {
				user, remote string
				status       int
			}{
				{"owner", "203.0.113.7:1", 200}, {"owner", "203.0.113.8:1", 429}, // any address
				{"friend", "203.0.113.7:1", 200},
			},
			message: "Too many requests by your account: at most 0.5 a second. Retry in 2s.", rule: "rate_per_user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &auditSink{}
			pf := newPolicyFrontWith(t, func(c *FrontConfig) { c.Limits = tc.limits; c.Audit = sink })
			pf.setServe(answerWith(toolsAnswer("1"), false))
			okCount, last := 0, ""
			for i, s := range tc.steps {
				w := limitedRequest(pf, s.user, s.remote)
				if w.Code != s.status {
					t.Fatalf("request %d (%s from %s): %d, want %d: %s", i, s.user, s.remote, w.Code, s.status, w.Body)
				}
				if w.Code == 200 {
					okCount++
					continue
				}
				last = w.Body.String()
				if ra := w.Header().Get("Retry-After"); ra == "" || ra == "0" {
					t.Errorf("request %d: Retry-After %q", i, ra)
				}
			}
			if !strings.Contains(last, tc.message) || !strings.Contains(last, `"error":"`+tc.rule+`"`) {
				t.Errorf("the last refusal said %s; want %q", last, tc.message)
			}
			if n := pf.reachedCount(); n != okCount {
				t.Errorf("%d requests reached the local server, want %d", n, okCount)
			}
			var denied int
			for _, rec := range sink.take() {
				if rec.Decision == "deny" && rec.Rule == tc.rule && rec.Status == 429 {
					denied++
				}
			}
			if want := len(tc.steps) - okCount; denied != want {
				t.Errorf("%d refusals audited, want %d", denied, want)
			}
		})
	}
}

// TestLimitsStreams: requests in flight (an open event stream among them) count per address and
// per user until they end; one over the limit gets 429; when one ends, the next gets in; and
// the counters are empty once everything has ended.
func TestLimitsStreams(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits RequestLimits
		// The second request in flight, while the first (owner from 203.0.113.7) is open.
		user, remote string
		status       int
	}{
		{"per address, same address", RequestLimits{StreamsPerIP: 1}, "friend", "203.0.113.7:2", 429},
		{"per address, another address", RequestLimits{StreamsPerIP: 1}, "owner", "203.0.113.8:1", 200},
		{"per user, same user", RequestLimits{StreamsPerUser: 1}, "owner", "203.0.113.8:1", 429},
		{"per user, another user", RequestLimits{StreamsPerUser: 1}, "friend", "203.0.113.7:2", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pf := newPolicyFrontWith(t, func(c *FrontConfig) { c.Limits = tc.limits })
			open, hold := make(chan struct{}), make(chan struct{})
			var once sync.Once
			pf.setServe(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				w.WriteHeader(200)
				first := false
				once.Do(func() { first = true })
				if first {
					close(open)
					<-hold // the first request's stream stays open until the test ends it
				}
			})
			done := make(chan *httptest.ResponseRecorder)
			go func() { done <- limitedRequest(pf, "owner", "203.0.113.7:1") }()
			<-open
			w := limitedRequest(pf, tc.user, tc.remote)
			if w.Code != tc.status {
				t.Fatalf("second request: %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status == 429 && !strings.Contains(w.Body.String(), "at once: at most 1, open event streams included") {
				t.Errorf("refusal: %s", w.Body)
			}
			close(hold)
			if w := <-done; w.Code != 200 {
				t.Fatalf("first request: %d", w.Code)
			}
			if w := limitedRequest(pf, tc.user, tc.remote); w.Code != 200 {
				t.Fatalf("after the first ended: %d: %s", w.Code, w.Body)
			}
			for _, sc := range []*streamCounter{pf.f.limits.ipStreams, pf.f.limits.userStreams} {
				if sc != nil && len(sc.n) != 0 {
					t.Errorf("counters left after every request ended: %v", sc.n)
				}
			}
		})
	}
}
