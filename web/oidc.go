package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/toolgate/toolgate/data"
)

// OIDCCallbackPath is where the identity provider sends the browser back: OIDCConfig.RedirectURL
// is the apex's base URL followed by this path, and it must be registered with the provider.
const OIDCCallbackPath = "/signin/oidc/callback"

// oidcCookie binds a pending OIDC sign-in to the browser that started it; see [OIDC].
const oidcCookie = "__Host-toolgate_oidc"

// Limits of pending OIDC sign-ins (see [OIDC]).
const (
	oidcPendingTTL    = 10 * time.Minute
	oidcMaxPending    = 10_000
	oidcMaxPendingNet = 20 // per client network (clientNet)
)

// NoGroupsClaim as OIDCConfig.GroupsClaim turns groups off: sign-in then leaves users' groups
// as they are (set by an administrator, or empty).
const NoGroupsClaim = "-"

// OIDCConfig configures [OIDC]. Fields are read once, by [NewOIDC].
type OIDCConfig struct {
	// Issuer is the provider's issuer URL, exactly as its discovery document and ID tokens give
	// it ("https://accounts.example.com", with or without a trailing slash as the provider
	// writes it). It must be https; http is allowed for loopback and .localhost hosts only
	// (development and tests). Required.
	Issuer string
	// ClientID is toolgate's client id at the provider; ID tokens must name it as audience.
	// Required.
	ClientID string
	// ClientSecret is the client secret itself (cmd/toolgate resolves env: and file:
	// references before this). Required.
	ClientSecret string
	// RedirectURL is BaseURL + OIDCCallbackPath, "https://D/signin/oidc/callback", registered at
	// the provider as the redirect URI. Required, https, with exactly that path.
	RedirectURL string
	// DisplayName names the provider on the sign-in page ("Sign in with NAME") and in messages.
	// Default: the issuer's host.
	DisplayName string
	// Scopes requested. "openid" is added when missing. Default: openid, email, profile.
	Scopes []string
	// GroupsClaim is the ID token claim that lists the user's groups: an array of strings (a
	// single string counts as one group). The user's groups are replaced by it at every
	// sign-in; an absent claim means no groups. Default "groups"; NoGroupsClaim ("-") reads no
	// groups and leaves the stored ones alone.
	GroupsClaim string
	// AllowedDomains, when not empty, admits only users whose (verified) email address is at
	// one of these domains, compared exactly after lower-casing: "example.com" does not admit
	// "eng.example.com". Default: any domain.
	AllowedDomains []string
	// ProvisionedOnly admits only users who already exist: by their provider identity, or by
	// email for a user an administrator added ("toolgate user add") who has not signed in
	// through the provider yet. Default false: a new user is created at their first sign-in.
	ProvisionedOnly bool
	// Store holds users. Required.
	Store *data.Store
	// HTTPClient talks to the provider: discovery, keys, the token endpoint. Set it for a
	// private CA or a proxy. Default: a client with a 30-second timeout.
	HTTPClient *http.Client
	// Now is the clock for pending sign-ins, ID token expiry and user timestamps. Default
	// time.Now.
	Now func() time.Time
	// Logger receives one line per refused or failed sign-in (never a code, token, state,
	// nonce or verifier) and per user created. Default: discard.
	Logger *slog.Logger
}

// OIDC signs people in to the apex through an upstream OpenID Connect provider, with the
// authorization code flow. It speaks to the provider through go-oidc (discovery, ID token
// verification) and x/oauth2 (the code exchange); none of the token handling is its own.
//
// Three values tie a provider's answer to the sign-in this browser started, and each covers
// a different attack:
//
//   - state, compared with the pending sign-in and bound to this browser by a cookie, stops
//     login CSRF: a page that sends a victim's browser to the callback with the attacker's
//     code finds no pending sign-in of that browser with that state, so the victim is not
//     signed in as the attacker.
//   - the PKCE verifier (S256) binds the code to this pending sign-in: a code stolen from a
//     redirect (logs, Referer, a hostile browser extension) cannot be redeemed without the
//     verifier, which never leaves the server. OAuth 2.1 asks for PKCE from confidential
//     clients too.
//   - the nonce binds the ID token to the pending sign-in: a token minted for another
//     authorization request (an injected code that still passed PKCE at a provider that
//     ignores it, or a token replayed from elsewhere) carries another nonce and is refused.
//     Some providers ignore PKCE; every OpenID provider honours the nonce.
//
// Pending sign-ins are kept in memory, keyed by state, and hold the nonce, the PKCE verifier,
// the page to return to, the browser binding and an expiry (10 minutes). The browser gets
// only a random binding value in an HttpOnly, Secure, SameSite=Lax __Host- cookie (Lax, not
// Strict: the provider's redirect back is a cross-site top-level navigation, on which Lax
// cookies are sent). Memory rather than a signed cookie makes each pending sign-in
// single-use for certain: the callback removes it before anything else, whatever the
// outcome, so a replayed callback finds nothing. One browser can have several sign-ins
// pending (tabs) under one binding. A restart forgets pending sign-ins; the person clicks
// again. Memory is bounded: at most 10 000 pending sign-ins, 20 per client network, the
// oldest giving way when full.
//
// A verified ID token is then matched to a user: by subject ("issuer|sub") first; else by
// email, for a user an administrator added who has no subject yet (the subject is attached);
// else a new user is created, unless ProvisionedOnly. Name, email and groups are refreshed
// from the token at every sign-in. Every check comes before the single write, so a refused
// sign-in creates and changes nothing, and starts no session.
//
// Email addresses must be verified when the provider says: an ID token with email_verified
// false is refused outright, because its email would otherwise be trusted to match a
// pre-provisioned user (taking over that account) and to pass AllowedDomains. A token without
// the claim is accepted: enterprise providers such as Entra ID omit it for addresses their
// administrators manage. A token without any email is refused, since toolgate names users by
// email.
type OIDC struct {
	cfg      OIDCConfig
	name     string
	issuer   string // as the provider states it; subjects are issuer + "|" + sub
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	groups   string // GroupsClaim, "" for none

	mu      sync.Mutex
	pending map[string]pendingLogin // by state
	perNet  map[string]int          // pending sign-ins per client network
}

// pendingLogin is a sign-in sent to the provider and not yet back.
type pendingLogin struct {
	binding  string // the browser's oidcCookie value
	nonce    string
	verifier string // PKCE code verifier
	next     string // where to go after signing in, already safeNext
	network  string // clientNet of the browser, for the per-network bound
	created  time.Time
}

// NewOIDC checks cfg and fetches the provider's discovery document
// (ISSUER/.well-known/openid-configuration). ctx bounds the discovery request only.
func NewOIDC(ctx context.Context, cfg OIDCConfig) (*OIDC, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("web: OIDCConfig.Store is required")
	case cfg.ClientID == "":
		return nil, errors.New("web: OIDCConfig.ClientID is required")
	case cfg.ClientSecret == "":
		return nil, errors.New("web: OIDCConfig.ClientSecret is required")
	}
	iss, err := url.Parse(cfg.Issuer)
	if err != nil || iss.Host == "" || iss.RawQuery != "" || iss.Fragment != "" ||
		!(iss.Scheme == "https" || iss.Scheme == "http" && isLoopbackHost(iss.Hostname())) {
		return nil, fmt.Errorf("web: OIDCConfig.Issuer %q must be an https URL without query (http only for loopback)", cfg.Issuer)
	}
	if u, err := url.Parse(cfg.RedirectURL); err != nil || u.Scheme != "https" || u.Host == "" || u.Path != OIDCCallbackPath || u.RawQuery != "" {
		return nil, fmt.Errorf("web: OIDCConfig.RedirectURL %q must be https://HOST[:PORT]%s", cfg.RedirectURL, OIDCCallbackPath)
	}
	if cfg.DisplayName == "" {
		cfg.DisplayName = iss.Hostname()
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{oidc.ScopeOpenID, "email", "profile"}
	} else if !slices.Contains(cfg.Scopes, oidc.ScopeOpenID) {
		cfg.Scopes = append([]string{oidc.ScopeOpenID}, cfg.Scopes...)
	}
	cfg.Scopes = slices.Clone(cfg.Scopes)
	groups := cfg.GroupsClaim
	switch groups {
	case "":
		groups = "groups"
	case NoGroupsClaim:
		groups = ""
	}
	domains := make([]string, 0, len(cfg.AllowedDomains))
	for _, d := range cfg.AllowedDomains {
		d = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(d)), "@")
		if !validDomain(d) {
			return nil, fmt.Errorf("web: OIDCConfig.AllowedDomains: %q is not a domain", d)
		}
		domains = append(domains, d)
	}
	cfg.AllowedDomains = domains
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, cfg.HTTPClient), cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("web: OIDC discovery for issuer %s: %w", cfg.Issuer, err)
	}
	o := &OIDC{
		cfg:    cfg,
		name:   cfg.DisplayName,
		issuer: cfg.Issuer,
		oauth: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			// AuthStyle is left to auto-detection: providers differ in which client
			// authentication they accept, and some refuse the one not registered.
			Endpoint:    provider.Endpoint(),
			RedirectURL: cfg.RedirectURL,
			Scopes:      cfg.Scopes,
		},
		verifier: provider.Verifier(&oidc.Config{ClientID: cfg.ClientID, Now: cfg.Now}),
		groups:   groups,
		pending:  make(map[string]pendingLogin),
		perNet:   make(map[string]int),
	}
	return o, nil
}

// Name is the provider's display name, as the sign-in page shows it.
func (o *OIDC) Name() string { return o.name }

// isLoopbackHost reports whether host is this machine: localhost, *.localhost or a loopback IP.
func isLoopbackHost(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	host = strings.ToLower(host)
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// begin records a pending sign-in for the browser with this binding and returns the
// provider's authorization URL to send it to.
func (o *OIDC) begin(binding, next, network string) string {
	state, nonce, verifier := newToken(), newToken(), oauth2.GenerateVerifier()
	now := o.cfg.Now()
	o.mu.Lock()
	if len(o.pending) >= oidcMaxPending {
		o.pruneLocked(now)
	}
	if len(o.pending) >= oidcMaxPending {
		o.dropOldestLocked("")
	}
	if o.perNet[network] >= oidcMaxPendingNet {
		o.dropOldestLocked(network)
	}
	o.pending[state] = pendingLogin{binding: binding, nonce: nonce, verifier: verifier, next: next, network: network, created: now}
	o.perNet[network]++
	o.mu.Unlock()
	return o.oauth.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
}

// take removes and returns the pending sign-in with this state. It is removed whether or not
// the caller then accepts it: one state, one try.
func (o *OIDC) take(state string) (pendingLogin, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.pending[state]
	if ok {
		o.removeLocked(state, p)
	}
	return p, ok
}

func (o *OIDC) removeLocked(state string, p pendingLogin) {
	delete(o.pending, state)
	if o.perNet[p.network]--; o.perNet[p.network] <= 0 {
		delete(o.perNet, p.network)
	}
}

// pruneLocked forgets expired pending sign-ins.
func (o *OIDC) pruneLocked(now time.Time) {
	for state, p := range o.pending {
		if !now.Before(p.created.Add(oidcPendingTTL)) {
			o.removeLocked(state, p)
		}
	}
}

// dropOldestLocked forgets the oldest pending sign-in, of network if it is not "".
func (o *OIDC) dropOldestLocked(network string) {
	oldest, found := "", false
	var at time.Time
	for state, p := range o.pending {
		if (network == "" || p.network == network) && (!found || p.created.Before(at)) {
			oldest, at, found = state, p.created, true
		}
	}
	if found {
		o.removeLocked(oldest, o.pending[oldest])
	}
}

// oidcStart sends the browser to the provider. GET /signin/oidc?next=PATH.
func (a *apex) oidcStart(w http.ResponseWriter, r *http.Request) {
	o := a.cfg.OIDC
	binding := ""
	if c, err := r.Cookie(oidcCookie); err == nil {
		if _, ok := decodeToken(c.Value); ok {
			binding = c.Value
		}
	}
	if binding == "" {
		binding = newToken()
	}
	// Set again even when present, so the cookie outlives this sign-in's 10 minutes.
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: binding, Path: "/", MaxAge: int(oidcPendingTTL / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, o.begin(binding, safeNext(r.URL.Query().Get("next")), clientNet(r)), http.StatusFound)
}

// oidcCallback finishes a sign-in. GET /signin/oidc/callback?code=…&state=… (or
// ?error=…&state=…). It is a GET, a top-level navigation from the provider, so RequireCSRF
// does not check it; state and the binding cookie do (see [OIDC]).
func (a *apex) oidcCallback(w http.ResponseWriter, r *http.Request) {
	o := a.cfg.OIDC
	user, next, err := o.finish(r)
	if err != nil {
		var e *oidcError
		if !errors.As(err, &e) {
			e = &oidcError{status: http.StatusInternalServerError, reason: "internal", heading: "Sign-in failed",
				message: "Signing in failed; try again.", err: err}
		}
		o.logRefusal(r, e)
		a.message(w, r, e.status, e.heading, e.message, e.retry)
		return
	}
	if _, err := a.cfg.Sessions.Start(w, r, user, "oidc"); err != nil {
		o.cfg.Logger.Error("oidc sign-in: starting the session failed", "user", user.ID, "err", err)
		writeError(w, r, http.StatusInternalServerError, "internal", "Signing in failed; try again.")
		return
	}
	clearCookie(w, oidcCookie)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// finish checks the provider's answer and returns the signed-in user (created or refreshed)
// and where to go next. Refusals are *oidcError.
func (o *OIDC) finish(r *http.Request) (data.User, string, error) {
	q := r.URL.Query()
	p, ok := o.take(q.Get("state"))
	if ok {
		c, err := r.Cookie(oidcCookie)
		ok = err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(p.binding)) == 1
	}
	if code := q.Get("error"); code != "" {
		return data.User{}, "", o.providerError(code, q.Get("error_description"), ok)
	}
	if !ok {
		return data.User{}, "", o.refuse(http.StatusBadRequest, "unknown_state", "Sign-in not recognised",
			"This answer from "+o.name+" does not belong to a sign-in started in this browser, or it was used already. Start again.")
	}
	if !o.cfg.Now().Before(p.created.Add(oidcPendingTTL)) {
		return data.User{}, "", o.refuse(http.StatusBadRequest, "pending_expired", "Sign-in expired",
			fmt.Sprintf("More than %d minutes passed between leaving for %s and coming back. Start again.", int(oidcPendingTTL/time.Minute), o.name))
	}
	code := q.Get("code")
	if code == "" {
		return data.User{}, "", o.refuse(http.StatusBadRequest, "no_code", "Sign-in failed",
			o.name+" sent the browser back without a sign-in code. Start again.")
	}
	id, err := o.exchange(r.Context(), code, p)
	if err != nil {
		return data.User{}, "", err
	}
	user, err := o.signIn(r.Context(), id)
	if err != nil {
		return data.User{}, "", err
	}
	return user, p.next, nil
}

// exchange redeems the code (with the PKCE verifier), verifies the ID token (signature,
// issuer, audience, expiry) and its nonce, and reads the identity from its claims.
func (o *OIDC) exchange(ctx context.Context, code string, p pendingLogin) (identity, error) {
	ctx = oidc.ClientContext(ctx, o.cfg.HTTPClient)
	tok, err := o.oauth.Exchange(ctx, code, oauth2.VerifierOption(p.verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// Only the error code and status: providers echo the code, even the client
			// secret, in their descriptions.
			e := o.refuse(http.StatusBadGateway, "token_endpoint", "Sign-in failed",
				o.name+" refused to complete the sign-in. Start again; if it keeps failing, tell an administrator.")
			e.attrs = []any{"error", re.ErrorCode, "status", re.Response.StatusCode}
			if re.ErrorCode == "invalid_grant" {
				e.status, e.reason, e.heading = http.StatusBadRequest, "code_refused", "Sign-in code expired"
				e.message = o.name + " refused the sign-in code: it expired or was used already. Start again."
			}
			return identity{}, e
		}
		e := o.refuse(http.StatusBadGateway, "token_endpoint", "Sign-in failed",
			"Could not reach "+o.name+" to complete the sign-in. Try again in a moment.")
		e.err = err
		return identity{}, e
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return identity{}, o.refuse(http.StatusBadGateway, "no_id_token", "Sign-in failed",
			o.name+" did not send an ID token. Tell an administrator (is the openid scope allowed?).")
	}
	idt, err := o.verifier.Verify(ctx, raw)
	if err != nil {
		e := o.refuse(http.StatusBadGateway, "id_token_invalid", "Sign-in failed",
			"The answer from "+o.name+" could not be verified. Start again; if it keeps failing, tell an administrator.")
		if _, ok := errors.AsType[*oidc.TokenExpiredError](err); ok {
			e.status, e.reason, e.heading = http.StatusBadRequest, "id_token_expired", "Sign-in expired"
			e.message = "The identity " + o.name + " sent has already expired. Start again; if it keeps happening, this server's clock may be wrong."
		}
		e.err = err
		return identity{}, e
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(p.nonce)) != 1 {
		return identity{}, o.refuse(http.StatusBadRequest, "nonce_mismatch", "Sign-in not recognised",
			"The identity "+o.name+" sent was issued for a different sign-in attempt. Start again.")
	}
	return o.identity(idt)
}

// providerError is the provider's own refusal (?error=…). Its description is shown only when
// the answer belongs to this browser's pending sign-in: anyone can make a link to the
// callback with any text in it.
func (o *OIDC) providerError(code, desc string, ours bool) error {
	if !isErrorCode(code) {
		code = "invalid"
	}
	e := o.refuse(http.StatusBadGateway, "provider_error", "Sign-in failed",
		fmt.Sprintf("%s could not sign you in (%s).", o.name, code))
	if code == "access_denied" {
		e.status, e.heading = http.StatusForbidden, "Sign-in refused"
		e.message = o.name + " did not sign you in: access was denied or the sign-in was cancelled."
	}
	if ours && desc != "" {
		e.message += " " + o.name + " said: " + truncate(strings.ToValidUTF8(desc, ""), 300)
	}
	e.attrs = []any{"error", code, "ours", ours}
	if ours && desc != "" {
		e.attrs = append(e.attrs, "description", truncate(strings.ToValidUTF8(desc, ""), 300))
	}
	return e
}

// isErrorCode reports whether s looks like an OAuth error code (RFC 6749: printable ASCII;
// toolgate accepts the lower-case-and-underscore ones every provider uses).
func isErrorCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c == '_') {
			return false
		}
	}
	return true
}

// oidcError is a refused or failed OIDC sign-in: a message page for the person and a line for
// the log.
type oidcError struct {
	status           int
	reason           string // for the log: unknown_state, nonce_mismatch, …
	heading, message string // for the person
	retry            string // a link offered on the message page
	attrs            []any  // more for the log; never codes, tokens, state, nonce or verifier
	err              error  // the cause, if any
}

func (e *oidcError) Error() string {
	if e.err != nil {
		return "web: oidc sign-in refused (" + e.reason + "): " + e.err.Error()
	}
	return "web: oidc sign-in refused (" + e.reason + ")"
}

func (e *oidcError) Unwrap() error { return e.err }

func (o *OIDC) refuse(status int, reason, heading, message string) *oidcError {
	return &oidcError{status: status, reason: reason, heading: heading, message: message, retry: "/signin"}
}

func (o *OIDC) logRefusal(r *http.Request, e *oidcError) {
	level := slog.LevelInfo // a refusal: the person, their provider account or the policy
	switch {
	case e.status == http.StatusInternalServerError:
		level = slog.LevelError // toolgate's own failure (storage)
	case e.status >= 500:
		level = slog.LevelWarn // the provider failed or misbehaved
	}
	args := append([]any{"reason", e.reason, "status", e.status, "ip", remoteHost(r)}, e.attrs...)
	if e.err != nil {
		args = append(args, "err", e.err)
	}
	o.cfg.Logger.Log(r.Context(), level, "oidc sign-in refused", args...)
}
