package oauth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/toolgate/toolgate/data"
)

// token is the token endpoint: fosite's authorization code and refresh grants, with RFC 8707
// resources checked against the grant, and a grace window for refresh races.
//
// Refresh tokens rotate on every use, and fosite treats a second use of a rotated token as
// theft: it revokes the whole family. Real clients race themselves (two processes, a retried
// request whose response was lost), so for RefreshGrace after a rotation the same old token
// gets the very same new pair. The pair is kept on the old token's record, sealed with a key
// derived from the old token itself: the database never holds a usable token, and only the
// holder of the old token can open it. Refreshes of one token are serialised in-process, so
// the second of two concurrent requests waits for the first and then takes the grace path.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.provider.WriteAccessError(ctx, w, fosite.NewAccessRequest(nil), fosite.ErrInvalidRequest.WithHint("The request body could not be parsed."))
		return
	}
	if len(r.PostForm["audience"]) > 0 {
		s.provider.WriteAccessError(ctx, w, fosite.NewAccessRequest(nil),
			fosite.ErrInvalidRequest.WithHint("Name the MCP server with the resource parameter (RFC 8707), not audience."))
		return
	}
	var refreshSig, refreshToken string
	if r.PostForm.Get("grant_type") == "refresh_token" && s.cfg.RefreshGrace > 0 {
		refreshToken = r.PostForm.Get("refresh_token")
		refreshSig = s.strategy.RefreshTokenSignature(ctx, refreshToken)
		if refreshSig != "" {
			unlock := s.refreshLocks.lock(refreshSig)
			defer unlock()
			if s.replayWithinGrace(ctx, w, r, refreshSig, refreshToken) {
				return
			}
		}
	}

	ar, err := s.provider.NewAccessRequest(ctx, r, &fosite.DefaultSession{})
	if err != nil {
		s.logTokenError(r, err)
		s.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	// A disabled user's grants issue nothing more (their tokens fail the proxy's check
	// anyway; this keeps the log honest and the refresh token from living on).
	if u, err := s.cfg.Store.GetUser(ctx, ar.GetSession().GetSubject()); err != nil || u.Disabled {
		s.provider.WriteAccessError(ctx, w, ar, fosite.ErrInvalidGrant.WithHint("The user of this grant can no longer sign in."))
		return
	}
	if err := checkResourceAgainst(r.PostForm["resource"], s.grantedAudience(ctx, ar)); err != nil {
		s.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	// Last, so that only a refresh that would otherwise succeed counts as refused. fosite has
	// only read so far: the refresh token is still active and its family untouched.
	if ar.GetGrantTypes().ExactOne("refresh_token") {
		if err := s.stepUpRefusal(ctx, r, ar); err != nil {
			s.provider.WriteAccessError(ctx, w, ar, err)
			return
		}
	}
	resp, err := s.provider.NewAccessResponse(ctx, ar)
	if err != nil {
		s.logTokenError(r, err)
		s.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	s.touchClient(ctx, ar.GetClient())
	grant := "authorization_code"
	if ar.GetGrantTypes().ExactOne("refresh_token") {
		grant = "refresh_token"
	}
	if refreshSig != "" {
		s.keepForGrace(ctx, refreshSig, refreshToken, ar, resp)
	}
	s.log.Info("oauth: token issued", "grant_type", grant, "client_id", ar.GetClient().GetID(),
		"user", ar.GetSession().GetSubject(), "resource", fmt.Sprint(ar.GetGrantedAudience()),
		"scope", fmt.Sprint(ar.GetGrantedScopes()))
	kind := "token_issued"
	if grant == "refresh_token" {
		kind = "token_refreshed"
	}
	s.audit(ctx, data.AuditRecord{Kind: kind, Client: ar.GetClient().GetID(), ClientName: ClientName(ar.GetClient()),
		SourceIP: remoteIP(r), Detail: "resource " + strings.Join(ar.GetGrantedAudience(), " ") + ", scope " +
			strings.Join(ar.GetGrantedScopes(), " ")}, ar.GetSession().GetSubject())
	s.provider.WriteAccessResponse(ctx, w, ar, resp)
}

// grantedAudience is the resource a token request's grant is bound to. fosite copies it from
// the authorization code only when it issues the tokens, after the point where a mismatched
// resource must already have been refused, so for a code it is read from the code itself.
func (s *Server) grantedAudience(ctx context.Context, ar fosite.AccessRequester) []string {
	if aud := ar.GetGrantedAudience(); len(aud) > 0 || !ar.GetGrantTypes().ExactOne("authorization_code") {
		return aud
	}
	sig := s.strategy.AuthorizeCodeSignature(ctx, ar.GetRequestForm().Get("code"))
	code, err := s.tokens.GetAuthorizeCodeSession(ctx, sig, &fosite.DefaultSession{})
	if code == nil || (err != nil && !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode)) {
		return nil
	}
	return code.GetGrantedAudience()
}

func (s *Server) logTokenError(r *http.Request, err error) {
	rfc := fosite.ErrorToRFC6749Error(err)
	s.log.Info("oauth: token request refused", "grant_type", r.PostForm.Get("grant_type"),
		"client_id", r.PostForm.Get("client_id"), "error", rfc.ErrorField, "hint", rfc.HintField)
}

// graceSealed is what keepForGrace seals: the response the first refresh got.
type graceSealed struct {
	ClientID     string    `json:"client_id"`
	Resource     string    `json:"resource"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	Scope        string    `json:"scope,omitempty"`
	ExpiresAt    time.Time `json:"expires_at"`
}

func (s *Server) keepForGrace(ctx context.Context, oldSig, oldToken string, ar fosite.AccessRequester, resp fosite.AccessResponder) {
	rt, _ := resp.GetExtra("refresh_token").(string)
	if rt == "" {
		return
	}
	scope, _ := resp.GetExtra("scope").(string)
	expiresIn, _ := resp.GetExtra("expires_in").(int64)
	resource := ""
	if aud := ar.GetGrantedAudience(); len(aud) == 1 {
		resource = aud[0]
	}
	payload, err := json.Marshal(graceSealed{
		ClientID: ar.GetClient().GetID(), Resource: resource, AccessToken: resp.GetAccessToken(), RefreshToken: rt, Scope: scope,
		ExpiresAt: s.cfg.Now().Add(time.Duration(expiresIn) * time.Second),
	})
	if err != nil {
		return
	}
	sealed, err := sealWithToken(oldToken, payload)
	if err == nil {
		err = s.tokens.SetRefreshSuccessor(ctx, oldSig, sealed)
	}
	if err != nil {
		// Without it a racing second refresh revokes the family, as fosite alone would.
		s.log.Warn("oauth: keeping the refresh grace record failed", "err", err)
	}
}

// replayWithinGrace answers a refresh with a token rotated less than RefreshGrace ago with the
// pair that rotation issued, provided that pair is still alive. It reports whether it wrote
// the response.
func (s *Server) replayWithinGrace(ctx context.Context, w http.ResponseWriter, r *http.Request, sig, token string) bool {
	rotatedAt, sealed, err := s.tokens.RefreshSuccessor(ctx, sig)
	if err != nil || sealed == nil || rotatedAt.IsZero() || s.cfg.Now().Sub(rotatedAt) > s.cfg.RefreshGrace {
		return false
	}
	payload, err := openWithToken(token, sealed)
	if err != nil {
		return false
	}
	var g graceSealed
	if json.Unmarshal(payload, &g) != nil {
		return false
	}
	// The same client, authenticated as fosite would (a confidential client's secret is
	// checked; a public client names itself), asking for the same resource.
	fp, ok := s.provider.(*fosite.Fosite)
	if !ok {
		return false
	}
	c, err := fp.AuthenticateClient(ctx, r, r.PostForm)
	if err != nil || c.GetID() != g.ClientID {
		return false
	}
	if err := checkResourceAgainst(r.PostForm["resource"], []string{g.Resource}); err != nil {
		s.provider.WriteAccessError(ctx, w, fosite.NewAccessRequest(nil), err)
		return true
	}
	// The new pair must still be alive: if its family was revoked since, fosite's own answer
	// (the token was already used) is the right one.
	newSig := s.strategy.RefreshTokenSignature(ctx, g.RefreshToken)
	next, err := s.tokens.GetRefreshTokenSession(ctx, newSig, &fosite.DefaultSession{})
	if err != nil {
		return false
	}
	// The pair belongs to the old token's grant. If that grant was challenged since, the
	// replay would hand out a token that cannot pass the challenge: refuse it as a refresh is
	// refused. Answering here matters: falling through to fosite would take the second use
	// for theft and revoke the grant, which the step-up refusal deliberately does not do.
	if err := s.stepUpRefusal(ctx, r, next); err != nil {
		s.provider.WriteAccessError(ctx, w, fosite.NewAccessRequest(nil), err)
		return true
	}
	expiresIn := int64(g.ExpiresAt.Sub(s.cfg.Now()) / time.Second)
	if expiresIn <= 0 {
		return false
	}
	s.log.Info("oauth: token issued", "grant_type", "refresh_token", "client_id", g.ClientID, "grace", true)
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	body := map[string]any{
		"access_token": g.AccessToken, "token_type": "bearer", "expires_in": expiresIn,
		"refresh_token": g.RefreshToken,
	}
	if g.Scope != "" {
		body["scope"] = g.Scope
	}
	_ = json.NewEncoder(w).Encode(body)
	return true
}

// sealWithToken encrypts payload with AES-256-GCM under a key derived from token (HKDF-SHA256).
// A refresh token carries well over 256 bits of randomness, so the key is as strong as the
// token; the token itself is never stored.
func sealWithToken(token string, payload []byte) ([]byte, error) {
	aead, err := tokenAEAD(token)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, payload, nil), nil
}

func openWithToken(token string, sealed []byte) ([]byte, error) {
	aead, err := tokenAEAD(token)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, errors.New("sealed value too short")
	}
	return aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
}

func tokenAEAD(token string) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, []byte(token), nil, "toolgate refresh grace v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// revoke is RFC 7009's revocation endpoint. Revoking a refresh token ends its whole family;
// revoking an access token ends that token.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	err := s.provider.NewRevocationRequest(ctx, r)
	if err == nil {
		s.log.Info("oauth: token revoked", "client_id", r.PostForm.Get("client_id"))
		s.audit(ctx, data.AuditRecord{Kind: "token_revoked", Client: r.PostForm.Get("client_id"), SourceIP: remoteIP(r)}, "")
	}
	s.provider.WriteRevocationResponse(ctx, w, err)
}

// Access is what a valid access token grants. It is shared between requests: read it, never
// change it.
type Access struct {
	UserID     string
	ClientID   string
	ClientName string // as the client named itself
	Resource   string // the audience, a canonical resource URL
	Scopes     []string
	AuthTime   time.Time // when the user signed in before approving
	ExpiresAt  time.Time
	// Grant identifies the token's family: the authorization it descends from, shared by
	// every pair refreshed from it (fosite's request id; data.OAuthGrant.RequestID).
	Grant string
}

// Introspect returns what an access token grants, for the admin API. It does not check the
// audience.
func (s *Server) Introspect(ctx context.Context, token string) (*Access, error) {
	return s.lookup(ctx, token)
}

// accessTokenPrefix starts every access token fosite's HMAC strategy issues; a token without
// it is not one of ours, whatever its HMAC says.
const accessTokenPrefix = "ory_at_"

// errTokenUnknown is any token that is not a live access token of this server.
var errTokenUnknown = errors.New("oauth: the access token is invalid, expired or revoked")

func (s *Server) lookup(ctx context.Context, token string) (*Access, error) {
	if token == "" {
		return nil, errTokenUnknown
	}
	gen := s.cfg.Store.OAuthGeneration()
	if a, ok := s.accessCache.get(token, gen, s.cfg.Now()); ok {
		return a, nil
	}
	// The HMAC first: a forged or mangled token costs no database read.
	raw, ok := strings.CutPrefix(token, accessTokenPrefix)
	if !ok {
		return nil, errTokenUnknown
	}
	if err := s.strategy.Enigma.Validate(ctx, raw); err != nil {
		return nil, errTokenUnknown
	}
	sig := s.strategy.AccessTokenSignature(ctx, token)
	req, err := s.tokens.GetAccessTokenSession(ctx, sig, &fosite.DefaultSession{})
	if err != nil {
		if errors.Is(err, fosite.ErrNotFound) {
			return nil, errTokenUnknown
		}
		return nil, err
	}
	exp := req.GetSession().GetExpiresAt(fosite.AccessToken)
	if exp.IsZero() || !s.cfg.Now().Before(exp) {
		return nil, errTokenUnknown
	}
	a := &Access{
		UserID: req.GetSession().GetSubject(), ClientID: req.GetClient().GetID(), ClientName: ClientName(req.GetClient()),
		Scopes: req.GetGrantedScopes(), AuthTime: sessionAuthTime(req.GetSession()), ExpiresAt: exp,
		Grant: req.GetID(),
	}
	if aud := req.GetGrantedAudience(); len(aud) == 1 {
		a.Resource = aud[0]
	}
	// A disabled user's tokens stop working at once, not when they expire.
	u, err := s.cfg.Store.GetUser(ctx, a.UserID)
	if err != nil || u.Disabled {
		if err != nil && !errors.Is(err, data.ErrNotFound) {
			return nil, err
		}
		return nil, errTokenUnknown
	}
	s.accessCache.put(token, gen, a)
	return a, nil
}
