package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/e2e/acmetest"
	"github.com/toolgate/toolgate/e2e/sshtest"
)

// TestACMECertificateForTunnel runs pebble in-process with real TLS-ALPN-01 validation against
// toolgate's own HTTPS listener: the apex certificate is obtained at startup, a tunnel's
// certificate on the first handshake that names it, a name nobody holds gets none, only listed
// SSH keys may tunnel, and after a restart certificates come from the database, not the CA.
func TestACMECertificateForTunnel(t *testing.T) {
	sshtest.Require(t)
	const domain = "example.test"
	port := freePort(t)
	httpsAddr := fmt.Sprintf("127.0.0.1:%d", port)
	ca := acmetest.Start(t, acmetest.Config{TLSALPNPort: port})

	dir := t.TempDir()
	rootsFile := filepath.Join(dir, "acme-roots.pem")
	if err := os.WriteFile(rootsFile, acmeAPIRootPEM(t, ca), 0o644); err != nil {
		t.Fatal(err)
	}
	key := sshtest.NewKey(t)
	akFile := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(akFile, []byte(key.AuthorizedKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	args := []string{"serve", "--data-dir", dataDir, "--domain", domain,
		"--https-listen", httpsAddr, "--ssh-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--acme-ca", ca.DirectoryURL, "--acme-email", "ops@example.test", "--acme-ca-roots", rootsFile,
		"--authorized-keys", akFile, "--log-format", "json", "--tunnel-auth", "none"}

	start := time.Now()
	in := startToolgateArgs(t, dataDir, args...)
	t.Logf("toolgate with an ACME apex certificate serving after %s", time.Since(start).Round(time.Millisecond))
	if in.https != httpsAddr {
		t.Fatalf("toolgate serves HTTPS on %s, want %s", in.https, httpsAddr)
	}
	apexSerial := servedLeaf(t, httpsAddr, domain, ca.IssuedRoots).SerialNumber

	local := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from the local server")
	}), 0)
	fwd := []string{"-T", "-R", fmt.Sprintf("myapp:80:127.0.0.1:%d", local)}
	c := in.sshClient(key, fwd)
	if h := tunnelHost(t, c, 1)[0]; h != "myapp."+domain {
		t.Fatalf("tunnel host %q, want myapp.%s", h, domain)
	}

	// The first request's handshake obtains the certificate on demand (pebble validates it by
	// connecting back to the HTTPS port), then the request goes through the tunnel.
	tr := pinnedTransport(httpsAddr, ca.IssuedRoots)
	defer tr.CloseIdleConnections()
	start = time.Now()
	resp, err := (&http.Client{Transport: tr, Timeout: 90 * time.Second}).Get(fmt.Sprintf("https://myapp.%s:%d/", domain, port))
	if err != nil {
		t.Fatalf("HTTPS request through the tunnel: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("first request (on-demand certificate) took %s", time.Since(start).Round(time.Millisecond))
	if resp.StatusCode != 200 || string(body) != "hello from the local server" {
		t.Fatalf("through the tunnel: %d %q", resp.StatusCode, body)
	}
	if resp.TLS == nil || len(resp.TLS.VerifiedChains) == 0 {
		t.Fatal("the response carries no verified TLS chain")
	}
	leaf := servedLeaf(t, httpsAddr, "myapp."+domain, ca.IssuedRoots)
	if !slices.Contains(leaf.DNSNames, "myapp."+domain) {
		t.Fatalf("tunnel certificate names %v, want myapp.%s", leaf.DNSNames, domain)
	}
	if leaf.SerialNumber.Cmp(resp.TLS.PeerCertificates[0].SerialNumber) != 0 {
		t.Fatal("a second handshake got a different tunnel certificate")
	}

	// No certificate for a name nobody holds: the handshake fails even for a client that
	// accepts any certificate.
	if err := handshake(httpsAddr, "unknown."+domain, nil); err == nil {
		t.Fatal("handshake for unknown.example.test succeeded; want no certificate")
	} else {
		t.Logf("unknown.%s: %v", domain, err)
	}

	// Keys not in authorized_keys are refused.
	stranger := in.sshClient(sshtest.NewKey(t), []string{"-N", "-R", fmt.Sprintf("other:80:127.0.0.1:%d", local)})
	if code := stranger.Wait(15 * time.Second); code == 0 {
		t.Fatalf("ssh with an unlisted key exited 0; output:\n%s", stranger.Output())
	}
	if !strings.Contains(stranger.Output(), "Permission denied") {
		t.Errorf("ssh with an unlisted key: want Permission denied; output:\n%s", stranger.Output())
	}

	c.Kill()
	in.stop()
	obtained := strings.Count(in.logs.String(), `"msg":"certificate obtained successfully"`)
	if obtained != 2 {
		t.Errorf("first run logged %d obtained certificates, want 2 (apex and myapp)", obtained)
	}

	// Restart on the same database: both certificates come from storage, no new ACME order.
	again := startToolgateArgs(t, dataDir, args...)
	if got := servedLeaf(t, httpsAddr, domain, ca.IssuedRoots).SerialNumber; got.Cmp(apexSerial) != 0 {
		t.Errorf("apex certificate serial %x after restart, was %x", got, apexSerial)
	}
	// myapp is claimed (stored) but not live: its certificate is still allowed and loaded.
	if got := servedLeaf(t, httpsAddr, "myapp."+domain, ca.IssuedRoots).SerialNumber; got.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("tunnel certificate serial %x after restart, was %x", got, leaf.SerialNumber)
	}
	c2 := again.sshClient(key, fwd)
	tunnelHost(t, c2, 1)
	tr2 := pinnedTransport(httpsAddr, ca.IssuedRoots)
	defer tr2.CloseIdleConnections()
	resp, err = (&http.Client{Transport: tr2, Timeout: 30 * time.Second}).Get(fmt.Sprintf("https://myapp.%s:%d/", domain, port))
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after restart: %d", resp.StatusCode)
	}
	if n := strings.Count(again.logs.String(), `"msg":"certificate obtained successfully"`); n != 0 {
		t.Errorf("after restart toolgate obtained %d new certificates, want 0", n)
	}
}

// acmeAPIRootPEM returns the PEM of the certificate pebble's API serves, checked against
// ca.Roots (acmetest exposes only the pool, and a pool cannot be exported).
func acmeAPIRootPEM(t *testing.T, ca *acmetest.Server) []byte {
	t.Helper()
	u, err := url.Parse(ca.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", u.Host,
		&tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cert := conn.ConnectionState().PeerCertificates[0]
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Roots, DNSName: u.Hostname()}); err != nil {
		t.Fatalf("pebble's API certificate does not verify against acmetest's Roots: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// pinnedTransport sends every connection to addr and trusts roots.
func pinnedTransport(addr string, roots *x509.CertPool) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		TLSHandshakeTimeout: 90 * time.Second, // the first handshake waits for an ACME order
		ForceAttemptHTTP2:   true,
	}
}

// handshake does a TLS handshake for serverName at addr, trusting roots (nil: any certificate).
func handshake(addr, serverName string, roots *x509.CertPool) error {
	conn, err := handshakeConn(addr, serverName, roots)
	if err == nil {
		conn.Close()
	}
	return err
}

func handshakeConn(addr, serverName string, roots *x509.CertPool) (*tls.Conn, error) {
	cfg := &tls.Config{ServerName: serverName, RootCAs: roots, InsecureSkipVerify: roots == nil}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// servedLeaf returns the leaf served for serverName, after checking it chains to roots and
// names serverName.
func servedLeaf(t *testing.T, addr, serverName string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	conn, err := handshakeConn(addr, serverName, roots)
	if err != nil {
		t.Fatalf("TLS handshake for %s trusting pebble's roots: %v", serverName, err)
	}
	defer conn.Close()
	st := conn.ConnectionState()
	if len(st.VerifiedChains) == 0 {
		t.Fatalf("no verified chain for %s", serverName)
	}
	leaf := st.PeerCertificates[0]
	if err := leaf.VerifyHostname(serverName); err != nil {
		t.Fatal(err)
	}
	return leaf
}
