package authz

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultMaxBody is the default limit on a buffered request body (1 MiB).
const DefaultMaxBody = 1 << 20

// JSON-RPC error codes a [ParseError] carries.
const (
	// CodeParseError: the body is not one valid JSON value (syntax, UTF-8, trailing data).
	CodeParseError = -32700
	// CodeInvalidRequest: valid JSON that is not an acceptable request: duplicate keys, too
	// deep, lone surrogate escapes, wrong shape, a batch where batches are not allowed.
	CodeInvalidRequest = -32600
	// CodeHeaderMismatch: MCP 2026-07-28 HeaderMismatch, the Mcp-Method, Mcp-Name or
	// MCP-Protocol-Version header is missing or disagrees with the body.
	CodeHeaderMismatch = -32020
)

// inspMaxDepth bounds the nesting of arrays and objects in a body (a batch array counts).
const inspMaxDepth = 64

// inspStateless is the first MCP revision whose POSTs mirror the body in Mcp-* headers that
// must agree with it; later revisions (dated, so they compare as strings) are taken to do the
// same.
const inspStateless = "2026-07-28"

// inspMetaVersion is the _meta key carrying the protocol version in 2026-07-28 requests.
const inspMetaVersion = "io.modelcontextprotocol/protocolVersion"

// inspMetaVersionFold is inspMetaVersion folded (see inspFold).
const inspMetaVersionFold = "io.modelcontextprotocol/protocolversion"

// ParseError is why a body was refused: Status is the HTTP status to answer (400, 413, 415),
// Code the JSON-RPC error code ([CodeParseError], [CodeInvalidRequest], [CodeHeaderMismatch]),
// ID the request id if one could be read (else nil, to be answered as JSON null).
type ParseError struct {
	Status, Code int
	Message      string
	ID           json.RawMessage
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("authz: request refused (HTTP %d, JSON-RPC %d): %s", e.Status, e.Code, e.Message)
}

// Inspect reads a request body strictly. h is the request's headers (Content-Type,
// MCP-Protocol-Version, Mcp-Method, Mcp-Name). Anything it cannot read unambiguously is
// refused with a *[ParseError]; such a body must never be forwarded.
//
// Refused, besides anything that is not exactly one JSON value:
//   - a Content-Type other than application/json (parameters allowed, but a charset must be
//     utf-8), missing or repeated: 415. A body over [DefaultMaxBody]: 413 (the caller should
//     have stopped reading earlier). More than one MCP-Protocol-Version header: 400.
//   - invalid UTF-8 (-32700); nesting deeper than 64 (a batch array counts);
//   - an object with two keys equal after unescaping and ignoring letter case the way
//     encoding/json matches struct fields (Unicode simple folding: "name", "NAME",
//     "n\u0061me", and "\u017fafe" for "safe"), anywhere in the body: whichever copy a
//     server reads, it must be the one decided on. At the message level and in the params of
//     the methods read here, a key differing only in case from a field read ("Method",
//     "Arguments", …) is refused too, since a case-insensitive decoder takes it for the field;
//   - \u escapes of lone UTF-16 surrogates, anywhere (decoders disagree on them: U+FFFD,
//     WTF-8 or an error);
//   - batches (array bodies) unless MCP-Protocol-Version is absent or 2025-03-26; empty
//     batches; elements that are not objects;
//   - a message that is neither a request or notification ("jsonrpc":"2.0", a non-empty
//     string "method", no "result" or "error", an "id" if any that is a string or number,
//     "params" if any an object or array) nor a response ("jsonrpc":"2.0", no "method" or
//     "params", exactly one of "result" and "error" (an object), a string or number "id", or
//     null in an error response); tools/call and prompts/get without an object params with a
//     non-empty string "name" and an object "arguments" if any; resources/read without an
//     object params with a non-empty string "uri";
//   - params._meta["io.modelcontextprotocol/protocolVersion"] other than the
//     MCP-Protocol-Version header, in any revision: 400 [CodeHeaderMismatch];
//   - for MCP 2026-07-28 and later revisions: a response (clients must not POST them); a
//     missing, repeated or disagreeing Mcp-Method, or Mcp-Name for tools/call, prompts/get
//     (params.name) and resources/read (params.uri): 400 [CodeHeaderMismatch]. Their values
//     may be plain or =?base64?{standard base64 of UTF-8}?=. For older revisions these
//     headers are ignored.
//
// Syntax errors are -32700 with a nil ID; other refusals are -32600 (or -32020) with the
// message's id when the whole message could be read. Methods, names and URIs are returned
// byte-exact after JSON unescaping, never normalised. The returned Request's ID and
// Arguments alias body: the caller must not change body while it uses them.
func Inspect(body []byte, h http.Header) (*Request, error) {
	return new(Inspector).Inspect(body, h)
}

// Inspector is [Inspect] with its memory kept from one body to the next: the scanner's key
// stack and arena and the Request it returns. A proxy keeps one per body buffer, so that
// inspecting a body allocates nothing but the names it decodes that are not common method
// names. The zero value is ready to use; an Inspector is for one goroutine at a time.
type Inspector struct {
	s    inspScanner
	req  Request
	msgs [1]Message // the usual body: one message
}

// inspKeepArena is the largest key arena an Inspector keeps for its next body.
const inspKeepArena = 64 << 10

// Inspect is [Inspect]. The Request it returns is the Inspector's own: it is valid until the
// next call, and like the package function's it aliases body.
func (in *Inspector) Inspect(body []byte, h http.Header) (*Request, error) {
	if err := inspContentType(h); err != nil {
		return nil, err
	}
	if len(body) > DefaultMaxBody {
		return nil, &ParseError{Status: http.StatusRequestEntityTooLarge, Code: CodeInvalidRequest,
			Message: fmt.Sprintf("body larger than %d bytes", DefaultMaxBody)}
	}
	pv := h.Values("Mcp-Protocol-Version")
	if len(pv) > 1 {
		return nil, inspInvalid(nil, "more than one MCP-Protocol-Version header")
	}
	msgs := in.req.Messages[:0]
	if msgs == nil {
		msgs = in.msgs[:0]
	}
	clear(msgs[:cap(msgs)]) // no message of the last body lingers, nor keeps its body alive
	req := &in.req
	*req = Request{Messages: msgs}
	if len(pv) == 1 {
		req.ProtocolVersion = pv[0]
	}
	stateless := req.ProtocolVersion >= inspStateless

	if !utf8.Valid(body) {
		return nil, inspSyntax("body is not valid UTF-8")
	}
	arena := in.s.arena[:0]
	if cap(arena) > inspKeepArena {
		arena = nil
	}
	in.s = inspScanner{data: body, version: req.ProtocolVersion, arena: arena, seed: in.s.seed}
	s := &in.s
	s.keys = s.keysBuf[:0]
	s.ws()
	if s.pos >= len(s.data) {
		return nil, inspSyntax("empty body")
	}
	switch s.data[s.pos] {
	case '{':
		req.Messages = append(req.Messages, Message{})
		if err := s.message(); err != nil {
			return nil, err
		}
		s.ws()
		if s.pos < len(s.data) {
			return nil, s.syntax("data after the JSON value")
		}
		if err := s.shape(&req.Messages[0], &s.last); err != nil {
			return nil, err
		}
	case '[':
		if req.ProtocolVersion != "" && req.ProtocolVersion != "2025-03-26" {
			return nil, inspInvalid(nil, "batches are not allowed in MCP "+strconv.Quote(req.ProtocolVersion))
		}
		req.Batch = true
		if err := s.batch(req); err != nil {
			return nil, err
		}
	default:
		if err := s.value(); err != nil {
			return nil, err
		}
		s.ws()
		if s.pos < len(s.data) {
			return nil, s.syntax("data after the JSON value")
		}
		return nil, inspInvalid(nil, "body is not a JSON-RPC message (an object) or batch (an array)")
	}
	s.ws()
	if s.pos < len(s.data) {
		return nil, s.syntax("data after the JSON value")
	}
	if stateless {
		if err := s.headers(&req.Messages[0], h, req.ProtocolVersion); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// inspContentType checks that the body is declared as JSON (UTF-8).
func inspContentType(h http.Header) *ParseError {
	cts := h.Values("Content-Type")
	if len(cts) != 1 {
		msg := "missing Content-Type"
		if len(cts) > 1 {
			msg = "more than one Content-Type header"
		}
		return &ParseError{Status: http.StatusUnsupportedMediaType, Code: CodeInvalidRequest, Message: msg}
	}
	ct := cts[0]
	if strings.EqualFold(ct, "application/json") {
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil && mt == "application/json" {
		if cs, ok := params["charset"]; !ok || strings.EqualFold(cs, "utf-8") {
			return nil
		}
	}
	return &ParseError{Status: http.StatusUnsupportedMediaType, Code: CodeInvalidRequest,
		Message: "Content-Type must be application/json, not " + strconv.Quote(ct)}
}

func inspSyntax(msg string) *ParseError {
	return &ParseError{Status: http.StatusBadRequest, Code: CodeParseError, Message: "invalid JSON: " + msg}
}

func inspInvalid(id json.RawMessage, msg string) *ParseError {
	return &ParseError{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Message: msg, ID: id}
}

func inspMismatch(id json.RawMessage, msg string) *ParseError {
	return &ParseError{Status: http.StatusBadRequest, Code: CodeHeaderMismatch, Message: msg, ID: id}
}

// batch reads an array body, one message per element.
func (s *inspScanner) batch(req *Request) *ParseError {
	a, err := s.openArray()
	if err != nil {
		return err
	}
	var bad *ParseError // the first element refused for its shape, reported once all is read
	for {
		more, err := s.element(&a)
		if err != nil {
			return err
		}
		if !more {
			break
		}
		if s.pos < len(s.data) && s.data[s.pos] == '{' {
			req.Messages = append(req.Messages, Message{})
			m := &req.Messages[len(req.Messages)-1]
			if err := s.message(); err != nil {
				return err
			}
			if err := s.shape(m, &s.last); err != nil && bad == nil {
				bad = err
			}
			continue
		}
		if bad == nil {
			bad = inspInvalid(nil, fmt.Sprintf("batch element %d is not an object", a.n-1))
		}
		if err := s.value(); err != nil {
			return err
		}
	}
	s.ws()
	if s.pos < len(s.data) {
		return s.syntax("data after the JSON value")
	}
	if bad != nil {
		return bad
	}
	if a.n == 0 {
		return inspInvalid(nil, "empty batch")
	}
	return nil
}

// inspFields is what a message holds besides its Message: the values that decide its shape.
type inspFields struct {
	jsonrpc, method, id, result, errorV, params inspSpan
	name, arguments, uri, meta, metaVersion     inspSpan
	cursor                                      inspSpan
	// Near misses: the first key that differs only in letter case from params.name,
	// params.arguments, params.uri, params._meta, params._meta[inspMetaVersion] ("" if none).
	nearName, nearArguments, nearURI, nearMeta, nearMetaVersion string
}

// inspMessageKeys are the members of a JSON-RPC message.
var inspMessageKeys = [...]string{"jsonrpc", "method", "id", "params", "result", "error"}

// inspNear returns the field name key resembles (its fold equals the field, but key is not
// exactly the field), or "".
func inspNear(key, fold []byte, fields ...string) string {
	for _, f := range fields {
		if string(fold) == f && string(key) != f {
			return f
		}
	}
	return ""
}

// message reads one message object at s.pos into s.last; shape checks it.
func (s *inspScanner) message() *ParseError {
	s.last = inspFields{}
	f := &s.last
	o, err := s.open()
	if err != nil {
		return err
	}
	for {
		key, fold, more, err := s.member(&o)
		if err != nil {
			return err
		}
		if !more {
			break
		}
		var dst *inspSpan
		switch string(key) {
		case "jsonrpc":
			dst = &f.jsonrpc
		case "method":
			dst = &f.method
		case "id":
			dst = &f.id
		case "result":
			dst = &f.result
		case "error":
			dst = &f.errorV
		case "params":
			dst = &f.params
		default:
			if near := inspNear(key, fold, inspMessageKeys[:]...); near != "" {
				s.pos = int(s.keys[len(s.keys)-1].start)
				return s.invalidHere(fmt.Sprintf("key %q differs from %q only in letter case", key, near))
			}
		}
		if dst == nil {
			if err := s.value(); err != nil {
				return err
			}
			continue
		}
		s.ws()
		if dst == &f.params && s.pos < len(s.data) && s.data[s.pos] == '{' {
			f.params = inspSpan{kind: '{', start: s.pos}
			if err := s.params(f); err != nil {
				return err
			}
			f.params.end = s.pos
			continue
		}
		if *dst, err = s.spanValue(); err != nil {
			return err
		}
	}
	return nil
}

// params reads a params object, noting name, arguments, uri and _meta.
func (s *inspScanner) params(f *inspFields) *ParseError {
	o, err := s.open()
	if err != nil {
		return err
	}
	for {
		key, fold, more, err := s.member(&o)
		if err != nil {
			return err
		}
		if !more {
			return nil
		}
		var dst *inspSpan
		switch string(key) {
		case "name":
			dst = &f.name
		case "arguments":
			dst = &f.arguments
		case "uri":
			dst = &f.uri
		case "cursor":
			// A key differing only in case ("Cursor") is not noted: a server that reads it
			// as the cursor answers a later page that is then taken for a first page,
			// which only forgets classes (see Message.HasCursor).
			dst = &f.cursor
		case "_meta":
			s.ws()
			if s.pos < len(s.data) && s.data[s.pos] == '{' {
				f.meta = inspSpan{kind: '{', start: s.pos}
				if err := s.metaObject(f); err != nil {
					return err
				}
				f.meta.end = s.pos
				continue
			}
			dst = &f.meta
		default:
			var near *string
			switch inspNear(key, fold, "name", "arguments", "uri", "_meta") {
			case "name":
				near = &f.nearName
			case "arguments":
				near = &f.nearArguments
			case "uri":
				near = &f.nearURI
			case "_meta":
				near = &f.nearMeta
			}
			if near != nil && *near == "" {
				*near = string(key)
			}
		}
		if dst == nil {
			if err := s.value(); err != nil {
				return err
			}
			continue
		}
		if *dst, err = s.spanValue(); err != nil {
			return err
		}
	}
}

// metaObject reads params._meta, noting the protocol version.
func (s *inspScanner) metaObject(f *inspFields) *ParseError {
	o, err := s.open()
	if err != nil {
		return err
	}
	for {
		key, fold, more, err := s.member(&o)
		if err != nil {
			return err
		}
		if !more {
			return nil
		}
		if string(key) == inspMetaVersion {
			if f.metaVersion, err = s.spanValue(); err != nil {
				return err
			}
			continue
		}
		if f.nearMetaVersion == "" && string(fold) == inspMetaVersionFold {
			f.nearMetaVersion = string(key)
		}
		if err := s.value(); err != nil {
			return err
		}
	}
}

// shape checks a message read by message and fills m.
func (s *inspScanner) shape(m *Message, f *inspFields) *ParseError {
	if f.id.present() {
		m.ID = json.RawMessage(s.data[f.id.start:f.id.end])
	}
	id := m.ID
	if f.jsonrpc.kind != '"' || s.decode(f.jsonrpc) != "2.0" {
		return inspInvalid(id, `"jsonrpc" must be "2.0"`)
	}
	if !f.method.present() {
		// A response: a client answering a server's request.
		if f.result.present() == f.errorV.present() {
			return inspInvalid(id, "not a JSON-RPC request, notification or response: a response has exactly one of \"result\" and \"error\"")
		}
		if f.params.present() {
			return inspInvalid(id, "a response cannot have params")
		}
		switch {
		case f.id.kind == '"' || f.id.kind == '0':
		case f.id.kind == 'n' && f.errorV.present():
			// JSON-RPC 2.0 §5: id null when the request's id could not be read.
		default:
			return inspInvalid(id, `a response must have a string or number "id"`)
		}
		if f.errorV.present() && f.errorV.kind != '{' {
			return inspInvalid(id, `"error" must be an object`)
		}
		return nil
	}
	if f.method.kind != '"' {
		return inspInvalid(id, `"method" must be a string`)
	}
	if f.result.present() || f.errorV.present() {
		return inspInvalid(id, `a request cannot have "result" or "error"`)
	}
	if f.id.present() && f.id.kind != '"' && f.id.kind != '0' {
		return inspInvalid(id, `"id" must be a string or a number`)
	}
	m.Method = s.decode(f.method)
	if m.Method == "" {
		return inspInvalid(id, `"method" must not be empty`)
	}
	if f.params.present() && f.params.kind != '{' && f.params.kind != '[' {
		return inspInvalid(id, `"params" must be an object or an array`)
	}
	if f.metaVersion.present() && (f.metaVersion.kind != '"' || s.decode(f.metaVersion) != s.version) {
		// Checked whatever the header says: a 2026-07-28 body sent with an older header (or
		// none) would otherwise skip the checks of its mirrored headers.
		return inspMismatch(id, "MCP-Protocol-Version header does not match params._meta[\""+inspMetaVersion+"\"]")
	}
	// A string of more than its two quotes is not empty: no escape decodes to nothing.
	m.HasCursor = f.cursor.kind == '"' && f.cursor.end-f.cursor.start > 2
	var need string // the params field the method is decided by
	switch m.Method {
	case "tools/call", "prompts/get":
		need = "name"
	case "resources/read":
		need = "uri"
	default:
		return nil
	}
	if f.params.kind != '{' {
		return inspInvalid(id, m.Method+` needs "params" to be an object`)
	}
	if need == "uri" {
		if f.nearURI != "" {
			return inspNearErr(id, "params key", f.nearURI, "uri")
		}
		if f.uri.kind != '"' {
			return inspInvalid(id, m.Method+` needs a string "params.uri"`)
		}
		if m.URI = s.decode(f.uri); m.URI == "" {
			return inspInvalid(id, `"params.uri" must not be empty`)
		}
		return nil
	}
	if f.nearName != "" {
		return inspNearErr(id, "params key", f.nearName, "name")
	}
	if f.nearArguments != "" {
		return inspNearErr(id, "params key", f.nearArguments, "arguments")
	}
	if f.name.kind != '"' {
		return inspInvalid(id, m.Method+` needs a string "params.name"`)
	}
	if m.Name = s.decode(f.name); m.Name == "" {
		return inspInvalid(id, `"params.name" must not be empty`)
	}
	if f.arguments.present() {
		if f.arguments.kind != '{' {
			return inspInvalid(id, `"params.arguments" must be an object`)
		}
		m.Arguments = json.RawMessage(s.data[f.arguments.start:f.arguments.end])
	}
	return nil
}
