package data

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/pkce"
	bolt "go.etcd.io/bbolt"
)

// ClientSource loads the client a stored request belongs to. package oauth implements it. An
// error wrapping fosite.ErrNotFound or ErrNotFound means the client is gone, and the token
// with it.
type ClientSource interface {
	GetClient(ctx context.Context, id string) (fosite.Client, error)
}

// OAuthTokens is fosite's token storage (authorization codes, PKCE requests, access and
// refresh tokens) in the Store's oauth_tokens bucket. It is not a fosite.ClientManager
// (package oauth composes one with it) and not storage.Transactional: every method is one
// bbolt transaction of its own, and RotateRefreshToken is atomic by itself, so two refreshes
// with one token cannot both succeed.
//
// A stored request keeps the client's id only; every Get reloads the client from the
// ClientSource, outside any transaction. Methods that are not part of a fosite interface
// return errors that match both ErrNotFound and fosite.ErrNotFound where either applies.
type OAuthTokens struct {
	s       *Store
	clients ClientSource
}

var (
	_ oauth2.CoreStorage            = (*OAuthTokens)(nil)
	_ oauth2.TokenRevocationStorage = (*OAuthTokens)(nil)
	_ pkce.PKCERequestStorage       = (*OAuthTokens)(nil)
)

// OAuthTokens returns fosite token storage in this database that loads clients from clients.
func (s *Store) OAuthTokens(clients ClientSource) *OAuthTokens {
	return &OAuthTokens{s: s, clients: clients}
}

// Token kinds: the first byte of an oauth_tokens key.
const (
	tokenCode    byte = 'c'
	tokenAccess  byte = 'a'
	tokenRefresh byte = 'r'
	tokenPKCE    byte = 'p'

	// unboundTokenTTL is how long a code or PKCE request whose session sets no expiry is kept.
	unboundTokenTTL = 24 * time.Hour
)

var tokenNames = map[byte]string{tokenCode: "authorization code", tokenAccess: "access token", tokenRefresh: "refresh token", tokenPKCE: "PKCE request"}

// tokenKey is the oauth_tokens key of a token; it is also the id its expiry entry points at.
func tokenKey(kind byte, sig string) string { return string(kind) + sig }

// tokenNotFound matches both ErrNotFound and fosite.ErrNotFound. Signatures stay out of
// errors, which end up in logs.
func tokenNotFound(kind byte) error {
	return fmt.Errorf("%w: %w: OAuth %s", fosite.ErrNotFound, ErrNotFound, tokenNames[kind])
}

// CreateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (t *OAuthTokens) CreateAuthorizeCodeSession(ctx context.Context, sig string, req fosite.Requester) error {
	return t.create(ctx, tokenCode, sig, "", req)
}

// GetAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage: a used code returns its
// request together with fosite.ErrInvalidatedAuthorizeCode, as fosite's replay detection needs.
func (t *OAuthTokens) GetAuthorizeCodeSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return t.get(ctx, tokenCode, sig, session)
}

// InvalidateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage. The code is kept,
// inactive, until it expires.
func (t *OAuthTokens) InvalidateAuthorizeCodeSession(ctx context.Context, sig string) error {
	return t.update(ctx, tokenCode, sig, func(tx *bolt.Tx, r *oauthTokenRecord) error {
		r.Active = false
		return nil
	})
}

// CreatePKCERequestSession implements pkce.PKCERequestStorage.
func (t *OAuthTokens) CreatePKCERequestSession(ctx context.Context, sig string, req fosite.Requester) error {
	return t.create(ctx, tokenPKCE, sig, "", req)
}

// GetPKCERequestSession implements pkce.PKCERequestStorage.
func (t *OAuthTokens) GetPKCERequestSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return t.get(ctx, tokenPKCE, sig, session)
}

// DeletePKCERequestSession implements pkce.PKCERequestStorage. A missing request is not an
// error.
func (t *OAuthTokens) DeletePKCERequestSession(ctx context.Context, sig string) error {
	return t.delete(ctx, tokenPKCE, sig)
}

// CreateAccessTokenSession implements oauth2.AccessTokenStorage. The family's grant record is
// written if it has none.
func (t *OAuthTokens) CreateAccessTokenSession(ctx context.Context, sig string, req fosite.Requester) error {
	return t.create(ctx, tokenAccess, sig, "", req)
}

// GetAccessTokenSession implements oauth2.AccessTokenStorage.
func (t *OAuthTokens) GetAccessTokenSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return t.get(ctx, tokenAccess, sig, session)
}

// DeleteAccessTokenSession implements oauth2.AccessTokenStorage. A missing token is not an
// error.
func (t *OAuthTokens) DeleteAccessTokenSession(ctx context.Context, sig string) error {
	return t.delete(ctx, tokenAccess, sig)
}

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage. The family's grant record
// is written if it has none.
func (t *OAuthTokens) CreateRefreshTokenSession(ctx context.Context, sig, accessSig string, req fosite.Requester) error {
	return t.create(ctx, tokenRefresh, sig, accessSig, req)
}

// GetRefreshTokenSession implements oauth2.RefreshTokenStorage: a rotated or revoked token
// returns its request together with fosite.ErrInactiveToken, which fosite treats as reuse.
func (t *OAuthTokens) GetRefreshTokenSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return t.get(ctx, tokenRefresh, sig, session)
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage. A missing token is not an
// error.
func (t *OAuthTokens) DeleteRefreshTokenSession(ctx context.Context, sig string) error {
	return t.delete(ctx, tokenRefresh, sig)
}

// RotateRefreshToken implements oauth2.RefreshTokenStorage. In one transaction it marks the
// refresh token inactive (rotated now) and deletes every access token of its family. A token
// that is missing or belongs to another request gives fosite.ErrNotFound; one already
// inactive gives fosite.ErrInactiveToken, so of two concurrent refreshes only one gets past
// this point. The family's grant record stays: fosite stores the new pair next.
func (t *OAuthTokens) RotateRefreshToken(ctx context.Context, requestID, sig string) error {
	defer t.s.oauthGen.Add(1) // the family's access tokens go
	return t.update(ctx, tokenRefresh, sig, func(tx *bolt.Tx, r *oauthTokenRecord) error {
		if r.RequestID != requestID {
			return tokenNotFound(tokenRefresh)
		}
		if !r.Active {
			return fmt.Errorf("%w: OAuth refresh token already rotated or revoked", fosite.ErrInactiveToken)
		}
		r.Active, r.RotatedAt = false, time.Now().UTC()
		return deleteFamilyTokens(tx, requestID, tokenAccess)
	})
}

// RevokeRefreshToken implements oauth2.TokenRevocationStorage: every refresh token of the
// family is marked inactive (kept for replay detection) and loses its rotation successor.
// A family without refresh tokens is not an error.
func (t *OAuthTokens) RevokeRefreshToken(ctx context.Context, requestID string) error {
	return t.family(ctx, requestID, func(tx *bolt.Tx) error {
		refs, err := familyTokens(tx, requestID)
		if err != nil {
			return err
		}
		for _, ref := range refs {
			if ref.kind != tokenRefresh {
				continue
			}
			r, found, err := getToken(tx, ref.kind, ref.sig)
			if err != nil || !found {
				return err
			}
			old := r
			r.Active, r.RotatedAt, r.Successor = false, time.Time{}, nil
			if err := putToken(tx, ref.kind, ref.sig, r, &old); err != nil {
				return err
			}
		}
		return nil
	})
}

// RevokeAccessToken implements oauth2.TokenRevocationStorage: every access token of the family
// is deleted. A family without access tokens is not an error.
func (t *OAuthTokens) RevokeAccessToken(ctx context.Context, requestID string) error {
	return t.family(ctx, requestID, func(tx *bolt.Tx) error {
		return deleteFamilyTokens(tx, requestID, tokenAccess)
	})
}

// SetRefreshSuccessor stores sealed on a rotated refresh token: package oauth's record of the
// pair that replaced it, for answering a concurrent refresh with the same token. ErrNotFound
// if the token is gone; ErrInvalid if it is active or was revoked rather than rotated.
func (t *OAuthTokens) SetRefreshSuccessor(ctx context.Context, sig string, sealed []byte) error {
	return t.update(ctx, tokenRefresh, sig, func(tx *bolt.Tx, r *oauthTokenRecord) error {
		if r.Active || r.RotatedAt.IsZero() {
			return fmt.Errorf("%w: the OAuth refresh token was not rotated", ErrInvalid)
		}
		r.Successor = bytes.Clone(sealed)
		return nil
	})
}

// RefreshSuccessor returns when the refresh token was rotated and what SetRefreshSuccessor
// stored on it: zero and nil if it is active, was revoked, or no successor was set yet.
// ErrNotFound if the token is gone.
func (t *OAuthTokens) RefreshSuccessor(ctx context.Context, sig string) (rotatedAt time.Time, sealed []byte, err error) {
	r, err := t.read(ctx, tokenRefresh, sig)
	if err != nil {
		return time.Time{}, nil, err
	}
	return r.RotatedAt, r.Successor, nil
}

// create stores a new token for req in one transaction.
func (t *OAuthTokens) create(ctx context.Context, kind byte, sig, accessSig string, req fosite.Requester) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkID("token signature", sig); err != nil {
		return err
	}
	r, err := tokenRecordFrom(kind, req, time.Now().UTC())
	if err != nil {
		return err
	}
	r.AccessSig = accessSig
	return t.s.db.Update(func(tx *bolt.Tx) error {
		old, found, err := getToken(tx, kind, sig)
		if err != nil {
			return err
		}
		var oldp *oauthTokenRecord
		if found {
			oldp = &old
		}
		if err := putToken(tx, kind, sig, r, oldp); err != nil {
			return err
		}
		if kind == tokenAccess || kind == tokenRefresh {
			return ensureGrant(tx, r)
		}
		return nil
	})
}

// tokenRecordFrom is the record of req; it refuses what would not make a valid key.
func tokenRecordFrom(kind byte, req fosite.Requester, now time.Time) (oauthTokenRecord, error) {
	if req == nil || req.GetClient() == nil {
		return oauthTokenRecord{}, fmt.Errorf("%w: an OAuth request without a client", ErrInvalid)
	}
	r := oauthTokenRecord{
		V: recordVersion, RequestID: req.GetID(), RequestedAt: req.GetRequestedAt().UTC(),
		ClientID: req.GetClient().GetID(), Active: true,
		RequestedScopes: req.GetRequestedScopes(), GrantedScopes: req.GetGrantedScopes(),
		RequestedAudience: req.GetRequestedAudience(), GrantedAudience: req.GetGrantedAudience(),
		Form: req.GetRequestForm().Encode(),
	}
	if err := checkID("OAuth request id", r.RequestID); err != nil {
		return r, err
	}
	if err := checkID("client id", r.ClientID); err != nil {
		return r, err
	}
	tokenType := fosite.AuthorizeCode
	switch kind {
	case tokenAccess:
		tokenType = fosite.AccessToken
	case tokenRefresh:
		tokenType = fosite.RefreshToken
	}
	if sess := sessionOf(req); sess != nil {
		b, err := json.Marshal(sess)
		if err != nil {
			return r, fmt.Errorf("data: encode OAuth session: %w", err)
		}
		r.Session, r.Subject, r.ExpiresAt = b, sess.GetSubject(), sess.GetExpiresAt(tokenType).UTC()
	}
	if strings.IndexByte(r.Subject, ownerSep) >= 0 {
		return r, fmt.Errorf("%w: OAuth subject %q contains NUL", ErrInvalid, r.Subject)
	}
	if r.ExpiresAt.IsZero() && (kind == tokenCode || kind == tokenPKCE) {
		r.ExpiresAt = now.Add(unboundTokenTTL)
	}
	return r, nil
}

// sessionOf is req's session, or nil for none, a typed nil included (fosite's DefaultSession
// would panic in GetExpiresAt).
func sessionOf(req fosite.Requester) fosite.Session {
	s := req.GetSession()
	if s == nil {
		return nil
	}
	if v := reflect.ValueOf(s); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil
	}
	return s
}

// get loads a token's request. The session JSON is decoded into session (fosite passes a
// template; nil skips it) and the client is reloaded from the ClientSource.
func (t *OAuthTokens) get(ctx context.Context, kind byte, sig string, session fosite.Session) (fosite.Requester, error) {
	r, err := t.read(ctx, kind, sig)
	if err != nil {
		return nil, err
	}
	if t.clients == nil {
		return nil, errors.New("data: OAuthTokens has no ClientSource")
	}
	if session != nil && len(r.Session) > 0 {
		if err := json.Unmarshal(r.Session, session); err != nil {
			return nil, fmt.Errorf("data: decode OAuth session: %w", err)
		}
	}
	form, err := url.ParseQuery(r.Form)
	if err != nil {
		return nil, fmt.Errorf("data: decode OAuth request form: %w", err)
	}
	client, err := t.clients.GetClient(ctx, r.ClientID)
	switch {
	case errors.Is(err, fosite.ErrNotFound) || errors.Is(err, ErrNotFound):
		return nil, fmt.Errorf("%w: OAuth client %q of the %s: %w", fosite.ErrNotFound, r.ClientID, tokenNames[kind], err)
	case err != nil:
		return nil, fmt.Errorf("data: load OAuth client %q: %w", r.ClientID, err)
	case client == nil:
		return nil, fmt.Errorf("%w: OAuth client %q of the %s", fosite.ErrNotFound, r.ClientID, tokenNames[kind])
	}
	req := &fosite.Request{
		ID: r.RequestID, RequestedAt: r.RequestedAt, Client: client,
		RequestedScope: fosite.Arguments(r.RequestedScopes), GrantedScope: fosite.Arguments(r.GrantedScopes),
		Form: form, Session: session,
		RequestedAudience: fosite.Arguments(r.RequestedAudience), GrantedAudience: fosite.Arguments(r.GrantedAudience),
	}
	switch {
	case r.Active:
		return req, nil
	case kind == tokenCode:
		return req, fmt.Errorf("%w", fosite.ErrInvalidatedAuthorizeCode)
	case kind == tokenRefresh:
		return req, fmt.Errorf("%w: OAuth refresh token rotated or revoked", fosite.ErrInactiveToken)
	}
	return req, nil
}

// read returns a token's record. A signature that cannot be stored (empty, or with NUL) is
// not found rather than invalid: fosite derives signatures from whatever a client sends.
func (t *OAuthTokens) read(ctx context.Context, kind byte, sig string) (oauthTokenRecord, error) {
	if err := ctx.Err(); err != nil {
		return oauthTokenRecord{}, err
	}
	if checkID("token signature", sig) != nil {
		return oauthTokenRecord{}, tokenNotFound(kind)
	}
	var r oauthTokenRecord
	var found bool
	err := t.s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, found, err = getToken(tx, kind, sig)
		return err
	})
	switch {
	case err != nil:
		return oauthTokenRecord{}, err
	case !found:
		return oauthTokenRecord{}, tokenNotFound(kind)
	}
	return r, nil
}

// update changes a token's record with fn in one transaction; a missing token is not found.
func (t *OAuthTokens) update(ctx context.Context, kind byte, sig string, fn func(*bolt.Tx, *oauthTokenRecord) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if checkID("token signature", sig) != nil {
		return tokenNotFound(kind)
	}
	return t.s.db.Update(func(tx *bolt.Tx) error {
		old, found, err := getToken(tx, kind, sig)
		switch {
		case err != nil:
			return err
		case !found:
			return tokenNotFound(kind)
		}
		r := old
		if err := fn(tx, &r); err != nil {
			return err
		}
		return putToken(tx, kind, sig, r, &old)
	})
}

// delete deletes a token, if it exists, and settles its family.
func (t *OAuthTokens) delete(ctx context.Context, kind byte, sig string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer t.s.oauthGen.Add(1)
	if checkID("token signature", sig) != nil {
		return nil // never stored
	}
	return t.s.db.Update(func(tx *bolt.Tx) error {
		r, found, err := getToken(tx, kind, sig)
		if err != nil || !found {
			return err
		}
		if err := deleteToken(tx, kind, sig, r); err != nil {
			return err
		}
		return settleFamily(tx, r.RequestID, r.ClientID)
	})
}

// family runs fn on a token family in one transaction and settles it afterwards.
func (t *OAuthTokens) family(ctx context.Context, requestID string, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer t.s.oauthGen.Add(1)
	if checkID("OAuth request id", requestID) != nil {
		return nil // never stored
	}
	return t.s.db.Update(func(tx *bolt.Tx) error {
		clientID, err := familyClient(tx, requestID)
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		return settleFamily(tx, requestID, clientID)
	})
}

// SweepExpiredOAuthTokens deletes codes, PKCE requests and tokens whose expiry is at or
// before now, active or not, earliest first, at most limit of them (limit <= 0 means 1000)
// in one write transaction, and returns how many. A family left without live tokens loses
// its grant record, and one left without tokens its index entries.
func (s *Store) SweepExpiredOAuthTokens(ctx context.Context, now time.Time, limit int) (int, error) {
	n := 0
	err := s.sweepIndex(ctx, bucketOAuthTokensByExpiry, now, limit, func(tx *bolt.Tx, id string, entry []byte) error {
		kind, sig := id[0], id[1:]
		r, found, err := getToken(tx, kind, sig)
		if err != nil {
			return err
		}
		if !found || r.ExpiresAt.IsZero() || !bytes.Equal(expiryKey(r.ExpiresAt, id), entry) {
			return dropStaleEntry(tx, bucketOAuthTokensByExpiry, entry)
		}
		if r.ExpiresAt.After(now) {
			return nil
		}
		if err := deleteToken(tx, kind, sig, r); err != nil {
			return err
		}
		n++
		return settleFamily(tx, r.RequestID, r.ClientID)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// getToken reads a token record inside tx. Decoding copies everything out of bbolt's memory
// map.
func getToken(tx *bolt.Tx, kind byte, sig string) (oauthTokenRecord, bool, error) {
	v := tx.Bucket([]byte(bucketOAuthTokens)).Get([]byte(tokenKey(kind, sig)))
	if v == nil {
		return oauthTokenRecord{}, false, nil
	}
	r, err := decodeRecord[oauthTokenRecord]("OAuth token", v)
	if err != nil {
		return oauthTokenRecord{}, false, fmt.Errorf("data: OAuth %s: %w", tokenNames[kind], err)
	}
	return r, true, nil
}

// putToken writes a token record and keeps its indexes in step; old is the stored version it
// replaces, if any. Every write of a token goes through putToken or deleteToken.
func putToken(tx *bolt.Tx, kind byte, sig string, r oauthTokenRecord, old *oauthTokenRecord) error {
	id := tokenKey(kind, sig)
	if old != nil {
		if err := deleteTokenIndexes(tx, id, *old); err != nil {
			return err
		}
	}
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("data: encode OAuth %s: %w", tokenNames[kind], err)
	}
	if err := tx.Bucket([]byte(bucketOAuthTokens)).Put([]byte(id), v); err != nil {
		return fmt.Errorf("data: store OAuth %s: %w", tokenNames[kind], err)
	}
	if err := tx.Bucket([]byte(bucketOAuthTokensByRequest)).Put(ownerKey(r.RequestID, id), nil); err != nil {
		return fmt.Errorf("data: index OAuth %s by request: %w", tokenNames[kind], err)
	}
	if err := tx.Bucket([]byte(bucketOAuthFamiliesByClient)).Put(ownerKey(r.ClientID, r.RequestID), nil); err != nil {
		return fmt.Errorf("data: index OAuth family by client: %w", err)
	}
	if !r.ExpiresAt.IsZero() {
		if err := tx.Bucket([]byte(bucketOAuthTokensByExpiry)).Put(expiryKey(r.ExpiresAt, id), nil); err != nil {
			return fmt.Errorf("data: index OAuth %s by expiry: %w", tokenNames[kind], err)
		}
	}
	return nil
}

func deleteTokenIndexes(tx *bolt.Tx, id string, r oauthTokenRecord) error {
	if err := tx.Bucket([]byte(bucketOAuthTokensByRequest)).Delete(ownerKey(r.RequestID, id)); err != nil {
		return fmt.Errorf("data: unindex OAuth token by request: %w", err)
	}
	if !r.ExpiresAt.IsZero() {
		if err := tx.Bucket([]byte(bucketOAuthTokensByExpiry)).Delete(expiryKey(r.ExpiresAt, id)); err != nil {
			return fmt.Errorf("data: unindex OAuth token by expiry: %w", err)
		}
	}
	return nil
}

// deleteToken deletes a token record and its index entries, but not its family's: see
// settleFamily.
func deleteToken(tx *bolt.Tx, kind byte, sig string, r oauthTokenRecord) error {
	id := tokenKey(kind, sig)
	if err := deleteTokenIndexes(tx, id, r); err != nil {
		return err
	}
	if err := tx.Bucket([]byte(bucketOAuthTokens)).Delete([]byte(id)); err != nil {
		return fmt.Errorf("data: delete OAuth %s: %w", tokenNames[kind], err)
	}
	return nil
}
