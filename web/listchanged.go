package web

import (
	"net/http"
	"strings"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/tunnel"
)

// Tool classes are learned from the server's tools/list answers (frontpolicy.go). When the
// server says its tools changed, notifications/tools/list_changed, what was learned is
// forgotten: every tool of the tunnel counts as destructive until a client lists them again,
// which compliant clients do as soon as they get the notification. The listing then restores
// the classes, as the server now gives them.
//
// Forget rather than "mark stale and keep using": after the notification the server's tools
// may be anything. A read tool may have been re-annotated destructive, and keeping the old
// class until some client relists would leave that to the clients; a shared user's client that
// never relists would keep calling the tool as read. Forgetting can only deny (an unknown tool
// is destructive), and only until the next listing by any client of the tunnel; the owner,
// whom the default policy lets do everything, does not notice.
//
// A listing already on its way when the notification passes is not learned from
// (Tools.LearnSince): its answer may describe the tools from before the change. toolgate
// cannot tell one change announced to several sessions from several changes, so with several
// sessions a listing sent between two of their notifications is not learned from either; the
// tools stay unknown until a listing sent after the last one, which the last client notified
// sends.
//
// Only the server's word counts. The notification travels server to client in event streams:
// the standalone GET stream, and POST responses that are text/event-stream (including
// 2026-07-28 subscriptions/listen streams). A JSON POST response is the answer to the request
// and cannot carry it, so JSON bodies are not looked at: they cost one check per write. A
// client POSTing notifications/tools/list_changed is not looked at either: clients do not own
// the tool list, and if that reset the classes, anyone allowed to POST to the tunnel (a shared
// user with read access, say) could wipe them at will, racing every relist, and keep the
// tunnel's other shared users denied every tool call, a denial of service against them. It is
// forwarded or denied like any other request. And only the notification as a message's method
// counts, not the same words in a tool's result, which a client may be able to put there.

// watchToolsChanged wraps w so that an event stream from the tunnel's server is watched for
// notifications/tools/list_changed. It is used under the policy, the only reader of classes.
//
// It also asks the server for an unencoded response. The client's Accept-Encoding would
// otherwise reach the server (the proxy passes it through), and a gzipped event stream hides
// its notifications from the watcher, and its tools/list answers from the filter, which would
// pass them on unfiltered: a shared user's client could see every tool just by accepting
// gzip. "identity" rather than no header: without one, any coding is acceptable (RFC 9110).
// The writer is cw, which the caller provides (part of its per-request state, so no allocation).
func (f *Front) watchToolsChanged(cw *toolsChangedWriter, w http.ResponseWriter, r *http.Request, t *tunnel.Tunnel) http.ResponseWriter {
	r.Header.Set("Accept-Encoding", "identity")
	*cw = toolsChangedWriter{ResponseWriter: w, f: f, t: t}
	return cw
}

// toolsChangedWriter looks at the response's content type once, when its headers go out, and
// scans the body only if it is an event stream. Each chunk is scanned before it is passed on,
// so the tunnel's classes are forgotten before the client can see the notification and list
// again: a listing that follows it is learned from, not thrown away as older than the change.
type toolsChangedWriter struct {
	http.ResponseWriter
	f       *Front
	t       *tunnel.Tunnel
	scan    *authz.ListChangedScanner // nil: not an event stream
	started bool                      // the final status went out
}

func (cw *toolsChangedWriter) WriteHeader(code int) {
	if code >= 200 && !cw.started {
		cw.started = true
		if code/100 == 2 && isEventStream(cw.Header().Get("Content-Type")) {
			cw.scan = authz.NewListChangedScanner(cw.forget)
		}
	}
	cw.ResponseWriter.WriteHeader(code)
}

func (cw *toolsChangedWriter) Write(b []byte) (int, error) {
	if !cw.started {
		cw.WriteHeader(http.StatusOK)
	}
	if cw.scan != nil {
		cw.scan.Write(b) //nolint:errcheck // never fails
	}
	return cw.ResponseWriter.Write(b)
}

func (cw *toolsChangedWriter) FlushError() error {
	return http.NewResponseController(cw.ResponseWriter).Flush()
}

func (cw *toolsChangedWriter) Unwrap() http.ResponseWriter { return cw.ResponseWriter }

func (cw *toolsChangedWriter) forget() {
	TunnelTools(cw.t).Forget()
	cw.f.cfg.Logger.Debug("the server's tools changed; their classes count as destructive until listed again",
		"tunnel", cw.t.Name())
}

// contentEncoding is the coding of an answer whose body the policy step must read (a tools/list
// answer, an event stream it filters), or "" when it is unencoded. toolgate asks for identity
// (watchToolsChanged); a server that encodes anyway gets its answer refused rather than passed
// on unread, or the caller would see every tool.
func contentEncoding(h http.Header) string {
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return ce
	}
	return ""
}

// isEventStream reports whether a Content-Type is text/event-stream. The media type alone
// decides, as for the tools/list filter: a malformed parameter must not hide a stream.
func isEventStream(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
}
