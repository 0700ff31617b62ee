package oauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/toolgate/toolgate/data"
)

// clientManager is fosite's ClientManager: clients from configuration, from the database
// (registered ones and cached metadata documents), and from metadata documents fetched on
// first sight.
type clientManager struct {
	store  Store
	scopes []string
	static map[string]fosite.Client
	docs   *MetadataDocuments // nil: metadata documents disabled
}

// client is a fosite client that remembers what toolgate knows about it beyond fosite's view.
type client struct {
	*fosite.DefaultOpenIDConnectClient
	kind string
	name string
}

func clientKind(c fosite.Client) string {
	if tc, ok := c.(*client); ok {
		return tc.kind
	}
	return ""
}

// ClientName is the name a client gave itself, or its id.
func ClientName(c fosite.Client) string {
	if tc, ok := c.(*client); ok && tc.name != "" {
		return tc.name
	}
	return c.GetID()
}

type redirectKey struct{}

// withRequestedRedirect tells GetClient which redirect URI the authorization request names, so
// that a registered http://localhost/cb can match http://localhost:PORT/cb (RFC 8252 §7.3).
// fosite already matches 127.0.0.1 and [::1] on any port, but not localhost.
func withRequestedRedirect(ctx context.Context, uri string) context.Context {
	return context.WithValue(ctx, redirectKey{}, uri)
}

// GetClient implements fosite.ClientManager.
func (m *clientManager) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := m.getClient(ctx, id)
	if err != nil {
		return nil, err
	}
	if want, ok := ctx.Value(redirectKey{}).(string); ok && want != "" {
		c = withLoopbackRedirect(c, want)
	}
	return c, nil
}

func (m *clientManager) getClient(ctx context.Context, id string) (fosite.Client, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: no client_id", fosite.ErrNotFound)
	}
	if c, ok := m.static[id]; ok {
		return c, nil
	}
	if IsMetadataDocumentID(id) {
		if m.docs == nil {
			return nil, fmt.Errorf("%w: client metadata documents are disabled on this server", fosite.ErrNotFound)
		}
		rec, err := m.docs.Client(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", fosite.ErrNotFound, err)
		}
		return recordClient(rec, m.scopes), nil
	}
	rec, err := m.store.GetOAuthClient(ctx, id)
	if errors.Is(err, data.ErrNotFound) {
		return nil, fmt.Errorf("%w: unknown client %q", fosite.ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	if rec.Kind == data.ClientMetadataDocument {
		// A cached document under a non-URL id cannot happen; refuse rather than trust it.
		return nil, fmt.Errorf("%w: unknown client %q", fosite.ErrNotFound, id)
	}
	return recordClient(rec, m.scopes), nil
}

func recordClient(rec data.OAuthClient, scopes []string) fosite.Client {
	method := rec.TokenEndpointAuthMethod
	if method == "" {
		method = "none"
	}
	public := method == "none"
	grants := rec.GrantTypes
	if len(grants) == 0 {
		grants = []string{"authorization_code", "refresh_token"}
	}
	responses := rec.ResponseTypes
	if len(responses) == 0 {
		responses = []string{"code"}
	}
	// Every client may ask for every scope the server offers: consent decides what is
	// granted, and a client registered with the initial scopes must still be able to step up.
	cs := slices.Clone(scopes)
	var secret []byte
	if !public {
		secret = []byte(rec.SecretHash)
	}
	return &client{
		DefaultOpenIDConnectClient: &fosite.DefaultOpenIDConnectClient{
			DefaultClient: &fosite.DefaultClient{
				ID: rec.ID, Secret: secret, RedirectURIs: slices.Clone(rec.RedirectURIs),
				GrantTypes: grants, ResponseTypes: responses, Scopes: cs, Public: public,
			},
			TokenEndpointAuthMethod: method,
		},
		kind: rec.Kind,
		name: rec.Name,
	}
}

func staticClient(c StaticClient, scopes []string) (fosite.Client, error) {
	if c.ID == "" {
		return nil, errors.New("oauth: a configured client needs an id")
	}
	if len(c.RedirectURIs) == 0 {
		return nil, fmt.Errorf("oauth: configured client %q needs at least one redirect URI", c.ID)
	}
	for _, u := range c.RedirectURIs {
		if err := checkStaticRedirect(u); err != nil {
			return nil, fmt.Errorf("oauth: configured client %q: %w", c.ID, err)
		}
	}
	method := "none"
	if c.SecretHash != "" {
		method = "client_secret_basic"
	}
	return recordClient(data.OAuthClient{
		ID: c.ID, Kind: data.ClientStatic, Name: c.Name, RedirectURIs: c.RedirectURIs,
		TokenEndpointAuthMethod: method, SecretHash: c.SecretHash,
	}, scopes), nil
}

func checkStaticRedirect(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Fragment != "" {
		return fmt.Errorf("redirect URI %q is not an absolute URI without fragment", raw)
	}
	if u.Scheme == "http" && !isLoopbackRedirectHost(u.Hostname()) {
		return fmt.Errorf("redirect URI %q: http is allowed only for loopback", raw)
	}
	return nil
}

// withLoopbackRedirect returns c with want added to its redirect URIs when want is a loopback
// http URI that equals a registered one except for the port. Otherwise c is returned as is and
// fosite's exact match decides.
func withLoopbackRedirect(c fosite.Client, want string) fosite.Client {
	w, err := url.Parse(want)
	if err != nil || w.Scheme != "http" || !isLoopbackRedirectHost(w.Hostname()) {
		return c
	}
	for _, reg := range c.GetRedirectURIs() {
		if reg == want {
			return c
		}
	}
	for _, reg := range c.GetRedirectURIs() {
		r, err := url.Parse(reg)
		if err != nil || r.Scheme != "http" || !strings.EqualFold(r.Hostname(), w.Hostname()) {
			continue
		}
		if r.EscapedPath() == w.EscapedPath() && r.RawQuery == w.RawQuery && r.User == nil && w.User == nil {
			tc, ok := c.(*client)
			if !ok {
				return c
			}
			cp := *tc.DefaultOpenIDConnectClient
			dc := *cp.DefaultClient
			dc.RedirectURIs = append(slices.Clone(dc.RedirectURIs), want)
			cp.DefaultClient = &dc
			return &client{DefaultOpenIDConnectClient: &cp, kind: tc.kind, name: tc.name}
		}
	}
	return c
}

func isLoopbackRedirectHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// ClientAssertionJWTValid is part of fosite.ClientManager, for private_key_jwt client
// authentication, which no toolgate client uses: their token endpoint methods are none and
// client secrets. It is never reached; it says every assertion id is unused.
func (m *clientManager) ClientAssertionJWTValid(context.Context, string) error { return nil }

// SetClientAssertionJWT is the other half of the above: nothing to remember.
func (m *clientManager) SetClientAssertionJWT(context.Context, string, time.Time) error {
	return nil
}
