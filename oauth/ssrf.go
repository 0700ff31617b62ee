package oauth

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// OutboundConfig says how toolgate fetches URLs that clients name (Client ID Metadata
// Documents). Such a URL is chosen by whoever starts an authorization, so without these guards
// it would let anyone make toolgate request its own loopback services, the cloud metadata
// endpoint or the operator's LAN (server-side request forgery), or tie it up with slow or
// endless responses.
type OutboundConfig struct {
	// AllowPrivate permits fetches from addresses that are not public: loopback, private
	// (RFC 1918, fc00::/7), link-local, CGNAT (100.64.0.0/10), unspecified, multicast and the
	// other special-purpose ranges. Default false: they are refused. The check runs on the
	// address actually dialled, after DNS resolution, so a name that resolves (or rebinds) to
	// such an address is refused as well. Tests and private deployments turn it on.
	AllowPrivate bool
	// RootCAs verifies servers' certificates. Default nil: the system roots.
	RootCAs *x509.CertPool
	// Timeout bounds a whole request: connecting, TLS, headers and reading the body.
	// Default 5s.
	Timeout time.Duration
	// MaxBytes bounds a response body. Default 16 KiB ([MaxMetadataBytes]); a larger value
	// does not help metadata documents, which ParseClientMetadata caps at that size anyway.
	MaxBytes int64
}

func (c *OutboundConfig) setDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = MaxMetadataBytes
	}
}

// newOutboundClient returns an http.Client guarded by cfg (after defaults). It takes no proxy
// from the environment (a proxy would dial for us, defeating the address check), follows no
// redirects (the caller sees the 3xx and should treat it as an error: a redirect is a second
// URL nobody validated), and speaks TLS 1.2 or later.
func newOutboundClient(cfg OutboundConfig) *http.Client {
	cfg.setDefaults()
	dialer := &net.Dialer{Timeout: cfg.Timeout}
	if !cfg.AllowPrivate {
		dialer.Control = guardDial
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs},
		TLSHandshakeTimeout:    cfg.Timeout,
		ResponseHeaderTimeout:  cfg.Timeout,
		MaxResponseHeaderBytes: 64 << 10,
		MaxIdleConns:           16,
		IdleConnTimeout:        30 * time.Second,
		// Documents are small; asking for no compression keeps MaxBytes a bound on what
		// the server sends, not only on what it decompresses to.
		DisableCompression: true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// readLimited reads r to the end, failing if it holds more than max bytes.
func readLimited(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, &tooLargeError{max}
	}
	return b, nil
}

// tooLargeError is a response body past its limit.
type tooLargeError struct{ max int64 }

func (e *tooLargeError) Error() string { return fmt.Sprintf("document larger than %d bytes", e.max) }

// blockedAddressError is why a dial was refused.
type blockedAddressError struct {
	Addr netip.Addr
	Kind string // "private", "loopback", …
}

func (e *blockedAddressError) Error() string {
	return fmt.Sprintf("%s is a %s address", e.Addr, e.Kind)
}

// guardDial is a net.Dialer Control function: it runs after name resolution, once per address
// tried, and refuses addresses that are not public.
func guardDial(network, address string, _ syscall.RawConn) error {
	switch network {
	case "tcp4", "tcp6":
	default:
		return fmt.Errorf("network %s is not allowed", network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial address %q: %w", address, err)
	}
	if kind := nonPublic(ap.Addr()); kind != "" {
		return &blockedAddressError{Addr: ap.Addr().Unmap(), Kind: kind}
	}
	return nil
}

// specialPrefixes are the special-purpose ranges (RFC 6890 and the IANA registries) that
// netip's Is* methods do not cover, with what to call them in an error. Read-only.
var specialPrefixes = []struct {
	p    netip.Prefix
	kind string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\""},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (CGNAT)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001::/32"), "Teredo"},
	{netip.MustParsePrefix("2001:2::/48"), "benchmarking"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
}

// IPv6 prefixes that carry an IPv4 address a packet ends up at. Read-only.
var (
	nat64Prefix     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFourPrefix = netip.MustParsePrefix("2002::/16")
)

// nonPublic says what kind of non-public address a is, or "" if it is public. IPv4 addresses
// embedded in IPv6 forms that route to them (IPv4-mapped, NAT64 64:ff9b::/96, 6to4 2002::/16)
// are judged by the IPv4 address.
func nonPublic(a netip.Addr) string {
	if !a.IsValid() {
		return "invalid"
	}
	a = a.Unmap()
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64Prefix.Contains(a):
			return nonPublic(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFourPrefix.Contains(a):
			return nonPublic(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	switch {
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsPrivate():
		return "private"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsMulticast():
		return "multicast"
	}
	for _, s := range specialPrefixes {
		if s.p.Contains(a) {
			return s.kind
		}
	}
	return ""
}
