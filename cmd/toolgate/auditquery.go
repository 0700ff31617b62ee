package main

import (
	"bytes"
	"errors"
	"net/http"
)

// GET /audit on the admin socket: the audit log as JSON lines, for programs (a SIEM shipper, a
// dashboard) that would otherwise parse `toolgate audit list --json`. The query parameters
// are that command's flags without the dashes, with the same meaning and checks:
//
//	curl --unix-socket DATA_DIR/admin.sock 'http://toolgate/audit?tunnel=notes&decision=deny&since=1h'
//
// The socket is the operator's (mode 0600), like every admin command; the admin listener on
// TCP, which has no authentication of its own, does not serve it.

// auditQueryParam reports whether GET /audit takes k: `audit list`'s flags but --json.
func auditQueryParam(k string) bool {
	switch k {
	case "user", "tunnel", "tool", "decision", "kind", "since", "until", "after", "before", "limit":
		return true
	}
	return false
}

func serveAuditQuery(w http.ResponseWriter, r *http.Request, env adminEnv) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "GET /audit?user=&tunnel=&tool=&decision=&kind=&since=&until=&after=&before=&limit=", http.StatusMethodNotAllowed)
		return
	}
	args := []string{"--json"}
	for k, vs := range r.URL.Query() {
		if !auditQueryParam(k) {
			http.Error(w, "audit: unknown parameter "+k+" (want one of user, tunnel, tool, decision, kind, since, until, after, before, limit)", http.StatusBadRequest)
			return
		}
		if len(vs) != 1 {
			http.Error(w, "audit: parameter "+k+" given more than once", http.StatusBadRequest)
			return
		}
		args = append(args, "--"+k+"="+vs[0])
	}
	var out bytes.Buffer
	if err := auditList(r.Context(), env, args, &out); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		http.Error(w, "audit: the query failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(out.Bytes())
}
