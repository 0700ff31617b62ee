package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/toolgate/toolgate/data"
)

// ErrMetadataDocument is wrapped by every error of [MetadataDocuments.Client] that is about
// the document or its URL, as opposed to toolgate's own storage: the authorization endpoint
// shows such an error to the user, whose client it is.
var ErrMetadataDocument = errors.New("client metadata document")

// MetadataDocumentsConfig configures [NewMetadataDocuments].
type MetadataDocumentsConfig struct {
	// Clients is where fetched documents are cached, as records of kind
	// data.ClientMetadataDocument: the cache survives restarts and is shared by every
	// handler. Required.
	Clients ClientRecords
	// Scopes are all the scopes the server offers; a document asking for others is refused,
	// and every document client may request all of them. Required.
	Scopes []string
	// Outbound guards the fetches. Default: public addresses only, 5s, 16 KiB.
	Outbound OutboundConfig
	// MinTTL, MaxTTL and DefaultTTL bound how long a fetched document is used before it is
	// fetched again. The lifetime comes from the response's Cache-Control max-age or Expires,
	// clamped to [MinTTL, MaxTTL]; no-store and no-cache give MinTTL (toolgate must keep
	// the record to issue tokens at all, and refetching on every request would let a
	// document's host see every authorization); neither header gives DefaultTTL. Defaults 5
	// minutes, 24 hours and 1 hour.
	MinTTL, MaxTTL, DefaultTTL time.Duration
	// UnusedTTL is how long a document's client is kept when no token is issued to it; the
	// server pushes it out with each use, as for registered clients. Default 24h.
	UnusedTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives one line per fetch. Default: discard.
	Logger *slog.Logger
}

// MetadataDocuments resolves Client ID Metadata Documents: clients whose client_id is an https
// URL that serves their metadata. Its methods are safe for concurrent use.
type MetadataDocuments struct {
	cfg   MetadataDocumentsConfig
	http  *http.Client
	group singleflight.Group
}

// NewMetadataDocuments returns a resolver for metadata documents.
func NewMetadataDocuments(cfg MetadataDocumentsConfig) (*MetadataDocuments, error) {
	if cfg.Clients == nil {
		return nil, errors.New("oauth: MetadataDocumentsConfig.Clients is required")
	}
	if len(cfg.Scopes) == 0 {
		return nil, errors.New("oauth: MetadataDocumentsConfig.Scopes is required")
	}
	if cfg.MinTTL <= 0 {
		cfg.MinTTL = 5 * time.Minute
	}
	if cfg.UnusedTTL <= 0 {
		cfg.UnusedTTL = 24 * time.Hour
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = 24 * time.Hour
	}
	if cfg.DefaultTTL <= 0 {
		cfg.DefaultTTL = time.Hour
	}
	if cfg.MinTTL > cfg.MaxTTL {
		return nil, fmt.Errorf("oauth: MetadataDocumentsConfig.MinTTL %v is longer than MaxTTL %v", cfg.MinTTL, cfg.MaxTTL)
	}
	cfg.DefaultTTL = min(max(cfg.DefaultTTL, cfg.MinTTL), cfg.MaxTTL)
	cfg.Outbound.setDefaults()
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &MetadataDocuments{cfg: cfg, http: newOutboundClient(cfg.Outbound)}, nil
}

// IsMetadataDocumentID reports whether clientID has the shape of a metadata document URL (an
// https URL with a path other than "/"), and so should be resolved by fetching it rather than
// looked up as a registered id. [MetadataDocuments.Client] checks the rest.
func IsMetadataDocumentID(clientID string) bool {
	if !strings.HasPrefix(clientID, "https://") {
		return false
	}
	u, err := url.Parse(clientID)
	return err == nil && u.Host != "" && u.Path != "" && u.Path != "/"
}

// Client returns the client identified by the metadata document at clientID: the cached
// record while it is fresh, else the document fetched, validated and cached anew. Concurrent
// calls for one URL share one fetch.
//
// Errors about the URL or the document wrap [ErrMetadataDocument] (and, for invalid metadata,
// a [*MetadataError]) and read like "client metadata document https://x/y: 10.0.0.1 is a
// private address"; a failure of the store is returned wrapped but without it.
func (m *MetadataDocuments) Client(ctx context.Context, clientID string) (data.OAuthClient, error) {
	if err := m.checkID(clientID); err != nil {
		return data.OAuthClient{}, docError(clientID, err)
	}
	rec, fresh, err := m.cached(ctx, clientID)
	if err != nil || fresh {
		return rec, err
	}
	// The shared fetch must not die with the first caller's request; the client's Timeout
	// bounds it instead.
	shared := context.WithoutCancel(ctx)
	ch := m.group.DoChan(clientID, func() (any, error) { return m.refresh(shared, clientID) })
	select {
	case <-ctx.Done():
		return data.OAuthClient{}, fmt.Errorf("client metadata document %s: %w", quoteIfNeeded(clientID), ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			return data.OAuthClient{}, r.Err
		}
		return r.Val.(data.OAuthClient), nil
	}
}

// cached looks clientID up in the store. fresh reports a usable cached record; rec is returned
// even when stale, for its CreatedAt.
func (m *MetadataDocuments) cached(ctx context.Context, clientID string) (rec data.OAuthClient, fresh bool, err error) {
	rec, err = m.cfg.Clients.GetOAuthClient(ctx, clientID)
	switch {
	case errors.Is(err, data.ErrNotFound):
		return data.OAuthClient{}, false, nil
	case err != nil:
		return data.OAuthClient{}, false, fmt.Errorf("client metadata document %s: reading the cache: %w", quoteIfNeeded(clientID), err)
	case rec.Kind != data.ClientMetadataDocument:
		// Never overwrite a client someone else created under this id.
		return data.OAuthClient{}, false, docError(clientID, fmt.Errorf("the id belongs to a %s client", rec.Kind))
	}
	return rec, rec.FreshUntil.After(m.cfg.Now()), nil
}

// refresh fetches and stores the document, unless a fetch that finished while this caller
// waited to start has already done so.
func (m *MetadataDocuments) refresh(ctx context.Context, clientID string) (data.OAuthClient, error) {
	prev, fresh, err := m.cached(ctx, clientID)
	if err != nil || fresh {
		return prev, err
	}
	md, ttl, err := m.fetch(ctx, clientID)
	if err != nil {
		m.cfg.Logger.Info("oauth: client metadata document refused", "client_id", clientID, "err", err)
		return data.OAuthClient{}, docError(clientID, err)
	}
	now := m.cfg.Now()
	rec := md.Record(clientID, data.ClientMetadataDocument, now, m.cfg.Scopes)
	if !prev.CreatedAt.IsZero() {
		rec.CreatedAt = prev.CreatedAt
	}
	rec.LastUsed = prev.LastUsed
	// The cache goes stale after ttl; the record (with the tokens and approvals that hang
	// off it) lives on as a registered client does: UnusedTTL, pushed out by every use.
	rec.FreshUntil = now.Add(ttl)
	rec.ExpiresAt = later(prev.ExpiresAt, now.Add(m.cfg.UnusedTTL))
	stored, err := m.cfg.Clients.PutOAuthClient(ctx, rec)
	if err != nil {
		return data.OAuthClient{}, fmt.Errorf("client metadata document %s: caching it: %w", quoteIfNeeded(clientID), err)
	}
	m.cfg.Logger.Info("oauth: client metadata document fetched", "client_id", clientID,
		"client_name", md.ClientName, "redirect_hosts", redirectHosts(md.RedirectURIs), "ttl", ttl)
	return stored, nil
}

// fetch gets and validates the document at clientID and says how long it may be cached.
func (m *MetadataDocuments) fetch(ctx context.Context, clientID string) (ClientMetadata, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientID, nil)
	if err != nil {
		return ClientMetadata{}, 0, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "toolgate (OAuth client metadata fetch)")
	resp, err := m.http.Do(req)
	if err != nil {
		return ClientMetadata{}, 0, fetchError(err, m.cfg.Outbound.Timeout)
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return ClientMetadata{}, 0, fmt.Errorf("the server redirects (HTTP %d to %q); redirects are not followed, serve the document at its client_id URL", resp.StatusCode, truncate(resp.Header.Get("Location")))
	case resp.StatusCode != http.StatusOK:
		return ClientMetadata{}, 0, fmt.Errorf("the server answered HTTP %d; want 200", resp.StatusCode)
	}
	ct := resp.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return ClientMetadata{}, 0, fmt.Errorf("content type %q is not application/json", truncate(ct))
	}
	limit := m.cfg.Outbound.MaxBytes
	if resp.ContentLength > limit {
		return ClientMetadata{}, 0, &tooLargeError{limit}
	}
	body, err := readLimited(resp.Body, limit)
	if err != nil {
		if tl := (*tooLargeError)(nil); errors.As(err, &tl) {
			return ClientMetadata{}, 0, tl
		}
		return ClientMetadata{}, 0, fetchError(err, m.cfg.Outbound.Timeout)
	}

	md, err := ParseClientMetadata(body)
	if err != nil {
		return ClientMetadata{}, 0, err
	}
	if md.ClientID != clientID {
		if md.ClientID == "" {
			return ClientMetadata{}, 0, errors.New("the document has no client_id; it must equal the document's URL")
		}
		return ClientMetadata{}, 0, fmt.Errorf("the document's client_id %q does not equal its URL", truncate(md.ClientID))
	}
	if md.hasSecret {
		return ClientMetadata{}, 0, errors.New("the document contains client_secret; a published document cannot hold a secret, remove it")
	}
	switch md.TokenEndpointAuthMethod {
	case authMethodBasic, authMethodPost:
		return ClientMetadata{}, 0, fmt.Errorf("token_endpoint_auth_method %s needs a client secret, which a published document cannot hold; use none", md.TokenEndpointAuthMethod)
	}
	if err := md.Normalize(m.cfg.Scopes); err != nil {
		return ClientMetadata{}, 0, err
	}
	return md, m.ttl(resp.Header), nil
}

// ttl is how long a response may be cached, from its Cache-Control or Expires header (RFC
// 9111 §4.2.1), clamped to [MinTTL, MaxTTL].
func (m *MetadataDocuments) ttl(h http.Header) time.Duration {
	clamp := func(d time.Duration) time.Duration { return min(max(d, m.cfg.MinTTL), m.cfg.MaxTTL) }
	maxAge := time.Duration(-1)
	for _, v := range h.Values("Cache-Control") {
		for _, dir := range strings.Split(v, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(dir), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				return m.cfg.MinTTL
			case "max-age":
				if n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(arg), `"`), 10, 64); err == nil && n >= 0 {
					maxAge = time.Duration(min(n, int64(365*24*3600))) * time.Second
				}
			}
		}
	}
	if maxAge >= 0 {
		if age, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && age > 0 {
			maxAge -= time.Duration(min(age, int64(365*24*3600))) * time.Second
		}
		return clamp(maxAge)
	}
	if e := h.Get("Expires"); e != "" {
		exp, err := http.ParseTime(e)
		if err != nil {
			return m.cfg.MinTTL // RFC 9111: an invalid Expires means already expired
		}
		base := m.cfg.Now()
		if d, err := http.ParseTime(h.Get("Date")); err == nil {
			base = d
		}
		return clamp(exp.Sub(base))
	}
	return m.cfg.DefaultTTL
}

// checkID validates a metadata document URL before anything is fetched from it, as the CIMD
// draft requires: https, a host, a path other than "/", no fragment, no user information, no
// dot segments.
func (m *MetadataDocuments) checkID(id string) error {
	if len(id) > maxURILen {
		return fmt.Errorf("the URL is longer than %d bytes", maxURILen)
	}
	if hasControl(id) {
		return errors.New("the URL contains control characters or spaces")
	}
	if !strings.HasPrefix(id, "https://") {
		return errors.New("the URL must start with https://")
	}
	if strings.Contains(id, "#") {
		return errors.New("the URL must not have a fragment")
	}
	u, err := url.Parse(id)
	if err != nil {
		return fmt.Errorf("the URL does not parse: %w", err)
	}
	if u.User != nil {
		return errors.New("the URL must not contain user information")
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("the URL has no host")
	}
	if u.Path == "" || u.Path == "/" {
		return errors.New("the URL must have a path")
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return errors.New("the URL must not contain . or .. path segments")
		}
	}
	if !m.cfg.Outbound.AllowPrivate {
		// The dial guard would refuse these too (it refuses IP literals, with the same
		// error); refusing the names here spares a DNS lookup.
		h := strings.TrimSuffix(strings.ToLower(host), ".")
		if h == "localhost" || strings.HasSuffix(h, ".localhost") {
			return fmt.Errorf("%s is a loopback name", host)
		}
	}
	return nil
}

// fetchError turns a transport error into one a person can act on, without the noise of the
// URL (which the caller prefixes) and the dial address.
func fetchError(err error, timeout time.Duration) error {
	var blocked *blockedAddressError
	if errors.As(err, &blocked) {
		return blocked
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("fetching the document took longer than %v", timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("fetching the document: %w", err)
}

// docError wraps err as an error about the document at id.
func docError(id string, err error) error {
	return fmt.Errorf("%w %s: %w", ErrMetadataDocument, quoteIfNeeded(id), err)
}

// quoteIfNeeded returns a URL for an error message: as is when it is printable and short,
// else quoted and shortened, so a hostile id cannot forge log lines.
func quoteIfNeeded(id string) string {
	if hasControl(id) || len(id) > 200 {
		return strconv.Quote(truncate(id))
	}
	return id
}

// redirectHosts lists the hosts (or, for private-use schemes, the schemes) of redirect URIs,
// for logs: enough to spot an odd registration without logging full URIs.
func redirectHosts(uris []string) []string {
	var out []string
	for _, raw := range uris {
		u, err := url.Parse(raw)
		if err != nil {
			continue
		}
		h := u.Host
		if h == "" || (u.Scheme != "http" && u.Scheme != "https") {
			h = u.Scheme + ":"
		}
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
