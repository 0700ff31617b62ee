package oauth

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Handler returns the server's JSON endpoints, for the issuer's origin: authorization server
// metadata (RFC 8414 and OpenID discovery), the token, revocation and registration endpoints.
// The authorization endpoint is not among them: it needs a signed-in user and a consent page,
// which package web provides around [Server.ParseAuthorize].
//
// Every endpoint here answers CORS preflights itself and allows any origin: browser-based MCP
// clients call them from their own origin, and none of them uses cookies, so there is nothing
// for a foreign page to ride on.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	meta := s.metadata()
	mux.HandleFunc("GET "+MetadataPath, meta)
	mux.HandleFunc("GET "+OpenIDConfigPath, meta)
	mux.HandleFunc("POST "+TokenPath, s.token)
	mux.HandleFunc("POST "+RevokePath, s.revoke)
	if s.register != nil {
		mux.Handle("POST "+RegisterPath, s.register)
	}
	return PublicCORS(mux)
}

// Paths lists the paths Handler serves, so that a router can send exactly these to it.
func (s *Server) Paths() []string {
	p := []string{MetadataPath, OpenIDConfigPath, TokenPath, RevokePath}
	if s.register != nil {
		p = append(p, RegisterPath)
	}
	return p
}

func (s *Server) metadata() http.HandlerFunc {
	iss := s.cfg.Issuer
	doc := map[string]any{
		"issuer":                                         iss,
		"authorization_endpoint":                         iss + AuthorizePath,
		"token_endpoint":                                 iss + TokenPath,
		"revocation_endpoint":                            iss + RevokePath,
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{"none", "client_secret_basic", "client_secret_post"},
		"revocation_endpoint_auth_methods_supported":     []string{"none", "client_secret_basic", "client_secret_post"},
		"scopes_supported":                               s.clientScopes(),
		"authorization_response_iss_parameter_supported": true,
		"client_id_metadata_document_supported":          s.docs != nil,
		// RFC 8707: tokens are bound to the resource they were asked for.
		"resource_indicators_supported": true,
		"subject_types_supported":       []string{"public"},
	}
	if s.register != nil {
		doc["registration_endpoint"] = iss + RegisterPath
	}
	body, _ := json.MarshalIndent(doc, "", "  ")
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(body)
	}
}

// ResourceMetadata returns RFC 9728 protected resource metadata for resource (a canonical
// resource URL: the MCP URL the client uses, or an origin for the root document).
func (s *Server) ResourceMetadata(resource string) []byte {
	doc := map[string]any{
		"resource":                 resource,
		"authorization_servers":    []string{s.cfg.Issuer},
		"scopes_supported":         s.cfg.Scopes,
		"bearer_methods_supported": []string{"header"},
		"resource_name":            strings.TrimPrefix(ResourceOrigin(resource), "https://"),
	}
	body, _ := json.MarshalIndent(doc, "", "  ")
	return body
}

// ResourceMetadataURL is where the metadata for the MCP URL origin+path lives: RFC 9728's
// well-known prefix inserted before the path.
func ResourceMetadataURL(origin, path string) string {
	path = strings.TrimRight(path, "/")
	return origin + ResourceMetadataPath + path
}

// Challenge is a WWW-Authenticate value for a tunnel response. errCode is "" (no token),
// "invalid_token" or "insufficient_scope"; scopes are the scopes to ask for.
func Challenge(metadataURL string, scopes []string, errCode, description string) string {
	var b strings.Builder
	b.WriteString("Bearer ")
	if errCode != "" {
		b.WriteString(`error="` + errCode + `", `)
	}
	if len(scopes) > 0 {
		b.WriteString(`scope="` + strings.Join(scopes, " ") + `", `)
	}
	b.WriteString(`resource_metadata="` + metadataURL + `"`)
	if description != "" {
		// Clients parse these parameters with simple patterns; keep the text free of quotes,
		// backslashes and anything that looks like another parameter.
		d := strings.NewReplacer(`"`, "'", `\`, "/", "=", " ").Replace(description)
		b.WriteString(`, error_description="` + d + `"`)
	}
	return b.String()
}

// PublicCORS answers preflights and marks responses readable by any origin, for endpoints
// that take no cookies.
func PublicCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.Header.Get("Origin") != "" {
			h.Set("Access-Control-Allow-Origin", "*")
			h.Set("Access-Control-Expose-Headers", "WWW-Authenticate, Mcp-Session-Id, Mcp-Protocol-Version")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, Last-Event-ID, Mcp-Session-Id, Mcp-Protocol-Version, Mcp-Method, Mcp-Name")
			h.Set("Access-Control-Max-Age", "7200")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
