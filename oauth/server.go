package oauth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/toolgate/toolgate/data"
)

// Endpoint paths on the issuer's origin.
const (
	AuthorizePath    = "/oauth/authorize"
	TokenPath        = "/oauth/token"
	RegisterPath     = "/oauth/register"
	RevokePath       = "/oauth/revoke"
	MetadataPath     = "/.well-known/oauth-authorization-server"
	OpenIDConfigPath = "/.well-known/openid-configuration"
	// ResourceMetadataPath is RFC 9728's well-known prefix on every tunnel's origin.
	ResourceMetadataPath = "/.well-known/oauth-protected-resource"
)

// ScopeOfflineAccess is accepted (and granted as a no-op) for clients that ask for it out of
// habit; refresh tokens are issued without it.
const ScopeOfflineAccess = "offline_access"

// Resources says which resource URLs exist. The web front implements it over the tunnel
// registry: a resource is https://NAME.TUNNEL-DOMAIN[:PORT][/PATH] for a name someone holds.
type Resources interface {
	// Known reports whether origin ("https://host[:port]", lower case, no path) is the origin
	// of a tunnel or route that exists, live or not.
	Known(ctx context.Context, origin string) bool
	// Only returns the origin of the one resource that exists, when there is exactly one; an
	// authorization request without a resource parameter is bound to it.
	Only(ctx context.Context) (origin string, ok bool)
}

// Store is what the server keeps in the database. *data.Store implements it.
type Store interface {
	ClientRecords
	TouchOAuthClient(ctx context.Context, id string, lastUsed, expiresAt time.Time) error
	OAuthTokens(clients data.ClientSource) *data.OAuthTokens
	GetOAuthConsent(ctx context.Context, userID, clientID, resource string) (data.OAuthConsent, error)
	PutOAuthConsent(ctx context.Context, c data.OAuthConsent) (data.OAuthConsent, error)
	GetUser(ctx context.Context, id string) (data.User, error)
	// OAuthGeneration changes whenever an access token may have ended early; see
	// data.Store.OAuthGeneration.
	OAuthGeneration() uint64
}

// StaticClient is a client the operator registers in configuration.
type StaticClient struct {
	ID           string
	Name         string
	RedirectURIs []string
	// SecretHash is the bcrypt hash of a confidential client's secret; empty for a public
	// client.
	SecretHash string
}

// Config configures a [Server]. Fields are read once, by [New].
type Config struct {
	// Issuer is https://D (with :PORT when not 443), exactly as it appears in metadata, in the
	// iss response parameter and in protected resource metadata. No trailing slash. Required.
	Issuer string
	// Store holds clients, tokens and consents. Required.
	Store Store
	// Secret is the HMAC key tokens are signed with, at least 32 bytes. Required; see
	// [LoadSecret].
	Secret []byte
	// Resources validates resource parameters. Required.
	Resources Resources

	// Scopes are the scopes clients may ask for (besides offline_access). Default ["mcp"].
	Scopes []string
	// DefaultScopes are granted when a request names none, and are what protected resource
	// metadata and 401 challenges advertise. Default ["mcp"].
	DefaultScopes []string

	// DynamicRegistration enables RFC 7591 registration at RegisterPath. Default false here;
	// toolgate's configuration turns it on by default.
	DynamicRegistration bool
	// RegistrationRate is registrations per client IP per minute. Default 10.
	RegistrationRate int
	// MetadataDocuments enables clients identified by an https URL (Client ID Metadata
	// Documents). Default false here, on in toolgate's configuration.
	MetadataDocuments bool
	// Outbound guards the fetches of metadata documents. Default: public addresses only.
	Outbound OutboundConfig
	// Clients are registered by the operator. Default none.
	Clients []StaticClient

	// AccessTokenLifetime default 1h; RefreshTokenLifetime default 30 days; CodeLifetime
	// default 10 minutes.
	AccessTokenLifetime, RefreshTokenLifetime, CodeLifetime time.Duration
	// RefreshGrace is how long after a refresh token is used a second use (a client racing
	// itself) gets the same new tokens instead of revoking the family. Default 30s; negative
	// disables the grace.
	RefreshGrace time.Duration
	// StepUpRefreshWindow is how long after a step-up challenge (see [Server.StepUpIssued]) a
	// refresh of the challenged grant is refused with invalid_grant, so that the client
	// authorizes again rather than refreshing into the same challenge. Default 10 minutes:
	// long enough for a client's immediate retry and its user's detour through the browser,
	// short enough that a client ignoring the challenge soon refreshes as before. Negative
	// disables the refusal.
	StepUpRefreshWindow time.Duration
	// UnusedClientTTL is how long a registered client that never obtained a token is kept;
	// IdleClientTTL how long one that did is kept after its last token. Defaults 24h and 90
	// days.
	UnusedClientTTL, IdleClientTTL time.Duration

	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives one line per issued, refreshed and revoked token (never a token).
	// Default: discard.
	Logger *slog.Logger
	// Audit receives a record per registration, approval, and issued, refreshed and revoked
	// token. Default nil: none.
	Audit AuditSink
}

// AuditSink takes audit records without blocking. *data.AuditLog implements it.
type AuditSink interface {
	Append(r data.AuditRecord)
}

// Server is the authorization server. Its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	provider fosite.OAuth2Provider
	fcfg     *fosite.Config
	strategy *oauth2.HMACSHAStrategy
	tokens   *data.OAuthTokens
	clients  *clientManager
	docs     *MetadataDocuments // nil unless MetadataDocuments
	register http.Handler       // nil unless DynamicRegistration
	log      *slog.Logger

	refreshLocks keyedMutex
	stepUps      stepUpMarks
	accessCache  *accessCache
	touchMu      sync.Mutex
	touched      map[string]time.Time // client id → last TouchOAuthClient
}

// storage is what fosite's handlers get: the client manager plus the token store.
type storage struct {
	*clientManager
	*data.OAuthTokens
}

var _ fosite.ClientManager = storage{}

// New returns a server; call its Handler for the endpoints.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("oauth: Config.Issuer is required")
	case cfg.Store == nil:
		return nil, errors.New("oauth: Config.Store is required")
	case len(cfg.Secret) < 32:
		return nil, errors.New("oauth: Config.Secret must be at least 32 bytes")
	case cfg.Resources == nil:
		return nil, errors.New("oauth: Config.Resources is required")
	}
	if u, err := url.Parse(cfg.Issuer); err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" || u.RawQuery != "" {
		return nil, fmt.Errorf("oauth: issuer %q must be https://HOST[:PORT] with no path", cfg.Issuer)
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"mcp"}
	}
	if len(cfg.DefaultScopes) == 0 {
		cfg.DefaultScopes = []string{"mcp"}
	}
	for _, s := range cfg.DefaultScopes {
		if !slices.Contains(cfg.Scopes, s) {
			cfg.Scopes = append(cfg.Scopes, s)
		}
	}
	defaultDuration(&cfg.AccessTokenLifetime, time.Hour)
	defaultDuration(&cfg.RefreshTokenLifetime, 30*24*time.Hour)
	defaultDuration(&cfg.CodeLifetime, 10*time.Minute)
	if cfg.RefreshGrace == 0 {
		cfg.RefreshGrace = 30 * time.Second
	}
	if cfg.StepUpRefreshWindow == 0 {
		cfg.StepUpRefreshWindow = 10 * time.Minute
	}
	defaultDuration(&cfg.UnusedClientTTL, 24*time.Hour)
	defaultDuration(&cfg.IdleClientTTL, 90*24*time.Hour)
	if cfg.RegistrationRate <= 0 {
		cfg.RegistrationRate = 10
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	s := &Server{cfg: cfg, log: cfg.Logger, touched: make(map[string]time.Time), accessCache: newAccessCache(10000)}
	allScopes := s.clientScopes()
	s.clients = &clientManager{store: cfg.Store, scopes: allScopes, static: make(map[string]fosite.Client)}
	for _, c := range cfg.Clients {
		fc, err := staticClient(c, allScopes)
		if err != nil {
			return nil, err
		}
		s.clients.static[c.ID] = fc
	}
	if cfg.MetadataDocuments {
		docs, err := NewMetadataDocuments(MetadataDocumentsConfig{
			Clients: cfg.Store, Scopes: allScopes, Outbound: cfg.Outbound, UnusedTTL: cfg.UnusedClientTTL,
			Now: cfg.Now, Logger: cfg.Logger,
		})
		if err != nil {
			return nil, err
		}
		s.docs = docs
		s.clients.docs = docs
	}

	s.fcfg = &fosite.Config{
		GlobalSecret:                   cfg.Secret[:32],
		AccessTokenLifespan:            cfg.AccessTokenLifetime,
		RefreshTokenLifespan:           cfg.RefreshTokenLifetime,
		AuthorizeCodeLifespan:          cfg.CodeLifetime,
		EnforcePKCE:                    true,
		EnablePKCEPlainChallengeMethod: false,
		ScopeStrategy:                  fosite.ExactScopeStrategy,
		// Audiences are RFC 8707 resources, validated against live tunnels by this package
		// before fosite sees them; clients do not list them (a client may use any tunnel its
		// user approves). fosite's own "audience" parameter is refused at the endpoints.
		AudienceMatchingStrategy: func([]string, []string) error { return nil },
		// Refresh tokens for every grant: MCP clients rarely ask for offline_access, and a
		// client without one has to send its user through consent every hour.
		RefreshTokenScopes: []string{},
		AccessTokenIssuer:  cfg.Issuer,
		TokenURL:           cfg.Issuer + TokenPath,
	}
	s.strategy = compose.NewOAuth2HMACStrategy(s.fcfg)
	s.tokens = cfg.Store.OAuthTokens(s.clients)
	s.provider = compose.Compose(s.fcfg, storage{s.clients, s.tokens}, s.strategy,
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2PKCEFactory, // after the authorize code handler, as fosite requires
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
	)
	if cfg.DynamicRegistration {
		h, err := NewRegistration(RegistrationConfig{
			Clients: cfg.Store, Scopes: allScopes, UnusedTTL: cfg.UnusedClientTTL,
			RatePerMinute: cfg.RegistrationRate, Now: cfg.Now, Logger: cfg.Logger, Audit: cfg.Audit,
		})
		if err != nil {
			return nil, err
		}
		s.register = h
	}
	return s, nil
}

// Issuer returns the issuer identifier.
func (s *Server) Issuer() string { return s.cfg.Issuer }

// DefaultScopes returns the scopes a client gets when it asks for none.
func (s *Server) DefaultScopes() []string { return slices.Clone(s.cfg.DefaultScopes) }

// clientScopes is every scope a client may request.
func (s *Server) clientScopes() []string {
	return append(slices.Clone(s.cfg.Scopes), ScopeOfflineAccess)
}

// LoadSecret returns the token signing key stored in the database, creating it on first use.
func LoadSecret(ctx context.Context, st interface {
	LoadOrCreateSecret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error)
}) ([]byte, error) {
	return st.LoadOrCreateSecret(ctx, "oauth-hmac-key", func() ([]byte, error) {
		b := make([]byte, 32)
		_, err := io.ReadFull(rand.Reader, b)
		return b, err
	})
}

// touchClient records that a client obtained a token, pushing its expiry out. It writes at
// most once an hour per client: a client refreshing every few minutes does not need a write
// each time to stay alive for 90 days.
func (s *Server) touchClient(ctx context.Context, c fosite.Client) {
	kind := clientKind(c)
	if kind != data.ClientDynamic && kind != data.ClientMetadataDocument {
		return // static clients never expire
	}
	now := s.cfg.Now()
	s.touchMu.Lock()
	last, ok := s.touched[c.GetID()]
	if ok && now.Sub(last) < time.Hour {
		s.touchMu.Unlock()
		return
	}
	s.touched[c.GetID()] = now
	if len(s.touched) > 10000 {
		for id, at := range s.touched {
			if now.Sub(at) >= time.Hour {
				delete(s.touched, id)
			}
		}
	}
	s.touchMu.Unlock()
	if err := s.cfg.Store.TouchOAuthClient(ctx, c.GetID(), now, now.Add(s.cfg.IdleClientTTL)); err != nil && !errors.Is(err, data.ErrNotFound) {
		s.log.Warn("oauth: recording client use failed", "client_id", c.GetID(), "err", err)
	}
}

// audit appends an event record, with the user's email for their id when there is one.
func (s *Server) audit(ctx context.Context, r data.AuditRecord, userID string) {
	if s.cfg.Audit == nil {
		return
	}
	r.User = userID
	if userID != "" {
		if u, err := s.cfg.Store.GetUser(ctx, userID); err == nil && u.Email != "" {
			r.User = u.Email
		}
	}
	s.cfg.Audit.Append(r)
}

func defaultDuration(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// keyedMutex serialises work per key (a refresh token's signature): the second of two
// concurrent refreshes of one token waits for the first and then sees its result.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = make(map[string]*keyedLock)
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
