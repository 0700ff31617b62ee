package authz

// The JSON scanner under Inspect: one pass over the body that checks syntax, UTF-8 and
// escapes, and catches duplicate keys (also escaped or differing only in case) in every
// object at any depth, handing message-level fields to inspect.go as spans of the body.
// Objects, their keys and the duplicate check are in inspectkeys.go.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"strconv"
	"unicode/utf8"
)

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
