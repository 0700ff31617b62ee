package oauth

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseClientMetadata feeds arbitrary bytes to ParseClientMetadata and Normalize: they
// must never panic, must fail only with a *MetadataError, and what Normalize accepts must hold
// to the redirect rules (no http off loopback, no fragments, no user information, no
// dangerous schemes) and echo as metadata that parses and normalizes to itself.
func FuzzParseClientMetadata(f *testing.F) {
	for _, seed := range []string{
		`{"redirect_uris":["https://app.example/cb"]}`,
		`{"client_name":"MCP CLI Proxy","redirect_uris":["http://localhost:3334/oauth/callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none","client_uri":"https://github.com/modelcontextprotocol/mcp-cli","software_id":"2e6dc280","software_version":"0.1.29"}`,
		`{"redirect_uris":["http://127.0.0.1/","http://127.0.0.1:33418/","https://vscode.dev/redirect"],"client_name":"Visual Studio Code","token_endpoint_auth_method":"none"}`,
		`{"client_id":"https://claude.ai/oauth/claude-code-client-metadata","client_name":"Claude Code","redirect_uris":["http://localhost/callback","http://127.0.0.1/callback"],"application_type":"native"}`,
		`{"redirect_uris":["cursor://anysphere.cursor-retrieval/oauth/user-x/callback"],"logo_uri":"","tos_uri":""}`,
		`{"redirect_uris":["com.example.app:/oauth2redirect"],"scope":"mcp offline_access"}`,
		`{"redirect_uris":["http://[::1]:8080/cb"],"token_endpoint_auth_method":"client_secret_post","client_secret":"x"}`,
		`{"redirect_uris":["http://evil.example/cb"]}`,
		`{"redirect_uris":["HTTP://EVIL.example/cb"]}`,
		`{"redirect_uris":["http://localhost@evil.example/cb"]}`,
		`{"redirect_uris":["http://127.0.0.1.evil.example/cb"]}`,
		`{"redirect_uris":["http://[::ffff:127.0.0.1]/cb"]}`,
		`{"redirect_uris":["http:\/\/127.0.0.1\/cb"]}`,
		`{"redirect_uris":["http://127.0.0.1\u0000.evil/cb"]}`,
		`{"redirect_uris":["javascript://127.0.0.1/%0aalert(1)"]}`,
		`{"redirect_uris":["https://a/cb#x"],"application_type":"web"}`,
		`{"redirect_uris":["https://a/cb"],"application_type":"web","grant_types":["implicit"]}`,
		`{"redirect_uris":"https://a/cb"}`,
		`{"redirect_uris":[null]}`,
		`{"redirect_uris":["https://a/cb"],"redirect_uris":["http://b/cb"]}`,
		`{"redirect_uris":["https://a/cb"],"scope":"mcp\tadmin","client_name":"\ud800"}`,
		`[]`, `null`, `"x"`, `{`, ``, "{\"redirect_uris\":[\"https://a/\xff\"]}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseClientMetadata(b)
		if err != nil {
			var me *MetadataError
			if !errors.As(err, &me) {
				t.Fatalf("ParseClientMetadata error %v is not a *MetadataError", err)
			}
			return
		}
		err = m.Normalize(testScopes)
		if err != nil {
			var me *MetadataError
			if !errors.As(err, &me) || (me.Code != errInvalidClientMetadata && me.Code != errInvalidRedirectURI) {
				t.Fatalf("Normalize error %v is not an RFC 7591 *MetadataError", err)
			}
			if strings.Contains(strings.ToLower(me.Description), "scope=") || strings.Contains(strings.ToLower(me.Description), "resource_metadata=") {
				t.Fatalf("description %q carries a challenge parameter", me.Description)
			}
			return
		}
		if len(m.RedirectURIs) == 0 || len(m.RedirectURIs) > maxRedirectURIs {
			t.Fatalf("accepted %d redirect URIs", len(m.RedirectURIs))
		}
		for _, raw := range m.RedirectURIs {
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatalf("accepted unparsable redirect URI %q", raw)
			}
			if strings.ContainsAny(raw, "# \t\r\n") || u.User != nil || !utf8.ValidString(raw) {
				t.Fatalf("accepted redirect URI %q", raw)
			}
			switch strings.ToLower(u.Scheme) {
			case "http":
				if h := u.Hostname(); h != "127.0.0.1" && h != "::1" && !strings.EqualFold(h, "localhost") {
					t.Fatalf("accepted http redirect URI %q on a host that is not loopback", raw)
				}
			case "https":
				if u.Hostname() == "" {
					t.Fatalf("accepted https redirect URI %q without a host", raw)
				}
			case "javascript", "data", "file", "vbscript", "about", "blob", "ftp", "ws", "wss", "":
				t.Fatalf("accepted redirect URI %q", raw)
			}
		}
		if m.ApplicationType != appTypeNative && m.ApplicationType != appTypeWeb {
			t.Fatalf("application_type %q", m.ApplicationType)
		}
		if m.TokenEndpointAuthMethod == "" || len(m.GrantTypes) == 0 || len(m.ResponseTypes) == 0 {
			t.Fatalf("defaults not filled: %+v", m)
		}
		if len(m.ClientName) > maxNameLen {
			t.Fatalf("accepted a %d-byte client_name", len(m.ClientName))
		}
		// What was accepted must survive the round trip through the stored echo.
		echo := m.echo()
		again, err := ParseClientMetadata(echo)
		if err != nil {
			t.Fatalf("echo %s does not parse: %v", echo, err)
		}
		if err := again.Normalize(testScopes); err != nil {
			t.Fatalf("echo %s does not normalize: %v", echo, err)
		}
		if string(again.echo()) != string(echo) {
			t.Fatalf("echo changed:\n%s\n%s", echo, again.echo())
		}
	})
}
