package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/toolgate/toolgate/data"
)

// ClientRecords stores client records. *data.Store implements it.
type ClientRecords interface {
	PutOAuthClient(ctx context.Context, c data.OAuthClient) (data.OAuthClient, error)
	GetOAuthClient(ctx context.Context, id string) (data.OAuthClient, error)
}

// Limits on client metadata. Metadata comes from anyone who can reach the registration
// endpoint or publish a document, and ends up in the database and on the consent page, so
// every part of it is bounded.
const (
	// MaxMetadataBytes bounds a registration request body and a fetched metadata document.
	// Real clients send well under 2 KiB.
	MaxMetadataBytes = 16 << 10
	// maxRedirectURIs is the most redirect URIs one client may register. VS Code registers
	// three; ten leaves room without letting one record grow without bound.
	maxRedirectURIs = 10
	// maxURILen bounds every URI and every free-text string other than the name.
	maxURILen = 2000
	// maxNameLen bounds client_name, which the consent page shows.
	maxNameLen = 200
	// maxListLen bounds contacts and the grant and response type lists.
	maxListLen = 10
)

// RFC 7591 §3.2.2 error codes.
const (
	errInvalidClientMetadata = "invalid_client_metadata"
	errInvalidRedirectURI    = "invalid_redirect_uri"
)

// Token endpoint authentication methods a client may register.
const (
	authMethodNone  = "none"
	authMethodBasic = "client_secret_basic"
	authMethodPost  = "client_secret_post"
)

// Application types (OpenID Connect Dynamic Client Registration §2, required of clients by
// the 2026-07-28 MCP revision).
const (
	appTypeNative = "native"
	appTypeWeb    = "web"
)

// ClientMetadata is RFC 7591 client metadata as a client registers it or a Client ID Metadata
// Document publishes it. Fields toolgate does not use are kept only to echo them back.
//
// Values come from untrusted input: use [ParseClientMetadata] and then
// [ClientMetadata.Normalize] before relying on any of them.
type ClientMetadata struct {
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	Contacts                []string `json:"contacts,omitempty"`
	TOSURI                  string   `json:"tos_uri,omitempty"`
	PolicyURI               string   `json:"policy_uri,omitempty"`
	JWKSURI                 string   `json:"jwks_uri,omitempty"`
	SoftwareID              string   `json:"software_id,omitempty"`
	SoftwareVersion         string   `json:"software_version,omitempty"`
	ApplicationType         string   `json:"application_type,omitempty"`
	// ClientID is meaningful only in a Client ID Metadata Document, where it must equal the
	// document's URL. The registration endpoint ignores it: clients do not choose their ids.
	ClientID string `json:"client_id,omitempty"`

	// hasSecret records that the input carried client_secret or client_secret_expires_at,
	// which a metadata document must not (it is public, so a secret in it is no secret).
	hasSecret bool
}

// MetadataError is an RFC 7591 §3.2.2 error: Code is invalid_client_metadata or
// invalid_redirect_uri, and Description says what to change. It is safe to send to the
// client that supplied the metadata.
type MetadataError struct {
	Code        string
	Description string
}

func (e *MetadataError) Error() string { return e.Code + ": " + e.Description }

// metadataErrorf builds a MetadataError. The description quotes client input, so it is
// cleaned of the substrings some clients mistake for WWW-Authenticate parameters.
func metadataErrorf(code, format string, args ...any) *MetadataError {
	return &MetadataError{Code: code, Description: cleanDescription(fmt.Sprintf(format, args...))}
}

// cleanDescription keeps "scope=" and "resource_metadata=" out of an error description:
// clients that scrape challenge parameters with loose patterns would read a description
// quoting a redirect URI like https://x/cb?scope=a as a scope. The text stays readable.
func cleanDescription(s string) string {
	for _, bad := range []string{"resource_metadata=", "scope="} {
		for {
			i := indexFold(s, bad)
			if i < 0 {
				break
			}
			s = s[:i+len(bad)-1] + " =" + s[i+len(bad):]
		}
	}
	return s
}

// indexFold is strings.Index ignoring ASCII case.
func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// ParseClientMetadata decodes client metadata. The syntax must be strict JSON (one object,
// nothing after it) and at most [MaxMetadataBytes]; unknown fields are ignored (clients send
// vendor extensions), as are duplicate keys (the last one wins). A value of the wrong JSON type
// is an invalid_client_metadata [*MetadataError]; so is any other failure.
//
// The result is not validated: call [ClientMetadata.Normalize].
func ParseClientMetadata(b []byte) (ClientMetadata, error) {
	if len(b) > MaxMetadataBytes {
		return ClientMetadata{}, metadataErrorf(errInvalidClientMetadata, "client metadata is larger than %d bytes", MaxMetadataBytes)
	}
	if !utf8.Valid(b) {
		return ClientMetadata{}, metadataErrorf(errInvalidClientMetadata, "client metadata is not valid UTF-8")
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return ClientMetadata{}, metadataErrorf(errInvalidClientMetadata, "client metadata must be a JSON object")
	}
	// The wire form adds the secret fields only to notice them; the embedded struct's fields
	// decode as if they were at the top level.
	var w struct {
		ClientMetadata
		ClientSecret          json.RawMessage `json:"client_secret"`
		ClientSecretExpiresAt json.RawMessage `json:"client_secret_expires_at"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			field := strings.TrimPrefix(te.Field, "ClientMetadata.")
			want := "a string"
			switch field {
			case "redirect_uris", "grant_types", "response_types", "contacts":
				want = "an array of strings"
			}
			return ClientMetadata{}, metadataErrorf(errInvalidClientMetadata, "%s must be %s, not a JSON %s", field, want, te.Value)
		}
		return ClientMetadata{}, metadataErrorf(errInvalidClientMetadata, "client metadata is not valid JSON: %v", err)
	}
	m := w.ClientMetadata
	m.hasSecret = present(w.ClientSecret) || present(w.ClientSecretExpiresAt)
	return m, nil
}

// present reports whether a raw JSON member was given a value other than null.
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

// Normalize fills in defaults and validates m, returning a [*MetadataError] for the first
// problem found. supportedScopes are the scopes the server offers; a requested scope outside
// them is refused.
//
// Defaults: grant_types [authorization_code refresh_token] (refresh tokens are what spare the
// user a consent page every hour), response_types [code], token_endpoint_auth_method none
// (MCP clients are public; RFC 7591's default client_secret_basic would hand them a secret
// they cannot keep), application_type native when any redirect URI is loopback http or a
// private-use scheme, else web.
func (m *ClientMetadata) Normalize(supportedScopes []string) error {
	if err := m.normalizeRedirects(); err != nil {
		return err
	}

	var err error
	if m.GrantTypes, err = normalizeList("grant_types", m.GrantTypes,
		[]string{"authorization_code", "refresh_token"},
		[]string{"authorization_code", "refresh_token"}); err != nil {
		return err
	}
	if !slices.Contains(m.GrantTypes, "authorization_code") {
		return metadataErrorf(errInvalidClientMetadata, "grant_types must include authorization_code")
	}
	if m.ResponseTypes, err = normalizeList("response_types", m.ResponseTypes,
		[]string{"code"}, []string{"code"}); err != nil {
		return err
	}

	switch m.TokenEndpointAuthMethod {
	case "":
		m.TokenEndpointAuthMethod = authMethodNone
	case authMethodNone, authMethodBasic, authMethodPost:
	default:
		return metadataErrorf(errInvalidClientMetadata, "token_endpoint_auth_method %q is not supported; use none, client_secret_basic or client_secret_post", truncate(m.TokenEndpointAuthMethod))
	}

	if m.Scope != "" {
		if err := checkText("scope", m.Scope, maxURILen); err != nil {
			return err
		}
		for _, s := range strings.Split(m.Scope, " ") {
			if s == "" {
				continue
			}
			if !slices.Contains(supportedScopes, s) {
				return metadataErrorf(errInvalidClientMetadata, "scope %q is not supported; supported scopes are %s", truncate(s), strings.Join(supportedScopes, ", "))
			}
		}
	}

	if err := checkText("client_name", m.ClientName, maxNameLen); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{
		{"software_id", m.SoftwareID},
		{"software_version", m.SoftwareVersion},
		{"client_id", m.ClientID},
	} {
		if err := checkText(f.name, f.v, maxURILen); err != nil {
			return err
		}
	}
	for _, f := range []struct{ name, v string }{
		{"client_uri", m.ClientURI},
		{"logo_uri", m.LogoURI},
		{"tos_uri", m.TOSURI},
		{"policy_uri", m.PolicyURI},
		{"jwks_uri", m.JWKSURI},
	} {
		if err := checkWebURI(f.name, f.v); err != nil {
			return err
		}
	}
	if len(m.Contacts) > maxListLen {
		return metadataErrorf(errInvalidClientMetadata, "contacts has %d entries; at most %d are allowed", len(m.Contacts), maxListLen)
	}
	for _, c := range m.Contacts {
		if err := checkText("contacts", c, maxURILen); err != nil {
			return err
		}
	}
	return nil
}

// normalizeRedirects validates redirect_uris and settles application_type, which depends on
// them.
func (m *ClientMetadata) normalizeRedirects() error {
	if len(m.RedirectURIs) == 0 {
		return metadataErrorf(errInvalidRedirectURI, "redirect_uris is required and must list at least one URI")
	}
	if len(m.RedirectURIs) > maxRedirectURIs {
		return metadataErrorf(errInvalidRedirectURI, "redirect_uris lists %d URIs; at most %d are allowed", len(m.RedirectURIs), maxRedirectURIs)
	}
	firstNative := "" // the first loopback or private-use redirect URI
	for _, raw := range m.RedirectURIs {
		kind, err := classifyRedirect(raw)
		if err != nil {
			return err
		}
		if kind != redirectHTTPS && firstNative == "" {
			firstNative = raw
		}
	}
	switch m.ApplicationType {
	case "":
		// Loopback and private-use redirects only work for an app on the user's device; a
		// client mixing them with https (VS Code registers both) is still such an app.
		m.ApplicationType = appTypeWeb
		if firstNative != "" {
			m.ApplicationType = appTypeNative
		}
	case appTypeNative:
	case appTypeWeb:
		if firstNative != "" {
			return metadataErrorf(errInvalidRedirectURI, "redirect URI %q is for an app on the user's device, not a web application; register as native (application_type \"native\")", truncate(firstNative))
		}
	default:
		return metadataErrorf(errInvalidClientMetadata, "application_type %q is not supported; use native or web", truncate(m.ApplicationType))
	}
	return nil
}

// Kinds of redirect URI.
const (
	redirectHTTPS      = iota // https, any host
	redirectLoopback          // http on a loopback host (RFC 8252 §7.3)
	redirectPrivateUse        // a private-use scheme (RFC 8252 §7.1), such as cursor://
)

// dangerousSchemes are schemes that run code, read local data, or are not redirects a browser
// hands to an app; a redirect to them is refused even though they parse as private-use.
var dangerousSchemes = []string{
	"javascript", "data", "file", "vbscript", "about", "blob", "ftp", "ws", "wss",
	"view-source", "filesystem",
}

// classifyRedirect validates one redirect URI and says what kind it is.
func classifyRedirect(raw string) (int, error) {
	bad := func(format string, args ...any) (int, error) {
		return 0, metadataErrorf(errInvalidRedirectURI, "redirect URI %q %s", truncate(raw), fmt.Sprintf(format, args...))
	}
	if len(raw) > maxURILen {
		return bad("is longer than %d bytes", maxURILen)
	}
	if hasControl(raw) {
		return bad("contains control characters or spaces")
	}
	if strings.Contains(raw, "#") {
		return bad("has a fragment; redirect URIs must not")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return bad("is not an absolute URI")
	}
	if u.User != nil {
		return bad("has user information; redirect URIs must not")
	}
	switch scheme := u.Scheme; {
	case scheme == "https":
		if u.Host == "" || u.Hostname() == "" {
			return bad("has no host")
		}
		return redirectHTTPS, nil
	case scheme == "http":
		if !isLoopbackLiteral(u.Hostname()) {
			return bad("uses http on a host that is not loopback; use https, or http://127.0.0.1, http://[::1] or http://localhost")
		}
		return redirectLoopback, nil
	case slices.Contains(dangerousSchemes, scheme):
		return bad("uses the %s scheme, which is not allowed for redirects", scheme)
	default:
		return redirectPrivateUse, nil
	}
}

// isLoopbackLiteral reports whether host (from url.URL.Hostname) is one of the loopback
// names RFC 8252 §7.3 lets a native app listen on. Only these exact forms: a redirect to
// 127.1 or 0x7f.1 would be matched by nobody's port-agnostic comparison.
func isLoopbackLiteral(host string) bool {
	return host == "127.0.0.1" || host == "::1" || strings.EqualFold(host, "localhost")
}

// checkWebURI validates an informational URI (client_uri, logo_uri, …). Empty is allowed, as
// the TS SDK sends "" for absent ones. Otherwise it must be an absolute http(s) URL: the
// consent page may link to it or load it, so javascript: and the like are refused.
func checkWebURI(name, v string) error {
	if v == "" {
		return nil
	}
	if err := checkText(name, v, maxURILen); err != nil {
		return err
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return metadataErrorf(errInvalidClientMetadata, "%s %q must be an absolute http or https URL", name, truncate(v))
	}
	return nil
}

// checkText bounds a string and refuses control characters, which have no business in a name
// or URI and could mangle logs or the consent page.
func checkText(name, v string, max int) error {
	if len(v) > max {
		return metadataErrorf(errInvalidClientMetadata, "%s is longer than %d bytes", name, max)
	}
	if !utf8.ValidString(v) {
		return metadataErrorf(errInvalidClientMetadata, "%s is not valid UTF-8", name)
	}
	for _, r := range v {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return metadataErrorf(errInvalidClientMetadata, "%s contains control characters", name)
		}
	}
	return nil
}

// hasControl reports whether s contains a control character or white space; neither may
// appear in a URI.
func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == utf8.RuneError {
			return true
		}
	}
	return false
}

// normalizeList applies a default to an empty list, refuses values outside allowed, and drops
// duplicates.
func normalizeList(name string, v, def, allowed []string) ([]string, error) {
	if len(v) == 0 {
		return slices.Clone(def), nil
	}
	if len(v) > maxListLen {
		return nil, metadataErrorf(errInvalidClientMetadata, "%s has %d entries; at most %d are allowed", name, len(v), maxListLen)
	}
	out := make([]string, 0, len(v))
	for _, s := range v {
		if !slices.Contains(allowed, s) {
			return nil, metadataErrorf(errInvalidClientMetadata, "%s value %q is not supported; supported: %s", name, truncate(s), strings.Join(allowed, ", "))
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// truncate shortens client input quoted in an error description.
func truncate(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// Record builds the stored record for metadata that passed [ClientMetadata.Normalize]. Scopes
// are allScopes, not the scope the client registered: every registered client may request
// every supported scope (consent decides what is granted), so a later step-up is not refused
// with invalid_scope. ExpiresAt is left zero for the caller; SecretHash is the caller's too.
func (m ClientMetadata) Record(id, kind string, now time.Time, allScopes []string) data.OAuthClient {
	return data.OAuthClient{
		ID:                      id,
		Kind:                    kind,
		Name:                    m.ClientName,
		URI:                     m.ClientURI,
		LogoURI:                 m.LogoURI,
		RedirectURIs:            slices.Clone(m.RedirectURIs),
		GrantTypes:              slices.Clone(m.GrantTypes),
		ResponseTypes:           slices.Clone(m.ResponseTypes),
		Scopes:                  slices.Clone(allScopes),
		ApplicationType:         m.ApplicationType,
		TokenEndpointAuthMethod: m.TokenEndpointAuthMethod,
		Metadata:                m.echo(),
		CreatedAt:               now,
	}
}

// echo is m as JSON, the registered metadata the registration endpoint returns.
func (m ClientMetadata) echo() []byte {
	b, _ := json.Marshal(m) // strings and string slices always marshal
	return b
}
