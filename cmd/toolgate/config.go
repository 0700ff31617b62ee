package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"
)

// settings is everything `toolgate serve` can be told. Each field is one setting with one name
// used three ways: the flag --NAME, the environment variable TOOLGATE_NAME (upper case,
// dashes as underscores) and the key NAME in the YAML config file. Precedence, lowest first:
// built-in default, config file, environment, flags.
type settings struct {
	Config string
	Dev    bool

	DataDir      string
	Domain       string
	TunnelDomain string

	HTTPSListen     string
	PublicHTTPSPort int
	HTTPListen      string
	SSHListen       string
	PublicSSHPort   int
	AdminListen     string

	AuthorizedKeys string
	ACMECA         string
	ACMEEmail      string
	ACMECARoots    string

	SSHHandshakeTimeout  time.Duration
	SSHKeepaliveInterval time.Duration
	SSHKeepaliveCount    int
	SSHCiphers           stringList
	MaxConnsPerOwner     int
	MaxTunnelsPerUser    int
	MaxConnsPerIP        int
	RatePerIP            float64
	RatePerUser          float64
	MaxStreamsPerIP      int
	MaxStreamsPerUser    int

	KeyTTL             time.Duration
	KeyRememberTTL     time.Duration
	LinkCodeTTL        time.Duration
	SessionIdleTimeout time.Duration
	SessionMaxAge      time.Duration

	ResponseHeaderTimeout time.Duration
	TunnelIdleTimeout     time.Duration
	TunnelDialTimeout     time.Duration
	ReadHeaderTimeout     time.Duration
	AllowedOrigins        stringList
	ReservedNames         stringList

	OIDCIssuer          string
	OIDCClientID        string
	OIDCClientSecret    string // as configured: env:NAME, file:PATH or the secret itself
	OIDCScopes          stringList
	OIDCGroupsClaim     string
	OIDCAllowedDomains  stringList
	OIDCProvisionedOnly bool
	OIDCName            string

	TunnelAuth              string
	OAuthScopes             stringList
	OAuthMethodScopes       stringList
	OAuthRegistration       bool
	OAuthMetadataDocuments  bool
	OAuthPrivateDocuments   bool
	OAuthClientsFile        string
	OAuthAccessTokenTTL     time.Duration
	OAuthRefreshTokenTTL    time.Duration
	OAuthRefreshGrace       time.Duration
	OAuthRegistrationPerMin int
	Policy                  string
	MaxAuthAge              time.Duration
	MaxBody                 int
	BodyTimeout             time.Duration
	AuditMaxAge             time.Duration
	AuditMaxRecords         int
	AuditArgs               bool
	AuditJSONL              string

	LogLevel  string
	LogFormat string

	// oidcSecret is OIDCClientSecret resolved by loadSettings (see resolveSecret).
	oidcSecret string
	// oidcSecretLiteral reports that the secret was written into the config file or a flag
	// itself; startup warns about it.
	oidcSecretLiteral bool
}

// stringList is a comma-separated flag value; setting it replaces the whole list, so a flag
// overrides what the file said instead of appending to it.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error {
	*l = nil
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

const defaultDomain = "toolgate.localhost"

// newFlagSet registers every setting with its default and help text.
func newFlagSet(s *settings, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("toolgate serve", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&s.Config, "config", "", "YAML config file; its keys are the flag names")
	fs.BoolVar(&s.Dev, "dev", false, "the embedded development default (also what no configuration at all gives): local CA, *.localhost, local accounts")

	fs.StringVar(&s.DataDir, "data-dir", "./toolgate-data", "directory for the database and the development CA certificate")
	fs.StringVar(&s.Domain, "domain", defaultDomain, "apex domain D: the issuer and dashboard are https://D")
	fs.StringVar(&s.TunnelDomain, "tunnel-domain", "", "domain for tunnels, NAME.tunnel-domain (default: domain)")

	fs.StringVar(&s.HTTPSListen, "https-listen", "127.0.0.1:8443", "HTTPS listen address")
	fs.IntVar(&s.PublicHTTPSPort, "public-https-port", 0, "HTTPS port in public URLs, if a port mapping changes it (default: the listen port)")
	fs.StringVar(&s.HTTPListen, "http-listen", "", "plain-HTTP listen address for ACME HTTP-01 and redirects to HTTPS (default: off)")
	fs.StringVar(&s.SSHListen, "ssh-listen", "127.0.0.1:2222", "SSH listen address")
	fs.IntVar(&s.PublicSSHPort, "public-ssh-port", 0, "SSH port in the printed ssh command (default: the listen port)")
	fs.StringVar(&s.AdminListen, "admin-listen", "127.0.0.1:9180", "admin listener for /healthz, /readyz and /metrics (empty: off)")

	fs.StringVar(&s.AuthorizedKeys, "authorized-keys", "", "OpenSSH authorized_keys file: if set, only keys listed there may connect (they still belong to the user who linked them)")
	fs.StringVar(&s.ACMECA, "acme-ca", "", "ACME directory URL (default for a non-.localhost domain: Let's Encrypt)")
	fs.StringVar(&s.ACMEEmail, "acme-email", "", "ACME account email; required with ACME")
	fs.StringVar(&s.ACMECARoots, "acme-ca-roots", "", "PEM file of roots to trust for the ACME CA's API (default: system roots)")

	fs.DurationVar(&s.SSHHandshakeTimeout, "ssh-handshake-timeout", 15*time.Second, "time allowed for the SSH handshake and authentication")
	fs.DurationVar(&s.SSHKeepaliveInterval, "ssh-keepalive-interval", 15*time.Second, "how often toolgate checks that an SSH client is alive")
	fs.IntVar(&s.SSHKeepaliveCount, "ssh-keepalive-count", 3, "unanswered keepalives in a row before a connection and its tunnels are dropped")
	fs.Var(&s.SSHCiphers, "ssh-ciphers", "SSH ciphers offered (default: aes128-gcm@openssh.com,aes256-gcm@openssh.com; chacha20-poly1305@openssh.com is slower in Go)")
	fs.IntVar(&s.MaxConnsPerOwner, "max-connections-per-user", 10, "concurrent SSH connections per user (all their keys together)")
	fs.IntVar(&s.MaxTunnelsPerUser, "max-tunnels-per-user", 20, "live tunnels per user")
	fs.IntVar(&s.MaxConnsPerIP, "max-connections-per-ip", 100, "concurrent SSH connections from one client address (IPv6: one /64), whoever's keys they use")
	fs.Float64Var(&s.RatePerIP, "rate-per-ip", 100, "requests a second to tunnels from one client address (IPv6: one /64), in bursts of twice that; past it, 429 (0: no limit)")
	fs.Float64Var(&s.RatePerUser, "rate-per-user", 50, "requests a second to tunnels by one signed-in user, in bursts of twice that; past it, 429 (0: no limit)")
	fs.IntVar(&s.MaxStreamsPerIP, "max-streams-per-ip", 256, "requests to tunnels in flight at once from one client address, open event streams included; past it, 429 (0: no limit)")
	fs.IntVar(&s.MaxStreamsPerUser, "max-streams-per-user", 128, "requests to tunnels in flight at once by one signed-in user, open event streams included; past it, 429 (0: no limit)")

	fs.DurationVar(&s.KeyTTL, "key-ttl", 30*24*time.Hour, "how long an SSH key stays linked to its user before it must be approved again")
	fs.DurationVar(&s.KeyRememberTTL, "key-remember-ttl", 90*24*time.Hour, "the same, when the user ticks \"remember\" on the approval page")
	fs.DurationVar(&s.LinkCodeTTL, "link-code-ttl", 10*time.Minute, "how long the sign-in link shown to an unknown SSH key stays valid")
	fs.DurationVar(&s.SessionIdleTimeout, "session-idle-timeout", 12*time.Hour, "a browser session ends after this long without a request")
	fs.DurationVar(&s.SessionMaxAge, "session-max-age", 7*24*time.Hour, "a browser session ends this long after sign-in, active or not")

	fs.DurationVar(&s.ResponseHeaderTimeout, "response-header-timeout", 5*time.Minute, "wait for a local server's response headers before answering 504")
	fs.DurationVar(&s.TunnelIdleTimeout, "tunnel-idle-timeout", 3*time.Second, "keep an idle tunnel stream for reuse this long; keep it below local servers' keep-alive (5s for Node and uvicorn)")
	fs.DurationVar(&s.TunnelDialTimeout, "tunnel-dial-timeout", 15*time.Second, "wait for an SSH client to open a stream before answering 504")
	fs.DurationVar(&s.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "time allowed for a client to send request headers")
	fs.Var(&s.AllowedOrigins, "allowed-origins", "browser origins, besides a tunnel's own and the apex, allowed to call tunnels; host:* matches any port (default: http://localhost:*,http://127.0.0.1:*,http://[::1]:*)")
	fs.Var(&s.ReservedNames, "reserved-names", "tunnel names nobody may take, in addition to the built-in list")

	fs.StringVar(&s.OIDCIssuer, "oidc-issuer", "", "OpenID Connect issuer URL of the identity provider people sign in with (default: none, local accounts only)")
	fs.StringVar(&s.OIDCClientID, "oidc-client-id", "", "client id at the identity provider; required with oidc-issuer")
	fs.StringVar(&s.OIDCClientSecret, "oidc-client-secret", "", "client secret: env:NAME reads environment variable NAME, file:PATH reads a file; required with oidc-issuer")
	fs.Var(&s.OIDCScopes, "oidc-scopes", "scopes to request (default: openid,email,profile; openid is always added)")
	fs.StringVar(&s.OIDCGroupsClaim, "oidc-groups-claim", "groups", "ID token claim that lists the user's groups, refreshed at each sign-in (- for none)")
	fs.Var(&s.OIDCAllowedDomains, "oidc-allowed-domains", "email domains allowed to sign in through the identity provider (default: any)")
	fs.BoolVar(&s.OIDCProvisionedOnly, "oidc-provisioned-only", false, "only users that already exist (e.g. added with toolgate user add) may sign in through the identity provider")
	fs.StringVar(&s.OIDCName, "oidc-name", "", `identity provider's name on the sign-in page, "Sign in with NAME" (default: the issuer's host)`)

	fs.StringVar(&s.TunnelAuth, "tunnel-auth", "oauth", "oauth: every tunnel request needs an OAuth access token for that tunnel; none: tunnels are open to anyone with the URL (testing only)")
	fs.Var(&s.OAuthScopes, "oauth-scopes", "scopes every tunnel request needs, advertised to clients (default: mcp)")
	fs.Var(&s.OAuthMethodScopes, "oauth-method-scopes", "extra scopes per JSON-RPC method, METHOD=SCOPE[ SCOPE...], e.g. tools/call=mcp:call; a token without them gets a step-up challenge")
	fs.BoolVar(&s.OAuthRegistration, "oauth-dynamic-registration", true, "let MCP clients register themselves (RFC 7591)")
	fs.BoolVar(&s.OAuthMetadataDocuments, "oauth-metadata-documents", true, "accept clients identified by an https URL to their metadata document (Client ID Metadata Documents)")
	fs.BoolVar(&s.OAuthPrivateDocuments, "oauth-metadata-documents-private", false, "allow metadata documents on loopback and private addresses (testing only: it lets anyone make this server fetch from its own network)")
	fs.StringVar(&s.OAuthClientsFile, "oauth-clients-file", "", "YAML file of pre-registered OAuth clients: a list of {id, name, redirect_uris, secret (env:NAME or file:PATH; omit for a public client)}")
	fs.DurationVar(&s.OAuthAccessTokenTTL, "oauth-access-token-ttl", time.Hour, "lifetime of access tokens")
	fs.DurationVar(&s.OAuthRefreshTokenTTL, "oauth-refresh-token-ttl", 30*24*time.Hour, "lifetime of refresh tokens (each refresh issues a new one)")
	fs.DurationVar(&s.OAuthRefreshGrace, "oauth-refresh-grace", 30*time.Second, "a refresh token used again within this time gets the same new tokens instead of revoking them (clients that race themselves); 0 disables")
	fs.IntVar(&s.OAuthRegistrationPerMin, "oauth-registrations-per-minute", 10, "dynamic registrations allowed per client IP per minute")
	fs.StringVar(&s.Policy, "policy", "", "YAML policy file (rules with CEL conditions; reloaded on SIGHUP) (default: the built-in policy: owners may do everything, people a tunnel is shared with may use read tools)")
	fs.DurationVar(&s.MaxAuthAge, "max-auth-age", 12*time.Hour, "destructive tools need a sign-in younger than this (the built-in policy asks older ones to authorize again), and authorizing after it signs the person in again")
	fs.IntVar(&s.MaxBody, "max-body", 1<<20, "largest MCP request body toolgate reads whole to decide it (bytes); larger ones are refused")
	fs.DurationVar(&s.BodyTimeout, "body-timeout", 30*time.Second, "time allowed for a client to send a request body toolgate reads itself (MCP requests it decides, OAuth and sign-in forms), after its headers; slower MCP requests get 408")
	fs.DurationVar(&s.AuditMaxAge, "audit-max-age", 30*24*time.Hour, "audit records older than this are deleted")
	fs.IntVar(&s.AuditMaxRecords, "audit-max-records", 1_000_000, "the audit log keeps at most this many records, deleting the oldest")
	fs.BoolVar(&s.AuditArgs, "audit-args", false, "keep tool call arguments in audit records (secret-looking values redacted); default: only a digest")
	fs.StringVar(&s.AuditJSONL, "audit-jsonl", "", "also write every audit record as a JSON line to this file (- for standard output)")

	fs.StringVar(&s.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&s.LogFormat, "log-format", "json", "json or text")
	return fs
}

// envName is the environment variable for a setting.
func envName(flagName string) string {
	return "TOOLGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// loadSettings fills s from defaults, the config file, the environment and args, in that
// order of precedence. Errors name the setting and where its bad value came from.
func loadSettings(args []string, env func(string) (string, bool), out io.Writer) (*settings, error) {
	s := &settings{}
	fs := newFlagSet(s, out)
	// First pass: only to learn --config (flags are parsed again at the end so they win), and
	// which settings the command line gives.
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	path := s.Config
	if path == "" {
		path, _ = env(envName("config"))
	}
	if path != "" {
		if err := applyFile(fs, path); err != nil {
			return nil, err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		if v, ok := env(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("setting %s (from %s=%q): %w", f.Name, envName(f.Name), v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	s.Config = path
	if err := s.validate(); err != nil {
		return s, err
	}
	if s.OIDCIssuer != "" {
		var err error
		s.oidcSecret, s.oidcSecretLiteral, err = resolveSecret("oidc-client-secret", s.OIDCClientSecret, env, os.ReadFile)
		if err != nil {
			return s, err
		}
		// A literal in TOOLGATE_OIDC_CLIENT_SECRET is a secret kept in the environment,
		// which is what env:NAME asks for too: only the file and flags get the warning.
		if _, inEnv := env(envName("oidc-client-secret")); inEnv && !onCommandLine["oidc-client-secret"] {
			s.oidcSecretLiteral = false
		}
	}
	return s, nil
}

// resolveSecret returns the secret a secret setting names. "env:NAME" is the value of
// environment variable NAME and "file:PATH" the content of the file, without surrounding
// whitespace; either must exist and not be empty. Anything else is the secret itself, and
// literal is true so that startup can warn: config files and command lines are read, copied
// and shown by far more than the server. Errors name the setting and never hold the secret.
func resolveSecret(setting, value string, env func(string) (string, bool), readFile func(string) ([]byte, error)) (secret string, literal bool, err error) {
	switch {
	case strings.HasPrefix(value, "env:"):
		name := strings.TrimPrefix(value, "env:")
		if name == "" {
			return "", false, fmt.Errorf("setting %s: env: needs a variable name, as in env:NAME", setting)
		}
		v, ok := env(name)
		if !ok {
			return "", false, fmt.Errorf("setting %s: environment variable %s is not set", setting, name)
		}
		if v == "" {
			return "", false, fmt.Errorf("setting %s: environment variable %s is empty", setting, name)
		}
		return v, false, nil
	case strings.HasPrefix(value, "file:"):
		path := strings.TrimPrefix(value, "file:")
		if path == "" {
			return "", false, fmt.Errorf("setting %s: file: needs a path, as in file:/run/secrets/NAME", setting)
		}
		b, err := readFile(path)
		if err != nil {
			return "", false, fmt.Errorf("setting %s: %w", setting, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", false, fmt.Errorf("setting %s: file %s is empty", setting, path)
		}
		return v, false, nil
	case value == "":
		return "", false, fmt.Errorf("setting %s: required", setting)
	}
	return value, true, nil
}

// applyFile sets every key of a YAML config file. Keys are the flag names; values are scalars,
// or lists for list settings. Unknown keys are errors, with their line.
func applyFile(fs *flag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil // "---" and comments only: a document with nothing in it
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config file %s:%d: expected a mapping of setting: value", path, root.Line)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		name := k.Value
		where := fmt.Sprintf("config file %s:%d", path, k.Line)
		if name == "config" || fs.Lookup(name) == nil {
			return fmt.Errorf("%s: unknown setting %q", where, name)
		}
		var val string
		switch v.Kind {
		case yaml.ScalarNode:
			val = v.Value
		case yaml.SequenceNode:
			parts := make([]string, 0, len(v.Content))
			for _, e := range v.Content {
				if e.Kind != yaml.ScalarNode {
					return fmt.Errorf("%s: setting %s: list items must be plain values", where, name)
				}
				parts = append(parts, e.Value)
			}
			val = strings.Join(parts, ",")
		default:
			return fmt.Errorf("%s: setting %s: expected a value or a list", where, name)
		}
		if err := fs.Set(name, val); err != nil {
			return fmt.Errorf("%s: setting %s: invalid value %q: %w", where, name, val, err)
		}
	}
	return nil
}

// isLocalDomain reports whether d is a .localhost name: the development profile.
func isLocalDomain(d string) bool {
	return d == "localhost" || strings.HasSuffix(d, ".localhost")
}

func (s *settings) validate() error {
	s.Domain = strings.TrimSuffix(strings.ToLower(s.Domain), ".")
	s.TunnelDomain = strings.TrimSuffix(strings.ToLower(s.TunnelDomain), ".")
	if s.TunnelDomain == "" {
		s.TunnelDomain = s.Domain
	}
	var errs []error
	bad := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("setting %s: %s", name, fmt.Sprintf(format, a...)))
	}
	if s.Domain == "" || strings.ContainsAny(s.Domain, "/: ") {
		bad("domain", "%q is not a domain name", s.Domain)
	}
	if strings.ContainsAny(s.TunnelDomain, "/: ") {
		bad("tunnel-domain", "%q is not a domain name", s.TunnelDomain)
	}
	s.validateOAuth(bad)
	if s.Dev {
		if !isLocalDomain(s.Domain) {
			bad("dev", "the development default serves a .localhost domain; domain is %q", s.Domain)
		}
		if !isLocalDomain(s.TunnelDomain) {
			bad("dev", "the development default serves a .localhost domain; tunnel-domain is %q", s.TunnelDomain)
		}
		if s.ACMECA != "" {
			bad("dev", "the development default uses a local CA; remove acme-ca")
		}
	}
	if s.useACME() {
		if s.ACMEEmail == "" {
			bad("acme-email", "required to obtain certificates for %q over ACME", s.Domain)
		} else if at := strings.IndexByte(s.ACMEEmail, '@'); at <= 0 || at == len(s.ACMEEmail)-1 {
			bad("acme-email", "%q is not an e-mail address", s.ACMEEmail)
		}
		if u, err := url.Parse(s.acmeCA()); err != nil || u.Scheme != "https" || u.Host == "" {
			bad("acme-ca", "%q is not an https URL (ACME runs over HTTPS only)", s.acmeCA())
		}
	}
	for name, addr := range map[string]string{"https-listen": s.HTTPSListen, "ssh-listen": s.SSHListen} {
		if _, _, err := splitListen(addr); err != nil {
			bad(name, "%v", err)
		}
	}
	for name, addr := range map[string]string{"http-listen": s.HTTPListen, "admin-listen": s.AdminListen} {
		if addr == "" {
			continue
		}
		if _, _, err := splitListen(addr); err != nil {
			bad(name, "%v", err)
		}
	}
	for name, p := range map[string]int{"public-https-port": s.PublicHTTPSPort, "public-ssh-port": s.PublicSSHPort} {
		if p < 0 || p > 65535 {
			bad(name, "%d is not a port", p)
		}
	}
	for name, d := range map[string]time.Duration{
		"ssh-handshake-timeout": s.SSHHandshakeTimeout, "ssh-keepalive-interval": s.SSHKeepaliveInterval,
		"response-header-timeout": s.ResponseHeaderTimeout, "tunnel-idle-timeout": s.TunnelIdleTimeout,
		"tunnel-dial-timeout": s.TunnelDialTimeout, "read-header-timeout": s.ReadHeaderTimeout,
		"body-timeout": s.BodyTimeout,
		"key-ttl":      s.KeyTTL, "key-remember-ttl": s.KeyRememberTTL, "link-code-ttl": s.LinkCodeTTL,
		"session-idle-timeout": s.SessionIdleTimeout, "session-max-age": s.SessionMaxAge,
	} {
		if d <= 0 {
			bad(name, "must be positive, got %s", d)
		}
	}
	for name, n := range map[string]int{"ssh-keepalive-count": s.SSHKeepaliveCount,
		"max-connections-per-user": s.MaxConnsPerOwner, "max-tunnels-per-user": s.MaxTunnelsPerUser,
		"max-connections-per-ip": s.MaxConnsPerIP} {
		if n <= 0 {
			bad(name, "must be at least 1, got %d", n)
		}
	}
	for name, n := range map[string]int{"max-streams-per-ip": s.MaxStreamsPerIP, "max-streams-per-user": s.MaxStreamsPerUser} {
		if n < 0 {
			bad(name, "must be 0 (no limit) or more, got %d", n)
		}
	}
	for name, r := range map[string]float64{"rate-per-ip": s.RatePerIP, "rate-per-user": s.RatePerUser} {
		if r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
			bad(name, "must be 0 (no limit) or a positive number of requests a second, got %v", r)
		}
	}
	supported := ssh.SupportedAlgorithms().Ciphers
	for _, c := range s.SSHCiphers {
		if !slices.Contains(supported, c) {
			bad("ssh-ciphers", "%q is not one of %s", c, strings.Join(supported, ", "))
		}
	}
	switch s.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", "%q is not one of debug, info, warn, error", s.LogLevel)
	}
	switch s.LogFormat {
	case "json", "text":
	default:
		bad("log-format", "%q is not json or text", s.LogFormat)
	}
	for _, o := range s.AllowedOrigins {
		if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			bad("allowed-origins", "%q is not an origin (scheme://host[:port])", o)
		}
	}
	s.validateOIDC(bad)
	return errors.Join(errs...)
}

// validateOIDC checks the oidc-* settings: with an issuer, its URL and the client; without
// one, that no other oidc-* setting is given (it would do nothing, silently).
func (s *settings) validateOIDC(bad func(name, format string, a ...any)) {
	if s.OIDCIssuer == "" {
		for name, set := range map[string]bool{
			"oidc-client-id": s.OIDCClientID != "", "oidc-client-secret": s.OIDCClientSecret != "",
			"oidc-scopes": len(s.OIDCScopes) > 0, "oidc-groups-claim": s.OIDCGroupsClaim != "groups",
			"oidc-allowed-domains": len(s.OIDCAllowedDomains) > 0, "oidc-provisioned-only": s.OIDCProvisionedOnly,
			"oidc-name": s.OIDCName != "",
		} {
			if set {
				bad(name, "has no effect without oidc-issuer")
			}
		}
		return
	}
	u, err := url.Parse(s.OIDCIssuer)
	switch {
	case err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		bad("oidc-issuer", "%q is not an issuer URL (https://HOST[/PATH])", s.OIDCIssuer)
	case u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())):
		bad("oidc-issuer", "%q must be https (http only for localhost)", s.OIDCIssuer)
	}
	if s.OIDCClientID == "" {
		bad("oidc-client-id", "required with oidc-issuer")
	}
	if s.OIDCClientSecret == "" {
		bad("oidc-client-secret", "required with oidc-issuer (env:NAME or file:PATH)")
	}
	if s.OIDCGroupsClaim == "" {
		bad("oidc-groups-claim", `empty; give a claim name, or "-" for no groups`)
	}
	for i, d := range s.OIDCAllowedDomains {
		d = strings.TrimPrefix(strings.ToLower(d), "@")
		if d == "" || strings.ContainsAny(d, "@/: ") || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
			bad("oidc-allowed-domains", "%q is not a domain name", s.OIDCAllowedDomains[i])
		}
		s.OIDCAllowedDomains[i] = d
	}
	for _, sc := range s.OIDCScopes {
		if strings.ContainsAny(sc, " \"") {
			bad("oidc-scopes", "%q is not a scope", sc)
		}
	}
}

// isLoopback reports whether host is this machine: localhost, *.localhost or a loopback IP.
func isLoopback(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	return isLocalDomain(strings.ToLower(host))
}

// useACME reports whether certificates come from ACME rather than the local CA.
func (s *settings) useACME() bool {
	return s.ACMECA != "" || !isLocalDomain(s.Domain) || !isLocalDomain(s.TunnelDomain)
}

// acmeCA returns the ACME directory to use.
func (s *settings) acmeCA() string {
	if s.ACMECA != "" {
		return s.ACMECA
	}
	return "https://acme-v02.api.letsencrypt.org/directory"
}

func splitListen(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port", addr)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("%q has no valid port", addr)
	}
	return h, n, nil
}
