package oauth

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestOutboundNonPublic(t *testing.T) {
	tests := []struct {
		addr string
		want string // "" for public
	}{
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"2606:4700:4700::1111", ""},
		{"64:ff9b::808:808", ""}, // NAT64 of 8.8.8.8
		{"2002:808:808::1", ""},  // 6to4 of 8.8.8.8
		{"100.63.255.255", ""},   // just below CGNAT
		{"100.128.0.0", ""},      // just above it
		{"172.32.0.1", ""},       // just above 172.16/12
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"10.0.0.1", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"169.254.169.254", "link-local"}, // cloud metadata
		{"100.64.0.1", "shared (CGNAT)"},
		{"100.127.255.255", "shared (CGNAT)"},
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", `"this network"`},
		{"192.0.0.1", "IETF protocol assignment"},
		{"192.0.2.1", "documentation"},
		{"198.18.0.1", "benchmarking"},
		{"198.19.255.255", "benchmarking"},
		{"240.0.0.1", "reserved"},
		{"255.255.255.255", "reserved"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"::", "unspecified"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:10.0.0.1", "private"},
		{"::ffff:169.254.169.254", "link-local"},
		{"::127.0.0.1", "IPv4-compatible"},
		{"fc00::1", "private"},
		{"fd12:3456::1", "private"},
		{"fe80::1", "link-local"},
		{"ff02::1", "multicast"},
		{"fec0::1", "site-local"},
		{"64:ff9b::a00:1", "private"},   // NAT64 of 10.0.0.1
		{"64:ff9b::7f00:1", "loopback"}, // NAT64 of 127.0.0.1
		{"64:ff9b:1::1", "local NAT64"},
		{"2002:a00:1::1", "private"},        // 6to4 of 10.0.0.1
		{"2002:a9fe:a9fe::1", "link-local"}, // 6to4 of 169.254.169.254
		{"2001:db8::1", "documentation"},
		{"2001:0:4136:e378::1", "Teredo"},
		{"100::1", "discard-only"},
	}
	for _, tt := range tests {
		if got := nonPublic(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("nonPublic(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	if got := nonPublic(netip.Addr{}); got == "" {
		t.Error("the zero Addr is public")
	}
}

func TestOutboundGuardDial(t *testing.T) {
	for _, tt := range []struct{ network, address, want string }{
		{"tcp4", "93.184.216.34:443", ""},
		{"tcp6", "[2606:2800:220:1:248:1893:25c8:1946]:443", ""},
		{"tcp4", "10.0.0.1:443", "10.0.0.1 is a private address"},
		{"tcp6", "[::ffff:127.0.0.1]:443", "127.0.0.1 is a loopback address"},
		{"tcp6", "[fe80::1%eth0]:443", "link-local"},
		{"udp4", "8.8.8.8:53", "not allowed"},
		{"tcp4", "example.com:443", "dial address"},
	} {
		err := guardDial(tt.network, tt.address, nil)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("guardDial(%s, %s) = %v", tt.network, tt.address, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("guardDial(%s, %s) = %v, want %q", tt.network, tt.address, err, tt.want)
		}
	}
}

func TestOutboundClient(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/slow":
			time.Sleep(500 * time.Millisecond)
		default:
			w.Write([]byte("ok"))
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted-certificate case makes noise
	srv.StartTLS()
	defer srv.Close()
	ds := &docServer{srv: srv}
	get := func(cfg OutboundConfig, path string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+path, nil)
		resp, err := newOutboundClient(cfg).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}

	t.Run("private allowed", func(t *testing.T) {
		resp, err := get(OutboundConfig{AllowPrivate: true, RootCAs: ds.pool()}, "/ok")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("resp %v, err %v", resp, err)
		}
	})
	t.Run("dial guard", func(t *testing.T) {
		_, err := get(OutboundConfig{RootCAs: ds.pool()}, "/ok")
		var blocked *blockedAddressError
		if !errors.As(err, &blocked) || blocked.Addr != netip.MustParseAddr("127.0.0.1") || !strings.Contains(err.Error(), "127.0.0.1 is a loopback address") {
			t.Fatalf("error = %v, want the loopback address refused", err)
		}
	})
	t.Run("redirect not followed", func(t *testing.T) {
		resp, err := get(OutboundConfig{AllowPrivate: true, RootCAs: ds.pool()}, "/redirect")
		if err != nil || resp.StatusCode != http.StatusFound {
			t.Fatalf("resp %v, err %v; want the 302 itself", resp, err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		_, err := get(OutboundConfig{AllowPrivate: true, RootCAs: ds.pool(), Timeout: 100 * time.Millisecond}, "/slow")
		if err == nil || time.Since(start) > 400*time.Millisecond {
			t.Fatalf("err %v after %v", err, time.Since(start))
		}
		if !strings.Contains(fetchError(err, 100*time.Millisecond).Error(), "took longer than 100ms") {
			t.Errorf("fetchError = %v", fetchError(err, 100*time.Millisecond))
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		if _, err := get(OutboundConfig{AllowPrivate: true}, "/ok"); err == nil {
			t.Fatal("the test server's certificate was trusted without RootCAs")
		}
	})
	t.Run("no proxy from the environment", func(t *testing.T) {
		t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
		t.Setenv("https_proxy", "http://127.0.0.1:1")
		if tr := newOutboundClient(OutboundConfig{}).Transport.(*http.Transport); tr.Proxy != nil {
			t.Error("Transport.Proxy is set")
		}
		if _, err := get(OutboundConfig{AllowPrivate: true, RootCAs: ds.pool()}, "/ok"); err != nil {
			t.Fatalf("request went to the proxy: %v", err)
		}
	})
	t.Run("TLS 1.2 minimum", func(t *testing.T) {
		tr := newOutboundClient(OutboundConfig{}).Transport.(*http.Transport)
		if tr.TLSClientConfig.MinVersion < 0x0303 {
			t.Errorf("MinVersion = %#x", tr.TLSClientConfig.MinVersion)
		}
	})
}

func TestOutboundReadLimited(t *testing.T) {
	if b, err := readLimited(strings.NewReader("abcd"), 4); err != nil || string(b) != "abcd" {
		t.Errorf("at the limit: %q, %v", b, err)
	}
	_, err := readLimited(strings.NewReader("abcde"), 4)
	var tl *tooLargeError
	if !errors.As(err, &tl) || err.Error() != "document larger than 4 bytes" {
		t.Errorf("past the limit: %v", err)
	}
}
