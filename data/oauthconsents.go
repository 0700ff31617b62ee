package data

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// PutOAuthConsent creates the user's consent to the client for the resource, or updates the
// one there is, and returns it as stored: Scopes sorted and without duplicates, times in UTC.
// An update keeps the stored CreatedAt; a new consent's zero CreatedAt means now, and a zero
// UpdatedAt means CreatedAt (new) or now (update). ErrInvalid for an empty user or client id,
// or NUL in either or in the resource (which may be empty).
func (s *Store) PutOAuthConsent(ctx context.Context, c OAuthConsent) (OAuthConsent, error) {
	if err := ctx.Err(); err != nil {
		return OAuthConsent{}, err
	}
	if err := checkConsentKey(c.UserID, c.ClientID, c.Resource); err != nil {
		return OAuthConsent{}, err
	}
	c.Scopes = slices.Compact(slices.Sorted(slices.Values(c.Scopes)))
	now := time.Now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		old, found, err := getConsent(tx, c.UserID, c.ClientID, c.Resource)
		switch {
		case err != nil:
			return err
		case found:
			c.CreatedAt = old.CreatedAt
			if c.UpdatedAt.IsZero() {
				c.UpdatedAt = now
			}
		default:
			if c.CreatedAt.IsZero() {
				c.CreatedAt = now
			}
			if c.UpdatedAt.IsZero() {
				c.UpdatedAt = c.CreatedAt
			}
		}
		c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
		v, err := json.Marshal(oauthConsentRecord{V: recordVersion, Scopes: c.Scopes, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt})
		if err != nil {
			return fmt.Errorf("data: encode OAuth consent: %w", err)
		}
		if err := tx.Bucket([]byte(bucketOAuthConsents)).Put(joinKey(c.UserID, c.ClientID, c.Resource), v); err != nil {
			return fmt.Errorf("data: store OAuth consent: %w", err)
		}
		if err := tx.Bucket([]byte(bucketOAuthConsentsByClient)).Put(joinKey(c.ClientID, c.UserID, c.Resource), nil); err != nil {
			return fmt.Errorf("data: index OAuth consent by client: %w", err)
		}
		return nil
	})
	if err != nil {
		return OAuthConsent{}, err
	}
	return c, nil
}

// GetOAuthConsent returns the user's consent to the client for the resource, or ErrNotFound.
func (s *Store) GetOAuthConsent(ctx context.Context, userID, clientID, resource string) (OAuthConsent, error) {
	if err := ctx.Err(); err != nil {
		return OAuthConsent{}, err
	}
	if err := checkConsentKey(userID, clientID, resource); err != nil {
		return OAuthConsent{}, err
	}
	var out OAuthConsent
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, found, err = getConsent(tx, userID, clientID, resource)
		return err
	})
	switch {
	case err != nil:
		return OAuthConsent{}, err
	case !found:
		return OAuthConsent{}, fmt.Errorf("%w: OAuth consent of %q to %q for %q", ErrNotFound, userID, clientID, resource)
	}
	return out, nil
}

// OAuthConsentsByUser returns the user's consents in client and resource order. A user
// without consents gets an empty slice and no error.
func (s *Store) OAuthConsentsByUser(ctx context.Context, userID string) ([]OAuthConsent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkID("user id", userID); err != nil {
		return nil, err
	}
	return s.listConsents(ctx, ownerKey(userID, ""))
}

// ListOAuthConsents returns every consent in user, client and resource order.
func (s *Store) ListOAuthConsents(ctx context.Context) ([]OAuthConsent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.listConsents(ctx, nil)
}

func (s *Store) listConsents(_ context.Context, prefix []byte) ([]OAuthConsent, error) {
	out := []OAuthConsent{}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketOAuthConsents)).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			parts := bytes.Split(k, []byte{ownerSep})
			if len(parts) != 3 {
				return fmt.Errorf("data: corrupt %s key", bucketOAuthConsents)
			}
			consent, err := decodeConsent(string(parts[0]), string(parts[1]), string(parts[2]), v)
			if err != nil {
				return err
			}
			out = append(out, consent)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RevokeOAuthConsent deletes the user's consent to the client for the resource and, in the
// same transaction, the token families RevokeOAuthGrants(userID, clientID, resource) would:
// those of the user and client whose audience contains the resource (any, for ""). Families
// for other resources stay. ErrNotFound if there is no such consent; then nothing changes.
func (s *Store) RevokeOAuthConsent(ctx context.Context, userID, clientID, resource string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer s.oauthGen.Add(1)
	if err := checkConsentKey(userID, clientID, resource); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		_, found, err := getConsent(tx, userID, clientID, resource)
		switch {
		case err != nil:
			return err
		case !found:
			return fmt.Errorf("%w: OAuth consent of %q to %q for %q", ErrNotFound, userID, clientID, resource)
		}
		if err := deleteConsent(tx, userID, clientID, resource); err != nil {
			return err
		}
		_, err = revokeGrants(tx, userID, clientID, resource)
		return err
	})
}

func checkConsentKey(userID, clientID, resource string) error {
	if err := checkID("user id", userID); err != nil {
		return err
	}
	if err := checkID("client id", clientID); err != nil {
		return err
	}
	return checkResource(resource)
}

// deleteClientConsents deletes every consent to the client.
func deleteClientConsents(tx *bolt.Tx, clientID string) error {
	prefix := ownerKey(clientID, "")
	var keys [][]byte
	c := tx.Bucket([]byte(bucketOAuthConsentsByClient)).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k)) // collected first: deleting under a cursor skips keys
	}
	for _, k := range keys {
		parts := bytes.Split(k, []byte{ownerSep})
		if len(parts) != 3 {
			return fmt.Errorf("data: corrupt %s key", bucketOAuthConsentsByClient)
		}
		if err := deleteConsent(tx, string(parts[1]), clientID, string(parts[2])); err != nil {
			return err
		}
	}
	return nil
}

func deleteConsent(tx *bolt.Tx, userID, clientID, resource string) error {
	if err := tx.Bucket([]byte(bucketOAuthConsentsByClient)).Delete(joinKey(clientID, userID, resource)); err != nil {
		return fmt.Errorf("data: unindex OAuth consent by client: %w", err)
	}
	if err := tx.Bucket([]byte(bucketOAuthConsents)).Delete(joinKey(userID, clientID, resource)); err != nil {
		return fmt.Errorf("data: delete OAuth consent: %w", err)
	}
	return nil
}

// getConsent reads a consent inside tx.
func getConsent(tx *bolt.Tx, userID, clientID, resource string) (OAuthConsent, bool, error) {
	v := tx.Bucket([]byte(bucketOAuthConsents)).Get(joinKey(userID, clientID, resource))
	if v == nil {
		return OAuthConsent{}, false, nil
	}
	c, err := decodeConsent(userID, clientID, resource, v)
	if err != nil {
		return OAuthConsent{}, false, err
	}
	return c, true, nil
}

func decodeConsent(userID, clientID, resource string, b []byte) (OAuthConsent, error) {
	r, err := decodeRecord[oauthConsentRecord]("OAuth consent", b)
	if err != nil {
		return OAuthConsent{}, fmt.Errorf("data: OAuth consent of %q to %q: %w", userID, clientID, err)
	}
	return OAuthConsent{UserID: userID, ClientID: clientID, Resource: resource, Scopes: r.Scopes,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}, nil
}
