package web

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strings"

	"github.com/toolgate/toolgate/tunnel"
)

// errorPage is the page a browser gets when toolgate itself answers with an error.
var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Status}} · toolgate</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.3rem}code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}</style></head>
<body><h1>{{.Status}} {{.Text}}</h1><p>{{.Message}}</p><p><small>toolgate · <code>{{.Code}}</code></small></p></body></html>
`))

// writeError answers with toolgate's own error: HTML for browsers navigating, JSON for
// everything else (MCP clients parse JSON; a page of HTML in their logs helps nobody).
func writeError(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if wantsHTML(r) {
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		errorPage.Execute(w, struct {
			Status              int
			Text, Message, Code string
		}{status, http.StatusText(status), message, code})
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{code, message})
}

// WriteProxyError renders a tunnel.ProxyError; it is the proxy's ProxyConfig.WriteError.
func WriteProxyError(w http.ResponseWriter, r *http.Request, e *tunnel.ProxyError) {
	writeError(w, r, e.Status, e.Code, e.Message)
}

func wantsHTML(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Mode") == "navigate" {
		return true
	}
	return r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html")
}
