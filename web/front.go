package web

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/tunnel"
)

// Tunnels finds live tunnels by name. *tunnel.Registry implements it.
type Tunnels interface {
	// Lookup returns the live tunnel called name, or nil.
	Lookup(name string) *tunnel.Tunnel
	// Known reports whether name belongs to someone, live or not.
	Known(ctx context.Context, name string) bool
}

// TunnelProxy carries a request to a tunnel's local server. *tunnel.Proxy implements it.
type TunnelProxy interface {
	// Serve must be done with r.Body when it returns, as any handler must: the body the
	// policy step hands on is a pooled buffer, closed and reused after Serve returns (reads
	// from it then fail).
	Serve(w http.ResponseWriter, r *http.Request, t *tunnel.Tunnel, from netip.AddrPort)
}

// FrontConfig configures a [Front]. Fields are read once, by [NewFront].
type FrontConfig struct {
	// Domain is the apex D: the issuer, and where Apex is served. Required.
	Domain string
	// TunnelDomain is where tunnels live, NAME.TunnelDomain. Default Domain.
	TunnelDomain string
	// Tunnels finds tunnels. Required.
	Tunnels Tunnels
	// Proxy carries tunnel requests. Required.
	Proxy TunnelProxy
	// Apex serves requests for Domain itself. Default: a 404 for every path.
	Apex http.Handler
	// AllowedOrigins lists browser origins, besides the tunnel's own and the apex, that may call
	// tunnels; "scheme://host:*" matches any port. Default: the loopback origins
	// (http://localhost:*, http://127.0.0.1:*, http://[::1]:*), where browser-based MCP
	// clients such as the MCP Inspector run.
	AllowedOrigins []string
	// Logger receives one debug line per request. Default: discard.
	Logger *slog.Logger

	// Auth protects tunnels with OAuth: every request needs a bearer token issued for the
	// tunnel, and each tunnel serves protected resource metadata (RFC 9728). Default nil:
	// tunnels are open to anyone who knows the URL, which only a development setup should want.
	Auth TokenChecker
	// MethodScopes names the scopes a JSON-RPC method needs beyond the default ones, e.g.
	// "tools/call" → ["mcp:call"]. A request whose token lacks them gets a 403
	// insufficient_scope challenge, and the client re-authorizes with the scopes it names.
	// Checked in the policy step, on the inspected body; used only with Auth and Policy.
	// Default none.
	MethodScopes map[string][]string

	// Policy decides every MCP request on its parsed JSON-RPC body, and filters tools/list
	// answers (see frontpolicy.go). Used only with Auth. Default nil: no per-tool decisions;
	// a tunnel then serves its owner only.
	Policy PolicySource
	// Users finds a token's user (email, groups) for the policy. Required with Policy.
	Users UserDirectory
	// MaxBody bounds a request body the policy step reads whole. Default 1 MiB.
	MaxBody int64
	// BodyTimeout bounds the time from a request's headers to the end of a body toolgate
	// reads itself: an MCP request the policy step reads whole (a client still sending then
	// gets 408), and any request to the apex (OAuth, registration and sign-in forms, whose
	// handlers then see a read error). The public server has no ReadTimeout (it would cut
	// streams), so without this a client trickling a body would hold a connection and its
	// buffer for as long as it liked. Default 30s: 1 MiB at 35 KB/s.
	BodyTimeout time.Duration
	// Limits bounds requests to tunnels per client address and per user (frontlimits.go).
	// Default: the zero RequestLimits, no limits.
	Limits RequestLimits
	// Audit receives one record per request that reached the token step: allowed, denied,
	// or refused for its token (those coalesced when they come in floods; see
	// frontrefusal.go). Default nil: no records.
	Audit AuditSink
	// AuditArgs keeps tool arguments in audit records, with secret-looking values redacted.
	// Default false: only a digest of them.
	AuditArgs bool
}

// AuditSink takes audit records without blocking. *data.AuditLog implements it.
type AuditSink interface {
	Append(r data.AuditRecord)
}

// TokenChecker validates bearer tokens for tunnels. *oauth.Server implements it.
type TokenChecker interface {
	// Check returns what token grants at origin+path, or oauth.ErrInvalidToken or
	// oauth.ErrWrongResource.
	Check(ctx context.Context, token, origin, path string) (*oauth.Access, error)
	// ResourceMetadata is the RFC 9728 document for a resource.
	ResourceMetadata(resource string) []byte
	// DefaultScopes are the scopes every request needs, advertised in challenges.
	DefaultScopes() []string
	// StepUpIssued is told of every step-up challenge (rule: why), so that the token's grant
	// is not refreshed into the same challenge for a while; see oauth.Server.StepUpIssued.
	StepUpIssued(a *oauth.Access, rule string)
}

// Front is the root http.Handler of the public listener.
type Front struct {
	cfg   FrontConfig
	users *userCache
	// bodies keeps the policy step's body buffers and inspectors for the next requests.
	bodies bodyPool
	// refusals coalesces the audit records of requests refused for their token.
	refusals *refusalGate
	// limits applies cfg.Limits.
	limits *requestLimiter
}

// NewFront returns the public handler.
func NewFront(cfg FrontConfig) (*Front, error) {
	switch {
	case cfg.Domain == "":
		return nil, errors.New("web: FrontConfig.Domain is required")
	case cfg.Tunnels == nil:
		return nil, errors.New("web: FrontConfig.Tunnels is required")
	case cfg.Proxy == nil:
		return nil, errors.New("web: FrontConfig.Proxy is required")
	}
	if cfg.TunnelDomain == "" {
		cfg.TunnelDomain = cfg.Domain
	}
	if cfg.Apex == nil {
		cfg.Apex = http.NotFoundHandler()
	}
	if cfg.AllowedOrigins == nil {
		cfg.AllowedOrigins = []string{"http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Policy != nil && cfg.Users == nil {
		return nil, errors.New("web: FrontConfig.Users is required with Policy")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = 30 * time.Second
	}
	f := &Front{cfg: cfg, users: &userCache{dir: cfg.Users}, limits: newRequestLimiter(cfg.Limits)}
	if cfg.Audit != nil {
		f.refusals = newRefusalGate(refusalLimits{}, cfg.Audit.Append)
	}
	return f, nil
}

// ServeHTTP routes by Host: the apex, a tunnel, or nothing.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := hostOnly(r.Host)
	if strings.EqualFold(host, f.cfg.Domain) {
		if r.Body != nil && r.Body != http.NoBody {
			// Nothing on the apex streams a request body or answers for long, so the
			// deadline covers the whole request. An HTTP/1 connection's is left as it is:
			// net/http sets its own for whatever the connection does next, and until then
			// it keeps net/http's drain of an unread body short. An HTTP/2 stream's is
			// lifted, or its timer would outlive the request.
			rc := http.NewResponseController(w)
			if rc.SetReadDeadline(time.Now().Add(f.cfg.BodyTimeout)) == nil && r.ProtoMajor == 2 {
				defer rc.SetReadDeadline(time.Time{})
			}
		}
		f.cfg.Apex.ServeHTTP(w, r)
		return
	}
	name, ok := tunnel.NameFromHost(host, f.cfg.TunnelDomain)
	if !ok {
		writeError(w, r, http.StatusNotFound, "unknown_host",
			fmt.Sprintf("toolgate serves %s and its tunnels; %q is neither.", f.cfg.Domain, host))
		return
	}
	f.serveTunnel(w, r, name)
}

// serveTunnel is the path of every request to a tunnel, in order. Each step either answers the
// request itself or passes it on.
func (f *Front) serveTunnel(w http.ResponseWriter, r *http.Request, name string) {
	start := time.Now()

	// 1. Which tunnel. Protected resource metadata is public and answered for every name
	// someone holds, connected or not.
	if f.cfg.Auth != nil && isResourceMetadataPath(r.URL.Path) {
		f.serveResourceMetadata(w, r, name)
		return
	}
	t := f.cfg.Tunnels.Lookup(name)
	if t == nil {
		// A name someone holds is a tunnel that is down (502, as for any upstream that is
		// gone); a name nobody holds does not exist (404).
		if f.cfg.Tunnels.Known(r.Context(), name) {
			writeError(w, r, http.StatusBadGateway, "tunnel_offline",
				fmt.Sprintf("The tunnel %s is not connected. Its owner brings it back with ssh -R.", r.Host))
			return
		}
		writeError(w, r, http.StatusNotFound, "no_tunnel",
			fmt.Sprintf("There is no tunnel named %q.", name))
		return
	}

	// From here on, whatever happens but a preflight is a line on the owner's terminal and,
	// once the token step has run or the origin was refused, an audit record: who asked for
	// what, what was decided, and how it went. Everything the steps note about the request is
	// in tr, one allocation.
	tr := &tunnelRequest{start: start, t: t}
	tr.from, tr.source = sourceAddr(r.RemoteAddr)

	// 2. Origin and CORS. Browsers send Origin on cross-origin requests and on every POST; a
	// page on another site must not be able to drive an MCP server through the tunnel, so an
	// Origin is either allowed or refused here, before anything reaches the local server.
	// Requests without Origin come from programs, not browsers, and pass. Preflights are
	// answered here, before any token check: browsers send them without credentials.
	if origin := r.Header.Get("Origin"); origin != "" {
		if !f.originAllowed(origin, r.Host) {
			// A denial like any other (decision deny, rule origin_not_allowed), through the
			// refusal gate: any web page can make a visitor's browser send these.
			tr.rec.ResponseWriter = w
			tr.info.refused, tr.info.decision, tr.info.rule = true, "deny", "origin_not_allowed"
			tr.info.origin = origin
			writeError(&tr.rec, r, http.StatusForbidden, "origin_not_allowed",
				fmt.Sprintf("Requests from the web origin %q may not use this tunnel.", origin))
			f.finish(tr, r)
			return
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			writePreflight(w, origin)
			return
		}
		w = &corsWriter{ResponseWriter: w, origin: origin}
	}
	tr.rec.ResponseWriter = w
	w = &tr.rec
	defer f.finish(tr, r)

	// 2b. Limits per client address (frontlimits.go), before the token: a flood of bad tokens
	// costs no token checks. A request counts as a stream until the handler returns.
	byAddr, refused := f.limits.addr(tr.from.Addr(), tr.source, start)
	if refused != nil {
		f.refuseForLimit(w, r, tr, refused)
		return
	}
	defer byAddr.release()

	// 3. Token: a bearer token for this tunnel, from the Authorization header only, with the
	// scopes the request needs; without a policy, the owner check. The header is removed
	// before forwarding: the local server never sees the client's token.
	var access *oauth.Access
	if f.cfg.Auth != nil {
		if access = f.authorize(w, r, tr); access == nil {
			return
		}
		tr.info.user, tr.info.client, tr.info.clientID = access.UserID, access.ClientName, access.ClientID
		r.Header.Del("Authorization")
		byUser, refused := f.limits.user(access.UserID, start)
		if refused != nil {
			f.refuseForLimit(w, r, tr, refused)
			return
		}
		defer byUser.release()
	}

	// 4. Policy: the JSON-RPC body read strictly and every message decided before anything is
	// forwarded; tools/list answers filtered on the way back (a GET's event stream's too,
	// frontlisting.go), and the server's event streams watched for tools/list_changed
	// (listchanged.go).
	done := func() {}
	if access != nil && f.cfg.Policy != nil {
		var ok bool
		if w, done, ok = f.decide(f.watchToolsChanged(&tr.changed, w, r, t), r, tr, access); !ok {
			return
		}
	}

	// 5. Forward.
	f.cfg.Proxy.Serve(w, r, t, tr.from)
	done()

	// A response whose declared length has been written is complete: send it before the
	// owner's line and the audit record (finish, deferred) are made, so that they are not on
	// the client's critical path. Not otherwise: a chunked body's last chunk, or HTTP/2's end
	// of stream, would then go out in a write of its own.
	if r.ProtoMajor == 1 {
		// (ParseInt allocates its error: a chunked response has no length to parse.)
		if cl := tr.rec.Header().Get("Content-Length"); cl != "" {
			if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n == tr.rec.bytes {
				tr.rec.FlushError() //nolint:errcheck // a client gone is finish's to record
			}
		}
	}
}

// tunnelRequest is what the tunnel path keeps about one request from the token step on, in
// one allocation: the recorder around the response, what the steps learned for the terminal
// line and the audit record, and the policy step's state. It is not pooled: the proxy may
// still hold the body (tr.body) after the handler returns.
type tunnelRequest struct {
	start   time.Time
	t       *tunnel.Tunnel
	from    netip.AddrPort // the client's address, for the proxy
	source  string         // and its IP as text, for the policy and the audit record
	rec     recorder
	info    requestInfo
	policy  policyRequest      // frontpolicy.go
	changed toolsChangedWriter // listchanged.go, under the policy
	body    requestBody        // the buffered body, when the policy step read it (frontbody.go)
}

// finish is the end of every request that got past step 2, deferred: the owner's line, the
// audit record, and the body buffer back to the pool once nothing refers to it any more.
func (f *Front) finish(tr *tunnelRequest, r *http.Request) {
	elapsed := time.Since(tr.start)
	var buf [256]byte
	tr.t.Notify(string(appendRequestLine(buf[:0], tr.start, elapsed, r, &tr.rec, &tr.info)))
	f.audit(tr, r, elapsed)
	tr.info.args = nil // aliased the body
	tr.body.release()
}

// originAllowed accepts the tunnel's own origin, the apex, and the configured patterns.
func (f *Front) originAllowed(origin, host string) bool {
	origin = strings.ToLower(origin)
	if origin == "https://"+strings.ToLower(host) {
		return true
	}
	if port := portOf(host); port != "" {
		if origin == "https://"+strings.ToLower(f.cfg.Domain)+":"+port {
			return true
		}
	} else if origin == "https://"+strings.ToLower(f.cfg.Domain) {
		return true
	}
	for _, p := range f.cfg.AllowedOrigins {
		p = strings.ToLower(p)
		if base, ok := strings.CutSuffix(p, ":*"); ok {
			if rest, ok := strings.CutPrefix(origin, base+":"); ok && isDigits(rest) {
				return true
			}
			continue
		}
		if origin == p {
			return true
		}
	}
	return false
}

// CORS as the MCP clients that run in browsers need it: bearer tokens (no cookies, so no
// credentials mode), the MCP headers, and the two response headers a client must read.
const (
	corsAllowMethods  = "GET, POST, DELETE, OPTIONS"
	corsAllowHeaders  = "Authorization, Content-Type, Accept, Last-Event-ID, Mcp-Session-Id, Mcp-Protocol-Version, Mcp-Method, Mcp-Name"
	corsExposeHeaders = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate"
)

func writePreflight(w http.ResponseWriter, origin string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Methods", corsAllowMethods)
	h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
	h.Set("Access-Control-Max-Age", "7200")
	h.Add("Vary", "Origin")
	w.WriteHeader(http.StatusNoContent)
}

// corsWriter replaces whatever CORS headers the local server sent with toolgate's: two
// Access-Control-Allow-Origin values make browsers reject the response.
type corsWriter struct {
	http.ResponseWriter
	origin string
	done   bool
}

func (c *corsWriter) fix() {
	if c.done {
		return
	}
	c.done = true
	h := c.Header()
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			delete(h, k)
		}
	}
	h.Set("Access-Control-Allow-Origin", c.origin)
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	h.Add("Vary", "Origin")
}

func (c *corsWriter) WriteHeader(code int) {
	// An informational response (103 Early Hints) goes out with the headers as they are;
	// ReverseProxy then replaces them with the final response's, which must be fixed again.
	if code >= 200 {
		c.fix()
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *corsWriter) Write(b []byte) (int, error) {
	c.fix()
	return c.ResponseWriter.Write(b)
}

func (c *corsWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// recorder notes the status and size of a response for the terminal line. It passes flushes
// and hijacks through (http.ResponseController finds them via Unwrap or these methods), so
// streams and WebSocket upgrades are untouched.
type recorder struct {
	http.ResponseWriter
	status   int
	bytes    int64
	upgraded bool
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 || r.status < 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) FlushError() error {
	return http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.upgraded = true
		r.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// hostOnly strips the port from a Host header value, keeping IPv6 brackets' content.
func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return strings.Trim(h, "[]")
}

func portOf(h string) string {
	if _, port, err := net.SplitHostPort(h); err == nil {
		return port
	}
	return ""
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
