package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/oauth"
)

// GrantStore keeps users' approvals of OAuth clients. *data.Store implements it.
type GrantStore interface {
	// OAuthConsentsByUser lists a user's approvals.
	OAuthConsentsByUser(ctx context.Context, userID string) ([]data.OAuthConsent, error)
	// RevokeOAuthConsent forgets an approval and revokes the tokens issued under it.
	RevokeOAuthConsent(ctx context.Context, userID, clientID, resource string) error
	// GetOAuthClient returns a client, for its name.
	GetOAuthClient(ctx context.Context, id string) (data.OAuthClient, error)
}

// ResourceAccess says what the current policy lets a user do with a resource, for the consent
// page. Until per-tool policy exists, a tunnel serves its owner and nobody else.
type ResourceAccess interface {
	// Describe returns a sentence for the consent page and whether the user may use the
	// resource at all; a user who may not is not offered the approval.
	Describe(ctx context.Context, userID, resource string) (what string, allowed bool)
}

// OAuthConfig is the apex's part of the authorization server: the authorization endpoint with
// its consent page, and the page where users see and revoke their approvals.
type OAuthConfig struct {
	// Server is the authorization server. Required.
	Server *oauth.Server
	// Grants lists and revokes approvals. Required.
	Grants GrantStore
	// Access describes what a user may do with a resource. Required.
	Access ResourceAccess
	// MaxAuthAge: authorizing with a browser session older than this signs the person in
	// again first, so that the token carries a fresh sign-in time (policies ask for one
	// before destructive tools). Default 0: any session will do.
	MaxAuthAge time.Duration
}

// authorize is the authorization endpoint. The request is checked before anything else, so a
// bad client or redirect URI is shown on a page (never redirected to), and a request that will
// fail does not first send the user through sign-in. Then: sign-in if needed; the consent page
// unless this user approved this client for this resource with these scopes before; the code.
func (a *apex) authorize(w http.ResponseWriter, r *http.Request) {
	o := a.cfg.OAuth
	req, err := o.Server.ParseAuthorize(r.Context(), r)
	if err != nil {
		var ae *oauth.AuthorizeError
		if errors.As(err, &ae) && ae.Redirectable() {
			o.Server.WriteAuthorizeError(w, ae)
			return
		}
		msg := "The application's authorization request is not valid."
		if ae != nil {
			msg += " " + ae.Detail()
		}
		writeError(w, r, http.StatusBadRequest, "invalid_authorization_request", msg)
		return
	}
	sess, user := SessionFromContext(r.Context())
	if user == nil {
		if r.Method != http.MethodGet {
			writeError(w, r, http.StatusUnauthorized, "sign_in_required", "Sign in first.")
			return
		}
		// Always a redirect, whatever the Accept header: this URL is opened in a browser.
		http.Redirect(w, r, "/signin?next="+url.QueryEscape(safeNext(r.URL.RequestURI())), http.StatusSeeOther)
		return
	}
	if o.MaxAuthAge > 0 && r.Method == http.MethodGet && time.Since(sess.CreatedAt) > o.MaxAuthAge {
		// Sign in again: the session ends, and the sign-in page brings the browser back here.
		if err := a.cfg.Sessions.End(w, r); err != nil {
			writeError(w, r, http.StatusInternalServerError, "internal", "Ending the old session failed.")
			return
		}
		a.cfg.Sessions.setFlash(w, "Sign in again to authorize the application: your last sign-in is too old.")
		http.Redirect(w, r, "/signin?next="+url.QueryEscape(safeNext(r.URL.RequestURI())), http.StatusSeeOther)
		return
	}
	what, allowed := o.Access.Describe(r.Context(), user.ID, req.Resource)
	who := oauth.Grantee{UserID: user.ID, AuthTime: sess.CreatedAt}
	if r.Method == http.MethodPost {
		switch r.PostFormValue("decision") {
		case "approve":
			if !allowed {
				writeError(w, r, http.StatusForbidden, "not_allowed", what)
				return
			}
			o.Server.Approve(r.Context(), w, req, who)
		case "deny":
			o.Server.Deny(w, req)
		default:
			writeError(w, r, http.StatusBadRequest, "bad_decision", "Choose Allow or Cancel.")
		}
		return
	}
	if allowed && o.Server.HasConsent(r.Context(), user.ID, req) {
		o.Server.Approve(r.Context(), w, req, who)
		return
	}
	render(w, r, http.StatusOK, consentPage, struct {
		pageBase
		Action       string
		Req          *oauth.AuthorizeRequest
		Kind         string
		Loopback     bool
		Scopes       string
		What         string
		Allowed      bool
		ResourceHost string
	}{
		a.base(w, r, "Allow access?"), r.URL.RequestURI(), req, clientKindText(req.ClientKind),
		isLoopbackRedirect(req.RedirectURI), strings.Join(req.Scopes, " "), what, allowed,
		strings.TrimPrefix(oauth.ResourceOrigin(req.Resource), "https://"),
	})
}

func clientKindText(kind string) string {
	switch kind {
	case data.ClientDynamic:
		return "registered itself with this server"
	case data.ClientMetadataDocument:
		return "identified by its metadata document"
	case data.ClientStatic:
		return "configured by the operator"
	}
	return ""
}

func isLoopbackRedirect(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	h := u.Hostname()
	return h == "localhost" || h == "127.0.0.1" || h == "::1"
}

var consentPage = page(`{{define "content"}}<h1>Allow <q>{{.Req.ClientName}}</q> to use your MCP server?</h1>
<dl>
<dt>Application</dt><dd><strong>{{.Req.ClientName}}</strong><br><span class="muted">client id <code>{{.Req.ClientID}}</code>{{if .Kind}}, {{.Kind}}{{end}}</span></dd>
<dt>Returns to</dt><dd><code>{{.Req.RedirectHost}}</code>{{if .Loopback}} <span class="muted">(a program on the computer where you are signing in)</span>{{end}}</dd>
<dt>MCP server</dt><dd><code>{{.Req.Resource}}</code></dd>
<dt>Scopes</dt><dd><code>{{.Scopes}}</code></dd>
<dt>It may</dt><dd>{{.What}}</dd>
</dl>
{{if .Allowed}}<p>Only allow applications you started yourself. The name above is what the application calls itself; the address it returns to is what identifies it.</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
{{if .Allowed}}<button name="decision" value="approve">Allow</button>{{end}}
<button name="decision" value="deny">Cancel</button>
</form>
{{end}}`)

// grantView is one row of the approvals page.
type grantView struct {
	ClientID, ClientName, Resource, Scopes string
	Since                                  time.Time
}

// grantsList shows the signed-in user's approvals.
func (a *apex) grantsList(w http.ResponseWriter, r *http.Request) {
	_, user := SessionFromContext(r.Context())
	g := a.cfg.OAuth.Grants
	consents, err := g.OAuthConsentsByUser(r.Context(), user.ID)
	if err != nil {
		writeError(w, r, http.StatusInternalServerError, "internal", "Listing your approvals failed.")
		return
	}
	slices.SortFunc(consents, func(x, y data.OAuthConsent) int { return y.UpdatedAt.Compare(x.UpdatedAt) })
	views := make([]grantView, len(consents))
	for i, c := range consents {
		name := c.ClientID
		if cl, err := g.GetOAuthClient(r.Context(), c.ClientID); err == nil && cl.Name != "" {
			name = cl.Name
		}
		views[i] = grantView{ClientID: c.ClientID, ClientName: name, Resource: c.Resource,
			Scopes: strings.Join(c.Scopes, " "), Since: c.UpdatedAt}
	}
	render(w, r, http.StatusOK, grantsPage, struct {
		pageBase
		Grants []grantView
	}{a.base(w, r, "Connected applications"), views})
}

// grantsRevoke forgets one approval and revokes its tokens: the application's next request
// gets a 401 and has to ask again.
func (a *apex) grantsRevoke(w http.ResponseWriter, r *http.Request) {
	_, user := SessionFromContext(r.Context())
	client, resource := r.PostFormValue("client_id"), r.PostFormValue("resource")
	err := a.cfg.OAuth.Grants.RevokeOAuthConsent(r.Context(), user.ID, client, resource)
	switch {
	case errors.Is(err, data.ErrNotFound) || errors.Is(err, data.ErrInvalid):
		writeError(w, r, http.StatusNotFound, "no_such_grant", "You have no such approval.")
		return
	case err != nil:
		writeError(w, r, http.StatusInternalServerError, "internal", "Revoking the approval failed.")
		return
	}
	a.cfg.Sessions.setFlash(w, "Revoked. The application has to ask again.")
	http.Redirect(w, r, "/grants", http.StatusSeeOther)
}

var grantsPage = page(`{{define "content"}}<h1>Connected applications</h1>
{{if .Grants}}<table><tr><th>Application</th><th>MCP server</th><th>Scopes</th><th>Approved</th><th></th></tr>
{{range .Grants}}<tr><td>{{.ClientName}}<br><code class="muted">{{.ClientID}}</code></td><td><code>{{.Resource}}</code></td><td><code>{{.Scopes}}</code></td><td>{{when .Since}}</td>
<td><form method="post" action="/grants/revoke"><input type="hidden" name="csrf" value="{{$.CSRF}}"><input type="hidden" name="client_id" value="{{.ClientID}}"><input type="hidden" name="resource" value="{{.Resource}}"><button class="danger">Revoke</button></form></td></tr>
{{end}}</table>
{{else}}<p>No application has access to your MCP servers.</p>{{end}}
{{end}}`)
