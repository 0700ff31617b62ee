package web

import (
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/oauth"
)

// stepUpTokens is a TokenChecker that records what it is told of step-up challenges.
type stepUpTokens struct {
	benchTokens
	mu    sync.Mutex
	marks []string // rule per StepUpIssued, for the test's access only
	other int      // StepUpIssued calls with another Access
}

func (s *stepUpTokens) StepUpIssued(a *oauth.Access, rule string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a != s.access {
		s.other++
		return
	}
	s.marks = append(s.marks, rule)
}

// The authorization server hears of every step-up challenge the policy step answers, with the
// token's Access and the rule, and of nothing else: an allowed call is not a step-up.
func TestStepUpIsReportedToTheAuthorizationServer(t *testing.T) {
	st, reg, _, users := openTestTunnel(t, "test.localhost", "notes", "owner@example.test")
	u := users[0]

	for _, tc := range []struct {
		name     string
		signedIn time.Duration // ago
		status   int
		marks    []string
	}{
		{"fresh sign-in", time.Minute, 200, nil},
		{"old sign-in", 2 * time.Hour, 403, []string{"fresh-sign-in-for-destructive"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tokens := &stepUpTokens{benchTokens: benchTokens{&oauth.Access{UserID: u.ID, ClientID: "c", ClientName: "test",
				Scopes: []string{"mcp"}, Resource: "https://notes.test.localhost", AuthTime: time.Now().Add(-tc.signedIn),
				ExpiresAt: time.Now().Add(time.Hour), Grant: "grant-1"}}}
			f, err := NewFront(FrontConfig{Domain: "test.localhost", Tunnels: reg, Proxy: benchProxy{}, Auth: tokens,
				Policy: benchPolicy{authz.DefaultPolicy(time.Hour)}, Users: st})
			if err != nil {
				t.Fatal(err)
			}
			// A tool never listed counts as destructive.
			body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wipe","arguments":{}}}`
			r := httptest.NewRequest("POST", "https://notes.test.localhost/mcp", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Authorization", "Bearer x")
			r.RemoteAddr = "127.0.0.1:5000"
			w := httptest.NewRecorder()
			f.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status == 403 && !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="insufficient_scope"`) {
				t.Errorf("WWW-Authenticate %q", w.Header().Get("WWW-Authenticate"))
			}
			if strings.Join(tokens.marks, ",") != strings.Join(tc.marks, ",") || tokens.other != 0 {
				t.Errorf("StepUpIssued with rules %q (and %d with another Access), want %q", tokens.marks, tokens.other, tc.marks)
			}
		})
	}
}
