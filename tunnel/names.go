package tunnel

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
)

// Errors returned when a forward asks for a name it cannot have. They are meant to be shown to
// the developer, so their text says what to do.
var (
	ErrInvalidName  = errors.New("invalid tunnel name")
	ErrReservedName = errors.New("tunnel name is reserved")
	ErrNameTaken    = errors.New("tunnel name belongs to someone else")
)

// Name length bounds. A label may be 63 octets in DNS; we stop at 40 so that NAME.D stays short
// enough to read aloud and to fit any D, and we refuse one- and two-letter names because they are
// what squatters take first and what typos hit.
const (
	minNameLen = 3
	maxNameLen = 40
)

// defaultReserved are labels no user may claim: service endpoints we may need under D, names that
// mail and browser autoconfiguration probe, and words that make phishing easier. The operator can
// add more (Config.Reserved); these always apply. It is a table, never written.
var defaultReserved = []string{
	"abuse", "account", "accounts", "admin", "administrator", "api", "app", "assets", "auth",
	"autoconfig", "autodiscover", "billing", "cdn", "console", "dashboard", "dns", "docs", "ftp",
	"health", "help", "hostmaster", "id", "imap", "internal", "isatap", "localhost", "login",
	"logout", "mail", "metrics", "mta-sts", "mx", "ns", "ns1", "ns2", "oauth", "oidc", "pop",
	"pop3", "postmaster", "root", "security", "signin", "signup", "smtp", "sso", "ssh", "static",
	"status", "support", "toolgate", "webmaster", "wpad", "www",
}

// ReservedNames returns the built-in reserved labels (a copy).
func ReservedNames() []string { return append([]string(nil), defaultReserved...) }

// ValidateName reports whether label is acceptable as a requested tunnel name: lower-case
// letters, digits and single hyphens, 3 to 40 characters, starting and ending with a letter or
// digit. Names beginning with "xn--" are refused: punycode lets a name look like another one in a
// browser's address bar.
func ValidateName(label string) error {
	if len(label) < minNameLen || len(label) > maxNameLen {
		return fmt.Errorf("%w: %q must be %d to %d characters", ErrInvalidName, label, minNameLen, maxNameLen)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-':
			if i == 0 || i == len(label)-1 {
				return fmt.Errorf("%w: %q may not start or end with '-'", ErrInvalidName, label)
			}
			if label[i-1] == '-' {
				return fmt.Errorf("%w: %q may not contain \"--\"", ErrInvalidName, label)
			}
		default:
			return fmt.Errorf("%w: %q may contain only a-z, 0-9 and '-'", ErrInvalidName, label)
		}
	}
	return nil
}

// BindRequest is what a tcpip-forward asked for, interpreted.
type BindRequest struct {
	// Name is the requested label, lower-cased; empty when the forward asked for no particular
	// name and gets a random one.
	Name string
}

// ParseBindAddr interprets the bind address of a tcpip-forward request (RFC 4254 §7.1) as a
// name request under domain.
//
// OpenSSH sends "localhost" when -R has no bind address, "" for "-R :80:…" and "-R *:80:…", and
// the literal text otherwise (case preserved). Go's ssh.Client.Listen sends whatever host the
// caller used, often "0.0.0.0" or "127.0.0.1". All of those, and any IP literal, mean "no name
// in particular". Anything else is a name: a bare label, or the full host name NAME.domain. The
// caller keeps the original string: forwarded-tcpip channels must echo it byte for byte.
func ParseBindAddr(addr, domain string) (BindRequest, error) {
	a := strings.TrimSuffix(strings.ToLower(addr), ".")
	switch a {
	case "", "*", "localhost":
		return BindRequest{}, nil
	}
	if _, err := netip.ParseAddr(strings.Trim(a, "[]")); err == nil {
		return BindRequest{}, nil
	}
	if domain != "" {
		if n, ok := strings.CutSuffix(a, "."+strings.ToLower(domain)); ok {
			a = n
		}
	}
	if strings.Contains(a, ".") {
		return BindRequest{}, fmt.Errorf("%w: %q: ask for a single label (NAME or NAME.%s)", ErrInvalidName, addr, domain)
	}
	if err := ValidateName(a); err != nil {
		return BindRequest{}, err
	}
	return BindRequest{Name: a}, nil
}

// NameFromHost extracts the tunnel label from a request's Host (or TLS server name) under
// domain: "quiet-fox-7h3k2q.toolgate.localhost:8443" gives "quiet-fox-7h3k2q". It returns ok
// false for the apex itself, for deeper names, for labels with characters a DNS label cannot
// hold, and for anything that is not under domain. It does not apply the stricter rules for
// names users may request (see [ValidateName]): a lookup of such a label simply misses.
func NameFromHost(host, domain string) (label string, ok bool) {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if len(host) <= len(domain)+1 || host[len(host)-len(domain)-1] != '.' {
		return "", false
	}
	if !strings.EqualFold(host[len(host)-len(domain):], domain) {
		return "", false
	}
	label = strings.ToLower(host[:len(host)-len(domain)-1])
	if label == "" || len(label) > 63 {
		return "", false
	}
	for i := 0; i < len(label); i++ {
		if c := label[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return "", false // dots (deeper names) and anything a DNS label cannot hold
		}
	}
	return label, true
}

// Word lists for random names. 64 each: two words give 12 bits, and a 6-character base-36
// suffix gives 31 more, all drawn from crypto/rand: 43 bits, so a scan of the name space costs an
// attacker on the order of 10^13 TLS handshakes. The words make names readable and easy to tell
// apart; the suffix makes them unguessable.
var (
	adjectives = [64]string{
		"amber", "ample", "azure", "bold", "brave", "brisk", "calm", "clear", "clever", "coral",
		"crisp", "dandy", "eager", "early", "fair", "fancy", "fleet", "fresh", "frosty", "gentle",
		"glad", "golden", "grand", "happy", "hardy", "hazel", "honest", "humble", "ivory", "jolly",
		"keen", "kind", "lively", "lucky", "mellow", "merry", "mighty", "misty", "modest", "noble",
		"olive", "plucky", "polite", "proud", "quick", "quiet", "rapid", "ready", "rosy", "royal",
		"rustic", "sandy", "shiny", "silent", "silver", "smart", "snowy", "steady", "sunny", "swift",
		"tidy", "vivid", "warm", "witty",
	}
	nouns = [64]string{
		"badger", "bear", "beaver", "bison", "cedar", "comet", "crane", "creek", "delta", "dove",
		"eagle", "falcon", "fern", "finch", "fjord", "fox", "gecko", "glade", "grove", "hare",
		"hawk", "heron", "ibis", "koala", "lark", "lemur", "lynx", "maple", "marten", "meadow",
		"mole", "moose", "newt", "oak", "orca", "otter", "owl", "panda", "pine", "plover",
		"puffin", "quail", "raven", "reef", "robin", "sage", "seal", "sparrow", "spruce", "stork",
		"swan", "teal", "tern", "thrush", "tiger", "trout", "tulip", "viper", "walrus", "willow",
		"wolf", "wren", "yak", "zebra",
	}
)

const suffixAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

// RandomName returns a new random name such as "quiet-fox-7h3k2q", using crypto/rand for every
// part. It fails only if the system's random source does.
func RandomName() (string, error) {
	var b strings.Builder
	pick := func(n int) (int, error) {
		v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
		if err != nil {
			return 0, fmt.Errorf("tunnel: random name: %w", err)
		}
		return int(v.Int64()), nil
	}
	a, err := pick(len(adjectives))
	if err != nil {
		return "", err
	}
	n, err := pick(len(nouns))
	if err != nil {
		return "", err
	}
	b.WriteString(adjectives[a])
	b.WriteByte('-')
	b.WriteString(nouns[n])
	b.WriteByte('-')
	for range 6 {
		c, err := pick(len(suffixAlphabet))
		if err != nil {
			return "", err
		}
		b.WriteByte(suffixAlphabet[c])
	}
	return b.String(), nil
}
