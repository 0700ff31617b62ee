package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"
	"go.yaml.in/yaml/v3"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/web"
)

// validateOAuth checks the tunnel-auth and oauth-* settings.
func (s *settings) validateOAuth(bad func(name, format string, a ...any)) {
	if len(s.OAuthScopes) == 0 {
		s.OAuthScopes = stringList{"mcp"}
	}
	switch s.TunnelAuth {
	case "oauth", "none":
	default:
		bad("tunnel-auth", "%q is neither oauth nor none", s.TunnelAuth)
	}
	for _, sc := range s.OAuthScopes {
		if !validScope(sc) {
			bad("oauth-scopes", "%q is not a scope (printable ASCII without spaces, quotes or backslashes)", sc)
		}
	}
	if _, err := parseMethodScopes(s.OAuthMethodScopes); err != nil {
		bad("oauth-method-scopes", "%v", err)
	}
	if s.MaxAuthAge <= 0 {
		bad("max-auth-age", "must be positive")
	}
	if s.MaxBody < 1024 {
		bad("max-body", "must be at least 1024 bytes")
	}
	for name, d := range map[string]bool{
		"oauth-access-token-ttl": s.OAuthAccessTokenTTL > 0, "oauth-refresh-token-ttl": s.OAuthRefreshTokenTTL > 0,
		"oauth-refresh-grace": s.OAuthRefreshGrace >= 0, "oauth-registrations-per-minute": s.OAuthRegistrationPerMin > 0,
	} {
		if !d {
			bad(name, "must be positive")
		}
	}
}

// validScope is RFC 6749's scope-token syntax, minus what would break a WWW-Authenticate
// header's quoted string.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// parseMethodScopes reads METHOD=SCOPE[ SCOPE…] entries.
func parseMethodScopes(entries []string) (map[string][]string, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	out := make(map[string][]string, len(entries))
	for _, e := range entries {
		method, scopes, ok := strings.Cut(e, "=")
		method = strings.TrimSpace(method)
		if !ok || method == "" || len(strings.Fields(scopes)) == 0 {
			return nil, fmt.Errorf("%q is not METHOD=SCOPE", e)
		}
		for _, sc := range strings.Fields(scopes) {
			if !validScope(sc) {
				return nil, fmt.Errorf("%q: %q is not a scope", e, sc)
			}
			out[method] = append(out[method], sc)
		}
	}
	return out, nil
}

// clientsFileEntry is one pre-registered client in oauth-clients-file.
type clientsFileEntry struct {
	ID           string   `yaml:"id"`
	Name         string   `yaml:"name"`
	RedirectURIs []string `yaml:"redirect_uris"`
	Secret       string   `yaml:"secret"`
}

// loadClientsFile reads oauth-clients-file. Secrets are references (env:NAME, file:PATH) and
// are hashed here, so the server never holds them in the clear after start.
func loadClientsFile(path string, env func(string) (string, bool)) ([]oauth.StaticClient, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("setting oauth-clients-file: %w", err)
	}
	var entries []clientsFileEntry
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&entries); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("setting oauth-clients-file: %s: %w", path, err)
	}
	hasher := &fosite.BCrypt{Config: &fosite.Config{}}
	seen := map[string]bool{}
	var out []oauth.StaticClient
	for i, e := range entries {
		where := fmt.Sprintf("setting oauth-clients-file: %s: client %d", path, i+1)
		if e.ID == "" {
			return nil, fmt.Errorf("%s: id is required", where)
		}
		if seen[e.ID] {
			return nil, fmt.Errorf("%s: id %q appears twice", where, e.ID)
		}
		seen[e.ID] = true
		c := oauth.StaticClient{ID: e.ID, Name: e.Name, RedirectURIs: e.RedirectURIs}
		if e.Secret != "" {
			secret, literal, err := resolveSecret("oauth-clients-file "+e.ID+" secret", e.Secret, env, os.ReadFile)
			if err != nil {
				return nil, err
			}
			if literal {
				return nil, fmt.Errorf("%s: give the secret as env:NAME or file:PATH, not in the file", where)
			}
			h, err := hasher.Hash(context.Background(), []byte(secret))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			c.SecretHash = string(h)
		}
		out = append(out, c)
	}
	return out, nil
}

// newOAuth sets up the authorization server; it needs the identity parts and the registry.
func (srv *server) newOAuth(ctx context.Context) error {
	s := srv.s
	if s.TunnelAuth == "none" {
		srv.log.Warn("tunnel-auth is none: every tunnel is open to anyone who knows its URL")
		return nil
	}
	secret, err := oauth.LoadSecret(ctx, srv.store)
	if err != nil {
		return err
	}
	clients, err := loadClientsFile(s.OAuthClientsFile, os.LookupEnv)
	if err != nil {
		return err
	}
	srv.methodScopes, _ = parseMethodScopes(s.OAuthMethodScopes)
	scopes := []string(s.OAuthScopes)
	all := slices.Clone(scopes)
	for _, extra := range srv.methodScopes {
		for _, sc := range extra {
			if !slices.Contains(all, sc) {
				all = append(all, sc)
			}
		}
	}
	if srv.policies, err = loadPolicy(s.Policy, authz.DefaultPolicy(s.MaxAuthAge), srv.log); err != nil {
		return err
	}
	srv.policies.audit = srv.audit
	srv.resources = web.TunnelResources{
		Tunnels: srv.reg, TunnelDomain: s.TunnelDomain, Port: fmt.Sprint(srv.publicHTTPSPort()),
		Policy: srv.policies, Users: srv.store, Shares: srv.store,
	}
	srv.oauth, err = oauth.New(oauth.Config{
		Issuer:    srv.publicURL(s.Domain),
		Store:     srv.store,
		Secret:    secret,
		Resources: srv.resources,
		Scopes:    all, DefaultScopes: scopes,
		DynamicRegistration: s.OAuthRegistration, RegistrationRate: s.OAuthRegistrationPerMin,
		MetadataDocuments:   s.OAuthMetadataDocuments,
		Outbound:            oauth.OutboundConfig{AllowPrivate: s.OAuthPrivateDocuments},
		Clients:             clients,
		AccessTokenLifetime: s.OAuthAccessTokenTTL, RefreshTokenLifetime: s.OAuthRefreshTokenTTL,
		RefreshGrace: graceSetting(s.OAuthRefreshGrace),
		Logger:       srv.log,
		Audit:        srv.audit,
	})
	return err
}

// graceSetting maps the setting's 0 ("disabled") to the config's negative.
func graceSetting(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
