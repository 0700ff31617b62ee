package data

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"
)

// The audit record's encoding, written by hand. It produces exactly the bytes json.Marshal
// produced for auditRecord (the tests compare the two, and fuzz them), so the stored format,
// its version and every reader (QueryAudit, `toolgate audit list`, the JSON lines export) are
// unchanged, and no record written before needs a migration. What it saves is the writer's
// time: json.Marshal walked the struct by reflection and allocated per record, which was most
// of the ~4 µs a record cost to commit; this is one pass appending to a buffer the writer
// reuses from batch to batch.
//
// When auditRecord changes, this changes with it: TestAppendAuditMatchesMarshal fails on any
// field the two disagree on.

// errAuditYear is the error json.Marshal gave for a time RFC 3339 cannot carry.
var errAuditYear = errors.New("encode audit record: time: year outside of range [0,9999]")

// appendAudit appends r's stored form to dst. Args that are not valid JSON are left out, and
// argsDropped says so: the rest of the record is worth more than failing it whole. On error
// dst comes back as it was.
func appendAudit(dst []byte, r AuditRecord) (out []byte, argsDropped bool, err error) {
	t := r.Time.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return dst, false, errAuditYear
	}
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, recordVersion, 10)
	dst = append(dst, `,"time":"`...)
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","kind":`...)
	dst = appendJSONString(dst, r.Kind)
	dst = appendJSONField(dst, `,"user":`, r.User)
	dst = appendJSONField(dst, `,"client":`, r.Client)
	dst = appendJSONField(dst, `,"client_name":`, r.ClientName)
	dst = appendJSONField(dst, `,"tunnel":`, r.Tunnel)
	dst = appendJSONField(dst, `,"owner":`, r.Owner)
	dst = appendJSONField(dst, `,"method":`, r.Method)
	dst = appendJSONField(dst, `,"tool":`, r.Tool)
	dst = appendJSONField(dst, `,"class":`, r.Class)
	dst = appendJSONField(dst, `,"decision":`, r.Decision)
	dst = appendJSONField(dst, `,"rule":`, r.Rule)
	if r.Status != 0 {
		dst = strconv.AppendInt(append(dst, `,"status":`...), int64(r.Status), 10)
	}
	if r.Latency != 0 {
		dst = strconv.AppendInt(append(dst, `,"latency_ns":`...), int64(r.Latency), 10)
	}
	if r.Bytes != 0 {
		dst = strconv.AppendInt(append(dst, `,"bytes":`...), r.Bytes, 10)
	}
	dst = appendJSONField(dst, `,"args_digest":`, r.ArgsDigest)
	if len(r.Args) > 0 {
		var ok bool
		if dst, ok = appendRawJSON(append(dst, `,"args":`...), r.Args); !ok {
			dst, argsDropped = dst[:len(dst)-len(`,"args":`)], true
		}
	}
	dst = appendJSONField(dst, `,"source_ip":`, r.SourceIP)
	dst = appendJSONField(dst, `,"detail":`, r.Detail)
	dst = append(dst, '}')
	return dst, argsDropped, nil
}

// appendJSONField appends key and s, unless s is empty (omitempty).
func appendJSONField(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	return appendJSONString(append(dst, key...), s)
}

// appendRawJSON appends raw compacted, as json.Marshal writes a json.RawMessage, and reports
// false (dst unchanged) if raw is not valid JSON. json.Compact leaves <, >, & and U+2028/9 in
// strings as they are, where json.Marshal escapes them; arguments with any of those bytes go
// through json.Marshal itself, so the output stays byte for byte what it was. (Args are only
// there when the operator keeps arguments, so this is not the common path.)
func appendRawJSON(dst, raw []byte) ([]byte, bool) {
	if !needsHTMLEscape(raw) {
		// Compact appends to the buffer's own slice, dst, and writes nothing on error.
		b := bytes.NewBuffer(dst)
		if err := json.Compact(b, raw); err != nil {
			return dst, false
		}
		return b.Bytes(), true
	}
	m, err := json.Marshal(json.RawMessage(raw))
	if err != nil {
		return dst, false
	}
	return append(dst, m...), true
}

// needsHTMLEscape reports whether b has a byte json.Marshal would escape in a string and
// json.Compact would not: <, >, & and the first byte of U+2028 and U+2029 (0xE2; a false
// positive only costs the slower path).
func needsHTMLEscape(b []byte) bool {
	for _, c := range b {
		switch c {
		case '<', '>', '&', 0xE2:
			return true
		}
	}
	return false
}

const jsonHex = "0123456789abcdef"

// appendJSONString appends s as a JSON string the way json.Marshal does: HTML-safe (<, > and
// & escaped), invalid UTF-8 replaced by U+FFFD, U+2028 and U+2029 escaped, the short escapes
// \b \f \n \r \t and \u00XX for other control characters.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', jsonHex[c>>4], jsonHex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', jsonHex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
