package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/tunnel"
)

func TestOriginAllowed(t *testing.T) {
	f, err := NewFront(FrontConfig{Domain: "toolgate.localhost", Tunnels: nilTunnels{}, Proxy: nilProxy{}})
	if err != nil {
		t.Fatal(err)
	}
	const host = "app.toolgate.localhost:8443"
	for origin, want := range map[string]bool{
		"https://app.toolgate.localhost:8443":   true,
		"HTTPS://APP.toolgate.localhost:8443":   true,
		"https://toolgate.localhost:8443":       true,
		"http://localhost:6274":                 true,
		"http://127.0.0.1:1":                    true,
		"http://[::1]:3000":                     true,
		"http://localhost":                      false, // the pattern needs a port
		"http://localhost:abc":                  false,
		"http://localhost:6274.evil.com":        false,
		"https://app.toolgate.localhost":        false, // wrong port
		"https://other.toolgate.localhost:8443": false,
		"http://app.toolgate.localhost:8443":    false, // wrong scheme
		"https://evil.example":                  false,
		"null":                                  false,
	} {
		if got := f.originAllowed(origin, host); got != want {
			t.Errorf("originAllowed(%q) = %v, want %v", origin, got, want)
		}
	}
}

func TestRequestLineIsPrintable(t *testing.T) {
	r := httptest.NewRequest("GET", "/a%1b%5b2Jb/%e2%80%ae", nil)
	line := requestLine(time.Now(), r, &recorder{status: 200, bytes: 1234}, nil)
	for _, c := range []byte(line) {
		if c < 0x20 || c == 0x7f {
			t.Fatalf("terminal line carries control byte %#x: %q", c, line)
		}
	}
	if strings.Contains(line, "\u202e") || !strings.Contains(line, "/a%1b%5b2Jb/%e2%80%ae") || !strings.Contains(line, "200") || !strings.Contains(line, "1.2 kB") {
		t.Fatalf("line = %q", line)
	}
}

type nilTunnels struct{}

func (nilTunnels) Lookup(string) *tunnel.Tunnel       { return nil }
func (nilTunnels) Known(context.Context, string) bool { return false }

type nilProxy struct{}

func (nilProxy) Serve(http.ResponseWriter, *http.Request, *tunnel.Tunnel, netip.AddrPort) {}
