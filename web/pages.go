package web

import (
	"bytes"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/toolgate/toolgate/data"
)

// The apex's pages: one layout (header with who is signed in, flash and error lines) around
// each page's "content". The CSS is inline, so a page is one response; the CSP allows inline
// styles and nothing else inline. There is no JavaScript.
var layout = template.Must(template.New("layout").Funcs(template.FuncMap{
	"when": formatTime,
}).Parse(`{{define "layout"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} · toolgate</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>` + css + `</style></head>
<body><header><a href="/" class="brand">toolgate</a><nav>
{{- if .User}}Signed in as <strong>{{.User.Email}}</strong>{{if .Nav.Keys}} · <a href="/keys">Keys</a>{{end}}{{if .Nav.Grants}} · <a href="/grants">Apps</a>{{end}} ·
<form method="post" action="/signout"><input type="hidden" name="csrf" value="{{.CSRF}}"><button class="link">Sign out</button></form>
{{- else if .Nav.SignIn}}<a href="/signin">Sign in</a>{{end -}}
</nav></header>
<main>
{{- if .Flash}}<p class="flash" role="status">{{.Flash}}</p>{{end}}
{{- if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{template "content" .}}
</main></body></html>
{{end}}`))

const css = `body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:1.5rem auto;padding:0 1rem;color:#222}
header{display:flex;justify-content:space-between;align-items:baseline;gap:1rem;border-bottom:1px solid #ddd;padding-bottom:.5rem;margin-bottom:1.5rem}
.brand{font-weight:700;color:inherit;text-decoration:none}
nav form,td form{display:inline}
h1{font-size:1.5rem}
pre,code{background:#f3f3f3;border-radius:4px}
pre{padding:.8rem;overflow-x:auto}
code{padding:.1rem .3rem;word-break:break-all}
label{display:block;margin:.8rem 0 .2rem}
label.check{display:flex;gap:.5rem;align-items:center}
input[type=email],input[type=password]{box-sizing:border-box;width:100%;max-width:26rem;padding:.45rem;font:inherit}
button{font:inherit;padding:.4rem 1rem;margin:1rem .5rem 0 0;cursor:pointer}
a.button{display:inline-block;padding:.4rem 1rem;border:1px solid #06c;border-radius:4px;text-decoration:none}
button.link{background:none;border:none;padding:0;margin:0;color:#06c;text-decoration:underline}
button.danger{color:#a00}
.flash{background:#e8f5e9;padding:.6rem .8rem;border-radius:4px}
.error{background:#fdecea;padding:.6rem .8rem;border-radius:4px}
.muted{color:#666}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.35rem .4rem;border-bottom:1px solid #eee;vertical-align:top}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}dt{color:#666}dd{margin:0}`

// page compiles one page: the layout plus the page's own {{define "content"}}.
func page(content string) *template.Template {
	return template.Must(template.Must(layout.Clone()).Parse(content))
}

// pageBase is what the layout needs; every page's data embeds it.
type pageBase struct {
	Title string
	User  *data.User // nil when signed out
	CSRF  string     // for the sign-out form and the page's own forms
	Nav   struct{ SignIn, Keys, Grants bool }
	Flash string
	Error string
}

var homePage = page(`{{define "content"}}<h1>Put a local MCP server on the internet</h1>
<p>…behind this server's authorization and audit log:</p>
<pre>{{.SSHCommand}}</pre>
<p>The session prints your public URL, <code>https://NAME.{{.Domain}}/mcp</code>, and one line per request.</p>
{{if .CAPath}}<p>This is a development server with its own certificate authority: trust <code>{{.CAPath}}</code>
(or pass it to your client, e.g. <code>NODE_EXTRA_CA_CERTS</code>).</p>{{end}}
{{end}}`)

// signinPage offers the upstream provider (a plain link: its GET starts the sign-in), the
// password form, or both.
var signinPage = page(`{{define "content"}}<h1>Sign in</h1>
{{- if .OIDCName}}
<p><a class="button" href="/signin/oidc?next={{.Next}}">Sign in with {{.OIDCName}}</a></p>
{{- end}}
{{- if .Password}}
{{if .OIDCName}}<p class="muted">Or with a toolgate password:</p>{{end}}
<form method="post" action="/signin">
<input type="hidden" name="csrf" value="{{.CSRF}}"><input type="hidden" name="next" value="{{.Next}}">
<label for="email">Email</label><input type="email" id="email" name="email" value="{{.Email}}" autocomplete="username" required{{if not .OIDCName}} autofocus{{end}}>
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password" required>
<div><button>Sign in</button></div>
</form>
<p class="muted">No password yet? Ask an administrator for a sign-in link.</p>
{{- end}}
{{end}}`)

var signinLinkPage = page(`{{define "content"}}<h1>Sign in to toolgate</h1>
<p>This one-time link signs you in on this browser.</p>
<form method="post" action="/signin/t/{{.Token}}">
<input type="hidden" name="csrf" value="{{.CSRF}}"><input type="hidden" name="next" value="{{.Next}}">
<button>Continue</button>
</form>
{{end}}`)

var passwordPage = page(`{{define "content"}}<h1>{{if .HasPassword}}Change your password{{else}}Set a password{{end}}</h1>
{{if not .HasPassword}}<p>Set a password to sign in without a link next time.</p>{{end}}
<form method="post" action="/account/password">
<input type="hidden" name="csrf" value="{{.CSRF}}"><input type="hidden" name="next" value="{{.Next}}">
{{if .NeedCurrent}}<label for="current">Current password</label><input type="password" id="current" name="current" autocomplete="current-password" required>{{end}}
<label for="password">New password <span class="muted">(at least {{.MinLen}} characters)</span></label>
<input type="password" id="password" name="password" autocomplete="new-password" minlength="{{.MinLen}}" required>
<label for="confirm">New password again</label><input type="password" id="confirm" name="confirm" autocomplete="new-password" required>
<div><button>Save password</button>{{if not .HasPassword}}<a href="{{.Next}}">Not now</a>{{end}}</div>
</form>
{{end}}`)

var linkPage = page(`{{define "content"}}<h1>Link an SSH key to your account?</h1>
<p>An <code>ssh</code> client is waiting for someone to claim this key. Approve only if you just ran
<code>ssh</code> yourself and the details below match: whoever holds this key will act as
<strong>{{.User.Email}}</strong>.</p>
<dl>
<dt>Code</dt><dd><code>{{.Code}}</code></dd>
<dt>Key</dt><dd><code>{{.Fingerprint}}</code> ({{.KeyType}})</dd>
<dt>From</dt><dd>{{.RemoteIP}}</dd>
<dt>Requested</dt><dd>{{when .Requested}}</dd>
<dt>Code expires</dt><dd>{{when .Expires}}</dd>
</dl>
<form method="post" action="/link/{{.Code}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label class="check"><input type="checkbox" name="remember" value="1"> Remember this key for {{.RememberDays}} days (otherwise {{.KeyDays}} days)</label>
<button name="action" value="approve">Approve</button><button name="action" value="deny" class="danger">Deny</button>
</form>
{{end}}`)

var messagePage = page(`{{define "content"}}<h1>{{.Heading}}</h1>
<p>{{.Message}}</p>
{{if .Next}}<p><a href="{{.Next}}">Continue</a></p>{{end}}
{{end}}`)

var keysPage = page(`{{define "content"}}<h1>Your SSH keys</h1>
{{if .Keys}}<table>
<tr><th>Key</th><th>Linked</th><th>Expires</th><th>Last used</th><th></th></tr>
{{range .Keys}}<tr>
<td><code>{{.Fingerprint}}</code><br><span class="muted">{{.Type}}{{if .LinkedFrom}} · from {{.LinkedFrom}}{{end}}</span></td>
<td>{{when .LinkedAt}}</td>
<td>{{if .Lapsed}}<strong>expired</strong> {{end}}{{when .ExpiresAt}}</td>
<td>{{when .LastUsed}}</td>
<td><form method="post" action="/keys/revoke"><input type="hidden" name="csrf" value="{{$.CSRF}}">
<input type="hidden" name="fingerprint" value="{{.Fingerprint}}"><button class="danger">Revoke</button></form></td>
</tr>{{end}}
</table>
<p class="muted">Revoking a key closes its connections at once; its next connection asks for a new link.</p>
{{else}}<p>No keys yet. Connect with <code>ssh</code> and approve the link it shows to add one.</p>{{end}}
{{end}}`)

// formatTime renders a time for people: UTC to the second, "never" for zero.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// render writes a page. It renders into a buffer first, so a template error becomes a clean
// 500 rather than half a page.
func render(w http.ResponseWriter, r *http.Request, status int, t *template.Template, v any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		writeError(w, r, http.StatusInternalServerError, "internal", "Rendering this page failed.")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// wantsJSON reports whether the client asked for JSON rather than a page: such clients get
// errors from writeError instead of a form to fill in again.
func wantsJSON(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}
