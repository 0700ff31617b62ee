package oauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/oauth"
)

// FuzzParseAuthorize feeds raw query strings to ParseAuthorize. It must never panic, never
// make an open redirector of the server, and bind only resources that exist.
func FuzzParseAuthorize(f *testing.F) {
	fx := newFixture(f, nil)
	p := newPKCE()
	valid := authQuery(p, nil).Encode()
	f.Add(valid)
	for _, mod := range []func(url.Values){
		func(q url.Values) { q.Set("redirect_uri", "javascript:alert(document.domain)") },
		func(q url.Values) { q.Set("redirect_uri", "https://app.example/cb\x00.evil.example") },
		func(q url.Values) { q.Set("redirect_uri", "http://localhost:5555/cb") },
		func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:0/cb") },
		func(q url.Values) { q.Set("redirect_uri", "http://user@127.0.0.1:5555/cb") },
		func(q url.Values) { q.Set("redirect_uri", "http://[::1]:5555/cb") },
		func(q url.Values) { q.Set("redirect_uri", "https://app.example/cb/../../evil") },
		func(q url.Values) { q.Set("redirect_uri", "https://ａpp.example/cb") },
		func(q url.Values) { q.Set("redirect_uri", "//evil.example/cb") },
		func(q url.Values) { q.Set("resource", "https://a.test.localhost:8443/ü/%00") },
		func(q url.Values) { q.Set("resource", "https://a.test.localhost:8443@evil.example/mcp") },
		func(q url.Values) { q.Set("resource", "https://a.test.localhost:8443\\@evil.example/mcp") },
		func(q url.Values) { q.Set("resource", "HTTPS://A.TEST.LOCALHOST:8443/%2e%2e/") },
		func(q url.Values) { q.Del("resource") },
		func(q url.Values) { q.Set("state", strings.Repeat("s", 70000)) },
		func(q url.Values) { q.Set("scope", strings.Repeat("mcp ", 5000)) },
		func(q url.Values) { q.Set("response_mode", "form_post") },
		func(q url.Values) { q.Set("request_uri", "https://evil.example/req"); q.Set("scope", "openid mcp") },
		func(q url.Values) { q.Set("client_id", "https://evil.example/client.json") },
	} {
		f.Add(authQuery(p, mod).Encode())
	}
	f.Add(valid + "&redirect_uri=https://evil.example/cb")
	f.Add("redirect_uri=https://evil.example/cb&" + valid)
	f.Add(valid + "&client_id=other")
	f.Add(valid + "&state=%00%ff%fe")
	f.Add(valid + "&response_mode=%00%ff%F3%A0%80%81")
	f.Add(valid + ";x=1")
	f.Add(valid + "&%zz")
	f.Add("")
	f.Add("client_id=static&redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcb%23frag")

	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest(http.MethodGet, oauth.AuthorizePath, nil)
		r.URL.RawQuery = raw
		sent, _ := url.ParseQuery(raw)
		req, err := fx.srv.ParseAuthorize(context.Background(), r)
		if err == nil {
			if req.ClientID != sent.Get("client_id") || !registeredClient(req.ClientID) {
				t.Fatalf("accepted client %q (sent %q)", req.ClientID, sent.Get("client_id"))
			}
			loc, perr := url.Parse(req.RedirectURI)
			if perr != nil || !registeredTarget(req.ClientID, loc) || loc.RawQuery != "" || loc.Fragment != "" {
				t.Fatalf("accepted redirect %q for %s", req.RedirectURI, req.ClientID)
			}
			origin := oauth.ResourceOrigin(req.Resource)
			if origin != originA && origin != originB {
				t.Fatalf("bound resource %q", req.Resource)
			}
			if res, _, ok := oauth.CanonicalResource(req.Resource); !ok || res != req.Resource {
				t.Fatalf("bound resource %q is not canonical (%q)", req.Resource, res)
			}
			if len(req.Scopes) == 0 {
				t.Fatal("no scopes")
			}
			for _, s := range req.Scopes {
				if s != "mcp" && s != "mcp:admin" && s != "offline_access" {
					t.Fatalf("scope %q", s)
				}
			}
			return
		}
		var ae *oauth.AuthorizeError
		if !errors.As(err, &ae) {
			t.Fatalf("error %v (%T) is not an *AuthorizeError", err, err)
		}
		_ = ae.Error()
		_ = ae.Detail()
		rec := httptest.NewRecorder()
		fx.srv.WriteAuthorizeError(rec, ae)
		if !ae.Redirectable() {
			if rec.Code != http.StatusBadRequest || rec.Header().Get("Location") != "" {
				t.Fatalf("non-redirectable error written as %d, Location %q", rec.Code, rec.Header().Get("Location"))
			}
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("non-redirectable error body is not JSON: %s", rec.Body)
			}
			return
		}
		clientID := sent.Get("client_id")
		if !registeredClient(clientID) {
			t.Fatalf("redirectable error %v for unregistered client %q", ae, clientID)
		}
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("redirectable error written as %d", rec.Code)
		}
		loc, perr := url.Parse(rec.Header().Get("Location"))
		if perr != nil || !registeredTarget(clientID, loc) || loc.Fragment != "" {
			t.Fatalf("error %v redirects to %q for %s (sent redirect_uri %q)", ae, rec.Header().Get("Location"), clientID, sent.Get("redirect_uri"))
		}
		q := loc.Query()
		for k := range q {
			if !slices.Contains([]string{"error", "error_description", "state", "iss"}, k) {
				t.Fatalf("error redirect %s carries %q", loc, k)
			}
		}
		if q.Get("error") != ae.Code() || q.Get("iss") != testIssuer || len(q["iss"]) != 1 {
			t.Fatalf("error redirect %s for %v", loc, ae)
		}
		if st := sent.Get("state"); q.Get("state") != st || len(q["state"]) > 1 {
			t.Fatalf("error redirect %s: state %q, sent %q", loc, q.Get("state"), st)
		}
	})
}

func registeredClient(id string) bool {
	return id == "static" || id == "other" || id == "confidential"
}

// registeredTarget reports whether loc (query ignored) is one of the client's registered
// redirect URIs, or for a loopback one the same URI on another port.
func registeredTarget(clientID string, loc *url.URL) bool {
	var regs []string
	switch clientID {
	case "static":
		regs = staticRedirects
	case "other":
		regs = []string{redirectIP}
	case "confidential":
		regs = []string{redirectApp}
	}
	for _, raw := range regs {
		reg, _ := url.Parse(raw)
		if loc.Scheme != reg.Scheme || loc.Opaque != "" {
			continue
		}
		if loc.Host == reg.Host && loc.User == nil && loc.EscapedPath() == reg.EscapedPath() {
			return true
		}
		// Loopback: any port, and fosite compares decoded paths.
		loopback := reg.Hostname() == "127.0.0.1" || reg.Hostname() == "localhost"
		if loopback && reg.Scheme == "http" && strings.EqualFold(loc.Hostname(), reg.Hostname()) && loc.Path == reg.Path {
			return true
		}
	}
	return false
}
