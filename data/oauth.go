package data

import (
	"time"
)

// The OAuth records: clients that registered (or were configured, or whose metadata document
// was fetched), the tokens fosite issues, and the approvals users gave. data keeps them with
// their indexes and expiry; package oauth decides what they mean (which clients may register,
// how long tokens live, what a consent covers).

// Kinds of OAuthClient.
const (
	// ClientDynamic registered itself at the registration endpoint (RFC 7591).
	ClientDynamic = "dynamic"
	// ClientMetadataDocument is identified by an https URL whose document was fetched (a Client
	// ID Metadata Document); the record is the cached copy.
	ClientMetadataDocument = "metadata-document"
	// ClientStatic was configured by the operator.
	ClientStatic = "static"
)

// OAuthClient is a client of toolgate's authorization server.
type OAuthClient struct {
	ID              string   // the key of the record: a random id, or the metadata document's URL
	Kind            string   // ClientDynamic, ClientMetadataDocument or ClientStatic
	Name            string   // client_name, as the client gave it (shown on the consent page)
	URI             string   // client_uri, informational
	LogoURI         string   // logo_uri, informational
	RedirectURIs    []string // exact redirect URIs (loopback ones match on any port)
	GrantTypes      []string // authorization_code, refresh_token
	ResponseTypes   []string // code
	Scopes          []string // scopes the client may request
	ApplicationType string   // "native" or "web"
	// TokenEndpointAuthMethod is "none" for public clients, else client_secret_basic or
	// client_secret_post.
	TokenEndpointAuthMethod string
	// SecretHash is the bcrypt hash of a confidential client's secret; empty for public
	// clients. The secret itself is never stored.
	SecretHash string
	// Metadata is the client's registration metadata as registered (or as fetched), echoed by
	// the registration endpoint; opaque to data.
	Metadata []byte

	CreatedAt time.Time
	LastUsed  time.Time // zero: no token was ever issued to it
	// ExpiresAt is when the record is swept, with the client's tokens and approvals; zero:
	// never (static clients).
	ExpiresAt time.Time
	// FreshUntil is, for a metadata document, when the cached copy must be fetched again.
	// It is not ExpiresAt: a stale cache is refreshed, not the client forgotten.
	FreshUntil time.Time
}

// OAuthConsent is a user's approval of a client for one resource: the next authorization with
// no more scope than this skips the consent page.
type OAuthConsent struct {
	UserID    string
	ClientID  string
	Resource  string   // the MCP URL approved, exactly as granted into the token's audience
	Scopes    []string // the scopes approved, sorted and deduplicated by PutOAuthConsent
	CreatedAt time.Time
	UpdatedAt time.Time
}

// OAuthGrant is one token family: every code, access token and refresh token that descends
// from one authorization shares its request id. It is what grant lists show and revoke. A
// family has a grant from its first access or refresh token until it has no live token left
// (see layout.go); a code not yet exchanged has none.
type OAuthGrant struct {
	RequestID string
	UserID    string // the session's subject
	ClientID  string
	Resources []string  // the granted audience
	Scopes    []string  // the granted scopes
	CreatedAt time.Time // when the family's first access or refresh token was stored
}
