package tunnel

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestParseBindAddr(t *testing.T) {
	const d = "toolgate.localhost"
	for _, tc := range []struct {
		addr    string
		want    string
		wantErr error
	}{
		{"localhost", "", nil},
		{"LOCALHOST", "", nil},
		{"", "", nil},
		{"*", "", nil},
		{"0.0.0.0", "", nil},
		{"127.0.0.1", "", nil},
		{"::", "", nil},
		{"::1", "", nil},
		{"[::1]", "", nil},
		{"10.1.2.3", "", nil},
		{"myapp", "myapp", nil},
		{"MyApp", "myapp", nil},
		{"my-app-2", "my-app-2", nil},
		{"myapp.toolgate.localhost", "myapp", nil},
		{"myapp.TOOLGATE.localhost.", "myapp", nil},
		{"a.b.toolgate.localhost", "", ErrInvalidName},
		{"myapp.example.com", "", ErrInvalidName},
		{"ab", "", ErrInvalidName},
		{strings.Repeat("a", 41), "", ErrInvalidName},
		{"-app", "", ErrInvalidName},
		{"app-", "", ErrInvalidName},
		{"a--b", "", ErrInvalidName},
		{"xn--80ak6aa92e", "", ErrInvalidName},
		{"my_app", "", ErrInvalidName},
		{"my app", "", ErrInvalidName},
		{"café", "", ErrInvalidName},
	} {
		got, err := ParseBindAddr(tc.addr, d)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("ParseBindAddr(%q) error = %v, want %v", tc.addr, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.Name != tc.want {
			t.Errorf("ParseBindAddr(%q) = %q, %v; want %q", tc.addr, got.Name, err, tc.want)
		}
	}
}

func TestNameFromHost(t *testing.T) {
	const d = "toolgate.localhost"
	for _, tc := range []struct {
		host string
		want string
		ok   bool
	}{
		{"quiet-fox-7h3k2q.toolgate.localhost:8443", "quiet-fox-7h3k2q", true},
		{"quiet-fox-7h3k2q.toolgate.localhost", "quiet-fox-7h3k2q", true},
		{"Quiet-Fox.TOOLGATE.LOCALHOST", "quiet-fox", true},
		{"x.toolgate.localhost.", "x", true},
		{"toolgate.localhost", "", false},
		{"toolgate.localhost:8443", "", false},
		{".toolgate.localhost", "", false},
		{"a.b.toolgate.localhost", "", false},
		{"evil-toolgate.localhost", "", false},
		{"x.toolgate.localhost.evil.com", "", false},
		{"[::1]:8443", "", false},
		{"", "", false},
		{"localhost", "", false},
	} {
		got, ok := NameFromHost(tc.host, d)
		if got != tc.want || ok != tc.ok {
			t.Errorf("NameFromHost(%q) = %q, %v; want %q, %v", tc.host, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRandomName(t *testing.T) {
	re := regexp.MustCompile(`^[a-z]+-[a-z]+-[0-9a-z]{6}$`)
	seen := make(map[string]bool)
	for range 2000 {
		n, err := RandomName()
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(n) {
			t.Fatalf("RandomName() = %q, not words-words-suffix", n)
		}
		if err := ValidateName(n); err != nil {
			t.Fatalf("RandomName() = %q, which ValidateName refuses: %v", n, err)
		}
		if seen[n] {
			t.Fatalf("RandomName() repeated %q within 2000 draws", n)
		}
		seen[n] = true
	}
}

func TestWordListsAreValidAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, w := range append(adjectives[:], nouns[:]...) {
		if seen[w] {
			t.Errorf("word %q appears twice: the entropy estimate assumes 64 distinct words per list", w)
		}
		seen[w] = true
		if ValidateName(w+"-x-000000") != nil {
			t.Errorf("word %q would make an invalid name", w)
		}
	}
}

// FuzzNameFromHost checks that whatever a client puts in Host (or SNI), the extracted label is
// either rejected or a single lower-case label that maps back to the same host.
func FuzzNameFromHost(f *testing.F) {
	for _, s := range []string{"a.toolgate.localhost", "A.toolgate.localhost:8443", "toolgate.localhost",
		"[::1]:1", "x.y.toolgate.localhost", ".toolgate.localhost", "x.toolgate.localhost.", "\x00.toolgate.localhost"} {
		f.Add(s)
	}
	const d = "toolgate.localhost"
	f.Fuzz(func(t *testing.T, host string) {
		label, ok := NameFromHost(host, d)
		if !ok {
			if label != "" {
				t.Fatalf("NameFromHost(%q) returned label %q with ok=false", host, label)
			}
			return
		}
		if label == "" || strings.Contains(label, ".") || label != strings.ToLower(label) {
			t.Fatalf("NameFromHost(%q) = %q: not a single lower-case label", host, label)
		}
		if again, ok := NameFromHost(label+"."+d, d); !ok || again != label {
			t.Fatalf("label %q from %q does not round-trip: %q %v", label, host, again, ok)
		}
	})
}

// FuzzParseBindAddr checks that a bind address (attacker-controlled, from the SSH client) is
// either refused or yields a name ValidateName accepts.
func FuzzParseBindAddr(f *testing.F) {
	for _, s := range []string{"localhost", "", "*", "myapp", "MyApp.toolgate.localhost", "::1", "a..b", "xn--x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		req, err := ParseBindAddr(addr, "toolgate.localhost")
		if err != nil || req.Name == "" {
			return
		}
		if verr := ValidateName(req.Name); verr != nil {
			t.Fatalf("ParseBindAddr(%q) = %q, which ValidateName refuses: %v", addr, req.Name, verr)
		}
	})
}
