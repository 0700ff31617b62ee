package web

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// localCATestSecrets is an in-memory SecretStore.
type localCATestSecrets struct {
	mu      sync.Mutex
	blobs   map[string][]byte
	creates int
}

func (s *localCATestSecrets) LoadOrCreateSecret(_ context.Context, name string, create func() ([]byte, error)) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.blobs[name]; ok {
		return b, nil
	}
	b, err := create()
	if err != nil {
		return nil, err
	}
	if s.blobs == nil {
		s.blobs = make(map[string][]byte)
	}
	s.blobs[name] = b
	s.creates++
	return b, nil
}

func newTestLocalCA(t *testing.T, secrets SecretStore, domains ...string) *LocalCA {
	t.Helper()
	ca, err := NewLocalCA(t.Context(), LocalCAConfig{Secrets: secrets, Domains: domains})
	if err != nil {
		t.Fatalf("NewLocalCA: %v", err)
	}
	return ca
}

// testCSR makes a certificate request signed by a fresh P-256 key.
func testCSR(t *testing.T, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// parseIssued splits an IssuedCertificate's PEM into leaf and rest.
func parseIssued(t *testing.T, pemBytes []byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for rest := pemBytes; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	return certs
}

func TestLocalCAPersistedAndRoot(t *testing.T) {
	secrets := &localCATestSecrets{}
	ca1 := newTestLocalCA(t, secrets, "toolgate.localhost")
	ca2 := newTestLocalCA(t, secrets, "Toolgate.Localhost.") // normalised to the same domain set
	if !bytes.Equal(ca1.Root().Raw, ca2.Root().Raw) || secrets.creates != 1 {
		t.Fatalf("second NewLocalCA made a new CA (creates=%d)", secrets.creates)
	}
	if _, ok := secrets.blobs["local-ca:toolgate.localhost"]; !ok {
		t.Fatalf("secret names = %v", secrets.blobs)
	}
	if ca1.IssuerKey() != ca2.IssuerKey() || !strings.HasPrefix(ca1.IssuerKey(), "toolgate-local-ca-") {
		t.Fatalf("IssuerKey = %q, %q", ca1.IssuerKey(), ca2.IssuerKey())
	}

	root := ca1.Root()
	if !root.IsCA || root.MaxPathLen != 0 || !root.MaxPathLenZero ||
		root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign ||
		!root.PermittedDNSDomainsCritical || len(root.PermittedDNSDomains) != 1 ||
		root.PermittedDNSDomains[0] != "toolgate.localhost" ||
		!strings.HasPrefix(root.Subject.CommonName, "toolgate local CA ") {
		t.Fatalf("root = %+v", root)
	}
	if _, ok := root.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatalf("root key is %T", root.PublicKey)
	}
	if life := root.NotAfter.Sub(root.NotBefore); life < 9*365*24*time.Hour {
		t.Fatalf("root lifetime %v", life)
	}
	b, _ := pem.Decode(ca1.RootPEM())
	if b == nil || !bytes.Equal(b.Bytes, root.Raw) {
		t.Fatal("RootPEM does not hold Root")
	}
}

func TestLocalCAIssueVerifies(t *testing.T) {
	ca := newTestLocalCA(t, &localCATestSecrets{}, "toolgate.localhost")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())

	for _, name := range []string{"toolgate.localhost", "x.toolgate.localhost"} {
		csr := testCSR(t, &x509.CertificateRequest{DNSNames: []string{name}})
		issued, err := ca.Issue(t.Context(), csr)
		if err != nil {
			t.Fatalf("Issue(%s): %v", name, err)
		}
		certs := parseIssued(t, issued.Certificate)
		if len(certs) != 2 || !bytes.Equal(certs[1].Raw, ca.Root().Raw) {
			t.Fatalf("Issue(%s) returned %d certificates, want leaf+root", name, len(certs))
		}
		leaf := certs[0]
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Fatalf("leaf for %s does not verify: %v", name, err)
		}
		if leaf.NotAfter.After(ca.Root().NotAfter) {
			t.Fatalf("leaf outlives root")
		}
		if leaf.SerialNumber.BitLen() < 64 || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
			t.Fatalf("leaf serial %v, key usage %v", leaf.SerialNumber, leaf.KeyUsage)
		}
	}
}

func TestLocalCARefuses(t *testing.T) {
	ca := newTestLocalCA(t, &localCATestSecrets{}, "toolgate.localhost")

	tampered := testCSR(t, &x509.CertificateRequest{DNSNames: []string{"x.toolgate.localhost"}})
	tampered.Signature = bytes.Clone(tampered.Signature)
	tampered.Signature[len(tampered.Signature)-1] ^= 0xff

	// A request whose signed content names one thing but whose parsed fields say another: the
	// signature covers RawTBSCertificateRequest, so swapping the key must fail too.
	other := testCSR(t, &x509.CertificateRequest{DNSNames: []string{"x.toolgate.localhost"}})
	swapped := testCSR(t, &x509.CertificateRequest{DNSNames: []string{"x.toolgate.localhost"}})
	swapped.PublicKey = other.PublicKey

	cases := map[string]*x509.CertificateRequest{
		"outside":        testCSR(t, &x509.CertificateRequest{DNSNames: []string{"example.com"}}),
		"suffix trick":   testCSR(t, &x509.CertificateRequest{DNSNames: []string{"eviltoolgate.localhost"}}),
		"one of two":     testCSR(t, &x509.CertificateRequest{DNSNames: []string{"a.toolgate.localhost", "example.com"}}),
		"IP SAN":         testCSR(t, &x509.CertificateRequest{DNSNames: []string{"a.toolgate.localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}),
		"email SAN":      testCSR(t, &x509.CertificateRequest{DNSNames: []string{"a.toolgate.localhost"}, EmailAddresses: []string{"a@toolgate.localhost"}}),
		"no names":       testCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "toolgate.localhost"}}),
		"bad name":       testCSR(t, &x509.CertificateRequest{DNSNames: []string{"a_b.toolgate.localhost"}}),
		"bad signature":  tampered,
		"swapped key":    swapped,
		"nil request":    nil,
		"IP only":        testCSR(t, &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}),
		"wildcard other": testCSR(t, &x509.CertificateRequest{DNSNames: []string{"*.example.com"}}),
	}
	for name, csr := range cases {
		if _, err := ca.Issue(t.Context(), csr); !errors.Is(err, ErrLocalCARefused) {
			t.Errorf("%s: Issue err = %v, want ErrLocalCARefused", name, err)
		}
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ok := testCSR(t, &x509.CertificateRequest{DNSNames: []string{"x.toolgate.localhost"}})
	if _, err := ca.Issue(ctx, ok); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Issue err = %v", err)
	}
}

// The root's name constraints hold even against our own Issue being bypassed: a leaf for another
// domain signed directly with the CA key fails verification.
func TestLocalCANameConstraintsEnforcedByVerifier(t *testing.T) {
	ca := newTestLocalCA(t, &localCATestSecrets{}, "toolgate.localhost")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, tmpl := range map[string]*x509.Certificate{
		"example.com": {DNSNames: []string{"example.com"}},
		"127.0.0.1":   {DNSNames: []string{"a.toolgate.localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}},
	} {
		tmpl.SerialNumber, _ = localCASerial()
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err == nil {
			t.Errorf("leaf for %s outside the constraints verified", name)
		}
	}
}

func TestLocalCALeafCappedAtRoot(t *testing.T) {
	secrets := &localCATestSecrets{}
	ca := newTestLocalCA(t, secrets, "toolgate.localhost")
	// Nine days before the root expires, a 30-day leaf must stop at the root's NotAfter.
	late := ca.Root().NotAfter.Add(-9 * 24 * time.Hour)
	capped, err := NewLocalCA(t.Context(), LocalCAConfig{
		Secrets: secrets, Domains: []string{"toolgate.localhost"},
		LeafLifetime: 30 * 24 * time.Hour, Now: func() time.Time { return late },
	})
	if err != nil {
		t.Fatal(err)
	}
	issued, err := capped.Issue(t.Context(), testCSR(t, &x509.CertificateRequest{DNSNames: []string{"a.toolgate.localhost"}}))
	if err != nil {
		t.Fatal(err)
	}
	leaf := parseIssued(t, issued.Certificate)[0]
	if !leaf.NotAfter.Equal(ca.Root().NotAfter) {
		t.Fatalf("leaf NotAfter %v, root NotAfter %v", leaf.NotAfter, ca.Root().NotAfter)
	}
	if want := late.Add(-time.Hour).Truncate(time.Second); !leaf.NotBefore.Equal(want) {
		t.Fatalf("leaf NotBefore %v, want %v", leaf.NotBefore, want)
	}

	// Default lifetime: 7 days.
	issued, err = ca.Issue(t.Context(), testCSR(t, &x509.CertificateRequest{DNSNames: []string{"a.toolgate.localhost"}}))
	if err != nil {
		t.Fatal(err)
	}
	leaf = parseIssued(t, issued.Certificate)[0]
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 7*24*time.Hour || d > 7*24*time.Hour+time.Hour+time.Second {
		t.Fatalf("default leaf validity %v", d)
	}
}

func TestLocalCADomainChangeMakesNewCA(t *testing.T) {
	secrets := &localCATestSecrets{}
	a := newTestLocalCA(t, secrets, "toolgate.localhost")
	b := newTestLocalCA(t, secrets, "other.localhost")
	c := newTestLocalCA(t, secrets, "other.localhost", "toolgate.localhost")
	if bytes.Equal(a.Root().Raw, b.Root().Raw) || bytes.Equal(a.Root().Raw, c.Root().Raw) || secrets.creates != 3 {
		t.Fatalf("changing Domains reused a CA (creates=%d)", secrets.creates)
	}
	if a.IssuerKey() == b.IssuerKey() {
		t.Fatal("different CAs share an IssuerKey")
	}
	if _, err := a.Issue(t.Context(), testCSR(t, &x509.CertificateRequest{DNSNames: []string{"x.other.localhost"}})); !errors.Is(err, ErrLocalCARefused) {
		t.Fatalf("old CA signed for the new domain: %v", err)
	}
}

func TestLocalCAConfigErrors(t *testing.T) {
	secrets := &localCATestSecrets{}
	for name, cfg := range map[string]LocalCAConfig{
		"no secrets": {Domains: []string{"toolgate.localhost"}},
		"no domains": {Secrets: secrets},
		"bad domain": {Secrets: secrets, Domains: []string{"*.toolgate.localhost"}},
		"ip domain":  {Secrets: secrets, Domains: []string{"127.0.0.1"}},
	} {
		if _, err := NewLocalCA(t.Context(), cfg); err == nil {
			t.Errorf("%s: NewLocalCA succeeded", name)
		}
	}

	// A corrupted or foreign secret is reported, with the secret's name.
	secrets.blobs = map[string][]byte{"local-ca:toolgate.localhost": []byte("junk")}
	_, err := NewLocalCA(t.Context(), LocalCAConfig{Secrets: secrets, Domains: []string{"toolgate.localhost"}})
	if err == nil || !strings.Contains(err.Error(), `"local-ca:toolgate.localhost"`) {
		t.Fatalf("corrupt secret: %v", err)
	}
	foreign, err := newLocalCARoot([]string{"example.com"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	secrets.blobs["local-ca:toolgate.localhost"] = foreign
	if _, err := NewLocalCA(t.Context(), LocalCAConfig{Secrets: secrets, Domains: []string{"toolgate.localhost"}}); err == nil {
		t.Fatal("CA constrained to other domains accepted")
	}
}
