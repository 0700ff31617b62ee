package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/data"
)

// RegistrationConfig configures [NewRegistration].
type RegistrationConfig struct {
	// Clients stores the registered clients. Required.
	Clients ClientRecords
	// Scopes are every scope the server offers. A registration may ask for a subset; every
	// registered client may request all of them, and the response says so. Required.
	Scopes []string
	// Hasher hashes confidential clients' secrets before they are stored. Default
	// &fosite.BCrypt{Config: &fosite.Config{}} (bcrypt, cost 12), which is what fosite
	// compares them with at the token endpoint.
	Hasher fosite.Hasher
	// UnusedTTL is how long a client that never obtains a token is kept. Clients register
	// freely (claude.ai registers twice per connection), so the ones that never finish an
	// authorization must go away by themselves. Default 24h.
	UnusedTTL time.Duration
	// RatePerMinute is how many registrations one client IP (IPv6: one /64) may make per
	// minute, with a burst of the same size; past it the endpoint answers 429 with
	// Retry-After. Default 10; negative: no limit.
	RatePerMinute int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives one line per registration (never a secret). Default: discard.
	Logger *slog.Logger
	// Audit receives a "client_registered" record per registration. Default nil.
	Audit AuditSink
}

// NewRegistration returns the RFC 7591 dynamic client registration endpoint. It accepts POST
// with a JSON body of client metadata and answers 201 with the registered metadata, the new
// client_id and, for a confidential client, its secret — the only time the secret is shown.
func NewRegistration(cfg RegistrationConfig) (http.Handler, error) {
	if cfg.Clients == nil {
		return nil, errors.New("oauth: RegistrationConfig.Clients is required")
	}
	if len(cfg.Scopes) == 0 {
		return nil, errors.New("oauth: RegistrationConfig.Scopes is required")
	}
	if cfg.Hasher == nil {
		cfg.Hasher = &fosite.BCrypt{Config: &fosite.Config{}}
	}
	if cfg.UnusedTTL <= 0 {
		cfg.UnusedTTL = 24 * time.Hour
	}
	if cfg.RatePerMinute == 0 {
		cfg.RatePerMinute = 10
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &registration{cfg: cfg}
	if cfg.RatePerMinute > 0 {
		h.limits = authz.NewRateLimiter(float64(cfg.RatePerMinute)/60, cfg.RatePerMinute, maxLimiterEntries)
	}
	return h, nil
}

type registration struct {
	cfg    RegistrationConfig
	limits *authz.RateLimiter // nil: no limit
}

// registrationResponse is the RFC 7591 §3.2.1 response: the registered metadata plus what the
// server assigned. Fields here shadow the embedded ones of the same name.
type registrationResponse struct {
	ClientMetadata
	ClientID         string `json:"client_id"`
	ClientIDIssuedAt int64  `json:"client_id_issued_at"`
	// Scope is every scope the client may request, not only the ones it asked for.
	Scope                 string `json:"scope"`
	ClientSecret          string `json:"client_secret,omitempty"`
	ClientSecretExpiresAt *int64 `json:"client_secret_expires_at,omitempty"`
}

func (h *registration) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeRegistrationError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST to register a client")
		return
	}
	now := h.cfg.Now()
	ip := remoteIP(r)
	if h.limits != nil {
		if ok, wait := h.limits.Allow(limiterKey(ip), now); !ok {
			secs := int(math.Ceil(wait.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			writeRegistrationError(w, http.StatusTooManyRequests, "temporarily_unavailable", "too many registrations from this address; retry later")
			return
		}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeRegistrationError(w, http.StatusBadRequest, errInvalidClientMetadata, "the request body must be JSON client metadata with Content-Type: application/json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxMetadataBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeRegistrationError(w, http.StatusRequestEntityTooLarge, errInvalidClientMetadata, fmt.Sprintf("client metadata is larger than %d bytes", MaxMetadataBytes))
			return
		}
		writeRegistrationError(w, http.StatusBadRequest, errInvalidClientMetadata, "reading the request body failed")
		return
	}
	md, err := ParseClientMetadata(body)
	if err == nil {
		// Clients do not choose their ids; a client_id (or client_secret, which
		// ParseClientMetadata does not keep) in the request is ignored.
		md.ClientID = ""
		err = md.Normalize(h.cfg.Scopes)
	}
	if err != nil {
		var me *MetadataError
		if !errors.As(err, &me) {
			me = &MetadataError{Code: errInvalidClientMetadata, Description: err.Error()}
		}
		writeRegistrationError(w, http.StatusBadRequest, me.Code, me.Description)
		return
	}

	resp, rec, err := h.register(r.Context(), md, now)
	if err != nil {
		h.cfg.Logger.Error("oauth: client registration failed", "remote_ip", ip, "err", err)
		writeRegistrationError(w, http.StatusInternalServerError, "server_error", "the client could not be registered; try again")
		return
	}
	h.cfg.Logger.Info("oauth: client registered", "client_id", rec.ID, "client_name", md.ClientName,
		"redirect_hosts", redirectHosts(md.RedirectURIs), "auth_method", md.TokenEndpointAuthMethod,
		"remote_ip", ip)
	if h.cfg.Audit != nil {
		h.cfg.Audit.Append(data.AuditRecord{Kind: "client_registered", Client: rec.ID, ClientName: md.ClientName,
			SourceIP: ip, Detail: "redirects to " + strings.Join(redirectHosts(md.RedirectURIs), ", ")})
	}

	b, err := json.Marshal(resp)
	if err != nil {
		writeRegistrationError(w, http.StatusInternalServerError, "server_error", "encoding the response failed")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusCreated)
	w.Write(b)
}

// register creates and stores the client for normalized metadata.
func (h *registration) register(ctx context.Context, md ClientMetadata, now time.Time) (registrationResponse, data.OAuthClient, error) {
	id, err := randomToken(16)
	if err != nil {
		return registrationResponse{}, data.OAuthClient{}, err
	}
	id = "tgc_" + id
	rec := md.Record(id, data.ClientDynamic, now, h.cfg.Scopes)
	rec.ExpiresAt = now.Add(h.cfg.UnusedTTL)
	resp := registrationResponse{
		ClientMetadata:   md,
		ClientID:         id,
		ClientIDIssuedAt: now.Unix(),
		Scope:            strings.Join(h.cfg.Scopes, " "),
	}
	if md.TokenEndpointAuthMethod != authMethodNone {
		secret, err := randomToken(32)
		if err != nil {
			return registrationResponse{}, data.OAuthClient{}, err
		}
		hash, err := h.cfg.Hasher.Hash(ctx, []byte(secret))
		if err != nil {
			return registrationResponse{}, data.OAuthClient{}, fmt.Errorf("hashing the client secret: %w", err)
		}
		rec.SecretHash = string(hash)
		resp.ClientSecret = secret
		never := int64(0)
		resp.ClientSecretExpiresAt = &never
	}
	stored, err := h.cfg.Clients.PutOAuthClient(ctx, rec)
	if err != nil {
		return registrationResponse{}, data.OAuthClient{}, fmt.Errorf("storing client %s: %w", id, err)
	}
	return resp, stored, nil
}

// randomToken returns n random bytes, base64url-encoded without padding.
func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// writeRegistrationError writes an RFC 7591 §3.2.2 error response.
func writeRegistrationError(w http.ResponseWriter, status int, code, description string) {
	b, _ := json.Marshal(struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description,omitempty"`
	}{code, cleanDescription(description)})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
}

// remoteIP is the client address of r: the host part of RemoteAddr, which the server (or a
// trusted proxy middleware in front of this handler) sets.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limiterKey is the rate limit bucket for ip (see authz.AddrKey).
func limiterKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	return authz.AddrKey(a)
}

// maxLimiterEntries bounds the rate limiter's table (see authz.RateLimiter).
const maxLimiterEntries = 10000
