package oauth

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/ory/fosite"

	"github.com/toolgate/toolgate/data"
)

// Step-up and refresh.
//
// A step-up challenge (403, WWW-Authenticate: Bearer error="insufficient_scope") asks the
// client to authorize again: for a sign-in that is too old for what the request wants, or for
// a scope the grant lacks. A refresh cannot fix either, since a refreshed token keeps its
// grant's sign-in time and scopes. Yet MCP clients answer the challenge with a refresh when
// they hold a refresh token: the TypeScript SDK's auth() (and with it mcp-remote and MCP
// Inspector) refreshes first, gets a token that is challenged the same way, and gives up
// ("Server returned 403 after trying upscoping", typescript-sdk#2255).
//
// So for a while after a challenge, a refresh of the challenged grant is refused with
// invalid_grant, which RFC 6749 §5.2 defines as "the refresh token is invalid": clients drop
// their tokens and authorize again (the TypeScript SDK calls the provider's
// invalidateCredentials('tokens') and starts an authorization), which is what the step-up
// needs. The refusal leaves the grant alone: the refresh token is neither rotated nor revoked.
// A client that ignores the challenge and keeps working with what it is still allowed can
// refresh again once the window has passed; a client that authorizes again starts a new grant.
//
// The marks are kept in memory by the Server, bounded, and lost on restart: toolgate is a
// single process over one bbolt file, and a mark is a convenience for clients, not a security
// control (a refreshed token could not pass the challenge anyway). A lost mark means that
// client is back to the SDK's own behaviour for that one challenge.

// maxStepUpMarks bounds the marks kept: one per challenged grant in the last window. Beyond
// it the mark that would expire first is dropped.
const maxStepUpMarks = 10000

// StepUpIssued records that a request made with the access token behind a was answered with a
// step-up challenge, rule saying why (a policy rule's name). For Config.StepUpRefreshWindow
// after the latest such challenge, refreshing the token's grant is refused with invalid_grant,
// so that the client authorizes again instead of refreshing into the same challenge. An
// Access that did not come from this server's Check is ignored.
func (s *Server) StepUpIssued(a *Access, rule string) {
	if a == nil || a.Grant == "" || s.cfg.StepUpRefreshWindow <= 0 {
		return
	}
	now := s.cfg.Now()
	s.stepUps.mark(a.Grant, stepUpMark{at: now, until: now.Add(s.cfg.StepUpRefreshWindow), rule: rule})
}

// stepUpRefusal is the error answering a refresh of grant (a request of the token family
// being refreshed) when the grant was challenged within the window, else nil. A refusal is
// logged and audited as token_refresh_refused.
func (s *Server) stepUpRefusal(ctx context.Context, r *http.Request, grant fosite.Requester) error {
	mk, ok := s.stepUps.active(grant.GetID(), s.cfg.Now())
	if !ok {
		return nil
	}
	user := ""
	if sess := grant.GetSession(); sess != nil {
		user = sess.GetSubject()
	}
	client := grant.GetClient()
	ago := s.cfg.Now().Sub(mk.at).Round(time.Second)
	s.log.Info("oauth: token refresh refused after a step-up challenge", "client_id", client.GetID(),
		"user", user, "rule", mk.rule, "challenged_ago", ago)
	s.audit(ctx, data.AuditRecord{Kind: "token_refresh_refused", Client: client.GetID(), ClientName: ClientName(client),
		Decision: "deny", Rule: mk.rule, SourceIP: remoteIP(r),
		Detail: fmt.Sprintf("step-up challenge %s ago; the client must authorize again", ago)}, user)
	why := "The MCP server asked for a step-up"
	if mk.rule != "" {
		why += fmt.Sprintf(" (%s)", mk.rule)
	}
	return fosite.ErrInvalidGrant.WithHintf("%s, and a refreshed token keeps this grant's sign-in time and scopes: a new authorization is required.", why)
}

// stepUpMarks maps a grant (fosite's request id, which every token of the family shares: the
// refresh handler gives each new pair its predecessor's id) to its latest step-up challenge.
type stepUpMarks struct {
	mu sync.Mutex
	m  map[string]stepUpMark
}

type stepUpMark struct {
	at, until time.Time // the challenge; the end of the refusal window
	rule      string
}

func (m *stepUpMarks) mark(grant string, mk stepUpMark) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = make(map[string]stepUpMark)
	}
	if _, ok := m.m[grant]; !ok && len(m.m) >= maxStepUpMarks {
		m.evictLocked(mk.at)
	}
	m.m[grant] = mk
}

// evictLocked makes room for one mark: expired marks go, and if none had expired, the one
// expiring first.
func (m *stepUpMarks) evictLocked(now time.Time) {
	var first string
	var firstUntil time.Time
	for g, mk := range m.m {
		if !now.Before(mk.until) {
			delete(m.m, g)
			continue
		}
		if first == "" || mk.until.Before(firstUntil) {
			first, firstUntil = g, mk.until
		}
	}
	if len(m.m) >= maxStepUpMarks {
		delete(m.m, first)
	}
}

// active returns the grant's mark if its window has not passed at now.
func (m *stepUpMarks) active(grant string, now time.Time) (stepUpMark, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mk, ok := m.m[grant]
	if !ok {
		return stepUpMark{}, false
	}
	if !now.Before(mk.until) {
		delete(m.m, grant)
		return stepUpMark{}, false
	}
	return mk, true
}
