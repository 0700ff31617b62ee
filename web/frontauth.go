package web

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/oauth"
)

// The OAuth steps of the tunnel path (step 1's metadata and step 3 of serveTunnel).

func isResourceMetadataPath(p string) bool {
	return p == oauth.ResourceMetadataPath || strings.HasPrefix(p, oauth.ResourceMetadataPath+"/")
}

// requestOrigin is the origin the client used: https, the Host as sent, lower case, without
// the default port. Tokens are bound to it.
func requestOrigin(r *http.Request) string {
	return "https://" + strings.TrimSuffix(strings.ToLower(r.Host), ":443")
}

// serveResourceMetadata answers RFC 9728 metadata for a tunnel: at the root for the origin,
// and at the path-inserted location for the resource at that path, whose "resource" is the
// MCP URL itself, byte for byte, as strict clients require.
func (f *Front) serveResourceMetadata(w http.ResponseWriter, r *http.Request, name string) {
	w = corsPublic(w, r)
	if r.Method == http.MethodOptions {
		w.Header().Set("Access-Control-Allow-Methods", "GET, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", corsAllowHeaders)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		writeError(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "Protected resource metadata is read with GET.")
		return
	}
	if !f.cfg.Tunnels.Known(r.Context(), name) {
		writeError(w, r, http.StatusNotFound, "no_tunnel", fmt.Sprintf("There is no tunnel named %q.", name))
		return
	}
	path := strings.TrimPrefix(r.URL.EscapedPath(), oauth.ResourceMetadataPath)
	resource := requestOrigin(r) + path
	if path == "/" {
		resource = requestOrigin(r)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(f.cfg.Auth.ResourceMetadata(resource))
}

// corsPublic marks a response readable from any origin; for public metadata only.
func corsPublic(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	if r.Header.Get("Origin") != "" {
		w.Header().Set("Access-Control-Allow-Origin", "*")
	}
	return w
}

// authorize runs the token step; it answers the request itself and returns nil when the
// request may not go on, noting in tr why for the audit record. The challenge's metadata URL
// and scopes are made only for a refusal: a request with a good token needs neither.
func (f *Front) authorize(w http.ResponseWriter, r *http.Request, tr *tunnelRequest) *oauth.Access {
	origin := requestOrigin(r)
	path := r.URL.EscapedPath()
	refuse := func(decision, reason string) {
		tr.info.refused, tr.info.decision, tr.info.rule = true, decision, reason
	}
	challenge := func(errCode, desc string) string {
		return oauth.Challenge(oauth.ResourceMetadataURL(origin, path), f.cfg.Auth.DefaultScopes(), errCode, desc)
	}

	token, err := oauth.BearerToken(r)
	if errors.Is(err, oauth.ErrNoToken) {
		refuse(DecisionUnauthenticated, "no_token")
		w.Header().Set("WWW-Authenticate", challenge("", ""))
		msg := "This MCP server needs an OAuth access token; MCP clients get one by signing in through " + origin + "."
		if r.URL.Query().Has("access_token") {
			msg = "Send the access token in the Authorization header, not in the URL."
		}
		writeError(w, r, http.StatusUnauthorized, "unauthorized", msg)
		return nil
	}
	var access *oauth.Access
	if err == nil {
		access, err = f.cfg.Auth.Check(r.Context(), token, origin, path)
	}
	switch {
	case errors.Is(err, oauth.ErrInvalidToken):
		refuse(DecisionUnauthenticated, "invalid_token")
		w.Header().Set("WWW-Authenticate", challenge("invalid_token", "The access token is invalid, expired or revoked."))
		writeError(w, r, http.StatusUnauthorized, "invalid_token", "The access token is invalid, expired or revoked.")
		return nil
	case errors.Is(err, oauth.ErrWrongResource):
		// The token is genuine, for another server: whose it is goes on record.
		refuse(DecisionUnauthenticated, "wrong_resource")
		if access != nil {
			tr.info.user, tr.info.client, tr.info.clientID = access.UserID, access.ClientName, access.ClientID
		}
		w.Header().Set("WWW-Authenticate", challenge("invalid_token", "The access token is for another MCP server."))
		writeError(w, r, http.StatusUnauthorized, "invalid_token", "The access token was issued for another MCP server.")
		return nil
	case err != nil:
		refuse(DecisionError, "token_check")
		f.cfg.Logger.Error("checking an access token failed", "err", err)
		writeError(w, r, http.StatusInternalServerError, "internal", "Checking the access token failed.")
		return nil
	}

	// Without a policy, a tunnel serves its owner only; with one, the policy decides.
	if f.cfg.Policy == nil && access.UserID != tr.t.Owner() {
		refuse(string(authz.Deny), "not_shared")
		tr.info.user, tr.info.client, tr.info.clientID = access.UserID, access.ClientName, access.ClientID
		writeError(w, r, http.StatusForbidden, "not_shared",
			"This tunnel belongs to someone else and is not shared with you.")
		return nil
	}
	return access
}

func missingScopes(have, need []string) []string {
	var out []string
	for _, n := range need {
		if !slices.Contains(have, n) {
			out = append(out, n)
		}
	}
	return out
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
