package web

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ErrCertNotAllowed is returned (wrapped) by the on-demand decision when a TLS handshake names a
// host that may not have a certificate: a malformed name, or one that CertManagerConfig.Allow
// refused (or no Allow is set). The client sees the handshake fail with an internal-error alert.
var ErrCertNotAllowed = errors.New("no certificate may be obtained for this name")

// acmeTLS1Protocol is the ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737 §6.2). The ACME
// server's validation handshake offers only this protocol; certmagic's GetCertificate recognises
// it and answers with the challenge certificate, so the protocol must be in NextProtos or the
// handshake fails before a certificate is chosen.
const acmeTLS1Protocol = "acme-tls/1"

// CertManagerConfig configures [NewCertManager]. Every field is read once, by NewCertManager,
// except Allow, which is called during handshakes (and certmagic's on-demand renewals) for as
// long as the manager serves.
type CertManagerConfig struct {
	// Domain is the apex domain D (e.g. "toolgate.localhost"). Its certificate is obtained or
	// loaded by Start and renewed in the background; every other name is on-demand. Required.
	// Lower-cased; a trailing dot is dropped.
	Domain string

	// Wildcard, if set (e.g. "*.toolgate.localhost"), is managed like Domain from Start on and
	// serves every single-label name under it without asking Allow. With the local CA toolgate
	// sets it, so that every tunnel name gets a certificate at once, and a name nobody holds
	// gets a readable 404 page instead of a failed handshake. With ACME a wildcard needs
	// DNS-01, which toolgate does not configure yet. Default "": none.
	Wildcard string

	// Storage holds certificates, keys, ACME accounts and locks. Required: certmagic's default
	// (a FileStorage under the user's home) is never used. toolgate passes
	// data.Store.CertStorage(); tests may use certmagic.FileStorage in t.TempDir().
	Storage certmagic.Storage

	// LocalCA, if non-nil, issues every certificate (development). ACME must then be nil.
	// Exactly one of LocalCA and ACME is required.
	LocalCA *LocalCA

	// ACME, if non-nil, makes certificates come from an ACME CA. LocalCA must then be nil.
	ACME *ACMEConfig

	// Allow decides, during a TLS handshake for a name that has no certificate yet, whether to
	// obtain one (on-demand TLS). It must return nil to allow and an error to refuse; the error
	// is logged, never shown to the client. name is lower-case punycode and has already passed
	// a syntax check. toolgate allows only names of live or reserved tunnels. Default nil:
	// every name except Domain is refused. Allow runs inside the handshake, so it must be fast
	// and must not block on the network; ctx ends when the handshake is abandoned.
	Allow func(ctx context.Context, name string) error

	// Logger receives certmagic's log. Default: discard.
	Logger *slog.Logger
}

// ACMEConfig configures certificates from an ACME CA (RFC 8555). Every field is read once, by
// NewCertManager. Setting it means the operator accepts the CA's terms of service: the account is
// created with termsOfServiceAgreed.
type ACMEConfig struct {
	// CA is the directory URL. Required, https. E.g. Let's Encrypt production
	// "https://acme-v02.api.letsencrypt.org/directory". It is also used for retries: certmagic
	// would otherwise retry a failed order against Let's Encrypt staging, which issues
	// untrusted certificates and, for a private CA, is simply the wrong server.
	CA string

	// Email is the ACME account contact. Required; the CA sends expiry and policy notices there.
	Email string

	// TrustedRoots are the roots for the HTTPS connection to the CA. Default nil: system roots.
	// Tests pass the in-process CA's.
	TrustedRoots *x509.CertPool

	// ListenHost is the host a challenge solver binds when certmagic has to start one itself.
	// Default "": all interfaces. Tests use 127.0.0.1.
	ListenHost string

	// AltTLSALPNPort is the port on which TLS-ALPN-01 is answered. Default 0: 443. toolgate sets
	// it to its own HTTPS port: certmagic then finds the port in use and leaves the answer to the
	// running server, whose GetCertificate (TLSConfig) serves the challenge certificate.
	AltTLSALPNPort int

	// DisableHTTPChallenge turns off HTTP-01. Default false. toolgate sets it unless it listens
	// on port 80 and wraps that listener's handler with HTTPChallengeHandler.
	DisableHTTPChallenge bool

	// AltHTTPPort is the port on which HTTP-01 is answered. Default 0: 80. Like AltTLSALPNPort,
	// if the port is in use certmagic assumes the running server answers (HTTPChallengeHandler).
	AltHTTPPort int
}

// CertManager obtains, renews and serves TLS certificates with certmagic: one for the apex domain,
// managed from Start on, and one per tunnel name, obtained during the first handshake that asks
// for it if Allow agrees.
//
// It holds two certmagic configs over one cache. certmagic ignores names passed to ManageSync
// when the config has on-demand enabled (it only allow-lists them, and a DecisionFunc overrides
// the allow-list), and its background renewal skips on-demand configs. So the apex gets a plain
// config (obtained at Start, renewed by the cache's timer) and all other names an on-demand one
// (obtained and renewed during handshakes).
type CertManager struct {
	domain   string
	wildcard string // "*.example" or ""
	wildBase string // "example", for matching
	allow    func(ctx context.Context, name string) error
	cache    *certmagic.Cache
	apex     *certmagic.Config
	onDemand *certmagic.Config
	// httpIssuer answers HTTP-01 challenges; nil when HTTP-01 is not in use.
	httpIssuer *certmagic.ACMEIssuer
	stopOnce   sync.Once
}

// NewCertManager validates cfg and builds the certmagic cache and configs. It does no I/O; call
// Start to get the apex certificate and Stop to end background maintenance.
func NewCertManager(cfg CertManagerConfig) (*CertManager, error) {
	domain := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(cfg.Domain)), ".")
	switch {
	case domain == "":
		return nil, errors.New("web: CertManagerConfig.Domain is required")
	case !certValidDNSName(domain):
		return nil, fmt.Errorf("web: CertManagerConfig.Domain %q is not a DNS name", cfg.Domain)
	case cfg.Storage == nil:
		return nil, errors.New("web: CertManagerConfig.Storage is required")
	case cfg.LocalCA == nil && cfg.ACME == nil:
		return nil, errors.New("web: CertManagerConfig needs LocalCA or ACME")
	case cfg.LocalCA != nil && cfg.ACME != nil:
		return nil, errors.New("web: CertManagerConfig.LocalCA and CertManagerConfig.ACME are exclusive")
	case cfg.LocalCA != nil && !cfg.LocalCA.covers(domain):
		return nil, fmt.Errorf("web: CertManagerConfig.LocalCA may sign only for %v, not Domain %q",
			cfg.LocalCA.domains, domain)
	}
	if cfg.ACME != nil {
		if err := cfg.ACME.validate(); err != nil {
			return nil, err
		}
	}
	wildcard := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(cfg.Wildcard)), ".")
	wildBase, isWild := strings.CutPrefix(wildcard, "*.")
	switch {
	case wildcard == "":
	case !isWild || !certValidDNSName(wildBase):
		return nil, fmt.Errorf("web: CertManagerConfig.Wildcard %q is not of the form *.domain", cfg.Wildcard)
	case cfg.LocalCA != nil && !cfg.LocalCA.covers(wildBase):
		return nil, fmt.Errorf("web: CertManagerConfig.LocalCA may not sign for Wildcard %q", cfg.Wildcard)
	}

	zl := zap.NewNop()
	if cfg.Logger != nil {
		zl = zap.New(slogZapCore{h: cfg.Logger.Handler()})
	}

	m := &CertManager{domain: domain, wildcard: wildcard, wildBase: wildBase, allow: cfg.Allow}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		// Required by certmagic: which config manages (renews) a cached certificate. The apex
		// certificate belongs to the apex config, everything else to the on-demand one.
		GetConfigForCert: func(c certmagic.Certificate) (*certmagic.Config, error) {
			if slices.Contains(c.Names, m.domain) || (m.wildcard != "" && slices.Contains(c.Names, m.wildcard)) {
				return m.apex, nil
			}
			return m.onDemand, nil
		},
		Logger: zl,
	})

	// certmagic.New fills every zero field from the package-level certmagic.Default, so each
	// field that matters is set explicitly (Issuers to a non-nil slice: a nil one would make New
	// build an ACME issuer from DefaultACME, pointed at Let's Encrypt).
	base := certmagic.Config{
		Storage:           cfg.Storage,
		Logger:            zl,
		DefaultServerName: domain,
		Issuers:           []certmagic.Issuer{},
	}
	m.apex = certmagic.New(m.cache, base)
	m.apex.OnDemand = nil // even if someone set certmagic.Default.OnDemand

	od := base
	od.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: m.decide}
	m.onDemand = certmagic.New(m.cache, od)

	if cfg.LocalCA != nil {
		m.apex.Issuers = []certmagic.Issuer{cfg.LocalCA}
		m.onDemand.Issuers = []certmagic.Issuer{cfg.LocalCA}
		return m, nil
	}
	// An ACMEIssuer is bound to one config (its solvers use that config's storage and TLS
	// config), so each config gets its own; they share the account through Storage.
	tmpl := cfg.ACME.issuerTemplate(zl)
	m.apex.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(m.apex, tmpl)}
	odIssuer := certmagic.NewACMEIssuer(m.onDemand, tmpl)
	m.onDemand.Issuers = []certmagic.Issuer{odIssuer}
	if !cfg.ACME.DisableHTTPChallenge {
		m.httpIssuer = odIssuer
	}
	return m, nil
}

// validate checks the ACME settings, naming the offending field.
func (a *ACMEConfig) validate() error {
	u, err := url.Parse(a.CA)
	switch {
	case a.CA == "":
		return errors.New("web: ACMEConfig.CA (directory URL) is required")
	case err != nil:
		return fmt.Errorf("web: ACMEConfig.CA: %w", err)
	case u.Scheme != "https" || u.Host == "":
		// RFC 8555 §6.1: ACME runs over HTTPS only.
		return fmt.Errorf("web: ACMEConfig.CA %q must be an https URL", a.CA)
	case a.Email == "" || !strings.Contains(a.Email, "@"):
		return fmt.Errorf("web: ACMEConfig.Email %q must be an e-mail address", a.Email)
	case a.AltTLSALPNPort < 0 || a.AltTLSALPNPort > 65535:
		return fmt.Errorf("web: ACMEConfig.AltTLSALPNPort %d is not a port", a.AltTLSALPNPort)
	case a.AltHTTPPort < 0 || a.AltHTTPPort > 65535:
		return fmt.Errorf("web: ACMEConfig.AltHTTPPort %d is not a port", a.AltHTTPPort)
	}
	return nil
}

// issuerTemplate maps the config onto certmagic's ACMEIssuer.
func (a *ACMEConfig) issuerTemplate(zl *zap.Logger) certmagic.ACMEIssuer {
	return certmagic.ACMEIssuer{
		CA: a.CA,
		// NewACMEIssuer swaps in Let's Encrypt staging as TestCA when CA is LE production, and
		// retries after a failure go to TestCA. Retrying against the same CA keeps retries
		// producing trusted certificates and works for any CA.
		TestCA:               a.CA,
		Email:                a.Email,
		Agreed:               true,
		TrustedRoots:         a.TrustedRoots,
		ListenHost:           a.ListenHost,
		AltTLSALPNPort:       a.AltTLSALPNPort,
		AltHTTPPort:          a.AltHTTPPort,
		DisableHTTPChallenge: a.DisableHTTPChallenge,
		Logger:               zl,
	}
}

// Start obtains the apex certificate, or loads it from storage, and puts it under background
// renewal. It returns when the certificate is in the cache. With ACME, the validation may need the
// server using TLSConfig (TLS-ALPN-01) or HTTPChallengeHandler (HTTP-01) to be serving already.
func (m *CertManager) Start(ctx context.Context) error {
	names := []string{m.domain}
	if m.wildcard != "" {
		names = append(names, m.wildcard)
	}
	if err := m.apex.ManageSync(ctx, names); err != nil {
		return fmt.Errorf("web: certificate for %s: %w", strings.Join(names, ", "), err)
	}
	return nil
}

// TLSConfig returns a server TLS configuration that serves managed certificates, obtains tunnel
// certificates on demand and answers TLS-ALPN-01 challenges. Each call returns a new value.
func (m *CertManager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1", acmeTLS1Protocol},
		GetCertificate: m.getCertificate,
	}
}

// getCertificate routes a ClientHello to the apex or the on-demand config. A hello without SNI,
// or with an IP literal (which RFC 6066 §3 forbids in SNI but some clients send), gets the apex
// certificate: it is rewritten to name Domain, so certmagic finds it by exact match instead of
// asking the decision function about an IP.
func (m *CertManager) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := hello.ServerName
	if name == "" || net.ParseIP(name) != nil {
		h := *hello
		h.ServerName = m.domain
		return m.apex.GetCertificate(&h)
	}
	if strings.EqualFold(name, m.domain) || m.underWildcard(name) {
		return m.apex.GetCertificate(hello)
	}
	return m.onDemand.GetCertificate(hello)
}

// underWildcard reports whether name is one label under the managed wildcard.
func (m *CertManager) underWildcard(name string) bool {
	if m.wildcard == "" {
		return false
	}
	label, ok := strings.CutSuffix(strings.ToLower(name), "."+m.wildBase)
	return ok && label != "" && !strings.Contains(label, ".")
}

// decide is certmagic's on-demand DecisionFunc. certmagic calls it before touching storage or
// the CA, with the SNI name already converted to lower-case punycode; the syntax check is a
// second line of defence in case that ever changes, so that Allow only sees plain host names.
func (m *CertManager) decide(ctx context.Context, name string) error {
	if name == m.domain {
		return nil
	}
	if !certValidDNSName(name) {
		return fmt.Errorf("%w: %q is not a lower-case DNS name", ErrCertNotAllowed, name)
	}
	if m.allow == nil {
		return fmt.Errorf("%w: %q (no on-demand names are configured)", ErrCertNotAllowed, name)
	}
	if err := m.allow(ctx, name); err != nil {
		return fmt.Errorf("%w: %q: %w", ErrCertNotAllowed, name, err)
	}
	return nil
}

// HTTPChallengeHandler wraps next so that ACME HTTP-01 challenge requests
// (/.well-known/acme-challenge/...) are answered. Without ACME, or with HTTP-01 disabled, it
// returns next unchanged.
func (m *CertManager) HTTPChallengeHandler(next http.Handler) http.Handler {
	if m.httpIssuer == nil {
		return next
	}
	return m.httpIssuer.HTTPChallengeHandler(next)
}

// Stop ends the cache's background maintenance (renewals, OCSP) and waits for it. It is
// idempotent. Certificates stay cached, so a server still using TLSConfig keeps working but
// nothing is renewed. Package-level certmagic goroutines outlive it: one ACME rate limiter per
// CA and account (never stopped by certmagic), and, with FileStorage, lock refreshers that exit
// within 5 s of their lock's release.
func (m *CertManager) Stop() {
	m.stopOnce.Do(m.cache.Stop)
}

// slogZapCore is a zapcore.Core that forwards certmagic's zap log to a slog.Handler.
type slogZapCore struct {
	h slog.Handler
}

func (c slogZapCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), zapToSlogLevel(l))
}

func (c slogZapCore) With(fields []zapcore.Field) zapcore.Core {
	return slogZapCore{h: c.h.WithAttrs(zapFieldsToAttrs(fields))}
}

func (c slogZapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c slogZapCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, zapToSlogLevel(e.Level), e.Message, 0)
	logger := "certmagic"
	if e.LoggerName != "" {
		logger += "." + e.LoggerName
	}
	r.AddAttrs(slog.String("logger", logger))
	r.AddAttrs(zapFieldsToAttrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (slogZapCore) Sync() error { return nil }

func zapToSlogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// zapFieldsToAttrs renders zap fields through zap's own map encoder, so every field type
// (errors, durations, string arrays) comes out as zap would print it, sorted by key.
func zapFieldsToAttrs(fields []zapcore.Field) []slog.Attr {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	slices.SortFunc(attrs, func(a, b slog.Attr) int { return strings.Compare(a.Key, b.Key) })
	return attrs
}
