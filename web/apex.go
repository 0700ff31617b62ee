package web

import (
	"html/template"
	"net"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"
)

// ApexConfig configures the apex site. Fields are read once, by [NewApex].
type ApexConfig struct {
	// Domain is the apex D. Required.
	Domain string
	// SSHCommand is the command that opens a tunnel, shown on the home page.
	SSHCommand string
	// CAPath is where the development CA certificate was written; empty outside development.
	CAPath string
}

var homePage = template.Must(template.New("home").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>toolgate · {{.Domain}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:4rem auto;padding:0 1rem;color:#222}
pre{background:#f3f3f3;padding:.8rem;border-radius:4px;overflow-x:auto}</style></head>
<body><h1>toolgate</h1>
<p>Put a local MCP server on the internet, behind this server's authorization and audit log:</p>
<pre>{{.SSHCommand}}</pre>
<p>The session prints your public URL, <code>https://NAME.{{.Domain}}/mcp</code>, and one line per request.</p>
{{if .CAPath}}<p>This is a development server with its own certificate authority: trust <code>{{.CAPath}}</code>
(or pass it to your client, e.g. <code>NODE_EXTRA_CA_CERTS</code>).</p>{{end}}
</body></html>
`))

// NewApex returns the handler for https://D. Today it is a home page; sign-in, consent and the
// dashboard join it in later work.
func NewApex(cfg ApexConfig) http.Handler {
	r := chi.NewRouter()
	r.Get("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		homePage.Execute(w, cfg)
	})
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, "not_found", "Nothing here.")
	})
	return r
}

// RedirectToHTTPS answers plain-HTTP requests with a permanent redirect to the same host and
// path over HTTPS on httpsPort.
func RedirectToHTTPS(httpsPort int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := hostOnly(r.Host)
		if httpsPort != 443 {
			host = net.JoinHostPort(host, strconv.Itoa(httpsPort))
		} else if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			host = "[" + host + "]"
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}
