package browsertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI makes a CA and a leaf for names, signed by it. It returns the CA's PEM file and the
// leaf as a tls.Certificate.
func testPKI(t *testing.T, names ...string) (caFile string, leaf tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "browsertest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
}

const formPage = `<!doctype html>
<title>greet</title>
<form method="post" action="/greet">
  <label>Name <input id="name" name="name"></label>
  <button id="go" type="submit">Greet</button>
</form>
<script>console.log("form ready")</script>
`

// TestFormOverTrustedTLS drives a form on an HTTPS server reached by hostname through the host
// mapping, trusted only through the CA file; and proves the trust is real: without the CA file
// the same navigation fails on the certificate.
func TestFormOverTrustedTLS(t *testing.T) {
	Require(t)
	caFile, leaf := testPKI(t, "x.toolgate.localhost", "app.toolgate.test")

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/":
			fmt.Fprint(w, formPage)
		case r.Method == http.MethodPost && r.URL.Path == "/greet":
			fmt.Fprintf(w, `<!doctype html><p id="out">Hello, %s (via %s)</p>`,
				html.EscapeString(r.PostFormValue("name")), html.EscapeString(r.TLS.ServerName))
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Listener.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the run without the CA fails handshakes
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	srv.StartTLS()
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	opts := Options{
		BaseURL: fmt.Sprintf("https://x.toolgate.localhost:%d", port),
		Hosts: map[string]string{
			"*.toolgate.localhost": "127.0.0.1",
			"toolgate.localhost":   "127.0.0.1",
			// .test never resolves by itself: reaching it proves the rules are in force.
			"app.toolgate.test": "127.0.0.1",
		},
		CAFile:  caFile,
		Timeout: 30 * time.Second,
		Args:    map[string]string{"name": "Ada <Lovelace>"},
	}
	script := `
		await page.goto(baseURL + "/");
		await page.fill("#name", args.name);
		await page.click("#go");
		const text = await page.locator("#out").textContent();
		const url = page.url();
		await page.goto(baseURL.replace("x.toolgate.localhost", "app.toolgate.test") + "/");
		return {text, url, title: await page.title()};
	`
	res := Run(t, opts, script)
	var got struct{ Text, URL, Title string }
	if err := res.Decode(&got); err != nil {
		t.Fatalf("decoding %s: %v", res.Value, err)
	}
	if want := "Hello, Ada <Lovelace> (via x.toolgate.localhost)"; got.Text != want {
		t.Errorf("text = %q, want %q", got.Text, want)
	}
	if want := opts.BaseURL + "/greet"; got.URL != want {
		t.Errorf("url = %q, want %q", got.URL, want)
	}
	if got.Title != "greet" {
		t.Errorf("title on app.toolgate.test = %q, want greet", got.Title)
	}
	if !strings.Contains(strings.Join(res.Console, "\n"), "log: form ready") {
		t.Errorf("console = %q, want the page's log line", res.Console)
	}

	// Without the CA the browser must refuse the certificate: trust comes from CAFile, not from
	// ignored errors.
	opts.CAFile = ""
	_, err = Try(t, opts, script)
	var be *Error
	if !errors.As(err, &be) {
		t.Fatalf("run without the CA: err = %v, want a certificate failure", err)
	}
	if !strings.Contains(be.Message, "ERR_CERT_AUTHORITY_INVALID") {
		t.Errorf("run without the CA failed with %q, want ERR_CERT_AUTHORITY_INVALID", be.Message)
	}
	if be.Screenshot == "" {
		t.Errorf("no failure screenshot")
	} else if fi, err := os.Stat(be.Screenshot); err != nil || fi.Size() == 0 {
		t.Errorf("failure screenshot %s: %v", be.Screenshot, err)
	}
}

// TestScriptError checks that a throwing script surfaces as an *Error with its message.
func TestScriptError(t *testing.T) {
	Require(t)
	_, err := Try(t, Options{Timeout: 20 * time.Second}, `
		await page.setContent("<p>x</p>");
		throw new Error("deliberate failure 42");
	`)
	var be *Error
	if !errors.As(err, &be) || !strings.Contains(be.Message, "deliberate failure 42") {
		t.Fatalf("err = %v, want the script's error", err)
	}
}
