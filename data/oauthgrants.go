package data

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Token families and their grants. A family is every token that shares a fosite request id;
// its grant record is what users and admins see and revoke (see layout.go for when it exists).

// tokenRef names a token of a family, as the oauth_tokens_by_request index does.
type tokenRef struct {
	kind byte
	sig  string
}

// familyTokens lists a family's tokens from the request index.
func familyTokens(tx *bolt.Tx, requestID string) ([]tokenRef, error) {
	return familyTokensOf(tx, ownerKey(requestID, ""))
}

// familyTokensOfKind lists the family's index entries of one kind only. A family keeps every
// rotated refresh token until it expires (for replay detection), so a month of hourly
// refreshes leaves hundreds of them; the refresh path only ever needs the access tokens, and
// the kind byte leads the rest of the key, so a narrower prefix skips the others.
func familyTokensOfKind(tx *bolt.Tx, requestID string, kind byte) ([]tokenRef, error) {
	return familyTokensOf(tx, ownerKey(requestID, string([]byte{kind})))
}

func familyTokensOf(tx *bolt.Tx, prefix []byte) ([]tokenRef, error) {
	var out []tokenRef
	requestPrefix := prefix[:bytes.IndexByte(prefix, ownerSep)+1]
	c := tx.Bucket([]byte(bucketOAuthTokensByRequest)).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		rest := k[len(requestPrefix):]
		if len(rest) < 2 {
			return nil, fmt.Errorf("data: corrupt %s entry", bucketOAuthTokensByRequest)
		}
		out = append(out, tokenRef{kind: rest[0], sig: string(rest[1:])})
	}
	return out, nil
}

// familyClient is the client of a family, from any of its tokens or its grant; "" if it has
// neither.
func familyClient(tx *bolt.Tx, requestID string) (string, error) {
	refs, err := familyTokens(tx, requestID)
	if err != nil {
		return "", err
	}
	for _, ref := range refs {
		r, found, err := getToken(tx, ref.kind, ref.sig)
		if err != nil {
			return "", err
		}
		if found {
			return r.ClientID, nil
		}
	}
	g, found, err := getGrant(tx, requestID)
	if err != nil || !found {
		return "", err
	}
	return g.ClientID, nil
}

// deleteFamilyTokens deletes the family's tokens of one kind, without settling it.
func deleteFamilyTokens(tx *bolt.Tx, requestID string, kind byte) error {
	refs, err := familyTokensOfKind(tx, requestID, kind)
	if err != nil {
		return err
	}
	for _, ref := range refs {
		r, found, err := getToken(tx, ref.kind, ref.sig)
		if err != nil {
			return err
		}
		if !found { // a stale entry: drop it
			if err := tx.Bucket([]byte(bucketOAuthTokensByRequest)).Delete(ownerKey(requestID, tokenKey(ref.kind, ref.sig))); err != nil {
				return fmt.Errorf("data: drop stale %s entry: %w", bucketOAuthTokensByRequest, err)
			}
			continue
		}
		if err := deleteToken(tx, ref.kind, ref.sig, r); err != nil {
			return err
		}
	}
	return nil
}

// settleFamily brings a family's grant and client index in line with its tokens: a family
// without live tokens loses its grant record, and one without any tokens its
// oauth_families_by_client entry. Access tokens are live, and so are refresh tokens that are
// active or were rotated (their successors are on the way, or in the grace window) rather
// than revoked.
func settleFamily(tx *bolt.Tx, requestID, clientID string) error {
	live, err := familyLive(tx, requestID)
	if err != nil {
		return err
	}
	if !live {
		if err := deleteGrant(tx, requestID); err != nil {
			return err
		}
	}
	prefix := ownerKey(requestID, "")
	k, _ := tx.Bucket([]byte(bucketOAuthTokensByRequest)).Cursor().Seek(prefix)
	if (k == nil || !bytes.HasPrefix(k, prefix)) && clientID != "" {
		if err := tx.Bucket([]byte(bucketOAuthFamiliesByClient)).Delete(ownerKey(clientID, requestID)); err != nil {
			return fmt.Errorf("data: unindex OAuth family by client: %w", err)
		}
	}
	return nil
}

// familyLive reports whether the family has a live token: an access token, or else a refresh
// token that is active or was rotated. Access tokens are checked first, from the index alone,
// so a family in use needs no record read.
func familyLive(tx *bolt.Tx, requestID string) (bool, error) {
	prefix := ownerKey(requestID, string([]byte{tokenAccess}))
	if k, _ := tx.Bucket([]byte(bucketOAuthTokensByRequest)).Cursor().Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) {
		return true, nil
	}
	refs, err := familyTokensOfKind(tx, requestID, tokenRefresh)
	if err != nil {
		return false, err
	}
	for _, ref := range refs {
		r, found, err := getToken(tx, ref.kind, ref.sig)
		if err != nil {
			return false, err
		}
		if found && (r.Active || !r.RotatedAt.IsZero()) {
			return true, nil
		}
	}
	return false, nil
}

// deleteFamily deletes every token of a family, its grant and its index entries.
func deleteFamily(tx *bolt.Tx, requestID string) error {
	clientID, err := familyClient(tx, requestID)
	if err != nil {
		return err
	}
	for _, kind := range []byte{tokenCode, tokenPKCE, tokenAccess, tokenRefresh} {
		if err := deleteFamilyTokens(tx, requestID, kind); err != nil {
			return err
		}
	}
	return settleFamily(tx, requestID, clientID)
}

// ensureGrant writes the grant record of r's family if it has none.
func ensureGrant(tx *bolt.Tx, r oauthTokenRecord) error {
	if _, found, err := getGrant(tx, r.RequestID); err != nil || found {
		return err
	}
	g := OAuthGrant{RequestID: r.RequestID, UserID: r.Subject, ClientID: r.ClientID,
		Resources: slices.Clone(r.GrantedAudience), Scopes: slices.Clone(r.GrantedScopes), CreatedAt: time.Now().UTC()}
	v, err := json.Marshal(oauthGrantRecord{V: recordVersion, User: g.UserID, Client: g.ClientID,
		Resources: g.Resources, Scopes: g.Scopes, CreatedAt: g.CreatedAt})
	if err != nil {
		return fmt.Errorf("data: encode OAuth grant: %w", err)
	}
	if err := tx.Bucket([]byte(bucketOAuthGrants)).Put([]byte(g.RequestID), v); err != nil {
		return fmt.Errorf("data: store OAuth grant: %w", err)
	}
	if err := tx.Bucket([]byte(bucketOAuthGrantsByUser)).Put(grantUserKey(g), nil); err != nil {
		return fmt.Errorf("data: index OAuth grant by user: %w", err)
	}
	return nil
}

// OAuthGrantsByUser returns the user's grants (families with a live token), oldest first
// (ties by request id). A user without grants gets an empty slice and no error.
func (s *Store) OAuthGrantsByUser(ctx context.Context, userID string) ([]OAuthGrant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkID("user id", userID); err != nil {
		return nil, err
	}
	out := []OAuthGrant{}
	err := s.db.View(func(tx *bolt.Tx) error {
		refs, err := userGrants(tx, userID, "")
		if err != nil {
			return err
		}
		for _, reqID := range refs {
			g, found, err := getGrant(tx, reqID)
			if err != nil {
				return err
			}
			if found && g.UserID == userID { // re-checked so that a stale entry shows nothing
				out = append(out, g)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortGrants(out)
	return out, nil
}

// ListOAuthGrants returns every grant, oldest first (ties by request id).
func (s *Store) ListOAuthGrants(ctx context.Context) ([]OAuthGrant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []OAuthGrant{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketOAuthGrants)).ForEach(func(k, v []byte) error {
			g, err := decodeGrant(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, g)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sortGrants(out)
	return out, nil
}

// RevokeOAuthGrants deletes every token of every family of userID with clientID ("" for any
// client) whose granted audience contains resource ("" for any), in one transaction, and
// returns how many grants it deleted. Families without a grant record whose subject is userID
// go too, uncounted: a code not yet exchanged (so that it cannot be), or the inactive tokens
// of a family already revoked.
func (s *Store) RevokeOAuthGrants(ctx context.Context, userID, clientID, resource string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := checkGrantFilter(userID, clientID, resource); err != nil {
		return 0, err
	}
	n := 0
	defer s.oauthGen.Add(1)
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		n, err = revokeGrants(tx, userID, clientID, resource)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// RevokeUserOAuthGrants deletes every token family of the user, of any client, and returns
// how many there were.
func (s *Store) RevokeUserOAuthGrants(ctx context.Context, userID string) (int, error) {
	return s.RevokeOAuthGrants(ctx, userID, "", "")
}

func checkGrantFilter(userID, clientID, resource string) error {
	if err := checkID("user id", userID); err != nil {
		return err
	}
	if clientID != "" {
		if err := checkID("client id", clientID); err != nil {
			return err
		}
	}
	return checkResource(resource)
}

// checkResource refuses a resource that cannot be part of a key; an empty one is fine.
func checkResource(resource string) error {
	if strings.IndexByte(resource, ownerSep) >= 0 {
		return fmt.Errorf("%w: resource %q contains NUL", ErrInvalid, resource)
	}
	return nil
}

// revokeGrants is RevokeOAuthGrants inside tx.
func revokeGrants(tx *bolt.Tx, userID, clientID, resource string) (int, error) {
	hasResource := func(rs []string) bool { return resource == "" || slices.Contains(rs, resource) }
	var doomed []string
	seen := map[string]bool{}
	granted := 0
	reqIDs, err := userGrants(tx, userID, clientID)
	if err != nil {
		return 0, err
	}
	for _, reqID := range reqIDs {
		g, found, err := getGrant(tx, reqID)
		if err != nil {
			return 0, err
		}
		if found && g.UserID == userID && (clientID == "" || g.ClientID == clientID) && hasResource(g.Resources) && !seen[reqID] {
			doomed, seen[reqID] = append(doomed, reqID), true
			granted++
		}
	}
	// Families without a grant record (codes and PKCE requests not yet exchanged, or
	// only inactive tokens left) are found through the client index and their subject.
	var prefix []byte
	if clientID != "" {
		prefix = ownerKey(clientID, "")
	}
	var families []string
	c := tx.Bucket([]byte(bucketOAuthFamiliesByClient)).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		i := bytes.IndexByte(k, ownerSep)
		if i < 0 {
			return 0, fmt.Errorf("data: corrupt %s entry", bucketOAuthFamiliesByClient)
		}
		families = append(families, string(k[i+1:]))
	}
	for _, reqID := range families {
		if seen[reqID] {
			continue
		}
		if _, found, err := getGrant(tx, reqID); err != nil || found {
			if err != nil {
				return 0, err
			}
			continue // a grant of someone else, or for another resource
		}
		refs, err := familyTokens(tx, reqID)
		if err != nil {
			return 0, err
		}
		for _, ref := range refs {
			r, found, err := getToken(tx, ref.kind, ref.sig)
			if err != nil {
				return 0, err
			}
			if found && r.Subject == userID && (clientID == "" || r.ClientID == clientID) && hasResource(r.GrantedAudience) {
				doomed, seen[reqID] = append(doomed, reqID), true
				break
			}
		}
	}
	for _, reqID := range doomed {
		if err := deleteFamily(tx, reqID); err != nil {
			return 0, err
		}
	}
	return granted, nil
}

// userGrants lists the request ids in the user's grant index, of one client or ("") all.
func userGrants(tx *bolt.Tx, userID, clientID string) ([]string, error) {
	prefix := ownerKey(userID, "")
	if clientID != "" {
		prefix = joinKey(userID, clientID, "")
	}
	var out []string
	c := tx.Bucket([]byte(bucketOAuthGrantsByUser)).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		i := bytes.LastIndexByte(k, ownerSep)
		if i < len(ownerKey(userID, "")) {
			return nil, fmt.Errorf("data: corrupt %s entry", bucketOAuthGrantsByUser)
		}
		out = append(out, string(k[i+1:]))
	}
	return out, nil
}

// clientFamilies lists the request ids of the client's token families.
func clientFamilies(tx *bolt.Tx, clientID string) ([]string, error) {
	prefix := ownerKey(clientID, "")
	var out []string
	c := tx.Bucket([]byte(bucketOAuthFamiliesByClient)).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, string(k[len(prefix):]))
	}
	return out, nil
}

// joinKey joins key parts with the 0x00 separator: joinKey(a, b) is ownerKey(a, b).
func joinKey(parts ...string) []byte {
	return []byte(strings.Join(parts, string(rune(ownerSep))))
}

func grantUserKey(g OAuthGrant) []byte { return joinKey(g.UserID, g.ClientID, g.RequestID) }

// getGrant reads a grant inside tx.
func getGrant(tx *bolt.Tx, requestID string) (OAuthGrant, bool, error) {
	v := tx.Bucket([]byte(bucketOAuthGrants)).Get([]byte(requestID))
	if v == nil {
		return OAuthGrant{}, false, nil
	}
	g, err := decodeGrant(requestID, v)
	if err != nil {
		return OAuthGrant{}, false, err
	}
	return g, true, nil
}

// deleteGrant deletes a family's grant record and its index entry, if it has one.
func deleteGrant(tx *bolt.Tx, requestID string) error {
	g, found, err := getGrant(tx, requestID)
	if err != nil || !found {
		return err
	}
	if err := tx.Bucket([]byte(bucketOAuthGrantsByUser)).Delete(grantUserKey(g)); err != nil {
		return fmt.Errorf("data: unindex OAuth grant by user: %w", err)
	}
	if err := tx.Bucket([]byte(bucketOAuthGrants)).Delete([]byte(requestID)); err != nil {
		return fmt.Errorf("data: delete OAuth grant: %w", err)
	}
	return nil
}

func decodeGrant(requestID string, b []byte) (OAuthGrant, error) {
	r, err := decodeRecord[oauthGrantRecord]("OAuth grant", b)
	if err != nil {
		return OAuthGrant{}, fmt.Errorf("data: OAuth grant %q: %w", requestID, err)
	}
	return OAuthGrant{RequestID: requestID, UserID: r.User, ClientID: r.Client,
		Resources: r.Resources, Scopes: r.Scopes, CreatedAt: r.CreatedAt}, nil
}

func sortGrants(gs []OAuthGrant) {
	slices.SortFunc(gs, func(a, b OAuthGrant) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.RequestID, b.RequestID)
	})
}
