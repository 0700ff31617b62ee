package oauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/oauth"
)

const stepUpRule = "fresh-sign-in-for-destructive"

// recordingAudit keeps what the server audits.
type recordingAudit struct {
	mu   sync.Mutex
	recs []data.AuditRecord
}

func (a *recordingAudit) Append(r data.AuditRecord) {
	a.mu.Lock()
	a.recs = append(a.recs, r)
	a.mu.Unlock()
}

func (a *recordingAudit) kind(kind string) []data.AuditRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []data.AuditRecord
	for _, r := range a.recs {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// access is what the proxy's token check returns for token, as web passes it on to
// StepUpIssued.
func (f *fixture) access(t testing.TB, token string) *oauth.Access {
	t.Helper()
	a, err := f.srv.Check(t.Context(), token, originA, "/mcp")
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if a.Grant == "" {
		t.Fatal("Check returned an Access without its grant")
	}
	return a
}

// wantStepUpRefusal: the refresh was refused as a step-up refusal, naming the rule.
func wantStepUpRefusal(t testing.TB, tr tokenResp) {
	t.Helper()
	wantTokenError(t, tr, "invalid_grant")
	if tr.Status != http.StatusBadRequest || !strings.Contains(tr.ErrorDescription, "a new authorization is required") ||
		!strings.Contains(tr.ErrorDescription, stepUpRule) {
		t.Fatalf("refusal %s, want 400 invalid_grant saying a new authorization is required, naming the rule", tr)
	}
}

// After a step-up challenge, a refresh of the challenged grant is refused with invalid_grant
// for the window, and only refused: the grant's tokens stay valid, and after the window the
// same refresh token works.
func TestRefreshRefusedAfterStepUp(t *testing.T) {
	audit := &recordingAudit{}
	f := newFixture(t, func(c *oauth.Config) { c.Audit = audit })
	first := f.tokens(t)
	f.srv.StepUpIssued(f.access(t, first.AccessToken), stepUpRule)

	wantStepUpRefusal(t, f.refresh(t, first.RefreshToken))
	wantValid(t, f, first.AccessToken) // refused, not revoked

	f.clock.Advance(9 * time.Minute)
	wantStepUpRefusal(t, f.refresh(t, first.RefreshToken))

	recs := audit.kind("token_refresh_refused")
	if len(recs) != 2 {
		t.Fatalf("token_refresh_refused records: %+v, want 2", recs)
	}
	if r := recs[0]; r.User != f.user.Email || r.Client != "static" || r.Decision != "deny" || r.Rule != stepUpRule {
		t.Errorf("audit record %+v", r)
	}
	if n := len(audit.kind("token_refreshed")); n != 0 {
		t.Errorf("%d token_refreshed records for refused refreshes", n)
	}
	if !strings.Contains(f.logs.String(), "token refresh refused after a step-up") {
		t.Errorf("no log line for the refusal:\n%s", f.logs)
	}

	f.clock.Advance(time.Minute + time.Second) // the default window is 10 minutes
	second := f.refresh(t, first.RefreshToken)
	wantOK(t, second)
	wantValid(t, f, second.AccessToken)
}

// Each challenge starts the window again: a client that keeps calling what needs the step-up
// keeps being told to authorize.
func TestStepUpWindowRestartsWithEachChallenge(t *testing.T) {
	f := newFixture(t, func(c *oauth.Config) { c.StepUpRefreshWindow = time.Minute })
	tr := f.tokens(t)
	a := f.access(t, tr.AccessToken)
	f.srv.StepUpIssued(a, stepUpRule)
	f.clock.Advance(50 * time.Second)
	f.srv.StepUpIssued(a, stepUpRule)
	f.clock.Advance(50 * time.Second)
	wantStepUpRefusal(t, f.refresh(t, tr.RefreshToken))
	f.clock.Advance(11 * time.Second)
	wantOK(t, f.refresh(t, tr.RefreshToken))
}

// The mark is the grant's: another grant of the same user and client, and another client's,
// refresh as before; and a challenge on any pair of a grant covers its other refresh tokens.
func TestStepUpRefusalIsPerGrant(t *testing.T) {
	f := newFixture(t, nil)
	challenged := f.tokens(t)
	sameClient := f.tokens(t)
	p := newPKCE()
	code := f.code(t, authQuery(p, func(q url.Values) { q.Set("client_id", "other") }))
	otherClient := f.exchange(t, code, p.verifier, redirectIP, func(v url.Values) { v.Set("client_id", "other") })
	wantOK(t, otherClient)

	// The challenge comes on the grant's second pair; the refresh is tried with that pair's
	// refresh token.
	next := f.refresh(t, challenged.RefreshToken)
	wantOK(t, next)
	f.srv.StepUpIssued(f.access(t, next.AccessToken), stepUpRule)
	wantStepUpRefusal(t, f.refresh(t, next.RefreshToken))

	wantOK(t, f.refresh(t, sameClient.RefreshToken))
	wantOK(t, f.post(t, oauth.TokenPath, refreshForm(otherClient.RefreshToken, "other"), nil))

	// A new authorization is a new grant: it refreshes at once.
	fresh := f.tokens(t)
	wantOK(t, f.refresh(t, fresh.RefreshToken))
}

// The refresh grace window answers a second use of a rotated token with the pair its first use
// got. After a challenge on that pair's grant, that would hand the client the challenged
// grant's token again: the grace path refuses too, and leaves the grant alive (falling through
// to fosite would have taken the reuse for theft).
func TestStepUpRefusalNotBypassedByGrace(t *testing.T) {
	f := newFixture(t, func(c *oauth.Config) { c.RefreshGrace = 30 * time.Second })
	first := f.tokens(t)
	second := f.refresh(t, first.RefreshToken)
	wantOK(t, second)
	f.srv.StepUpIssued(f.access(t, second.AccessToken), stepUpRule)

	f.clock.Advance(5 * time.Second) // well within the grace
	tr := f.refresh(t, first.RefreshToken)
	wantStepUpRefusal(t, tr)
	if strings.Contains(tr.Body, second.AccessToken) || strings.Contains(tr.Body, second.RefreshToken) {
		t.Fatalf("the grace path handed out the challenged pair: %s", tr)
	}
	wantValid(t, f, second.AccessToken)

	// Concurrent refreshes with either token are all refused, none rotates.
	var wg sync.WaitGroup
	results := make([]tokenResp, 6)
	errs := make([]error, len(results))
	for i := range results {
		rt := first.RefreshToken
		if i%2 == 1 {
			rt = second.RefreshToken
		}
		wg.Go(func() { results[i], errs[i] = f.postForm(oauth.TokenPath, refreshForm(rt, "static"), nil) })
	}
	wg.Wait()
	for i := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		wantStepUpRefusal(t, results[i])
	}

	f.clock.Advance(10 * time.Minute)
	wantOK(t, f.refresh(t, second.RefreshToken))
}

// A negative window turns the refusal off; an Access that did not come from the server is
// ignored.
func TestStepUpRefusalDisabled(t *testing.T) {
	f := newFixture(t, func(c *oauth.Config) { c.StepUpRefreshWindow = -1 })
	tr := f.tokens(t)
	f.srv.StepUpIssued(f.access(t, tr.AccessToken), stepUpRule)
	wantOK(t, f.refresh(t, tr.RefreshToken))

	f = newFixture(t, nil)
	tr = f.tokens(t)
	f.srv.StepUpIssued(nil, stepUpRule)
	f.srv.StepUpIssued(&oauth.Access{UserID: f.user.ID, ClientID: "static"}, stepUpRule)
	wantOK(t, f.refresh(t, tr.RefreshToken))
}
