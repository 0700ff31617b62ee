package web

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
)

// ErrLocalCARefused is returned (wrapped) by [LocalCA.Issue] when a certificate request asks for
// something the local CA will not sign: a name outside its domains, an IP address, an e-mail or
// URI name, or a request whose self-signature does not verify.
var ErrLocalCARefused = errors.New("local CA refuses the request")

// SecretStore persists small blobs that are created once. It is implemented by data.Store; the
// interface lives here so that package web does not import package data.
type SecretStore interface {
	// LoadOrCreateSecret returns the blob stored under name. If there is none it calls create,
	// stores the result and returns it. Two concurrent callers must get the same blob.
	LoadOrCreateSecret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error)
}

// LocalCAConfig configures [NewLocalCA]. Every field is read once, by NewLocalCA, except Now,
// which is read on every [LocalCA.Issue].
type LocalCAConfig struct {
	// Secrets stores the CA certificate and key. Required. The blob is PEM: the certificate, then
	// the PKCS#8 private key. Its name is "local-ca:" followed by the sorted Domains joined with
	// ",", so changing Domains creates a new CA instead of reusing one that cannot sign for them.
	Secrets SecretStore

	// Domains are the DNS names the CA may sign for; each also covers all its subdomains.
	// Required, e.g. ["toolgate.localhost"]. They become the root's X.509 name constraints,
	// so a leaked development CA cannot mint certificates for any other site. Names are
	// lower-cased; a trailing dot is dropped.
	Domains []string

	// LeafLifetime is how long issued certificates are valid. Default 7 days. certmagic renews
	// them when a third of the lifetime is left.
	LeafLifetime time.Duration

	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// LocalCA is a small certificate authority for development (the embedded default domain
// toolgate.localhost), where no public ACME CA can validate names. It implements
// certmagic.Issuer. Users trust its root (RootPEM) once; the root is name-constrained to the
// configured domains.
type LocalCA struct {
	cert     *x509.Certificate
	key      crypto.Signer
	rootPEM  []byte
	domains  []string
	lifetime time.Duration
	now      func() time.Time
}

// Local CA parameters. The root lives ten years so that a developer trusts it once per machine;
// leaves are short-lived and renewed by certmagic.
const (
	localCASecretPrefix     = "local-ca:"
	localCAIssuerKeyPrefix  = "toolgate-local-ca"
	localCARootLifetimeYrs  = 10
	localCADefaultLeafLife  = 7 * 24 * time.Hour
	localCABackdate         = time.Hour
	localCASerialBits       = 128
	localCAPEMCertificate   = "CERTIFICATE"
	localCAPEMPrivateKey    = "PRIVATE KEY"
	localCACommonNamePrefix = "toolgate local CA "
)

// NewLocalCA loads the CA for cfg.Domains from cfg.Secrets, creating and storing it on first use.
func NewLocalCA(ctx context.Context, cfg LocalCAConfig) (*LocalCA, error) {
	if cfg.Secrets == nil {
		return nil, errors.New("web: LocalCAConfig.Secrets is required")
	}
	domains, err := localCANormalizeDomains(cfg.Domains)
	if err != nil {
		return nil, err
	}
	ca := &LocalCA{domains: domains, lifetime: cfg.LeafLifetime, now: cfg.Now}
	if ca.lifetime <= 0 {
		ca.lifetime = localCADefaultLeafLife
	}
	if ca.now == nil {
		ca.now = time.Now
	}

	name := localCASecretPrefix + strings.Join(domains, ",")
	blob, err := cfg.Secrets.LoadOrCreateSecret(ctx, name, func() ([]byte, error) {
		return newLocalCARoot(domains, ca.now())
	})
	if err != nil {
		return nil, fmt.Errorf("web: loading local CA secret %q: %w", name, err)
	}
	cert, key, err := parseLocalCARoot(blob)
	if err != nil {
		return nil, fmt.Errorf("web: local CA secret %q is unusable (delete it to create a new CA): %w", name, err)
	}
	// The secret name encodes the domains, so a mismatch means the blob was written by something
	// else; signing with it would produce leaves that fail verification.
	got := slices.Clone(cert.PermittedDNSDomains)
	slices.Sort(got)
	if !cert.PermittedDNSDomainsCritical || !slices.Equal(got, domains) {
		return nil, fmt.Errorf("web: local CA secret %q is constrained to %v, want %v (delete it to create a new CA)",
			name, cert.PermittedDNSDomains, domains)
	}
	if now := ca.now(); now.After(cert.NotAfter) {
		return nil, fmt.Errorf("web: local CA in secret %q expired on %s (delete it to create a new CA)",
			name, cert.NotAfter.Format(time.DateOnly))
	}
	ca.cert, ca.key = cert, key
	ca.rootPEM = pem.EncodeToMemory(&pem.Block{Type: localCAPEMCertificate, Bytes: cert.Raw})
	return ca, nil
}

// RootPEM returns the root certificate in PEM form, for users to add to their trust store.
func (ca *LocalCA) RootPEM() []byte { return slices.Clone(ca.rootPEM) }

// Root returns the root certificate. Callers must not modify it.
func (ca *LocalCA) Root() *x509.Certificate { return ca.cert }

// IssuerKey implements certmagic.Issuer. certmagic stores certificates under this key, so it
// names this particular root ("toolgate-local-ca-" plus 8 bytes of the SHA-256 of the root
// certificate): when the CA is replaced, leaves signed by the old one are not loaded and served
// as if they chained to the new root.
func (ca *LocalCA) IssuerKey() string {
	sum := sha256.Sum256(ca.cert.Raw)
	return localCAIssuerKeyPrefix + "-" + hex.EncodeToString(sum[:8])
}

// covers reports whether name (lower-case) is one of the CA's domains or below one.
func (ca *LocalCA) covers(name string) bool {
	for _, d := range ca.domains {
		if name == d || strings.HasSuffix(name, "."+d) {
			return true
		}
	}
	return false
}

// Issue implements certmagic.Issuer: it signs a server certificate for the DNS names in csr.
// The result is the leaf followed by the root, both PEM.
func (ca *LocalCA) Issue(ctx context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("web: local CA: %w", err)
	}
	if csr == nil {
		return nil, fmt.Errorf("web: %w: no certificate request", ErrLocalCARefused)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("web: %w: certificate request signature: %w", ErrLocalCARefused, err)
	}
	// The root's name constraints cover DNS names only, so any other SAN type would be either
	// unconstrained (e-mail, URI) or excluded (IP); refuse them here with a clear message.
	if len(csr.IPAddresses) > 0 {
		return nil, fmt.Errorf("web: %w: IP address names %v are not allowed", ErrLocalCARefused, csr.IPAddresses)
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return nil, fmt.Errorf("web: %w: only DNS names are allowed", ErrLocalCARefused)
	}
	if len(csr.DNSNames) == 0 {
		return nil, fmt.Errorf("web: %w: the request names no DNS name", ErrLocalCARefused)
	}
	names := make([]string, 0, len(csr.DNSNames))
	for _, n := range csr.DNSNames {
		n = strings.ToLower(n)
		base := strings.TrimPrefix(n, "*.") // a left-most wildcard is fine; the rest must be a name
		if !certValidDNSName(base) {
			return nil, fmt.Errorf("web: %w: %q is not a valid DNS name", ErrLocalCARefused, n)
		}
		if !ca.covers(base) {
			return nil, fmt.Errorf("web: %w: %q is outside %v", ErrLocalCARefused, n, ca.domains)
		}
		names = append(names, n)
	}

	now := ca.now()
	if !now.Before(ca.cert.NotAfter) {
		return nil, fmt.Errorf("web: local CA expired on %s", ca.cert.NotAfter.Format(time.DateOnly))
	}
	notAfter := now.Add(ca.lifetime)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter // a leaf may not outlive its issuer
	}
	serial, err := localCASerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		// Backdated so that a client whose clock is a little behind still accepts it.
		NotBefore:             now.Add(-localCABackdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("web: local CA signing certificate for %v: %w", names, err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: localCAPEMCertificate, Bytes: der})
	out = append(out, ca.rootPEM...)
	return &certmagic.IssuedCertificate{Certificate: out}, nil
}

// newLocalCARoot creates a self-signed, name-constrained root and returns it as the PEM blob
// stored in the secret store.
func newLocalCARoot(domains []string, now time.Time) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("web: generating local CA key: %w", err)
	}
	serial, err := localCASerial()
	if err != nil {
		return nil, err
	}
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("web: generating local CA id: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The random id tells apart the CAs of different machines in a trust store listing.
		Subject: pkix.Name{
			CommonName:   localCACommonNamePrefix + hex.EncodeToString(id[:]),
			Organization: []string{"toolgate development"},
		},
		NotBefore:             now.Add(-localCABackdate),
		NotAfter:              now.AddDate(localCARootLifetimeYrs, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // no intermediates: the root signs leaves directly
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		// Constraining the root's EKU to server auth is honoured by Go, browsers and OpenSSL:
		// the root cannot vouch for client, code-signing or e-mail certificates.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// Name constraints (RFC 5280 §4.2.1.10) make this CA harmless outside its domains: a
		// permitted DNS subtree "d" matches d and every name below it. Critical, so verifiers
		// that do not understand it must reject rather than ignore it. IP SANs are excluded
		// entirely, since no IP constraint would otherwise mean "any IP".
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         domains,
		ExcludedIPRanges: []*net.IPNet{
			{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("web: creating local CA certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("web: encoding local CA key: %w", err)
	}
	var buf bytes.Buffer
	_ = pem.Encode(&buf, &pem.Block{Type: localCAPEMCertificate, Bytes: der})
	_ = pem.Encode(&buf, &pem.Block{Type: localCAPEMPrivateKey, Bytes: pkcs8})
	return buf.Bytes(), nil
}

// parseLocalCARoot reads the blob written by newLocalCARoot and checks that the key belongs to the
// certificate and that the certificate is a self-signed CA.
func parseLocalCARoot(blob []byte) (*x509.Certificate, crypto.Signer, error) {
	certBlock, rest := pem.Decode(blob)
	if certBlock == nil || certBlock.Type != localCAPEMCertificate {
		return nil, nil, errors.New("first PEM block is not a CERTIFICATE")
	}
	keyBlock, _ := pem.Decode(rest)
	if keyBlock == nil || keyBlock.Type != localCAPEMPrivateKey {
		return nil, nil, errors.New("second PEM block is not a PRIVATE KEY")
	}
	cert, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing private key: %w", err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("private key of type %T cannot sign", k)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, errors.New("private key does not match the certificate")
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, nil, errors.New("certificate is not a CA")
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, nil, fmt.Errorf("certificate is not self-signed: %w", err)
	}
	return cert, key, nil
}

// localCANormalizeDomains lower-cases, validates, sorts and de-duplicates the CA's domains.
func localCANormalizeDomains(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, errors.New("web: LocalCAConfig.Domains is required (e.g. [\"toolgate.localhost\"])")
	}
	out := make([]string, 0, len(in))
	for _, d := range in {
		n := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if !certValidDNSName(n) {
			return nil, fmt.Errorf("web: LocalCAConfig.Domains: %q is not a DNS name", d)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// localCASerial returns a random positive serial number of up to 128 bits. RFC 5280 allows 20
// octets; CA/Browser Forum rules ask for at least 64 bits of randomness.
func localCASerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), localCASerialBits)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("web: generating serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil // never zero: some verifiers reject serial 0
}

// certValidDNSName reports whether name is a lower-case DNS host name: dot-separated labels of
// a-z, 0-9 and '-', each 1 to 63 octets and not starting or ending with '-', at most 253 octets
// in all, at least two labels, and not all-numeric (so an IPv4 literal never passes). Punycode
// (xn--) labels pass; upper case, '_', '*', spaces and trailing dots do not.
func certValidDNSName(name string) bool {
	if len(name) == 0 || len(name) > 253 {
		return false
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return false
	}
	numeric := true
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			switch {
			case c >= 'a' && c <= 'z', c == '-':
				numeric = false
			case c >= '0' && c <= '9':
			default:
				return false
			}
		}
	}
	return !numeric
}
