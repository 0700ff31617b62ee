package authz

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The checks of MCP 2026-07-28 (and later) requests against the Mcp-* headers that mirror
// their bodies, for Inspect.

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
