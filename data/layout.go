package data

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// The on-disk format: every bucket, key and value toolgate writes. All buckets are top level
// and created by Open.
//
//	bucket              key                                   value
//	meta                "schema"                              uint32 big-endian schema version (1)
//	secrets             secret name ("ssh-host-key", …)       JSON secretRecord {"v":1,"value":base64,"created_at"}
//	names               name label ("quiet-fox-7h3k2q")       JSON nameRecord {"v":1,"owner","kind","hint",
//	                                                          "claimed_at","last_used","expires_at"}
//	names_by_owner      owner || 0x00 || name                 empty (index for NamesByOwner)
//	names_by_expiry     uint64 BE unix nanos || name          empty (index for SweepExpiredNames)
//	name_shares         name label                            JSON shareRecord {"v":1,"owner","with",
//	                                                          "updated_at"}
//	certmagic           certmagic key ("certificates/…")      uint64 BE unix-nano mtime || payload
//	users               user id ("u_…")                       JSON userRecord {"v":1,"email","name","groups",
//	                                                          "admin","disabled","password_hash","subject",
//	                                                          "created_at","updated_at","last_sign_in"}
//	users_by_email      email, trimmed and lower-cased        user id (unique index for UserByEmail)
//	users_by_subject    subject ("issuer|sub")                user id (unique index for UserBySubject)
//	keys                fingerprint ("SHA256:…")              JSON keyRecord {"v":1,"type","user","linked_at",
//	                                                          "expires_at","last_used","linked_from"}
//	keys_by_user        user id || 0x00 || fingerprint        empty (index for KeysByUser)
//	keys_by_expiry      uint64 BE unix nanos || fingerprint   empty (index for SweepExpiredKeys)
//	sessions            session id (caller's token hash)      JSON sessionRecord {"v":1,"user","auth_method",
//	                                                          "created_at","last_seen","idle_expires_at",
//	                                                          "expires_at","ip","user_agent"}
//	sessions_by_user    user id || 0x00 || session id         empty (index for SessionsByUser)
//	sessions_by_expiry  uint64 BE unix nanos || session id    empty (index for SweepExpiredSessions)
//	tickets             ticket id (caller's secret hash)      JSON ticketRecord {"v":1,"kind","user",
//	                                                          "created_at","expires_at"}
//	oauth_clients       client id (a random id, or the URL    JSON oauthClientRecord {"v":1,"kind","name",
//	                    of a client id metadata document)     "uri","logo_uri","redirect_uris","grant_types",
//	                                                          "response_types","scopes","application_type",
//	                                                          "token_endpoint_auth_method","secret_hash",
//	                                                          "metadata":base64,"created_at","last_used",
//	                                                          "expires_at","fresh_until"}
//	oauth_clients_by_expiry
//	                    uint64 BE unix nanos || client id     empty (index for SweepExpiredOAuthClients)
//	oauth_tokens        kind || signature: kind is one byte,  JSON oauthTokenRecord {"v":1,"request_id",
//	                    'c' authorization code, 'p' PKCE      "requested_at","client_id","subject",
//	                    request, 'a' access token, 'r'        "requested_scopes","granted_scopes",
//	                    refresh token; the signature is       "requested_audience","granted_audience",
//	                    fosite's, never the token itself      "form" (url-encoded),"session" (the
//	                                                          fosite.Session's JSON),"active","expires_at",
//	                                                          "access_sig","rotated_at","successor":base64}
//	oauth_tokens_by_request
//	                    request id || 0x00 || kind ||         empty (index of a token family, for fosite's
//	                    signature                             Revoke*/RotateRefreshToken and the revokes)
//	oauth_tokens_by_expiry
//	                    uint64 BE unix nanos || kind ||       empty (index for SweepExpiredOAuthTokens)
//	                    signature
//	oauth_families_by_client
//	                    client id || 0x00 || request id       empty (index of a client's token families)
//	oauth_grants        request id                            JSON oauthGrantRecord {"v":1,"user","client",
//	                                                          "resources","scopes","created_at"}
//	oauth_grants_by_user
//	                    user id || 0x00 || client id ||       empty (index for OAuthGrantsByUser and
//	                    0x00 || request id                    RevokeOAuthGrants)
//	oauth_consents      user id || 0x00 || client id ||       JSON oauthConsentRecord {"v":1,"scopes",
//	                    0x00 || resource                      "created_at","updated_at"}
//	oauth_consents_by_client
//	                    client id || 0x00 || user id ||       empty (index of a client's consents, for
//	                    0x00 || resource                      DeleteOAuthClient)
//	audit               uint64 BE seq (bbolt's bucket         JSON auditRecord {"v":1,"time","kind","user",
//	                    sequence, from 1)                     "client","client_name","tunnel","owner",
//	                                                          "method","tool","class","decision","rule",
//	                                                          "status","latency_ns","bytes","args_digest",
//	                                                          "args" (JSON as given),"source_ip","detail"}
//
// Times in JSON are RFC 3339 in UTC. Every index is derived from the bucket it points into and
// rewritten in the same transaction as the record; readers still re-check the record, so a stale
// index entry can hide nothing, release nothing and claim no email or subject.
//
// The 0x00 separator keeps owner "a" from matching owner "ab" in a prefix scan; owners are key
// fingerprints or user ids, and every method that writes one of these keys refuses an owner,
// user id, fingerprint or session id containing NUL. Big-endian numbers sort numerically, so an expiry cursor walks from the oldest
// deadline and stops at the first one in the future. Deadlines before 1970 are stored as 0 (and
// after 2262 as the maximum), so that unsigned ordering matches time ordering. A session's
// expiry entry is at the earlier of its idle and absolute deadlines, the moment it ends, and
// moves with every TouchSession. Keys and names that never expire have no expiry entry.
//
// The users_by_email and users_by_subject values are the user id itself rather than empty: they
// are unique indexes, looked up by exact key, never scanned by prefix.
//
// tickets has no index. Tickets are a handful of console sign-in links at a time, each living
// minutes, so DeleteUserTickets and SweepExpiredTickets scan the bucket; two indexes to keep in
// step would cost more code than the scans cost time.
//
// The OAuth buckets hold what package oauth and fosite store (see oauthclients.go,
// oauthtokens.go, oauthgrants.go, oauthconsents.go). A token family is every code, PKCE
// request, access token and refresh token that shares one fosite request id.
// oauth_tokens_by_request and oauth_families_by_client have entries while the family has any
// token; oauth_grants has its record from the family's first access or refresh token until the
// family has no live token left (no access token, and no refresh token that is active or was
// rotated rather than revoked). Used codes and rotated or revoked refresh tokens are kept,
// inactive, until their own expiry, so that fosite can tell a replay from a forgery. A code or
// PKCE request whose session sets no expiry is swept 24 hours after it was stored; an access or
// refresh token without one never expires and has no expiry entry. Every OAuth method refuses
// NUL in the ids and resources it puts in keys.
//
// audit is append-only (see audit.go, auditlog.go): one writer takes each seq from the bucket's
// NextSequence in the transaction that puts the record, so seqs are dense, survive restarts and
// are in commit order, which is time order up to records appended concurrently or with a Time
// set by the caller. Records are only ever deleted from the front (SweepAudit, oldest first),
// so the count is the last seq minus the first plus one, with no walk. It has no index:
// queries scan by seq.
//
// name_shares has no index: it is read by exact name (when a tunnel goes live, and by the CLI)
// and walked whole only by ListNameShares. A record is deleted with its claim and read only
// while its "owner" is still the claim's (see shares.go).
//
// certmagic values keep a fixed binary header instead of JSON: they are opaque payloads of their
// own (PEM, JSON), and the header holds the only metadata certmagic asks for (Stat's Modified).
const (
	bucketMeta          = "meta"
	bucketSecrets       = "secrets"
	bucketNames         = "names"
	bucketNamesByOwner  = "names_by_owner"
	bucketNamesByExpiry = "names_by_expiry"
	bucketCertmagic     = "certmagic"
	bucketNameShares    = "name_shares"

	bucketUsers            = "users"
	bucketUsersByEmail     = "users_by_email"
	bucketUsersBySubject   = "users_by_subject"
	bucketKeys             = "keys"
	bucketKeysByUser       = "keys_by_user"
	bucketKeysByExpiry     = "keys_by_expiry"
	bucketSessions         = "sessions"
	bucketSessionsByUser   = "sessions_by_user"
	bucketSessionsByExpiry = "sessions_by_expiry"
	bucketTickets          = "tickets"

	bucketOAuthClients          = "oauth_clients"
	bucketOAuthClientsByExpiry  = "oauth_clients_by_expiry"
	bucketOAuthTokens           = "oauth_tokens"
	bucketOAuthTokensByRequest  = "oauth_tokens_by_request"
	bucketOAuthTokensByExpiry   = "oauth_tokens_by_expiry"
	bucketOAuthFamiliesByClient = "oauth_families_by_client"
	bucketOAuthGrants           = "oauth_grants"
	bucketOAuthGrantsByUser     = "oauth_grants_by_user"
	bucketOAuthConsents         = "oauth_consents"
	bucketOAuthConsentsByClient = "oauth_consents_by_client"

	bucketAudit = "audit"

	keySchema = "schema"

	// schemaVersion is the layout above. Bump it when a change needs a migration; a binary
	// refuses files with a higher version than its own. New buckets alone need no bump: Open
	// creates any bucket a file lacks, so a file from before the identity buckets simply gains
	// them, empty. (An older binary opening such a file ignores buckets it does not know.)
	schemaVersion uint32 = 1

	// recordVersion is the "v" of the JSON records above. A record with a higher version was
	// written by a newer toolgate and is refused rather than half-read.
	recordVersion = 1

	ownerSep       = 0x00
	certHeaderSize = 8
)

// allBuckets lists every bucket Open creates.
func allBuckets() []string {
	return []string{
		bucketMeta, bucketSecrets, bucketNames, bucketNamesByOwner, bucketNamesByExpiry, bucketCertmagic, bucketNameShares,
		bucketUsers, bucketUsersByEmail, bucketUsersBySubject,
		bucketKeys, bucketKeysByUser, bucketKeysByExpiry,
		bucketSessions, bucketSessionsByUser, bucketSessionsByExpiry,
		bucketTickets,
		bucketOAuthClients, bucketOAuthClientsByExpiry,
		bucketOAuthTokens, bucketOAuthTokensByRequest, bucketOAuthTokensByExpiry, bucketOAuthFamiliesByClient,
		bucketOAuthGrants, bucketOAuthGrantsByUser,
		bucketOAuthConsents, bucketOAuthConsentsByClient,
		bucketAudit,
	}
}

func encodeSchema(v uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, v)
}

// ownerKey is the key of the by-owner and by-user indexes (names_by_owner, keys_by_user,
// sessions_by_user); ownerKey(owner, "") is the prefix of all of owner's keys.
func ownerKey(owner, name string) []byte {
	k := make([]byte, 0, len(owner)+1+len(name))
	k = append(k, owner...)
	k = append(k, ownerSep)
	return append(k, name...)
}

// expiryNanos maps a deadline to the index's unsigned order, clamping what int64 nanoseconds
// cannot represent.
func expiryNanos(t time.Time) uint64 {
	switch {
	case t.Before(time.Unix(0, 0)):
		return 0
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

// expiryKey is the key of the by-expiry indexes (names_by_expiry, keys_by_expiry,
// sessions_by_expiry).
func expiryKey(at time.Time, name string) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(name)), expiryNanos(at))
	return append(k, name...)
}

// secretRecord is a stored secret. CreatedAt is informational today; it is there for rotation.
type secretRecord struct {
	V         int       `json:"v"`
	Value     []byte    `json:"value"` // base64 in JSON
	CreatedAt time.Time `json:"created_at"`
}

// nameRecord is a NameClaim as stored; the name itself is the key.
type nameRecord struct {
	V         int       `json:"v"`
	Owner     string    `json:"owner"`
	Kind      NameKind  `json:"kind"`
	Hint      string    `json:"hint,omitempty"`
	ClaimedAt time.Time `json:"claimed_at"`
	LastUsed  time.Time `json:"last_used"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

func encodeSecret(value []byte, createdAt time.Time) ([]byte, error) {
	return json.Marshal(secretRecord{V: recordVersion, Value: value, CreatedAt: createdAt.UTC()})
}

func decodeSecret(b []byte) (secretRecord, error) {
	var r secretRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode secret record: %w", err)
	}
	return r, checkRecordVersion(r.V)
}

func encodeName(c NameClaim) ([]byte, error) {
	return json.Marshal(nameRecord{
		V: recordVersion, Owner: c.Owner, Kind: c.Kind, Hint: c.Hint,
		ClaimedAt: c.ClaimedAt.UTC(), LastUsed: c.LastUsed.UTC(), ExpiresAt: c.ExpiresAt.UTC(),
	})
}

func decodeName(name string, b []byte) (NameClaim, error) {
	var r nameRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return NameClaim{}, fmt.Errorf("decode name record: %w", err)
	}
	if err := checkRecordVersion(r.V); err != nil {
		return NameClaim{}, err
	}
	return NameClaim{Name: name, Owner: r.Owner, Kind: r.Kind, Hint: r.Hint,
		ClaimedAt: r.ClaimedAt, LastUsed: r.LastUsed, ExpiresAt: r.ExpiresAt}, nil
}

func checkRecordVersion(v int) error {
	if v > recordVersion {
		return fmt.Errorf("%w: record version %d, this build knows %d", ErrSchemaTooNew, v, recordVersion)
	}
	return nil
}

// certValue prefixes a certmagic payload with its modification time.
func certValue(mtime time.Time, payload []byte) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, certHeaderSize+len(payload)), uint64(mtime.UnixNano()))
	return append(v, payload...)
}

// splitCertValue is certValue's inverse; ok is false for a value too short to have a header.
func splitCertValue(v []byte) (mtime time.Time, payload []byte, ok bool) {
	if len(v) < certHeaderSize {
		return time.Time{}, nil, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC(), v[certHeaderSize:], true
}

// userRecord is a User as stored; the id is the key.
type userRecord struct {
	V            int       `json:"v"`
	Email        string    `json:"email,omitempty"`
	Name         string    `json:"name,omitempty"`
	Groups       []string  `json:"groups,omitempty"`
	Admin        bool      `json:"admin,omitempty"`
	Disabled     bool      `json:"disabled,omitempty"`
	PasswordHash string    `json:"password_hash,omitempty"`
	Subject      string    `json:"subject,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	LastSignIn   time.Time `json:"last_sign_in,omitzero"`
}

// keyRecord is an SSHKey as stored; the fingerprint is the key.
type keyRecord struct {
	V          int       `json:"v"`
	Type       string    `json:"type,omitempty"`
	User       string    `json:"user"`
	LinkedAt   time.Time `json:"linked_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	LastUsed   time.Time `json:"last_used,omitzero"`
	LinkedFrom string    `json:"linked_from,omitempty"`
}

// sessionRecord is a Session as stored; the id is the key.
type sessionRecord struct {
	V             int       `json:"v"`
	User          string    `json:"user"`
	AuthMethod    string    `json:"auth_method,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	LastSeen      time.Time `json:"last_seen"`
	IdleExpiresAt time.Time `json:"idle_expires_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	IP            string    `json:"ip,omitempty"`
	UserAgent     string    `json:"user_agent,omitempty"`
}

// ticketRecord is a Ticket as stored; the id is the key.
type ticketRecord struct {
	V         int       `json:"v"`
	Kind      string    `json:"kind"`
	User      string    `json:"user"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

func encodeUser(u User) ([]byte, error) {
	return json.Marshal(userRecord{
		V: recordVersion, Email: u.Email, Name: u.Name, Groups: u.Groups, Admin: u.Admin,
		Disabled: u.Disabled, PasswordHash: u.PasswordHash, Subject: u.Subject,
		CreatedAt: u.CreatedAt.UTC(), UpdatedAt: u.UpdatedAt.UTC(), LastSignIn: u.LastSignIn.UTC(),
	})
}

func decodeUser(id string, b []byte) (User, error) {
	var r userRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return User{}, fmt.Errorf("decode user record: %w", err)
	}
	if err := checkRecordVersion(r.V); err != nil {
		return User{}, err
	}
	return User{ID: id, Email: r.Email, Name: r.Name, Groups: r.Groups, Admin: r.Admin,
		Disabled: r.Disabled, PasswordHash: r.PasswordHash, Subject: r.Subject,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, LastSignIn: r.LastSignIn}, nil
}

func encodeKey(k SSHKey) ([]byte, error) {
	return json.Marshal(keyRecord{
		V: recordVersion, Type: k.Type, User: k.UserID, LinkedAt: k.LinkedAt.UTC(),
		ExpiresAt: k.ExpiresAt.UTC(), LastUsed: k.LastUsed.UTC(), LinkedFrom: k.LinkedFrom,
	})
}

func decodeKey(fingerprint string, b []byte) (SSHKey, error) {
	var r keyRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return SSHKey{}, fmt.Errorf("decode key record: %w", err)
	}
	if err := checkRecordVersion(r.V); err != nil {
		return SSHKey{}, err
	}
	return SSHKey{Fingerprint: fingerprint, Type: r.Type, UserID: r.User, LinkedAt: r.LinkedAt,
		ExpiresAt: r.ExpiresAt, LastUsed: r.LastUsed, LinkedFrom: r.LinkedFrom}, nil
}

func encodeSession(s Session) ([]byte, error) {
	return json.Marshal(sessionRecord{
		V: recordVersion, User: s.UserID, AuthMethod: s.AuthMethod, CreatedAt: s.CreatedAt.UTC(),
		LastSeen: s.LastSeen.UTC(), IdleExpiresAt: s.IdleExpiresAt.UTC(), ExpiresAt: s.ExpiresAt.UTC(),
		IP: s.IP, UserAgent: s.UserAgent,
	})
}

func decodeSession(id string, b []byte) (Session, error) {
	var r sessionRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return Session{}, fmt.Errorf("decode session record: %w", err)
	}
	if err := checkRecordVersion(r.V); err != nil {
		return Session{}, err
	}
	return Session{ID: id, UserID: r.User, AuthMethod: r.AuthMethod, CreatedAt: r.CreatedAt,
		LastSeen: r.LastSeen, IdleExpiresAt: r.IdleExpiresAt, ExpiresAt: r.ExpiresAt,
		IP: r.IP, UserAgent: r.UserAgent}, nil
}

func encodeTicket(t Ticket) ([]byte, error) {
	return json.Marshal(ticketRecord{
		V: recordVersion, Kind: t.Kind, User: t.UserID, CreatedAt: t.CreatedAt.UTC(), ExpiresAt: t.ExpiresAt.UTC(),
	})
}

func decodeTicket(id string, b []byte) (Ticket, error) {
	var r ticketRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return Ticket{}, fmt.Errorf("decode ticket record: %w", err)
	}
	if err := checkRecordVersion(r.V); err != nil {
		return Ticket{}, err
	}
	return Ticket{ID: id, Kind: r.Kind, UserID: r.User, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt}, nil
}

// shareRecord is a NameShares as stored; the name is the key. Owner is whom the list was
// saved for.
type shareRecord struct {
	V         int       `json:"v"`
	Owner     string    `json:"owner"`
	With      []string  `json:"with"`
	UpdatedAt time.Time `json:"updated_at"`
}

func encodeShares(sh NameShares) ([]byte, error) {
	return json.Marshal(shareRecord{V: recordVersion, Owner: sh.Owner, With: sh.With, UpdatedAt: sh.UpdatedAt.UTC()})
}

// oauthClientRecord is an OAuthClient as stored; the id is the key.
type oauthClientRecord struct {
	V                       int       `json:"v"`
	Kind                    string    `json:"kind,omitempty"`
	Name                    string    `json:"name,omitempty"`
	URI                     string    `json:"uri,omitempty"`
	LogoURI                 string    `json:"logo_uri,omitempty"`
	RedirectURIs            []string  `json:"redirect_uris,omitempty"`
	GrantTypes              []string  `json:"grant_types,omitempty"`
	ResponseTypes           []string  `json:"response_types,omitempty"`
	Scopes                  []string  `json:"scopes,omitempty"`
	ApplicationType         string    `json:"application_type,omitempty"`
	TokenEndpointAuthMethod string    `json:"token_endpoint_auth_method,omitempty"`
	SecretHash              string    `json:"secret_hash,omitempty"`
	Metadata                []byte    `json:"metadata,omitempty"` // base64 in JSON
	CreatedAt               time.Time `json:"created_at"`
	LastUsed                time.Time `json:"last_used,omitzero"`
	ExpiresAt               time.Time `json:"expires_at,omitzero"`
	FreshUntil              time.Time `json:"fresh_until,omitzero"`
}

// oauthTokenRecord is one fosite request as stored under a token signature; kind and
// signature are the key. Subject is the session's, kept so that a family without a grant
// record (a code not yet exchanged) can still be found by user.
type oauthTokenRecord struct {
	V                 int             `json:"v"`
	RequestID         string          `json:"request_id"`
	RequestedAt       time.Time       `json:"requested_at"`
	ClientID          string          `json:"client_id"`
	Subject           string          `json:"subject,omitempty"`
	RequestedScopes   []string        `json:"requested_scopes,omitempty"`
	GrantedScopes     []string        `json:"granted_scopes,omitempty"`
	RequestedAudience []string        `json:"requested_audience,omitempty"`
	GrantedAudience   []string        `json:"granted_audience,omitempty"`
	Form              string          `json:"form,omitempty"`
	Session           json.RawMessage `json:"session,omitempty"`
	Active            bool            `json:"active"`
	ExpiresAt         time.Time       `json:"expires_at,omitzero"`
	AccessSig         string          `json:"access_sig,omitempty"`
	RotatedAt         time.Time       `json:"rotated_at,omitzero"`
	Successor         []byte          `json:"successor,omitempty"` // base64 in JSON
}

// oauthGrantRecord is an OAuthGrant as stored; the request id is the key.
type oauthGrantRecord struct {
	V         int       `json:"v"`
	User      string    `json:"user"`
	Client    string    `json:"client"`
	Resources []string  `json:"resources,omitempty"`
	Scopes    []string  `json:"scopes,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// oauthConsentRecord is an OAuthConsent as stored; user, client and resource are the key.
type oauthConsentRecord struct {
	V         int       `json:"v"`
	Scopes    []string  `json:"scopes,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// versioned is every JSON record: decodeRecord checks the version.
type versioned interface{ version() int }

func (r shareRecord) version() int        { return r.V }
func (r oauthClientRecord) version() int  { return r.V }
func (r oauthTokenRecord) version() int   { return r.V }
func (r oauthGrantRecord) version() int   { return r.V }
func (r oauthConsentRecord) version() int { return r.V }

// decodeRecord decodes a JSON record and checks its version; what names the record's kind in
// errors.
func decodeRecord[T versioned](what string, b []byte) (T, error) {
	var r T
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode %s record: %w", what, err)
	}
	return r, checkRecordVersion(r.version())
}
