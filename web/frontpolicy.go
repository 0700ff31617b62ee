package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/tunnel"
)

// The policy step of the tunnel path (step 4 of serveTunnel): every MCP request is read
// strictly and decided before anything reaches the tunnel, and tools/list answers are filtered
// on their way back: a POST's here, by the ids of its requests; those on a GET's event stream
// by their shape (frontlisting.go).

// PolicySource returns the policy in force. Reloading swaps what it returns; a request uses
// one policy from start to end.
type PolicySource interface {
	Current() *authz.Policy
}

// UserDirectory finds a token's user for the policy: email and groups. *data.Store
// implements it.
type UserDirectory interface {
	GetUser(ctx context.Context, id string) (data.User, error)
	// OAuthGeneration moves whenever a user changes; cached users are re-read after it does.
	OAuthGeneration() uint64
}

// DenyCode is the JSON-RPC error code of a policy denial: outside the ranges JSON-RPC
// (-32768 to -32000) and MCP reserve, so no client mistakes it for a protocol error.
const DenyCode = -31403

// toolsKey is the key of a tunnel's authz.Tools in tunnel.Tunnel.Value.
type toolsKey struct{}

// TunnelTools is the tunnel's tools as its server last listed them (through toolgate).
func TunnelTools(t *tunnel.Tunnel) *authz.Tools {
	return t.Value(toolsKey{}, func() any { return authz.NewTools() }).(*authz.Tools)
}

// policyRequest is one request being decided: the policy, the input every message of it
// shares, and the input of the message being decided (base plus the message's own fields),
// kept here so that deciding a message allocates no Input.
type policyRequest struct {
	f      *Front
	policy *authz.Policy
	t      *tunnel.Tunnel
	base   authz.Input
	in     authz.Input
}

// decide runs the policy step. It answers the request itself and returns false when the
// request may not go on; otherwise it returns the writer to use (wrapped to filter tools/list
// answers when the request asks for any) and a function to call when the response is done.
func (f *Front) decide(w http.ResponseWriter, r *http.Request, tr *tunnelRequest, access *oauth.Access) (http.ResponseWriter, func(), bool) {
	info, pr := &tr.info, &tr.policy
	if err := f.newPolicyRequest(pr, r, tr, access); err != nil {
		f.cfg.Logger.Error("preparing the policy input failed", "err", err)
		writeError(w, r, http.StatusInternalServerError, "internal", "Deciding this request failed.")
		return nil, nil, false
	}
	if pr.base.User.Email != "" {
		info.user = pr.base.User.Email
	}
	if r.Method != http.MethodPost {
		// GET (the server's event stream) and DELETE (ending a session) carry no JSON-RPC;
		// they are decided as a method of their own, which the default policy allows to
		// whoever may use the tunnel at all.
		in := &pr.in
		*in = pr.base
		in.Method = strings.ToLower(r.Method)
		d, _ := pr.policy.Decide(in)
		info.method, info.decision, info.rule = in.Method, string(d.Effect), d.Rule
		if d.Effect != authz.Allow {
			writeError(w, r, http.StatusForbidden, "denied", denialText(d))
			return nil, nil, false
		}
		// A GET's event stream may carry tools/list answers too (frontlisting.go).
		w, done := f.filterListings(w, r, pr)
		return w, done, true
	}

	// The body, read into a pooled buffer of the announced size (frontbody.go); it goes
	// back to the pool when the request is done with it.
	size := r.ContentLength
	if size > f.cfg.MaxBody {
		size = f.cfg.MaxBody
	}
	sc := f.bodies.get(size)
	tr.body.hold(&f.bodies, sc)
	// The deadline is the connection's (HTTP/1) or the stream's (HTTP/2), and the response
	// may stream for hours. net/http lifts an HTTP/1 connection's itself once the body reaches
	// EOF, and until then an expired one keeps its drain of an unread body short. An HTTP/2
	// stream's would fire later, harmlessly but for a timer kept per request, so it is lifted
	// here. Writers that cannot take a deadline (tests' recorders) read without.
	rc := http.NewResponseController(w)
	timed := rc.SetReadDeadline(time.Now().Add(f.cfg.BodyTimeout)) == nil
	body, err := readBody(sc.buf, r.Body, f.cfg.MaxBody)
	if timed && r.ProtoMajor == 2 {
		rc.SetReadDeadline(time.Time{})
	}
	sc.buf = body
	switch {
	case errors.Is(err, errBodyTooLarge):
		writeRPCError(w, http.StatusRequestEntityTooLarge, nil, -32600,
			fmt.Sprintf("The request body is over %d bytes; toolgate does not forward what it cannot read whole.", f.cfg.MaxBody))
		return nil, nil, false
	case errors.Is(err, os.ErrDeadlineExceeded):
		if r.ProtoMajor == 1 {
			// The rest of the body is unread: the connection cannot carry another request.
			// (On HTTP/2 only the stream is done; Connection: close would end every stream.)
			w.Header().Set("Connection", "close")
		}
		writeRPCError(w, http.StatusRequestTimeout, nil, -32600,
			fmt.Sprintf("The request body did not arrive within %v.", f.cfg.BodyTimeout))
		return nil, nil, false
	case err != nil:
		writeError(w, r, http.StatusBadRequest, "bad_body", "Reading the request body failed.")
		return nil, nil, false
	}
	req, err := sc.insp.Inspect(body, r.Header)
	if err != nil {
		info.method, info.decision, info.rule = "(unreadable JSON-RPC)", "deny", "inspection"
		var pe *authz.ParseError
		if errors.As(err, &pe) {
			writeRPCError(w, pe.Status, pe.ID, pe.Code, pe.Message)
		} else {
			writeRPCError(w, http.StatusBadRequest, nil, -32700, "The body is not a JSON-RPC message.")
		}
		return nil, nil, false
	}

	var denied []deniedMessage
	var stepUp *authz.Decision
	var lists []authz.ListRequest
	for i := range req.Messages {
		m := &req.Messages[i]
		if m.IsResponse() {
			continue // a client answering the server (sampling, elicitation): not a request
		}
		d, class := pr.decideMessage(m)
		if info.method == "" {
			info.method, info.tool, info.class = m.Method, m.Name+m.URI, string(class)
			info.decision, info.rule = string(d.Effect), d.Rule
			info.args = m.Arguments
		} else {
			info.more++
			if d.Effect != authz.Allow && info.decision == string(authz.Allow) {
				info.decision, info.rule = string(d.Effect), d.Rule
			}
		}
		switch d.Effect {
		case authz.Deny:
			denied = append(denied, deniedMessage{*m, d})
		case authz.StepUp:
			if stepUp == nil {
				first := d // a copy, so that only a step-up puts a Decision on the heap
				stepUp = &first
			}
		}
		if m.Method == "tools/list" && m.ID != nil {
			lists = append(lists, authz.ListRequest{ID: m.ID, FirstPage: !m.HasCursor})
		}
	}
	// Scopes the methods need (oauth-method-scopes) come first: without them the client
	// must ask its user again before anything else is worth deciding.
	if f.lacksMethodScopes(req, access.Scopes) {
		var need []string
		for _, m := range req.Messages {
			need = union(need, f.cfg.MethodScopes[m.Method])
		}
		missing := missingScopes(access.Scopes, need)
		info.decision, info.rule = string(authz.StepUp), "oauth-method-scopes"
		stepUp = &authz.Decision{Effect: authz.StepUp, Rule: "oauth-method-scopes", Scopes: need,
			Message: "This request needs the scope " + strings.Join(missing, " ") + "."}
		denied = nil
	}
	switch {
	case len(denied) > 0:
		writeDenial(w, req, denied)
		return nil, nil, false
	case stepUp != nil:
		origin := requestOrigin(r)
		metadata := oauth.ResourceMetadataURL(origin, r.URL.EscapedPath())
		scopes := union(f.cfg.Auth.DefaultScopes(), stepUp.Scopes)
		w.Header().Set("WWW-Authenticate", oauth.Challenge(metadata, scopes, "insufficient_scope", denialText(*stepUp)))
		f.cfg.Auth.StepUpIssued(access, stepUp.Rule) // before the 403 goes out, which the client's refresh follows
		writeError(w, r, http.StatusForbidden, "insufficient_scope", denialText(*stepUp)+" Authorize the client again.")
		return nil, nil, false
	}

	r.Body = tr.body.reader()
	if len(lists) == 0 {
		return w, func() {}, true
	}
	// The generation is read before the request goes on: an answer that crosses a
	// tools/list_changed on its way back is not learned from (Tools.LearnSince).
	fw := &filterWriter{ResponseWriter: w, lists: lists, pr: pr, gen: TunnelTools(tr.t).Generation()}
	return fw, fw.finish, true
}

// lacksMethodScopes reports whether some message's method needs a scope (MethodScopes) that
// have lacks; it allocates nothing, so the usual request, which has them, pays nothing more.
func (f *Front) lacksMethodScopes(req *authz.Request, have []string) bool {
	for _, m := range req.Messages {
		for _, s := range f.cfg.MethodScopes[m.Method] {
			if !slices.Contains(have, s) {
				return true
			}
		}
	}
	return false
}

type deniedMessage struct {
	m authz.Message
	d authz.Decision
}

// newPolicyRequest fills pr for a request: the policy in force and what every message's
// decision shares.
func (f *Front) newPolicyRequest(pr *policyRequest, r *http.Request, tr *tunnelRequest, access *oauth.Access) error {
	t := tr.t
	pr.f, pr.policy, pr.t = f, f.cfg.Policy.Current(), t
	in := &pr.base
	u, err := f.users.get(r.Context(), access.UserID)
	if err != nil {
		return err
	}
	in.User.ID, in.User.Email, in.User.Groups = u.ID, u.Email, u.Groups
	in.Client.ID = access.ClientID
	in.Client.Name = access.ClientName
	in.Scopes = access.Scopes
	in.Tunnel, in.Owner = t.Name(), t.Owner()
	in.Shared = SharedWith(t.Shares(), u.Email, u.Groups)
	in.SourceIP = tr.source
	// The request's time is when it arrived, as on its audit record: one clock read fewer.
	in.Time = tr.start
	// An unknown sign-in time is an old one: a policy asking for a fresh sign-in must not
	// take "unknown" for "just now".
	in.AuthAge = time.Duration(math.MaxInt64)
	if !access.AuthTime.IsZero() {
		in.AuthAge = in.Time.Sub(access.AuthTime)
	}
	return nil
}

// decideMessage decides one JSON-RPC request of the body, and says which class it counted as.
func (pr *policyRequest) decideMessage(m *authz.Message) (authz.Decision, authz.Class) {
	in := &pr.in
	*in = pr.base
	in.Method = m.Method
	switch m.Method {
	case "tools/call":
		in.Tool = m.Name
		in.Class = pr.classOf(m.Name)
		if len(m.Arguments) > 0 && pr.policy.UsesArguments() {
			// Inspect has checked the arguments are a JSON object.
			_ = json.Unmarshal(m.Arguments, &in.Arguments)
		}
	case "prompts/get":
		in.Tool, in.Class = m.Name, authz.Read
	case "resources/read":
		in.Tool, in.Class = m.URI, authz.Read
	}
	d, errs := pr.policy.Decide(in)
	for _, err := range errs {
		pr.f.cfg.Logger.Warn("policy rule failed to evaluate", "tunnel", in.Tunnel, "method", in.Method, "err", err)
	}
	return d, in.Class
}

// classOf is a tool's class: the policy's override, else what the server's own listing says;
// a tool never listed counts as destructive.
func (pr *policyRequest) classOf(tool string) authz.Class {
	if c, ok := pr.policy.ClassOverride(pr.t.Name(), tool); ok {
		return c
	}
	c, _ := TunnelTools(pr.t).Class(tool)
	return c
}

// visible says whether a tools/list answer may show a tool to this caller: if it may call it,
// or could after authorizing again.
func (pr *policyRequest) visible(name string, class authz.Class) bool {
	if c, ok := pr.policy.ClassOverride(pr.t.Name(), name); ok {
		class = c
	}
	in := &pr.in
	*in = pr.base
	in.Method, in.Tool, in.Class = "tools/call", name, class
	d, _ := pr.policy.Decide(in)
	return d.Effect != authz.Deny
}

// SharedWith reports whether a tunnel shared with shares (emails and group:NAME) is shared
// with the person of this email and groups.
func SharedWith(shares []string, email string, groups []string) bool {
	email = strings.ToLower(email)
	for _, s := range shares {
		if g, ok := strings.CutPrefix(s, "group:"); ok {
			if slices.ContainsFunc(groups, func(x string) bool { return strings.EqualFold(x, g) }) {
				return true
			}
		} else if email != "" && s == email {
			return true
		}
	}
	return false
}

func denialText(d authz.Decision) string {
	msg := fmt.Sprintf("Denied by toolgate policy rule %q.", d.Rule)
	if d.Message != "" {
		msg += " " + d.Message
	}
	return msg
}

// writeDenial answers a denied request without forwarding any of it: a JSON-RPC error per
// request that has an id (a batch gets an array), 403 for notifications only.
func writeDenial(w http.ResponseWriter, req *authz.Request, denied []deniedMessage) {
	byID := map[string]authz.Decision{}
	first := denied[0].d
	for _, dm := range denied {
		if dm.m.ID != nil {
			byID[string(dm.m.ID)] = dm.d
		}
	}
	var out []rpcError
	for _, m := range req.Messages {
		if m.ID == nil || m.IsResponse() {
			continue
		}
		d, ok := byID[string(m.ID)]
		if !ok {
			// Allowed on its own, but the batch it came in is denied as a whole.
			d = first
		}
		out = append(out, newRPCError(m.ID, DenyCode, denialText(d)))
	}
	if len(out) == 0 {
		writeRPCError(w, http.StatusForbidden, nil, DenyCode, denialText(first))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if req.Batch {
		_ = json.NewEncoder(w).Encode(out)
		return
	}
	_ = json.NewEncoder(w).Encode(out[0])
}

type rpcError struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func newRPCError(id json.RawMessage, code int, msg string) rpcError {
	e := rpcError{JSONRPC: "2.0", ID: id}
	if e.ID == nil {
		e.ID = json.RawMessage("null")
	}
	e.Error.Code, e.Error.Message = code, msg
	return e
}

func writeRPCError(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string) {
	w.Header().Del("Content-Length")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(newRPCError(id, code, msg))
}

// filterWriter filters the answer to a request with tools/list in it. Its content type is
// known only when the local server's headers arrive, so the filter is made then.
type filterWriter struct {
	http.ResponseWriter
	lists   []authz.ListRequest
	gen     uint64 // the tunnel's tools' generation when the request went on
	pr      *policyRequest
	filter  *authz.ResponseFilter
	failed  bool
	refused bool // the answer was encoded: a 502 went out instead
	// A JSON answer is filtered whole when it ends, so its status is held back until then
	// (held): a body that turns out unfilterable becomes a 502, not a 200 with nothing in it.
	held  bool
	code  int
	wrote bool
}

var errEncodedAnswer = errors.New("web: an encoded tools/list answer is not passed on")

func (fw *filterWriter) WriteHeader(code int) {
	if fw.refused {
		return
	}
	if code >= 200 && fw.filter == nil {
		h := fw.Header()
		if ce := contentEncoding(h); ce != "" {
			fw.refused = true
			h.Del("Content-Encoding")
			fw.pr.f.cfg.Logger.Warn("the local server encoded a tools/list answer; answered 502",
				"tunnel", fw.pr.t.Name(), "content_encoding", ce)
			writeRPCError(fw.ResponseWriter, http.StatusBadGateway, fw.lists[0].ID, -32603,
				"The server behind this tunnel sent an encoded answer that toolgate cannot filter.")
			return
		}
		ct := h.Get("Content-Type")
		tools := TunnelTools(fw.pr.t)
		// A first page replaces what was known: a tool the server dropped is forgotten, and
		// one it re-annotated gets its new class, looser or stricter. A later page adds (and
		// can only make a class stricter).
		fw.filter = authz.NewResponseFilter(heldStatus{fw}, ct, fw.lists, fw.pr.visible,
			func(result json.RawMessage, firstPage bool) error { return tools.LearnSince(fw.gen, result, firstPage) })
		h.Del("Content-Length") // the filtered body is shorter
		if !fw.filter.Streaming() {
			fw.held, fw.code = true, code
			return
		}
	}
	fw.wrote = true
	fw.ResponseWriter.WriteHeader(code)
}

// heldStatus is where the filter writes: a held status goes out before the first byte.
type heldStatus struct{ fw *filterWriter }

func (h heldStatus) Write(b []byte) (int, error) {
	if !h.fw.wrote {
		h.fw.wrote = true
		h.fw.ResponseWriter.WriteHeader(h.fw.code)
	}
	return h.fw.ResponseWriter.Write(b)
}

func (fw *filterWriter) Write(b []byte) (int, error) {
	if fw.filter == nil && !fw.refused {
		fw.WriteHeader(http.StatusOK)
	}
	if fw.refused {
		return 0, errEncodedAnswer
	}
	n, err := fw.filter.Write(b)
	if err != nil && !fw.failed {
		fw.failed = true
		fw.pr.f.cfg.Logger.Warn("filtering a tools/list answer failed", "tunnel", fw.pr.t.Name(), "err", err)
	}
	return n, err
}

func (fw *filterWriter) FlushError() error {
	if fw.held {
		return nil // nothing of a held answer goes out before it is filtered
	}
	return http.NewResponseController(fw.ResponseWriter).Flush()
}

func (fw *filterWriter) Unwrap() http.ResponseWriter { return fw.ResponseWriter }

// finish ends the filtered body: a held JSON answer is written now, or a 502 if it could not
// be filtered.
func (fw *filterWriter) finish() {
	if fw.filter == nil {
		return
	}
	err := fw.filter.Close()
	if err != nil && !fw.failed {
		fw.pr.f.cfg.Logger.Warn("filtering a tools/list answer failed", "tunnel", fw.pr.t.Name(), "err", err)
	}
	if fw.held && !fw.wrote {
		if err != nil {
			writeRPCError(fw.ResponseWriter, http.StatusBadGateway, fw.lists[0].ID, -32603,
				"The server behind this tunnel sent a tools/list answer that toolgate could not read.")
		} else {
			fw.ResponseWriter.WriteHeader(fw.code) // an empty body
		}
	}
	if err := fw.filter.LearnErr(); err != nil && !errors.Is(err, authz.ErrStaleListing) {
		fw.pr.f.cfg.Logger.Warn("learning the tools of a tools/list answer failed", "tunnel", fw.pr.t.Name(), "err", err)
	}
}

// userCache keeps the users the policy step looked up, until any user changes.
type userCache struct {
	dir UserDirectory
	mu  sync.Mutex
	gen uint64
	m   map[string]data.User
}

func (c *userCache) get(ctx context.Context, id string) (data.User, error) {
	gen := c.dir.OAuthGeneration()
	c.mu.Lock()
	if c.gen != gen || c.m == nil || len(c.m) > 10000 {
		c.m, c.gen = make(map[string]data.User), gen
	}
	u, ok := c.m[id]
	c.mu.Unlock()
	if ok {
		return u, nil
	}
	u, err := c.dir.GetUser(ctx, id)
	if err != nil {
		return data.User{}, err
	}
	c.mu.Lock()
	if c.gen == gen {
		c.m[id] = u
	}
	c.mu.Unlock()
	return u, nil
}
