package web

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for what a browser or an ssh user controls on the identity path: the session
// cookie, sign-in link tokens, emails typed into forms, and link codes typed into URLs.

// FuzzSessionCookie: any cookie value either is the session's own or is refused as
// ErrNoSession/ErrBadSession, without a panic and without a database write.
func FuzzSessionCookie(f *testing.F) {
	fx := newSessionFixture(f, 0, 0)
	good := fx.start().Value
	for _, s := range []string{good, "", "x", good + "A", good[:42], strings.Repeat("A", 43), "%00", good[1:] + "=", "a b", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest("GET", "https://d/", nil)
		r.Header.Set("Cookie", SessionCookie+"="+v)
		sess, user, err := fx.sessions.Lookup(r)
		switch {
		case err == nil:
			if v != good || sess == nil || user == nil || user.ID != fx.user.ID {
				t.Fatalf("cookie %q accepted as %+v", v, sess)
			}
		case !errors.Is(err, ErrNoSession) && !errors.Is(err, ErrBadSession):
			t.Fatalf("cookie %q: unexpected error %v", v, err)
		}
		if n := fx.store.touches.Load(); n != 0 {
			t.Fatalf("%d writes", n)
		}
	})
}

// FuzzDecodeToken: only the one canonical encoding of 32 bytes decodes, and it round-trips.
func FuzzDecodeToken(f *testing.F) {
	for _, s := range []string{newToken(), "", strings.Repeat("A", 43), strings.Repeat("_", 43), strings.Repeat("A", 42) + "B", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, ok := decodeToken(s)
		if !ok {
			return
		}
		if len(s) != 43 {
			t.Fatalf("%q (%d chars) decoded", s, len(s))
		}
		if _, again := decodeToken(s); !again {
			t.Fatal("not deterministic")
		}

	})
}

// FuzzNormalizeEmail: a normalized email is lower case, trimmed, has one @, and normalizing it
// again changes nothing.
func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{"Ada@Example.com", " a@b.co ", "a@b", "@b.co", "a@@b.co", "a.@b.co", "ä@b.co", "a@xn--bcher-kva.example", strings.Repeat("a", 65) + "@b.co", "a@-b.co"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := NormalizeEmail(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidEmail) {
				t.Fatalf("%q: %v is not ErrInvalidEmail", s, err)
			}
			return
		}
		if e != strings.ToLower(strings.TrimSpace(e)) || strings.Count(e, "@") != 1 || !utf8.ValidString(e) || len(e) > 254 {
			t.Fatalf("%q normalized to %q", s, e)
		}
		if again, err := NormalizeEmail(e); err != nil || again != e {
			t.Fatalf("%q: normalizing %q again gave %q, %v", s, e, again, err)
		}
	})
}

// FuzzLinkCode: whatever is typed in /link/CODE, at most the one pending link answers, and only
// to its own code however it is spelled.
func FuzzLinkCode(f *testing.F) {
	k, err := NewKeyLinks(KeyLinksConfig{Store: openTestStore(f), BaseURL: "https://d"})
	if err != nil {
		f.Fatal(err)
	}
	p, err := k.Begin(LinkRequest{Fingerprint: "SHA256:x", KeyType: "ssh-ed25519", RemoteIP: "192.0.2.1"})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{p.Code, strings.ToLower(p.Code), strings.ReplaceAll(p.Code, "-", ""), "", "----", strings.Repeat("A", 40), "ÄÖ-ÜÄ", "%2F"} {
		f.Add(s)
	}
	want := normalizeCode(p.Code)
	f.Fuzz(func(t *testing.T, s string) {
		got, _ := k.lookup(s)
		if got != nil && normalizeCode(s) != want {
			t.Fatalf("%q found the link of %q", s, p.Code)
		}
	})
}
