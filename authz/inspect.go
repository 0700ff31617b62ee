package authz

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode"
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
	req := &Request{}
	if len(pv) == 1 {
		req.ProtocolVersion = pv[0]
	}
	stateless := req.ProtocolVersion >= inspStateless

	if !utf8.Valid(body) {
		return nil, inspSyntax("body is not valid UTF-8")
	}
	s := inspScanner{data: body, version: req.ProtocolVersion}
	s.keys = s.keysBuf[:0]
	s.ws()
	if s.pos >= len(s.data) {
		return nil, inspSyntax("empty body")
	}
	switch s.data[s.pos] {
	case '{':
		req.Messages = make([]Message, 1)
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

// inspKey is a key of an open object: where its raw string is in the body (for messages)
// and its folded form (for comparing).
type inspKey struct {
	start, end int32 // the raw key in data, with its quotes
	// the folded key, in arena if foldArena, else in data
	foldStart, foldEnd int32
	foldArena          bool
}

// foldOf returns a key's folded form.
func (s *inspScanner) foldOf(k inspKey) []byte {
	if k.foldArena {
		return s.arena[k.foldStart:k.foldEnd]
	}
	return s.data[k.foldStart:k.foldEnd]
}

// inspScanner is a strict, single-pass JSON scanner over a body already known to be valid
// UTF-8 (so only the JSON grammar, escapes and control characters are checked in strings).
type inspScanner struct {
	data    []byte
	version string // the MCP-Protocol-Version header
	pos     int
	depth   int
	// keys holds the keys of every open object, innermost last; an object's keys start at
	// its inspObject's base.
	keys    []inspKey
	keysBuf [32]inspKey
	// arena holds folded and unescaped keys that could not alias data.
	arena []byte
	// seed hashes the keys of objects with many keys.
	seed maphash.Seed
	// last is what the last message read held besides its Message (for the header checks).
	last inspFields
}

func (s *inspScanner) syntax(what string) *ParseError {
	return inspSyntax(what + " at offset " + strconv.Itoa(s.pos))
}

func (s *inspScanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// span is a value's place in the body, with its kind: its first byte, except '0' for all
// numbers.
type inspSpan struct {
	kind       byte
	start, end int
	escaped    bool // a string with backslash escapes
}

func (sp inspSpan) present() bool { return sp.kind != 0 }

// spanValue reads any value, returning where it is.
func (s *inspScanner) spanValue() (inspSpan, *ParseError) {
	s.ws()
	sp := inspSpan{start: s.pos}
	if s.pos < len(s.data) {
		sp.kind = s.data[s.pos]
		if sp.kind == '-' || ('0' <= sp.kind && sp.kind <= '9') {
			sp.kind = '0'
		}
	}
	var err *ParseError
	if sp.kind == '"' {
		sp.escaped, err = s.str()
	} else {
		err = s.value()
	}
	sp.end = s.pos
	return sp, err
}

// value reads any value.
func (s *inspScanner) value() *ParseError {
	s.ws()
	if s.pos >= len(s.data) {
		return s.syntax("unexpected end")
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		o, err := s.open()
		if err != nil {
			return err
		}
		for {
			_, _, more, err := s.member(&o)
			if err != nil || !more {
				return err
			}
			if err := s.value(); err != nil {
				return err
			}
		}
	case c == '[':
		a, err := s.openArray()
		if err != nil {
			return err
		}
		for {
			more, err := s.element(&a)
			if err != nil || !more {
				return err
			}
			if err := s.value(); err != nil {
				return err
			}
		}
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || ('0' <= c && c <= '9'):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		return s.syntax("unexpected character " + strconv.QuoteRune(rune(c)))
	}
}

func (s *inspScanner) literal(lit string) *ParseError {
	if !bytes.HasPrefix(s.data[s.pos:], []byte(lit)) {
		return s.syntax("invalid literal")
	}
	s.pos += len(lit)
	return nil
}

func (s *inspScanner) number() *ParseError {
	d := s.data
	i := s.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
	default:
		s.pos = i
		return s.syntax("invalid number")
	}
	if i < len(d) && d[i] == '.' {
		i++
		j := i
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
		if i == j {
			s.pos = i
			return s.syntax("invalid number")
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := i
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
		if i == j {
			s.pos = i
			return s.syntax("invalid number")
		}
	}
	s.pos = i
	return nil
}

// inspPlain marks the string bytes that need no attention: not '"', '\\' or a control
// character.
var inspPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// inspSpecial8 reports whether any of the 8 bytes in x is a control character, '"' or '\\'.
func inspSpecial8(x uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	ctl := (x - lo*0x20) &^ x & hi
	q := x ^ (lo * '"')
	q = (q - lo) &^ q & hi
	bs := x ^ (lo * '\\')
	bs = (bs - lo) &^ bs & hi
	return ctl|q|bs != 0
}

func inspHex(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// u4 reads the four hex digits of a \u escape at d[i:].
func inspU4(d []byte, i int) rune {
	if i+4 > len(d) {
		return -1
	}
	var r rune
	for _, c := range d[i : i+4] {
		v := inspHex(c)
		if v < 0 {
			return -1
		}
		r = r<<4 | v
	}
	return r
}

// str reads a string at s.pos (which must be '"'), reporting whether it has escapes.
func (s *inspScanner) str() (escaped bool, err *ParseError) {
	d := s.data
	if s.pos >= len(d) || d[s.pos] != '"' {
		return false, s.syntax("expected a string")
	}
	i := s.pos + 1
	for {
		for i+8 <= len(d) && !inspSpecial8(binary.LittleEndian.Uint64(d[i:])) {
			i += 8
		}
		for i < len(d) && inspPlain[d[i]] {
			i++
		}
		if i >= len(d) {
			s.pos = i
			return false, s.syntax("unterminated string")
		}
		switch c := d[i]; c {
		case '"':
			s.pos = i + 1
			return escaped, nil
		case '\\':
			escaped = true
			if i+1 >= len(d) {
				s.pos = i
				return false, s.syntax("unterminated string")
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				r := inspU4(d, i+2)
				if r < 0 {
					s.pos = i
					return false, s.syntax("invalid \\u escape")
				}
				i += 6
				if utf16IsSurrogate(r) {
					if r >= 0xDC00 || i+6 > len(d) || d[i] != '\\' || d[i+1] != 'u' {
						s.pos = i - 6
						return false, s.invalidHere("lone surrogate escape in a string")
					}
					r2 := inspU4(d, i+2)
					if r2 < 0xDC00 || r2 > 0xDFFF {
						s.pos = i - 6
						return false, s.invalidHere("lone surrogate escape in a string")
					}
					i += 6
				}
			default:
				s.pos = i
				return false, s.syntax("invalid escape")
			}
		default:
			s.pos = i
			return false, s.syntax("control character in a string")
		}
	}
}

func utf16IsSurrogate(r rune) bool { return 0xD800 <= r && r <= 0xDFFF }

func (s *inspScanner) invalidHere(what string) *ParseError {
	return inspInvalid(nil, what+" at offset "+strconv.Itoa(s.pos))
}

// inspUnescape appends the contents of the string raw (with its quotes, already checked by
// str) to dst, decoded the way encoding/json decodes it.
func inspUnescape(dst, raw []byte) []byte {
	raw = raw[1 : len(raw)-1]
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\\')
		if i < 0 {
			return append(dst, raw...)
		}
		dst = append(dst, raw[:i]...)
		raw = raw[i:]
		switch raw[1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := inspU4(raw, 2)
			if utf16IsSurrogate(r) {
				r2 := inspU4(raw, 8)
				r = (r-0xD800)<<10 | (r2 - 0xDC00) + 0x10000
				raw = raw[6:]
			}
			dst = utf8.AppendRune(dst, r)
			raw = raw[6:]
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[1])
		}
		raw = raw[2:]
	}
	return dst
}

// decode returns a string value's contents.
func (s *inspScanner) decode(sp inspSpan) string {
	raw := s.data[sp.start:sp.end]
	if !sp.escaped {
		return inspIntern(raw[1 : len(raw)-1])
	}
	return string(inspUnescape(nil, raw))
}

// inspIntern returns b as a string, without allocating for the common methods.
func inspIntern(b []byte) string {
	switch string(b) {
	case "tools/call":
		return "tools/call"
	case "tools/list":
		return "tools/list"
	case "prompts/get":
		return "prompts/get"
	case "prompts/list":
		return "prompts/list"
	case "resources/read":
		return "resources/read"
	case "resources/list":
		return "resources/list"
	case "resources/templates/list":
		return "resources/templates/list"
	case "initialize":
		return "initialize"
	case "notifications/initialized":
		return "notifications/initialized"
	case "ping":
		return "ping"
	case "2.0":
		return "2.0"
	}
	return string(b)
}

// inspFold appends key folded so that two keys fold equal exactly when encoding/json would
// match them to the same struct field (bytes.EqualFold): ASCII letters to lower case, other
// runes to the smallest rune of their simple-folding orbit (lower-cased if that is an ASCII
// letter, as for the Kelvin sign and the long s).
func inspFold(dst, key []byte) []byte {
	for i := 0; i < len(key); {
		c := key[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(key[i:])
		i += n
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		dst = utf8.AppendRune(dst, r)
	}
	return dst
}

// inspNeedsFold reports whether a key has bytes inspFold would change or might.
func inspNeedsFold(key []byte) bool {
	for _, c := range key {
		if c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return true
		}
	}
	return false
}

// inspObject is an open object being read by member.
type inspObject struct {
	base, arena int
	n           int
	// m maps the hash of a folded key to the index in keys of the first key with that hash,
	// once the object has many keys.
	m map[uint64]int32
}

// inspLinear is how many keys an object may have before duplicates are looked up in a map.
const inspLinear = 16

func (s *inspScanner) open() (inspObject, *ParseError) {
	s.depth++
	if s.depth > inspMaxDepth {
		return inspObject{}, s.invalidHere(fmt.Sprintf("nesting deeper than %d", inspMaxDepth))
	}
	s.pos++ // '{'
	return inspObject{base: len(s.keys), arena: len(s.arena)}, nil
}

// member reads the next member's key and its colon, returning the key (unescaped) and its
// folded form, or more == false at the end of the object.
func (s *inspScanner) member(o *inspObject) (key, fold []byte, more bool, err *ParseError) {
	s.ws()
	if s.pos >= len(s.data) {
		return nil, nil, false, s.syntax("unexpected end in an object")
	}
	c := s.data[s.pos]
	if c == '}' {
		s.pos++
		s.depth--
		s.keys = s.keys[:o.base]
		s.arena = s.arena[:o.arena]
		return nil, nil, false, nil
	}
	if o.n > 0 {
		if c != ',' {
			return nil, nil, false, s.syntax("expected ',' or '}'")
		}
		s.pos++
		s.ws()
	}
	start := s.pos
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return nil, nil, false, s.syntax("expected a key")
	}
	escaped, err := s.str()
	if err != nil {
		return nil, nil, false, err
	}
	end := s.pos
	if escaped {
		a := len(s.arena)
		s.arena = inspUnescape(s.arena, s.data[start:end])
		key = s.arena[a:len(s.arena):len(s.arena)]
	} else {
		key = s.data[start+1 : end-1]
	}
	k := inspKey{start: int32(start), end: int32(end)}
	switch {
	case inspNeedsFold(key):
		a := len(s.arena)
		s.arena = inspFold(s.arena, key)
		fold = s.arena[a:len(s.arena):len(s.arena)]
		k.foldStart, k.foldEnd, k.foldArena = int32(a), int32(len(s.arena)), true
	case escaped: // key (unescaped) is in arena
		fold = key
		k.foldStart, k.foldEnd, k.foldArena = int32(len(s.arena)-len(key)), int32(len(s.arena)), true
	default:
		fold = key
		k.foldStart, k.foldEnd = int32(start+1), int32(end-1)
	}
	if err := s.unique(o, k, key, fold); err != nil {
		return nil, nil, false, err
	}
	o.n++
	s.ws()
	if s.pos >= len(s.data) || s.data[s.pos] != ':' {
		return nil, nil, false, s.syntax("expected ':'")
	}
	s.pos++
	return key, fold, true, nil
}

// unique refuses a key equal (folded) to one the object already has, and records it.
func (s *inspScanner) unique(o *inspObject, k inspKey, key, fold []byte) *ParseError {
	dup := -1
	var hash uint64
	if o.m != nil {
		hash = maphash.Bytes(s.seed, fold)
		if i, ok := o.m[hash]; ok {
			dup = int(i)
			if !bytes.Equal(s.foldOf(s.keys[dup]), fold) { // a hash collision: look at them all
				dup = s.linear(o, fold)
			}
		}
	} else {
		dup = s.linear(o, fold)
	}
	if dup >= 0 {
		prev := s.keys[dup]
		pk := inspUnescape(nil, s.data[prev.start:prev.end])
		s.pos = int(k.start)
		if bytes.Equal(pk, key) {
			return s.invalidHere("duplicate key " + strconv.Quote(string(key)))
		}
		return s.invalidHere(fmt.Sprintf("duplicate key %q (same as %q ignoring case)", key, pk))
	}
	s.keys = append(s.keys, k)
	switch {
	case o.m != nil:
		if _, ok := o.m[hash]; !ok {
			o.m[hash] = int32(len(s.keys) - 1)
		}
	case len(s.keys)-o.base > inspLinear:
		if s.seed == (maphash.Seed{}) {
			s.seed = maphash.MakeSeed()
		}
		o.m = make(map[uint64]int32, 4*inspLinear)
		for i := len(s.keys) - 1; i >= o.base; i-- { // backwards: the first of equal hashes stays
			o.m[maphash.Bytes(s.seed, s.foldOf(s.keys[i]))] = int32(i)
		}
	}
	return nil
}

// linear returns the index in keys of the object's key that folds to fold, or -1.
func (s *inspScanner) linear(o *inspObject, fold []byte) int {
	for i := o.base; i < len(s.keys); i++ {
		if bytes.Equal(s.foldOf(s.keys[i]), fold) {
			return i
		}
	}
	return -1
}

// inspArray is an open array being read by element.
type inspArray struct{ n int }

func (s *inspScanner) openArray() (inspArray, *ParseError) {
	s.depth++
	if s.depth > inspMaxDepth {
		return inspArray{}, s.invalidHere(fmt.Sprintf("nesting deeper than %d", inspMaxDepth))
	}
	s.pos++ // '['
	return inspArray{}, nil
}

// element moves to the next element, or reports more == false at the end of the array.
func (s *inspScanner) element(a *inspArray) (more bool, err *ParseError) {
	s.ws()
	if s.pos >= len(s.data) {
		return false, s.syntax("unexpected end in an array")
	}
	if s.data[s.pos] == ']' {
		s.pos++
		s.depth--
		return false, nil
	}
	if a.n > 0 {
		if s.data[s.pos] != ',' {
			return false, s.syntax("expected ',' or ']'")
		}
		s.pos++
		s.ws()
	}
	a.n++
	return true, nil
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

// headers checks an MCP 2026-07-28 (or later) message against the headers that mirror it.
func (s *inspScanner) headers(m *Message, h http.Header, version string) *ParseError {
	f := &s.last
	id := m.ID
	if m.IsResponse() {
		return inspInvalid(id, "clients must not POST JSON-RPC responses in MCP "+strconv.Quote(version))
	}
	if err := inspHeaderIs(h, "Mcp-Method", m.Method, "method", id); err != nil {
		return err
	}
	switch m.Method {
	case "tools/call", "prompts/get":
		if err := inspHeaderIs(h, "Mcp-Name", m.Name, "params.name", id); err != nil {
			return err
		}
	case "resources/read":
		if err := inspHeaderIs(h, "Mcp-Name", m.URI, "params.uri", id); err != nil {
			return err
		}
	}
	if f.nearMeta != "" {
		return inspNearErr(id, "params key", f.nearMeta, "_meta")
	}
	if !f.meta.present() {
		return nil
	}
	if f.meta.kind != '{' {
		return inspInvalid(id, `"params._meta" must be an object`)
	}
	if f.nearMetaVersion != "" {
		return inspNearErr(id, "_meta key", f.nearMetaVersion, inspMetaVersion)
	}
	return nil
}

// inspNearErr refuses a key that a case-insensitive decoder would take for field.
func inspNearErr(id json.RawMessage, what, key, field string) *ParseError {
	return inspInvalid(id, fmt.Sprintf("%s %q differs from %q only in letter case", what, key, field))
}

// inspHeaderIs checks that header h[name] is there once and, decoded, equals want.
func inspHeaderIs(h http.Header, name, want, field string, id json.RawMessage) *ParseError {
	vs := h.Values(name)
	switch len(vs) {
	case 0:
		return inspMismatch(id, "missing "+name+" header")
	case 1:
	default:
		return inspMismatch(id, "more than one "+name+" header")
	}
	v, ok := inspHeaderValue(vs[0])
	if !ok {
		return inspMismatch(id, name+" header is not valid =?base64?…?= encoding")
	}
	if v != want {
		return inspMismatch(id, name+" header does not match the body's "+field)
	}
	return nil
}

// inspHeaderValue decodes a mirrored header value: plain, or =?base64?{standard base64 of
// UTF-8}?=. The base64 must be canonical (padded, no stray bits) and the text valid UTF-8.
func inspHeaderValue(v string) (string, bool) {
	const prefix, suffix = "=?base64?", "?="
	if len(v) < len(prefix)+len(suffix) || !strings.HasPrefix(v, prefix) || !strings.HasSuffix(v, suffix) {
		return v, true
	}
	b, err := base64.StdEncoding.Strict().DecodeString(v[len(prefix) : len(v)-len(suffix)])
	if err != nil || !utf8.Valid(b) || strings.ContainsAny(v, "\r\n") {
		return "", false
	}
	return string(b), true
}
