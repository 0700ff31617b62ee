package web

import (
	"errors"
	"net/http"

	"github.com/toolgate/toolgate/authz"
)

// tools/list answers on a server's GET event stream, under the policy. The filter of
// frontpolicy.go watches the answers to the tools/list requests of one POST, by id, on that
// POST's response. Answers also come on the GET stream, where no id can be watched:
//
//   - the 2024-11-05 HTTP+SSE transport (still served by many servers, and the fallback of
//     clients such as mcp-remote) answers every POST with 202 and sends every response,
//     tools/list's included, on the GET stream it opened the session with;
//   - Streamable HTTP replays a POST's event stream on a GET with Last-Event-ID.
//
// So every 2xx text/event-stream answer to a GET has each response shaped like a tools/list
// answer filtered for the caller (authz.NewListingFilter), event by event as it comes; an event
// that cannot be read is dropped, with a warning, and the stream goes on. Nothing is learned
// from these answers: a replay may be older than what the tunnel knows, and the answers to a
// legacy session's tools/list are not tied to their request here.
//
// A caller who may see every tool, whatever a listing holds, is not filtered at all: the
// policy decides tools by class alone (authz.Policy.DecidesToolsByClass) and allows, or steps
// up, a call of each class. That is the owner under the built-in policy, whose GET stream
// costs three decisions more and nothing per event.

// filterListings returns the writer for a GET's answer: w, or, when the caller may not see
// every tool, a writer filtering the tools/list answers of an event stream. It goes beneath
// the watcher of tools/list_changed (listchanged.go) when w is that watcher, which must see
// the server's own stream: a notification in an event the filter drops still counts.
func (f *Front) filterListings(w http.ResponseWriter, r *http.Request, pr *policyRequest) (http.ResponseWriter, func()) {
	if r.Method != http.MethodGet || pr.seesEveryTool() {
		return w, func() {}
	}
	lw := &listingWriter{pr: pr, r: r}
	if cw, ok := w.(*toolsChangedWriter); ok {
		lw.ResponseWriter, cw.ResponseWriter = cw.ResponseWriter, lw
		return cw, lw.finish
	}
	lw.ResponseWriter = w
	return lw, lw.finish
}

// seesEveryTool reports whether no tools/list answer could hide a tool from this caller: the
// policy decides tools by class alone, and a call of every class is allowed or stepped up.
func (pr *policyRequest) seesEveryTool() bool {
	if !pr.policy.DecidesToolsByClass() {
		return false
	}
	for _, c := range [...]authz.Class{authz.Read, authz.Write, authz.Destructive} {
		if !pr.visible("", c) {
			return false
		}
	}
	return true
}

// listingWriter filters the tools/list answers in a GET's event stream. The content type is
// known when the server's headers arrive, so the filter is made then; any other answer passes
// as it is.
type listingWriter struct {
	http.ResponseWriter
	pr      *policyRequest
	r       *http.Request
	filter  *authz.ResponseFilter // nil: not an event stream
	started bool                  // the final status went out
	refused bool                  // the stream was encoded: a 502 went out instead
	failed  bool                  // the filter ended the stream (logged)
}

func (lw *listingWriter) WriteHeader(code int) {
	if lw.refused {
		return
	}
	if code >= 200 && !lw.started {
		lw.started = true
		h := lw.Header()
		if code/100 == 2 && isEventStream(h.Get("Content-Type")) {
			if ce := contentEncoding(h); ce != "" {
				lw.refused = true
				h.Del("Content-Encoding")
				lw.pr.f.cfg.Logger.Warn("the local server encoded an event stream; answered 502",
					"tunnel", lw.pr.t.Name(), "content_encoding", ce)
				writeError(lw.ResponseWriter, lw.r, http.StatusBadGateway, "encoded_stream",
					"The server behind this tunnel sent an encoded event stream that toolgate cannot filter.")
				return
			}
			lw.filter = authz.NewListingFilter(lw.ResponseWriter, lw.pr.visible, lw.dropped)
			h.Del("Content-Length")
		}
	}
	lw.ResponseWriter.WriteHeader(code)
}

func (lw *listingWriter) Write(b []byte) (int, error) {
	if !lw.started {
		lw.WriteHeader(http.StatusOK)
	}
	if lw.refused {
		return 0, errEncodedAnswer
	}
	if lw.filter == nil {
		return lw.ResponseWriter.Write(b)
	}
	n, err := lw.filter.Write(b)
	if err != nil {
		lw.fail(err)
	}
	return n, err
}

// dropped is told of each event the filter left out.
func (lw *listingWriter) dropped(err error) {
	lw.pr.f.cfg.Logger.Warn("an event of the server's stream could not be filtered for tools/list answers; left out",
		"tunnel", lw.pr.t.Name(), "user", lw.pr.base.User.Email, "err", err)
}

// fail logs the error that ended the stream, once, unless the client's end did (gone away).
func (lw *listingWriter) fail(err error) {
	if lw.failed || !errors.Is(err, authz.ErrBadResponse) {
		return
	}
	lw.failed = true
	lw.pr.f.cfg.Logger.Warn("filtering the tools/list answers of the server's stream failed; stream ended",
		"tunnel", lw.pr.t.Name(), "err", err)
}

func (lw *listingWriter) FlushError() error {
	return http.NewResponseController(lw.ResponseWriter).Flush()
}

func (lw *listingWriter) Unwrap() http.ResponseWriter { return lw.ResponseWriter }

// finish passes on what is left of the stream: an event the server did not end.
func (lw *listingWriter) finish() {
	if lw.filter == nil {
		return
	}
	if err := lw.filter.Close(); err != nil {
		lw.fail(err)
	}
}
