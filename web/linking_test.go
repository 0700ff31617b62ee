package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/data"
)

const testFP = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"

// waitResult is what PendingLink.Wait returned, and how long after the decision.
type waitResult struct {
	userID, display string
	err             error
	at              time.Time
}

func waitInBackground(p *PendingLink, ctx context.Context) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		id, display, err := p.Wait(ctx)
		ch <- waitResult{id, display, err, time.Now()}
	}()
	return ch
}

func TestLinkApprove(t *testing.T) {
	s := newTestSite(t)
	ctx := context.Background()
	u := s.addUser("ada@example.com", testPassword, false)
	// A name the key claimed before it had an owner.
	if _, err := s.store.ClaimName(ctx, data.NameClaim{Name: "quiet-fox-7h3k2q", Owner: testFP, LastUsed: s.clock.Now()}); err != nil {
		t.Fatal(err)
	}

	p, err := s.links.Begin(LinkRequest{Fingerprint: testFP, KeyType: "ssh-ed25519", RemoteIP: "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Code) != 9 || p.Code[4] != '-' || p.URL != s.srv.URL+"/link/"+p.Code || !p.Expires.Equal(s.clock.Now().Add(10*time.Minute)) {
		t.Fatalf("pending link %+v", p)
	}
	done := waitInBackground(p, ctx)

	// Signed out, the page sends the browser to sign in and back.
	path := "/link/" + p.Code
	if r := s.do(s.client(), "GET", path, nil, "Accept", "text/html"); r.StatusCode != http.StatusSeeOther ||
		r.Header.Get("Location") != "/signin?next="+url.QueryEscape(path) {
		t.Fatalf("signed out: %d %q", r.StatusCode, r.Header.Get("Location"))
	}

	c := s.signedIn("ada@example.com", testPassword)
	shown := s.get(c, path)
	for _, want := range []string{testFP, "ssh-ed25519", "192.0.2.7", "Remember this key for 90 days", `value="approve"`, `value="deny"`, "ada@example.com"} {
		if !strings.Contains(shown.Body, want) {
			t.Errorf("link page lacks %q", want)
		}
	}
	select {
	case r := <-done:
		t.Fatalf("Wait returned before a decision: %+v", r)
	default:
	}

	// The code is case-insensitive and the dash optional.
	lower := "/link/" + strings.ToLower(strings.ReplaceAll(p.Code, "-", ""))
	decided := time.Now()
	r := s.post(c, lower, lower, url.Values{"action": {"approve"}, "remember": {"1"}})
	if r.StatusCode != http.StatusOK || !strings.Contains(r.Body, "Key linked") {
		t.Fatalf("approve: %d %s", r.StatusCode, r.Body)
	}
	select {
	case w := <-done:
		if w.err != nil || w.userID != u.ID || w.display != "ada@example.com" {
			t.Fatalf("Wait = %+v", w)
		}
		if lag := w.at.Sub(decided); lag > 100*time.Millisecond {
			t.Errorf("Wait returned %v after the approval was sent", lag)
		}
	case <-time.After(100 * time.Millisecond):
		t.Fatal("Wait did not return within 100ms of the approval")
	}

	k, err := s.store.GetKey(ctx, testFP)
	if err != nil {
		t.Fatal(err)
	}
	if k.UserID != u.ID || k.Type != "ssh-ed25519" || k.LinkedFrom != "192.0.2.7" || !k.ExpiresAt.Equal(s.clock.Now().Add(90*24*time.Hour)) {
		t.Fatalf("stored key %+v", k)
	}
	if n, err := s.store.GetName(ctx, "quiet-fox-7h3k2q"); err != nil || n.Owner != u.ID {
		t.Fatalf("the key's name: %+v, %v; want it moved to the user", n, err)
	}

	// A code is decided once.
	if r := s.post(c, "/keys", path, url.Values{"action": {"deny"}}); r.StatusCode != http.StatusConflict {
		t.Fatalf("second decision: %d", r.StatusCode)
	}
	if r := s.get(c, path); r.StatusCode != http.StatusConflict || !strings.Contains(r.Body, "already approved") {
		t.Fatalf("page after approval: %d %s", r.StatusCode, r.Body)
	}
	if id, _, err := p.Wait(ctx); err != nil || id != u.ID {
		t.Fatalf("waiting again: %q, %v", id, err)
	}
}

// Without "remember", the key lasts KeyTTL.
func TestLinkApproveDefaultTTL(t *testing.T) {
	s := newTestSite(t)
	s.addUser("ada@example.com", testPassword, false)
	p, _ := s.links.Begin(LinkRequest{Fingerprint: testFP, KeyType: "ssh-ed25519", RemoteIP: "192.0.2.7"})
	c := s.signedIn("ada@example.com", testPassword)
	path := "/link/" + p.Code
	if r := s.post(c, path, path, url.Values{"action": {"approve"}}); r.StatusCode != http.StatusOK {
		t.Fatalf("approve: %d", r.StatusCode)
	}
	k, err := s.store.GetKey(context.Background(), testFP)
	if err != nil || !k.ExpiresAt.Equal(s.clock.Now().Add(30*24*time.Hour)) {
		t.Fatalf("key %+v, %v", k, err)
	}
}

func TestLinkDeny(t *testing.T) {
	s := newTestSite(t)
	s.addUser("ada@example.com", testPassword, false)
	p, _ := s.links.Begin(LinkRequest{Fingerprint: testFP, KeyType: "ssh-ed25519", RemoteIP: "192.0.2.7"})
	done := waitInBackground(p, context.Background())
	c := s.signedIn("ada@example.com", testPassword)
	path := "/link/" + p.Code
	if r := s.post(c, path, path, url.Values{"action": {"deny"}}); r.StatusCode != http.StatusOK {
		t.Fatalf("deny: %d %s", r.StatusCode, r.Body)
	}
	select {
	case w := <-done:
		if !errors.Is(w.err, ErrLinkDenied) {
			t.Fatalf("Wait = %+v, want ErrLinkDenied", w)
		}
	case <-time.After(time.Second):
		t.Fatal("Wait did not return after the denial")
	}
	if _, err := s.store.GetKey(context.Background(), testFP); !errors.Is(err, data.ErrNotFound) {
		t.Fatalf("a denied key is stored: %v", err)
	}
	if r := s.post(c, "/keys", path, url.Values{"action": {"approve"}}); r.StatusCode != http.StatusConflict {
		t.Fatalf("approve after deny: %d", r.StatusCode)
	}
}

// Without CSRF, nothing is decided.
func TestLinkNeedsCSRF(t *testing.T) {
	s := newTestSite(t)
	s.addUser("ada@example.com", testPassword, false)
	p, _ := s.links.Begin(LinkRequest{Fingerprint: testFP, KeyType: "ssh-ed25519", RemoteIP: "192.0.2.7"})
	c := s.signedIn("ada@example.com", testPassword)
	if r := s.do(c, "POST", "/link/"+p.Code, url.Values{"action": {"approve"}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("approve without CSRF: %d", r.StatusCode)
	}
	if _, state := s.links.lookup(p.Code); state != linkPending {
		t.Fatalf("state %v after a refused approval", state)
	}
}

func newTestLinks(t *testing.T, cfg KeyLinksConfig) *KeyLinks {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = openTestStore(t)
	}
	cfg.BaseURL = "https://toolgate.localhost:8443"
	k, err := NewKeyLinks(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestLinkExpires(t *testing.T) {
	k := newTestLinks(t, KeyLinksConfig{CodeTTL: 50 * time.Millisecond})
	p, err := k.Begin(LinkRequest{Fingerprint: testFP, RemoteIP: "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err = p.Wait(context.Background())
	if !errors.Is(err, ErrLinkExpired) {
		t.Fatalf("Wait = %v, want ErrLinkExpired", err)
	}
	if took := time.Since(start); took < 40*time.Millisecond || took > time.Second {
		t.Fatalf("expired after %v, want about 50ms", took)
	}
	if _, state := k.lookup(p.Code); state != linkExpired {
		t.Fatalf("state %v", state)
	}
	// Its slot is free again.
	if k.pending != 0 || len(k.perIP) != 0 {
		t.Fatalf("pending %d, per IP %v", k.pending, k.perIP)
	}
}

// A page for an expired code says so, and nobody can approve it.
func TestLinkExpiredPage(t *testing.T) {
	s := newTestSite(t)
	s.addUser("ada@example.com", testPassword, false)
	p, _ := s.links.Begin(LinkRequest{Fingerprint: testFP, KeyType: "ssh-ed25519", RemoteIP: "192.0.2.7"})
	c := s.signedIn("ada@example.com", testPassword)
	path := "/link/" + p.Code
	tok := s.csrf(c, path)
	s.clock.Advance(10 * time.Minute)
	if r := s.do(c, "POST", path, url.Values{"csrf": {tok}, "action": {"approve"}}); r.StatusCode != http.StatusGone {
		t.Fatalf("approve after expiry: %d %s", r.StatusCode, r.Body)
	}
	if _, _, err := p.Wait(context.Background()); !errors.Is(err, ErrLinkExpired) {
		t.Fatalf("Wait = %v", err)
	}
	if r := s.get(c, "/link/ZZZZ-ZZZZ"); r.StatusCode != http.StatusNotFound || !strings.Contains(r.Body, "No key is waiting") {
		t.Fatalf("unknown code: %d %s", r.StatusCode, r.Body)
	}
}

func TestLinkCancel(t *testing.T) {
	k := newTestLinks(t, KeyLinksConfig{})
	p, _ := k.Begin(LinkRequest{Fingerprint: testFP, RemoteIP: "192.0.2.7"})
	done := waitInBackground(p, context.Background())
	p.Cancel()
	if w := <-done; !errors.Is(w.err, ErrLinkCanceled) {
		t.Fatalf("Wait = %v", w.err)
	}

	// A waiter whose context ends withdraws its link.
	p, _ = k.Begin(LinkRequest{Fingerprint: testFP, RemoteIP: "192.0.2.7"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v", err)
	}
	if _, state := k.lookup(p.Code); state != linkCanceled {
		t.Fatalf("state %v after the waiter left", state)
	}
	if k.pending != 0 {
		t.Fatalf("pending %d", k.pending)
	}
}

func TestLinkLimits(t *testing.T) {
	k := newTestLinks(t, KeyLinksConfig{MaxPending: 7, MaxPendingPerIP: 5})
	var first *PendingLink
	for i := range 5 {
		p, err := k.Begin(LinkRequest{Fingerprint: testFP, RemoteIP: "192.0.2.7"})
		if err != nil {
			t.Fatalf("link %d: %v", i+1, err)
		}
		if first == nil {
			first = p
		}
	}
	if _, err := k.Begin(LinkRequest{Fingerprint: testFP, RemoteIP: "192.0.2.7"}); !errors.Is(err, ErrTooManyPending) {
		t.Fatalf("6th from one address: %v", err)
	}
	for i := range 2 {
		if _, err := k.Begin(LinkRequest{Fingerprint: testFP, RemoteIP: "198.51.100.1"}); err != nil {
			t.Fatalf("other address, link %d: %v", i+1, err)
		}
	}
	if _, err := k.Begin(LinkRequest{Fingerprint: testFP, RemoteIP: "203.0.113.9"}); !errors.Is(err, ErrTooManyPending) {
		t.Fatalf("past the total: %v", err)
	}
	first.Cancel()
	if _, err := k.Begin(LinkRequest{Fingerprint: testFP, RemoteIP: "192.0.2.7"}); err != nil {
		t.Fatalf("after a cancel freed a slot: %v", err)
	}
}

func TestLinkCodes(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		c := newCode()
		if len(c) != 8 || strings.Trim(c, codeAlphabet) != "" {
			t.Fatalf("code %q", c)
		}
		seen[c] = true
	}
	if len(seen) < 999 {
		t.Fatalf("%d distinct codes of 1000", len(seen))
	}
	for in, want := range map[string]string{"ABCD-EFGH": "ABCDEFGH", "abcd efgh": "ABCDEFGH", "abcdefgh": "ABCDEFGH", strings.Repeat("A", 40): ""} {
		if got := normalizeCode(in); got != want {
			t.Errorf("normalizeCode(%q) = %q, want %q", in, got, want)
		}
	}
}

// Guessing codes from a session is limited.
func TestLinkCodeGuessing(t *testing.T) {
	s := newTestSite(t)
	s.addUser("ada@example.com", testPassword, false)
	c := s.signedIn("ada@example.com", testPassword)
	for i := range 20 {
		if r := s.get(c, "/link/AAAA-AAA"+string(codeAlphabet[i])); r.StatusCode != http.StatusNotFound {
			t.Fatalf("guess %d: %d", i+1, r.StatusCode)
		}
	}
	if r := s.get(c, "/link/BBBB-BBBB"); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("21st guess: %d", r.StatusCode)
	}
}

// Link shows the URL and code once, then waits; a failing show withdraws the link.
func TestLinkForSSH(t *testing.T) {
	st := openTestStore(t)
	k := newTestLinks(t, KeyLinksConfig{Store: st})
	u, err := st.CreateUser(context.Background(), data.User{Email: "ada@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	shown := make(chan string, 2)
	type result struct {
		id, display string
		err         error
	}
	done := make(chan result, 1)
	go func() {
		id, display, err := k.Link(context.Background(), LinkRequest{Fingerprint: testFP, KeyType: "ssh-ed25519", RemoteIP: "192.0.2.7"},
			func(text string) error { shown <- text; return nil })
		done <- result{id, display, err}
	}()
	text := <-shown
	code := text[strings.Index(text, "/link/")+len("/link/"):][:9]
	if !strings.Contains(text, "https://toolgate.localhost:8443/link/"+code) || !strings.Contains(text, "the code "+code) || !strings.Contains(text, "10 minutes") {
		t.Fatalf("shown %q", text)
	}
	p, state := k.lookup(code)
	if state != linkPending {
		t.Fatalf("state %v", state)
	}
	if err := k.approve(context.Background(), p, u, false); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || r.id != u.ID || r.display != "ada@example.com" {
		t.Fatalf("Link = %+v", r)
	}
	if len(shown) != 0 {
		t.Fatal("show called twice")
	}

	showErr := errors.New("client gone")
	if _, _, err := k.Link(context.Background(), LinkRequest{Fingerprint: testFP, RemoteIP: "192.0.2.7"},
		func(string) error { return showErr }); !errors.Is(err, showErr) {
		t.Fatalf("Link with a failing show: %v", err)
	}
	if k.pending != 0 {
		t.Fatalf("%d links pending after show failed", k.pending)
	}
}
