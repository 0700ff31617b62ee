package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/toolgate/toolgate/data"
)

// AuthorizeRequest is an authorization request that passed every check the client can fail.
// What remains is the user's decision: [Server.Approve] or [Server.Deny].
type AuthorizeRequest struct {
	ar    fosite.AuthorizeRequester
	state string // the client's own state, possibly empty or short (see ParseAuthorize)

	ClientID   string
	ClientName string // as the client named itself; may be anything, so escape it
	// ClientKind is data.ClientDynamic, data.ClientMetadataDocument or data.ClientStatic.
	ClientKind  string
	RedirectURI string
	// RedirectHost is where the browser goes after the decision: the host the consent page
	// must show, since a client's name is whatever it claims.
	RedirectHost string
	// Resource is the MCP URL the token will be bound to.
	Resource string
	// Scopes are the scopes the client asks for (the defaults when it asked for none).
	Scopes []string
}

// AuthorizeError is why an authorization request failed. When Redirectable, the client and
// its redirect URI checked out, and the error goes back to the client through
// [Server.WriteAuthorizeError]; otherwise it must be shown to the user on a page, because
// redirecting to an unverified URI would make toolgate an open redirector.
type AuthorizeError struct {
	err   *fosite.RFC6749Error
	ar    fosite.AuthorizeRequester
	state string
}

func (e *AuthorizeError) Error() string {
	return e.err.ErrorField + ": " + e.Description()
}

// Code is the OAuth error code, such as invalid_request.
func (e *AuthorizeError) Code() string { return e.err.ErrorField }

// Description is a sentence for a human: the hint when fosite has one.
func (e *AuthorizeError) Description() string {
	if e.err.HintField != "" {
		return e.err.HintField
	}
	return e.err.DescriptionField
}

// Detail is Description plus, for an unknown or unusable client, why: the reason a metadata
// document could not be used, say. It is for the page shown to the user, never for a
// redirect.
func (e *AuthorizeError) Detail() string {
	d := e.Description()
	if e.err.ErrorField == fosite.ErrInvalidClient.ErrorField && e.err.DebugField != "" {
		d += " (" + e.err.DebugField + ")"
	}
	return d
}

// Redirectable reports whether the error may be sent to the client's redirect URI.
func (e *AuthorizeError) Redirectable() bool {
	return e.ar != nil && e.ar.IsRedirectURIValid()
}

// minState is fosite's minimum state length. Clients may omit state (PKCE protects the code
// since OAuth 2.1) or send a short one; those requests get a random state for fosite's sake,
// and the response carries the client's own state back, or none.
const minState = 8

// ParseAuthorize validates an authorization request: client, redirect URI, response type,
// PKCE S256, scopes and the RFC 8707 resource. It reads r's query and form.
func (s *Server) ParseAuthorize(ctx context.Context, r *http.Request) (*AuthorizeRequest, error) {
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return nil, &AuthorizeError{err: fosite.ErrInvalidRequest.WithHint("The request could not be parsed.")}
	}
	state := r.Form.Get("state")
	if len(state) < minState {
		r.Form.Set("state", randomState())
	}
	ctx = withRequestedRedirect(ctx, r.Form.Get("redirect_uri"))
	ar, err := s.provider.NewAuthorizeRequest(ctx, r)
	if err != nil {
		return nil, s.authorizeError(ar, state, err)
	}
	fail := func(err error) (*AuthorizeRequest, error) { return nil, s.authorizeError(ar, state, err) }

	if !ar.GetResponseTypes().ExactOne("code") {
		return fail(fosite.ErrUnsupportedResponseType.WithHint("Only the authorization code flow (response_type=code) is supported."))
	}
	form := ar.GetRequestForm()
	switch {
	case form.Get("code_challenge") == "":
		return fail(fosite.ErrInvalidRequest.WithHint("PKCE is required: send code_challenge and code_challenge_method=S256."))
	case form.Get("code_challenge_method") != "S256":
		return fail(fosite.ErrInvalidRequest.WithHint("Only code_challenge_method=S256 is supported."))
	case len(form["audience"]) > 0:
		return fail(fosite.ErrInvalidRequest.WithHint("Name the MCP server with the resource parameter (RFC 8707), not audience."))
	}
	resource, err := s.resolveResource(ctx, form["resource"])
	if err != nil {
		return fail(err)
	}
	scopes := []string(ar.GetRequestedScopes())
	if len(scopes) == 0 {
		scopes = slices.Clone(s.cfg.DefaultScopes)
		ar.SetRequestedScopes(scopes)
	}
	redirect := ar.GetRedirectURI()
	return &AuthorizeRequest{
		ar: ar, state: state,
		ClientID: ar.GetClient().GetID(), ClientName: ClientName(ar.GetClient()), ClientKind: clientKind(ar.GetClient()),
		RedirectURI: redirect.String(), RedirectHost: redirect.Host,
		Resource: resource, Scopes: slices.Clone(scopes),
	}, nil
}

func (s *Server) authorizeError(ar fosite.AuthorizeRequester, state string, err error) *AuthorizeError {
	var ae *AuthorizeError
	if errors.As(err, &ae) {
		return ae
	}
	return &AuthorizeError{err: fosite.ErrorToRFC6749Error(err), ar: ar, state: state}
}

// Grantee is the signed-in user who approves a request.
type Grantee struct {
	UserID string
	// AuthTime is when the user signed in, carried into the tokens for policies that ask how
	// recent the sign-in is.
	AuthTime time.Time
}

// HasConsent reports whether userID already approved this client for this resource with at
// least these scopes, so that the consent page can be skipped.
func (s *Server) HasConsent(ctx context.Context, userID string, req *AuthorizeRequest) bool {
	c, err := s.cfg.Store.GetOAuthConsent(ctx, userID, req.ClientID, req.Resource)
	if err != nil {
		return false
	}
	for _, sc := range req.Scopes {
		if !slices.Contains(c.Scopes, sc) {
			return false
		}
	}
	return true
}

// Approve issues the authorization code and redirects the browser to the client. The approval
// is remembered for the user, client and resource.
func (s *Server) Approve(ctx context.Context, w http.ResponseWriter, req *AuthorizeRequest, who Grantee) {
	for _, sc := range req.Scopes {
		req.ar.GrantScope(sc)
	}
	req.ar.GrantAudience(req.Resource)
	resp, err := s.provider.NewAuthorizeResponse(ctx, req.ar, newSession(who))
	if err != nil {
		s.WriteAuthorizeError(w, s.authorizeError(req.ar, req.state, err))
		return
	}
	now := s.cfg.Now()
	prev, err := s.cfg.Store.GetOAuthConsent(ctx, who.UserID, req.ClientID, req.Resource)
	scopes := req.Scopes
	if err == nil {
		scopes = append(slices.Clone(prev.Scopes), scopes...)
	}
	if _, err := s.cfg.Store.PutOAuthConsent(ctx, data.OAuthConsent{
		UserID: who.UserID, ClientID: req.ClientID, Resource: req.Resource, Scopes: scopes, UpdatedAt: now,
	}); err != nil {
		// The code is issued already; a forgotten approval only means asking again next time.
		s.log.Warn("oauth: remembering the approval failed", "client_id", req.ClientID, "err", err)
	}
	s.log.Info("oauth: authorization approved", "user", who.UserID, "client_id", req.ClientID,
		"resource", req.Resource, "scope", fmt.Sprint(req.Scopes))
	s.audit(ctx, data.AuditRecord{Kind: "consent", Client: req.ClientID, ClientName: req.ClientName,
		Decision: "allow", Detail: "resource " + req.Resource + ", scope " + strings.Join(req.Scopes, " ")}, who.UserID)
	params := url.Values{}
	for k, v := range resp.GetParameters() {
		if k != "state" {
			params[k] = v
		}
	}
	s.redirect(w, req.ar.GetRedirectURI(), req.state, params)
}

// Deny tells the client the user said no.
func (s *Server) Deny(w http.ResponseWriter, req *AuthorizeRequest) {
	s.WriteAuthorizeError(w, &AuthorizeError{
		err: fosite.ErrAccessDenied.WithHint("The user did not approve the request."), ar: req.ar, state: req.state,
	})
}

// WriteAuthorizeError sends a redirectable error to the client: error, error_description, the
// client's state and iss (RFC 9207). A non-redirectable error is written as JSON; callers that
// serve people show a page instead.
func (s *Server) WriteAuthorizeError(w http.ResponseWriter, e *AuthorizeError) {
	if !e.Redirectable() {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": e.Code(), "error_description": e.Description()})
		return
	}
	params := url.Values{"error": {e.Code()}}
	if d := e.Description(); d != "" {
		params.Set("error_description", d)
	}
	s.redirect(w, e.ar.GetRedirectURI(), e.state, params)
}

// redirect sends the browser to the client's redirect URI with params, the client's own state
// and iss added to whatever query the URI had.
func (s *Server) redirect(w http.ResponseWriter, to *url.URL, state string, params url.Values) {
	u := *to
	u.Fragment = ""
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	q.Del("state")
	if state != "" {
		q.Set("state", state)
	}
	q.Set("iss", s.cfg.Issuer)
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", u.String())
	w.WriteHeader(http.StatusSeeOther)
}

func randomState() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newSession is what a grant carries from approval to every token: who, and when they signed
// in. fosite stores it with the code and copies it into each token; it must survive JSON.
func newSession(who Grantee) *fosite.DefaultSession {
	return &fosite.DefaultSession{
		Subject: who.UserID,
		Extra:   map[string]any{"auth_time": who.AuthTime.Unix()},
	}
}

// sessionAuthTime reads back what newSession stored (numbers come back from JSON as float64).
func sessionAuthTime(s fosite.Session) time.Time {
	ds, ok := s.(*fosite.DefaultSession)
	if !ok || ds.Extra == nil {
		return time.Time{}
	}
	switch v := ds.Extra["auth_time"].(type) {
	case float64:
		return time.Unix(int64(v), 0)
	case int64:
		return time.Unix(v, 0)
	}
	return time.Time{}
}
