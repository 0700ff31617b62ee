package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toolgate/toolgate/data"
)

// memClients is an in-memory ClientRecords.
type memClients struct {
	mu      sync.Mutex
	recs    map[string]data.OAuthClient
	puts    int
	failPut error // returned by PutOAuthClient when set
}

func newMemClients() *memClients { return &memClients{recs: make(map[string]data.OAuthClient)} }

func (m *memClients) PutOAuthClient(_ context.Context, c data.OAuthClient) (data.OAuthClient, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failPut != nil {
		return data.OAuthClient{}, m.failPut
	}
	m.puts++
	m.recs[c.ID] = c
	return c, nil
}

func (m *memClients) GetOAuthClient(_ context.Context, id string) (data.OAuthClient, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.recs[id]
	if !ok {
		return data.OAuthClient{}, fmt.Errorf("%w: client %q", data.ErrNotFound, id)
	}
	return c, nil
}

func (m *memClients) get(id string) (data.OAuthClient, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.recs[id]
	return c, ok
}

func (m *memClients) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.recs)
}

var testScopes = []string{"mcp", "mcp:admin", "offline_access"}

func TestParseClientMetadata(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  string // error code; "" for success
		check func(t *testing.T, m ClientMetadata)
	}{
		{name: "minimal", in: `{"redirect_uris":["https://a.example/cb"]}`, check: func(t *testing.T, m ClientMetadata) {
			if !slices.Equal(m.RedirectURIs, []string{"https://a.example/cb"}) {
				t.Errorf("redirect_uris = %q", m.RedirectURIs)
			}
		}},
		{name: "leading whitespace", in: " \n\t{\"redirect_uris\":[\"https://a.example/cb\"]}\n"},
		{name: "unknown fields ignored", in: `{"redirect_uris":["https://a/cb"],"x_vendor":{"nested":[1,2]},"jwks":{"keys":[]},"software_statement":"e30"}`},
		{name: "software fields kept", in: `{"redirect_uris":["https://a/cb"],"software_id":"mcp-remote","software_version":"0.1.29"}`, check: func(t *testing.T, m ClientMetadata) {
			if m.SoftwareID != "mcp-remote" || m.SoftwareVersion != "0.1.29" {
				t.Errorf("software = %q %q", m.SoftwareID, m.SoftwareVersion)
			}
		}},
		{name: "duplicate keys: last wins", in: `{"client_name":"a","client_name":"b","redirect_uris":["https://a/cb"]}`, check: func(t *testing.T, m ClientMetadata) {
			if m.ClientName != "b" {
				t.Errorf("client_name = %q", m.ClientName)
			}
		}},
		{name: "null fields", in: `{"redirect_uris":["https://a/cb"],"logo_uri":null,"contacts":null}`},
		{name: "client_secret noticed", in: `{"redirect_uris":["https://a/cb"],"client_secret":"s"}`, check: func(t *testing.T, m ClientMetadata) {
			if !m.hasSecret {
				t.Error("hasSecret = false")
			}
		}},
		{name: "client_secret null not a secret", in: `{"redirect_uris":["https://a/cb"],"client_secret":null}`, check: func(t *testing.T, m ClientMetadata) {
			if m.hasSecret {
				t.Error("hasSecret = true")
			}
		}},
		{name: "malformed", in: `{"redirect_uris":["https://a/cb"]`, want: errInvalidClientMetadata},
		{name: "trailing garbage", in: `{"redirect_uris":["https://a/cb"]} {}`, want: errInvalidClientMetadata},
		{name: "trailing comma", in: `{"redirect_uris":["https://a/cb"],}`, want: errInvalidClientMetadata},
		{name: "not an object", in: `["https://a/cb"]`, want: errInvalidClientMetadata},
		{name: "null", in: `null`, want: errInvalidClientMetadata},
		{name: "empty", in: ``, want: errInvalidClientMetadata},
		{name: "redirect_uris a string", in: `{"redirect_uris":"https://a/cb"}`, want: errInvalidClientMetadata},
		{name: "redirect_uris numbers", in: `{"redirect_uris":[1]}`, want: errInvalidClientMetadata},
		{name: "client_name a number", in: `{"redirect_uris":["https://a/cb"],"client_name":5}`, want: errInvalidClientMetadata},
		{name: "scope an array", in: `{"redirect_uris":["https://a/cb"],"scope":["mcp"]}`, want: errInvalidClientMetadata},
		{name: "invalid UTF-8", in: "{\"redirect_uris\":[\"https://a/cb\"],\"client_name\":\"\xff\"}", want: errInvalidClientMetadata},
		{name: "too large", in: `{"redirect_uris":["https://a/cb"],"x":"` + strings.Repeat("a", MaxMetadataBytes) + `"}`, want: errInvalidClientMetadata},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseClientMetadata([]byte(tt.in))
			checkMetadataErr(t, err, tt.want)
			if err == nil && tt.check != nil {
				tt.check(t, m)
			}
		})
	}
}

func checkMetadataErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var me *MetadataError
	if !errors.As(err, &me) {
		t.Fatalf("error = %v, want a *MetadataError %s", err, want)
	}
	if me.Code != want {
		t.Fatalf("code = %s (%s), want %s", me.Code, me.Description, want)
	}
	for _, bad := range []string{"scope=", "resource_metadata="} {
		if strings.Contains(strings.ToLower(me.Description), bad) {
			t.Errorf("description %q contains %q", me.Description, bad)
		}
	}
}

func TestClientMetadataNormalize(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  string // error code; "" for success
		in2   string // substring the description must contain
		check func(t *testing.T, m ClientMetadata)
	}{
		{name: "defaults for https", in: `{"redirect_uris":["https://app.example/cb"]}`, check: func(t *testing.T, m ClientMetadata) {
			if !slices.Equal(m.GrantTypes, []string{"authorization_code", "refresh_token"}) {
				t.Errorf("grant_types = %q", m.GrantTypes)
			}
			if !slices.Equal(m.ResponseTypes, []string{"code"}) {
				t.Errorf("response_types = %q", m.ResponseTypes)
			}
			if m.TokenEndpointAuthMethod != "none" {
				t.Errorf("token_endpoint_auth_method = %q", m.TokenEndpointAuthMethod)
			}
			if m.ApplicationType != "web" {
				t.Errorf("application_type = %q", m.ApplicationType)
			}
		}},
		{name: "localhost is native", in: `{"redirect_uris":["http://localhost:3334/oauth/callback"]}`, check: wantAppType("native")},
		{name: "127.0.0.1 is native", in: `{"redirect_uris":["http://127.0.0.1/callback"]}`, check: wantAppType("native")},
		{name: "[::1] is native", in: `{"redirect_uris":["http://[::1]:8080/cb"]}`, check: wantAppType("native")},
		{name: "private-use scheme is native", in: `{"redirect_uris":["cursor://anysphere.cursor-retrieval/oauth/callback"]}`, check: wantAppType("native")},
		{name: "reverse-domain scheme", in: `{"redirect_uris":["com.example.app:/oauth2redirect"]}`, check: wantAppType("native")},
		{name: "VS Code mix is native", in: `{"redirect_uris":["http://127.0.0.1/","http://127.0.0.1:33418/","https://vscode.dev/redirect"]}`, check: wantAppType("native")},
		{name: "explicit native with https", in: `{"redirect_uris":["https://app.example/cb"],"application_type":"native"}`, check: wantAppType("native")},
		{name: "explicit web", in: `{"redirect_uris":["https://app.example/cb"],"application_type":"web"}`, check: wantAppType("web")},
		{name: "web with loopback", in: `{"redirect_uris":["https://app.example/cb","http://127.0.0.1/cb"],"application_type":"web"}`, want: errInvalidRedirectURI, in2: "register as native"},
		{name: "web with private-use", in: `{"redirect_uris":["myapp://cb"],"application_type":"web"}`, want: errInvalidRedirectURI, in2: "native"},
		{name: "unknown application_type", in: `{"redirect_uris":["https://a/cb"],"application_type":"desktop"}`, want: errInvalidClientMetadata},
		{name: "empty logo_uri and tos_uri tolerated", in: `{"redirect_uris":["https://a/cb"],"logo_uri":"","tos_uri":"","client_uri":"","policy_uri":""}`},
		{name: "informational URIs", in: `{"redirect_uris":["https://a/cb"],"client_uri":"https://a.example","logo_uri":"https://a.example/logo.png","tos_uri":"http://a.example/tos"}`},
		{name: "javascript client_uri", in: `{"redirect_uris":["https://a/cb"],"client_uri":"javascript:alert(1)"}`, want: errInvalidClientMetadata, in2: "client_uri"},
		{name: "relative logo_uri", in: `{"redirect_uris":["https://a/cb"],"logo_uri":"/logo.png"}`, want: errInvalidClientMetadata, in2: "logo_uri"},

		{name: "no redirect_uris", in: `{"client_name":"x"}`, want: errInvalidRedirectURI, in2: "redirect_uris is required"},
		{name: "empty redirect_uris", in: `{"redirect_uris":[]}`, want: errInvalidRedirectURI},
		{name: "too many redirect_uris", in: `{"redirect_uris":[` + strings.TrimSuffix(strings.Repeat(`"https://a/cb",`, 11), ",") + `]}`, want: errInvalidRedirectURI, in2: "at most 10"},
		{name: "ten redirect_uris", in: `{"redirect_uris":[` + strings.TrimSuffix(strings.Repeat(`"https://a/cb",`, 10), ",") + `]}`},
		{name: "redirect too long", in: `{"redirect_uris":["https://a/` + strings.Repeat("x", 2000) + `"]}`, want: errInvalidRedirectURI},
		{name: "http non-loopback", in: `{"redirect_uris":["http://app.example/cb"]}`, want: errInvalidRedirectURI, in2: "http://app.example/cb"},
		{name: "http 127.0.0.2", in: `{"redirect_uris":["http://127.0.0.2/cb"]}`, want: errInvalidRedirectURI},
		{name: "http localhost lookalike", in: `{"redirect_uris":["http://localhost.evil.example/cb"]}`, want: errInvalidRedirectURI},
		{name: "http no host", in: `{"redirect_uris":["http:/cb"]}`, want: errInvalidRedirectURI},
		{name: "https no host", in: `{"redirect_uris":["https:///cb"]}`, want: errInvalidRedirectURI},
		{name: "https opaque", in: `{"redirect_uris":["https:app.example"]}`, want: errInvalidRedirectURI},
		{name: "fragment", in: `{"redirect_uris":["https://a/cb#frag"]}`, want: errInvalidRedirectURI, in2: "fragment"},
		{name: "empty fragment", in: `{"redirect_uris":["https://a/cb#"]}`, want: errInvalidRedirectURI},
		{name: "userinfo", in: `{"redirect_uris":["https://user:pw@a/cb"]}`, want: errInvalidRedirectURI, in2: "user information"},
		{name: "relative", in: `{"redirect_uris":["/cb"]}`, want: errInvalidRedirectURI, in2: "absolute"},
		{name: "javascript", in: `{"redirect_uris":["javascript:alert(1)"]}`, want: errInvalidRedirectURI, in2: "javascript"},
		{name: "JavaScript upper case", in: `{"redirect_uris":["JavaScript:alert(1)"]}`, want: errInvalidRedirectURI},
		{name: "data", in: `{"redirect_uris":["data:text/html,hi"]}`, want: errInvalidRedirectURI},
		{name: "file", in: `{"redirect_uris":["file:///etc/passwd"]}`, want: errInvalidRedirectURI},
		{name: "vbscript", in: `{"redirect_uris":["vbscript:msgbox"]}`, want: errInvalidRedirectURI},
		{name: "about", in: `{"redirect_uris":["about:blank"]}`, want: errInvalidRedirectURI},
		{name: "blob", in: `{"redirect_uris":["blob:https://a/x"]}`, want: errInvalidRedirectURI},
		{name: "ftp", in: `{"redirect_uris":["ftp://a/cb"]}`, want: errInvalidRedirectURI},
		{name: "ws", in: `{"redirect_uris":["ws://127.0.0.1/cb"]}`, want: errInvalidRedirectURI},
		{name: "wss", in: `{"redirect_uris":["wss://a/cb"]}`, want: errInvalidRedirectURI},
		{name: "space in URI", in: `{"redirect_uris":["https://a/c b"]}`, want: errInvalidRedirectURI},
		{name: "control char in URI", in: `{"redirect_uris":["https://a/c\u0000b"]}`, want: errInvalidRedirectURI},
		{name: "one bad among good", in: `{"redirect_uris":["https://a/cb","http://evil.example/cb"]}`, want: errInvalidRedirectURI, in2: "evil.example"},
		{name: "description free of scope=", in: `{"redirect_uris":["http://evil.example/cb?scope=x&resource_metadata=y"]}`, want: errInvalidRedirectURI},

		{name: "grant types subset", in: `{"redirect_uris":["https://a/cb"],"grant_types":["authorization_code"]}`, check: func(t *testing.T, m ClientMetadata) {
			if !slices.Equal(m.GrantTypes, []string{"authorization_code"}) {
				t.Errorf("grant_types = %q", m.GrantTypes)
			}
		}},
		{name: "grant types deduplicated", in: `{"redirect_uris":["https://a/cb"],"grant_types":["refresh_token","authorization_code","refresh_token"]}`, check: func(t *testing.T, m ClientMetadata) {
			if !slices.Equal(m.GrantTypes, []string{"refresh_token", "authorization_code"}) {
				t.Errorf("grant_types = %q", m.GrantTypes)
			}
		}},
		{name: "client_credentials", in: `{"redirect_uris":["https://a/cb"],"grant_types":["authorization_code","client_credentials"]}`, want: errInvalidClientMetadata, in2: "client_credentials"},
		{name: "implicit", in: `{"redirect_uris":["https://a/cb"],"grant_types":["implicit"]}`, want: errInvalidClientMetadata},
		{name: "refresh only", in: `{"redirect_uris":["https://a/cb"],"grant_types":["refresh_token"]}`, want: errInvalidClientMetadata, in2: "authorization_code"},
		{name: "response type token", in: `{"redirect_uris":["https://a/cb"],"response_types":["token"]}`, want: errInvalidClientMetadata},
		{name: "client_secret_basic", in: `{"redirect_uris":["https://a/cb"],"token_endpoint_auth_method":"client_secret_basic"}`},
		{name: "client_secret_post", in: `{"redirect_uris":["https://a/cb"],"token_endpoint_auth_method":"client_secret_post"}`},
		{name: "private_key_jwt", in: `{"redirect_uris":["https://a/cb"],"token_endpoint_auth_method":"private_key_jwt"}`, want: errInvalidClientMetadata, in2: "private_key_jwt"},

		{name: "known scopes", in: `{"redirect_uris":["https://a/cb"],"scope":"mcp  offline_access"}`},
		{name: "unknown scope", in: `{"redirect_uris":["https://a/cb"],"scope":"mcp openid"}`, want: errInvalidClientMetadata, in2: `"openid"`},
		{name: "tab in scope", in: `{"redirect_uris":["https://a/cb"],"scope":"mcp\topenid"}`, want: errInvalidClientMetadata},

		{name: "client_name 200 bytes", in: `{"redirect_uris":["https://a/cb"],"client_name":"` + strings.Repeat("n", 200) + `"}`},
		{name: "client_name too long", in: `{"redirect_uris":["https://a/cb"],"client_name":"` + strings.Repeat("n", 201) + `"}`, want: errInvalidClientMetadata, in2: "client_name"},
		{name: "client_name unicode", in: `{"redirect_uris":["https://a/cb"],"client_name":"Clàude Cöde ✓"}`},
		{name: "client_name control", in: `{"redirect_uris":["https://a/cb"],"client_name":"a\nb"}`, want: errInvalidClientMetadata, in2: "control"},
		{name: "client_name lone surrogate", in: `{"redirect_uris":["https://a/cb"],"client_name":"\ud800"}`, want: errInvalidClientMetadata},
		{name: "software_version too long", in: `{"redirect_uris":["https://a/cb"],"software_version":"` + strings.Repeat("1", 2001) + `"}`, want: errInvalidClientMetadata},
		{name: "too many contacts", in: `{"redirect_uris":["https://a/cb"],"contacts":[` + strings.TrimSuffix(strings.Repeat(`"a@b",`, 11), ",") + `]}`, want: errInvalidClientMetadata},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseClientMetadata([]byte(tt.in))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			err = m.Normalize(testScopes)
			checkMetadataErr(t, err, tt.want)
			if err != nil && tt.in2 != "" && !strings.Contains(err.(*MetadataError).Description, tt.in2) {
				t.Errorf("description %q does not mention %q", err.(*MetadataError).Description, tt.in2)
			}
			if err == nil && tt.check != nil {
				tt.check(t, m)
			}
		})
	}
}

func wantAppType(want string) func(*testing.T, ClientMetadata) {
	return func(t *testing.T, m ClientMetadata) {
		t.Helper()
		if m.ApplicationType != want {
			t.Errorf("application_type = %q, want %q", m.ApplicationType, want)
		}
	}
}

func TestClientMetadataNormalizeIdempotent(t *testing.T) {
	m, err := ParseClientMetadata([]byte(`{"redirect_uris":["http://localhost/cb"],"client_name":"x","scope":"mcp"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Normalize(testScopes); err != nil {
		t.Fatal(err)
	}
	again, err := ParseClientMetadata(m.echo())
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Normalize(testScopes); err != nil {
		t.Fatal(err)
	}
	if string(again.echo()) != string(m.echo()) {
		t.Errorf("echo changed on a second pass:\n%s\n%s", m.echo(), again.echo())
	}
}

func TestClientMetadataRecord(t *testing.T) {
	m, err := ParseClientMetadata([]byte(`{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"Test","client_uri":"https://t.example","logo_uri":"https://t.example/l.png","scope":"mcp","x_unknown":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Normalize(testScopes); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := m.Record("tgc_x", data.ClientDynamic, now, testScopes)
	if rec.ID != "tgc_x" || rec.Kind != data.ClientDynamic || rec.Name != "Test" || rec.URI != "https://t.example" ||
		rec.LogoURI != "https://t.example/l.png" || rec.ApplicationType != "native" || rec.TokenEndpointAuthMethod != "none" ||
		!rec.CreatedAt.Equal(now) || !rec.ExpiresAt.IsZero() || rec.SecretHash != "" {
		t.Errorf("record = %+v", rec)
	}
	if !slices.Equal(rec.Scopes, testScopes) {
		t.Errorf("scopes = %q, want all supported scopes %q", rec.Scopes, testScopes)
	}
	if !slices.Equal(rec.RedirectURIs, []string{"http://127.0.0.1/cb"}) || !slices.Equal(rec.GrantTypes, []string{"authorization_code", "refresh_token"}) || !slices.Equal(rec.ResponseTypes, []string{"code"}) {
		t.Errorf("record lists = %q %q %q", rec.RedirectURIs, rec.GrantTypes, rec.ResponseTypes)
	}
	var echo map[string]any
	if err := json.Unmarshal(rec.Metadata, &echo); err != nil {
		t.Fatal(err)
	}
	if echo["scope"] != "mcp" || echo["application_type"] != "native" || echo["token_endpoint_auth_method"] != "none" {
		t.Errorf("metadata = %s", rec.Metadata)
	}
	if _, ok := echo["x_unknown"]; ok {
		t.Errorf("metadata keeps an unknown field: %s", rec.Metadata)
	}
	// The record must not alias m's slices.
	rec.RedirectURIs[0] = "changed"
	if m.RedirectURIs[0] == "changed" {
		t.Error("record aliases the metadata's redirect URIs")
	}
}

func TestMetadataErrorDescription(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                         "plain",
		"https://x/?scope=a":            "https://x/?scope =a",
		"SCOPE=a resource_metadata=b":   "SCOPE =a resource_metadata =b",
		"scope=scope=":                  "scope =scope =",
		"nothing to see = here scope =": "nothing to see = here scope =",
	} {
		if got := cleanDescription(in); got != want {
			t.Errorf("cleanDescription(%q) = %q, want %q", in, got, want)
		}
	}
	e := metadataErrorf(errInvalidRedirectURI, "bad %s", "https://x/?scope=a")
	if e.Error() != "invalid_redirect_uri: bad https://x/?scope =a" {
		t.Errorf("Error() = %q", e.Error())
	}
}

var _ ClientRecords = (*data.Store)(nil)
