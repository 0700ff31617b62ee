package data

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Expired reports whether the client record has lapsed at now (at the deadline itself, it
// has). A record without ExpiresAt never does.
func (c OAuthClient) Expired(now time.Time) bool {
	return !c.ExpiresAt.IsZero() && !c.ExpiresAt.After(now)
}

// PutOAuthClient creates the client, or replaces the record with this id, and returns it as
// stored (times in UTC; a zero CreatedAt means now). Replacing a client keeps its tokens and
// consents. ErrInvalid for an empty id or NUL in it.
func (s *Store) PutOAuthClient(ctx context.Context, c OAuthClient) (OAuthClient, error) {
	if err := ctx.Err(); err != nil {
		return OAuthClient{}, err
	}
	if err := checkID("client id", c.ID); err != nil {
		return OAuthClient{}, err
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = time.Now()
	}
	var out OAuthClient
	err := s.db.Update(func(tx *bolt.Tx) error {
		old, found, err := getOAuthClient(tx, c.ID)
		if err != nil {
			return err
		}
		var oldp *OAuthClient
		if found {
			oldp = &old
		}
		out, err = putOAuthClient(tx, c, oldp)
		return err
	})
	if err != nil {
		return OAuthClient{}, err
	}
	return out, nil
}

// GetOAuthClient returns the client with this id, expired or not, or ErrNotFound.
func (s *Store) GetOAuthClient(ctx context.Context, id string) (OAuthClient, error) {
	if err := ctx.Err(); err != nil {
		return OAuthClient{}, err
	}
	var out OAuthClient
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, found, err = getOAuthClient(tx, id)
		return err
	})
	switch {
	case err != nil:
		return OAuthClient{}, err
	case !found:
		return OAuthClient{}, fmt.Errorf("%w: OAuth client %q", ErrNotFound, id)
	}
	return out, nil
}

// ListOAuthClients returns every client, expired ones included, in id order.
func (s *Store) ListOAuthClients(ctx context.Context) ([]OAuthClient, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []OAuthClient{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketOAuthClients)).ForEach(func(k, v []byte) error {
			c, err := decodeOAuthClient(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteOAuthClient deletes the client with all its token families (grants included) and
// consents, in one transaction. ErrNotFound if there is no such client; then nothing changes.
func (s *Store) DeleteOAuthClient(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkID("client id", id); err != nil {
		return err
	}
	defer s.oauthGen.Add(1)
	return s.db.Update(func(tx *bolt.Tx) error {
		c, found, err := getOAuthClient(tx, id)
		switch {
		case err != nil:
			return err
		case !found:
			return fmt.Errorf("%w: OAuth client %q", ErrNotFound, id)
		}
		return deleteOAuthClient(tx, c)
	})
}

// TouchOAuthClient records a use of the client: LastUsed and ExpiresAt are replaced (a zero
// expiresAt makes the record permanent) and the expiry entry moves with them. ErrNotFound if
// the client is gone.
func (s *Store) TouchOAuthClient(ctx context.Context, id string, lastUsed, expiresAt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkID("client id", id); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		old, found, err := getOAuthClient(tx, id)
		switch {
		case err != nil:
			return err
		case !found:
			return fmt.Errorf("%w: OAuth client %q", ErrNotFound, id)
		}
		c := old
		c.LastUsed, c.ExpiresAt = lastUsed, expiresAt
		_, err = putOAuthClient(tx, c, &old)
		return err
	})
}

// SweepExpiredOAuthClients deletes clients whose ExpiresAt is set and at or before now, with
// their token families and consents as DeleteOAuthClient does, earliest deadline first, at
// most limit of them (limit <= 0 means 1000) in one write transaction, and returns how many.
func (s *Store) SweepExpiredOAuthClients(ctx context.Context, now time.Time, limit int) (int, error) {
	n := 0
	defer func() {
		if n > 0 {
			s.oauthGen.Add(1)
		}
	}()
	err := s.sweepIndex(ctx, bucketOAuthClientsByExpiry, now, limit, func(tx *bolt.Tx, id string, entry []byte) error {
		c, found, err := getOAuthClient(tx, id)
		if err != nil {
			return err
		}
		if !found || c.ExpiresAt.IsZero() || !bytes.Equal(expiryKey(c.ExpiresAt, id), entry) {
			return dropStaleEntry(tx, bucketOAuthClientsByExpiry, entry)
		}
		if !c.Expired(now) {
			return nil
		}
		if err := deleteOAuthClient(tx, c); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// getOAuthClient reads a client inside tx. Decoding copies everything out of bbolt's memory map.
func getOAuthClient(tx *bolt.Tx, id string) (OAuthClient, bool, error) {
	v := tx.Bucket([]byte(bucketOAuthClients)).Get([]byte(id))
	if v == nil {
		return OAuthClient{}, false, nil
	}
	c, err := decodeOAuthClient(id, v)
	if err != nil {
		return OAuthClient{}, false, fmt.Errorf("data: OAuth client %q: %w", id, err)
	}
	return c, true, nil
}

// putOAuthClient writes a client and keeps its expiry entry in step; old is the stored
// version it replaces, if any.
func putOAuthClient(tx *bolt.Tx, c OAuthClient, old *OAuthClient) (OAuthClient, error) {
	if old != nil && !old.ExpiresAt.IsZero() {
		if err := tx.Bucket([]byte(bucketOAuthClientsByExpiry)).Delete(expiryKey(old.ExpiresAt, old.ID)); err != nil {
			return OAuthClient{}, fmt.Errorf("data: unindex OAuth client %q by expiry: %w", c.ID, err)
		}
	}
	c.CreatedAt, c.LastUsed, c.ExpiresAt = c.CreatedAt.UTC(), c.LastUsed.UTC(), c.ExpiresAt.UTC()
	v, err := encodeOAuthClient(c)
	if err != nil {
		return OAuthClient{}, fmt.Errorf("data: encode OAuth client %q: %w", c.ID, err)
	}
	if err := tx.Bucket([]byte(bucketOAuthClients)).Put([]byte(c.ID), v); err != nil {
		return OAuthClient{}, fmt.Errorf("data: store OAuth client %q: %w", c.ID, err)
	}
	if !c.ExpiresAt.IsZero() {
		if err := tx.Bucket([]byte(bucketOAuthClientsByExpiry)).Put(expiryKey(c.ExpiresAt, c.ID), nil); err != nil {
			return OAuthClient{}, fmt.Errorf("data: index OAuth client %q by expiry: %w", c.ID, err)
		}
	}
	return c, nil
}

// deleteOAuthClient deletes a client, its expiry entry, its token families and its consents.
func deleteOAuthClient(tx *bolt.Tx, c OAuthClient) error {
	families, err := clientFamilies(tx, c.ID)
	if err != nil {
		return err
	}
	for _, reqID := range families {
		if err := deleteFamily(tx, reqID); err != nil {
			return err
		}
	}
	if err := deleteClientConsents(tx, c.ID); err != nil {
		return err
	}
	if !c.ExpiresAt.IsZero() {
		if err := tx.Bucket([]byte(bucketOAuthClientsByExpiry)).Delete(expiryKey(c.ExpiresAt, c.ID)); err != nil {
			return fmt.Errorf("data: unindex OAuth client %q by expiry: %w", c.ID, err)
		}
	}
	if err := tx.Bucket([]byte(bucketOAuthClients)).Delete([]byte(c.ID)); err != nil {
		return fmt.Errorf("data: delete OAuth client %q: %w", c.ID, err)
	}
	return nil
}

func encodeOAuthClient(c OAuthClient) ([]byte, error) {
	return json.Marshal(oauthClientRecord{
		V: recordVersion, Kind: c.Kind, Name: c.Name, URI: c.URI, LogoURI: c.LogoURI,
		RedirectURIs: c.RedirectURIs, GrantTypes: c.GrantTypes, ResponseTypes: c.ResponseTypes,
		Scopes: c.Scopes, ApplicationType: c.ApplicationType,
		TokenEndpointAuthMethod: c.TokenEndpointAuthMethod, SecretHash: c.SecretHash,
		Metadata: c.Metadata, CreatedAt: c.CreatedAt, LastUsed: c.LastUsed, ExpiresAt: c.ExpiresAt,
		FreshUntil: c.FreshUntil.UTC(),
	})
}

func decodeOAuthClient(id string, b []byte) (OAuthClient, error) {
	r, err := decodeRecord[oauthClientRecord]("OAuth client", b)
	if err != nil {
		return OAuthClient{}, err
	}
	return OAuthClient{ID: id, Kind: r.Kind, Name: r.Name, URI: r.URI, LogoURI: r.LogoURI,
		RedirectURIs: r.RedirectURIs, GrantTypes: r.GrantTypes, ResponseTypes: r.ResponseTypes,
		Scopes: r.Scopes, ApplicationType: r.ApplicationType,
		TokenEndpointAuthMethod: r.TokenEndpointAuthMethod, SecretHash: r.SecretHash,
		Metadata: r.Metadata, CreatedAt: r.CreatedAt, LastUsed: r.LastUsed, ExpiresAt: r.ExpiresAt,
		FreshUntil: r.FreshUntil}, nil
}
