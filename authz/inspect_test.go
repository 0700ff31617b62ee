package authz

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// inspHdr builds request headers: Content-Type application/json unless given, then the
// name/value pairs (a "" value for Content-Type removes it).
func inspHdr(kv ...string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	ctGiven := false
	for i := 0; i+1 < len(kv); i += 2 {
		if strings.EqualFold(kv[i], "Content-Type") && !ctGiven {
			ctGiven = true
			h.Del("Content-Type")
		}
		if kv[i+1] != "" {
			h.Add(kv[i], kv[i+1])
		}
	}
	return h
}

// v2026 gives the headers of a well-formed MCP 2026-07-28 request, plus kv.
func v2026(method, name string, kv ...string) []string {
	out := []string{"MCP-Protocol-Version", "2026-07-28", "Mcp-Method", method}
	if name != "" {
		out = append(out, "Mcp-Name", name)
	}
	return append(out, kv...)
}

func b64(s string) string { return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?=" }

const callRead = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/tmp/x"}}}`

func TestInspectAccepts(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		hdr     []string
		want    []Message
		batch   bool
		version string
	}{
		{name: "tools/call", body: callRead,
			want: []Message{{ID: json.RawMessage(`1`), Method: "tools/call", Name: "read_file", Arguments: json.RawMessage(`{"path":"/tmp/x"}`)}}},
		{name: "whitespace around and inside",
			body: " \r\n\t{ \"jsonrpc\" : \"2.0\" , \"id\" : \"a-1\" , \"method\" : \"tools/call\" , \"params\" : { \"name\" : \"x\" , \"arguments\" : { } } } \n",
			want: []Message{{ID: json.RawMessage(`"a-1"`), Method: "tools/call", Name: "x", Arguments: json.RawMessage(`{ }`)}}},
		{name: "members in any order", body: `{"params":{"arguments":{},"name":"x"},"method":"tools/call","id":-1.5e3,"jsonrpc":"2.0"}`,
			want: []Message{{ID: json.RawMessage(`-1.5e3`), Method: "tools/call", Name: "x", Arguments: json.RawMessage(`{}`)}}},
		{name: "tools/call without arguments", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`,
			want: []Message{{ID: json.RawMessage(`1`), Method: "tools/call", Name: "x"}}},
		{name: "prompts/get", body: `{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"greet","arguments":{"who":"me"}}}`,
			want: []Message{{ID: json.RawMessage(`2`), Method: "prompts/get", Name: "greet", Arguments: json.RawMessage(`{"who":"me"}`)}}},
		{name: "resources/read", body: `{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///etc/hosts"}}`,
			want: []Message{{ID: json.RawMessage(`3`), Method: "resources/read", URI: "file:///etc/hosts"}}},
		{name: "notification without params", body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			want: []Message{{Method: "notifications/initialized"}}},
		{name: "other method, array params", body: `{"jsonrpc":"2.0","id":4,"method":"x/y","params":[1,2]}`,
			want: []Message{{ID: json.RawMessage(`4`), Method: "x/y"}}},
		{name: "other method ignores its params.name", body: `{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"name":1,"Cursor":"c"}}`,
			want: []Message{{ID: json.RawMessage(`4`), Method: "tools/list"}}},
		// A listing asks for a later page only with a non-empty string cursor; anything else
		// is taken for a first page, which replaces the tools known (the safe side).
		{name: "tools/list with a cursor", body: `{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{"cursor":"page-2"}}`,
			want: []Message{{ID: json.RawMessage(`5`), Method: "tools/list", HasCursor: true}}},
		{name: "tools/list with an escaped cursor", body: `{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{"_meta":{},"cursor":"\u0032"}}`,
			want: []Message{{ID: json.RawMessage(`5`), Method: "tools/list", HasCursor: true}}},
		{name: "tools/list without params", body: `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`,
			want: []Message{{ID: json.RawMessage(`5`), Method: "tools/list"}}},
		{name: "tools/list with an empty cursor", body: `{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{"cursor":""}}`,
			want: []Message{{ID: json.RawMessage(`5`), Method: "tools/list"}}},
		{name: "tools/list with a null cursor", body: `{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{"cursor":null}}`,
			want: []Message{{ID: json.RawMessage(`5`), Method: "tools/list"}}},
		{name: "tools/list with a number cursor", body: `{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{"cursor":2}}`,
			want: []Message{{ID: json.RawMessage(`5`), Method: "tools/list"}}},
		{name: "a nested cursor is not the cursor", body: `{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{"_meta":{"cursor":"x"}}}`,
			want: []Message{{ID: json.RawMessage(`5`), Method: "tools/list"}}},
		{name: "response with result", body: `{"jsonrpc":"2.0","id":"s1","result":{"action":"accept"}}`,
			want: []Message{{ID: json.RawMessage(`"s1"`)}}},
		{name: "error response with null id", body: `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}`,
			want: []Message{{ID: json.RawMessage(`null`)}}},
		{name: "escaped strings are decoded", body: `{"jsonrpc":"2\u002e0","id":1,"method":"tools\/call","params":{"n\u0061me":"\u00e9t\u00E9 \ud83d\ude00\n"}}`,
			want: []Message{{ID: json.RawMessage(`1`), Method: "tools/call", Name: "été 😀\n"}}},
		{name: "names are byte-exact: case", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"Delete_File"}}`,
			want: []Message{{ID: json.RawMessage(`1`), Method: "tools/call", Name: "Delete_File"}}},
		{name: "names are byte-exact: no unicode normalisation",
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"re\u0301ad_ﬁle\u200b"}}`,
			want: []Message{{ID: json.RawMessage(`1`), Method: "tools/call", Name: "re\u0301ad_ﬁle\u200b"}}},
		{name: "NUL escape in a name", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read\u0000delete"}}`,
			want: []Message{{ID: json.RawMessage(`1`), Method: "tools/call", Name: "read\x00delete"}}},
		{name: "keys that differ other than in case", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":1,"b":{"a":2},"ab":3}}}`,
			want: []Message{{ID: json.RawMessage(`1`), Method: "tools/call", Name: "x", Arguments: json.RawMessage(`{"a":1,"b":{"a":2},"ab":3}`)}}},
		{name: "batch without version header", batch: true,
			body: `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_file"}}]`,
			want: []Message{{ID: json.RawMessage(`1`), Method: "tools/call", Name: "read_file"}, {ID: json.RawMessage(`2`), Method: "tools/call", Name: "delete_file"}}},
		{name: "batch on 2025-03-26", batch: true, hdr: []string{"MCP-Protocol-Version", "2025-03-26"}, version: "2025-03-26",
			body: `[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":7,"result":{}}]`,
			want: []Message{{Method: "notifications/initialized"}, {ID: json.RawMessage(`7`)}}},
		{name: "content type with charset", hdr: []string{"Content-Type", "Application/JSON; charset=UTF-8"}, body: callRead,
			want: []Message{{ID: json.RawMessage(`1`), Method: "tools/call", Name: "read_file", Arguments: json.RawMessage(`{"path":"/tmp/x"}`)}}},
		{name: "2025-06-18 ignores Mcp headers", hdr: []string{"MCP-Protocol-Version", "2025-06-18", "Mcp-Method", "nope", "Mcp-Name", "nope"}, version: "2025-06-18",
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_META":1}}`,
			want: []Message{{ID: json.RawMessage(`1`), Method: "tools/call", Name: "x"}}},
		{name: "2026-07-28 plain headers", hdr: v2026("tools/call", "read_file"), version: "2026-07-28",
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
			want: []Message{{ID: json.RawMessage(`1`), Method: "tools/call", Name: "read_file"}}},
		{name: "2026-07-28 base64 name", hdr: v2026("tools/call", b64("lire_été")), version: "2026-07-28",
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lire_été"}}`,
			want: []Message{{ID: json.RawMessage(`1`), Method: "tools/call", Name: "lire_été"}}},
		{name: "2026-07-28 base64 of a plain name", hdr: v2026("tools/call", b64("read_file")), version: "2026-07-28",
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}`,
			want: []Message{{ID: json.RawMessage(`1`), Method: "tools/call", Name: "read_file"}}},
		{name: "2026-07-28 resources/read", hdr: v2026("resources/read", "file:///a"), version: "2026-07-28",
			body: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}`,
			want: []Message{{ID: json.RawMessage(`1`), Method: "resources/read", URI: "file:///a"}}},
		{name: "2026-07-28 tools/list needs no Mcp-Name", hdr: v2026("tools/list", ""), version: "2026-07-28",
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
			want: []Message{{ID: json.RawMessage(`1`), Method: "tools/list"}}},
		{name: "_meta version equal to an older header", hdr: []string{"MCP-Protocol-Version", "2025-11-25"}, version: "2025-11-25",
			body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25","progressToken":1}}}`,
			want: []Message{{ID: json.RawMessage(`1`), Method: "ping"}}},
		{name: "later dated version is checked like 2026-07-28", hdr: []string{"MCP-Protocol-Version", "2027-01-01", "Mcp-Method", "ping"}, version: "2027-01-01",
			body: `{"jsonrpc":"2.0","id":1,"method":"ping"}`,
			want: []Message{{ID: json.RawMessage(`1`), Method: "ping"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := Inspect([]byte(tt.body), inspHdr(tt.hdr...))
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if req.Batch != tt.batch || req.ProtocolVersion != tt.version {
				t.Errorf("Batch, ProtocolVersion = %v, %q; want %v, %q", req.Batch, req.ProtocolVersion, tt.batch, tt.version)
			}
			if !reflect.DeepEqual(req.Messages, tt.want) {
				t.Errorf("Messages =\n%s\nwant\n%s", inspDump(req.Messages), inspDump(tt.want))
			}
		})
	}
}

func inspDump(ms []Message) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "  {ID:%s Method:%q Name:%q URI:%q Arguments:%s HasCursor:%v}\n", m.ID, m.Method, m.Name, m.URI, m.Arguments, m.HasCursor)
	}
	return b.String()
}

func TestInspectRefuses(t *testing.T) {
	const (
		s400, s413, s415 = http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType
		parse, invalid   = CodeParseError, CodeInvalidRequest
		mismatch         = CodeHeaderMismatch
	)
	callNamed := func(name string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":` + name + `}}`
	}
	overLimit := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"pad":"`
	overLimit += strings.Repeat("a", DefaultMaxBody+1-len(overLimit)-len(`"}}}`)) + `"}}}`
	deep := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":` +
		strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}}}`
	manyKeys := func(dup string) string {
		var b strings.Builder
		b.WriteString(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{`)
		for i := 0; i < 100; i++ {
			fmt.Fprintf(&b, `"k%d":%d,`, i, i)
		}
		b.WriteString(`"` + dup + `":0}}}`)
		return b.String()
	}
	tests := []struct {
		name   string
		body   string
		hdr    []string
		status int
		code   int
		msg    string // a part of the message
		id     string // the ParseError's ID, "" for nil
	}{
		// Content type and size.
		{name: "no content type", body: callRead, hdr: []string{"Content-Type", ""}, status: s415, code: invalid, msg: "missing Content-Type"},
		{name: "text/plain", body: callRead, hdr: []string{"Content-Type", "text/plain"}, status: s415, code: invalid, msg: "application/json"},
		{name: "form", body: callRead, hdr: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: s415, code: invalid},
		{name: "json suffix type", body: callRead, hdr: []string{"Content-Type", "application/json-seq"}, status: s415, code: invalid},
		{name: "other charset", body: callRead, hdr: []string{"Content-Type", "application/json; charset=latin1"}, status: s415, code: invalid},
		{name: "two content types", body: callRead, hdr: []string{"Content-Type", "application/json", "Content-Type", "text/plain"}, status: s415, code: invalid, msg: "more than one"},
		{name: "body just over the limit", body: overLimit, status: s413, code: invalid},

		// Not JSON, or not one JSON value.
		{name: "empty body", body: "", status: s400, code: parse},
		{name: "only whitespace", body: " \n", status: s400, code: parse},
		{name: "not JSON", body: `jsonrpc=2.0&method=tools/call`, status: s400, code: parse},
		{name: "truncated", body: callRead[:len(callRead)-1], status: s400, code: parse},
		{name: "trailing data", body: callRead + `{}`, status: s400, code: parse, msg: "after the JSON value"},
		{name: "bad message then trailing data", body: `{"jsonrpc":"1.0","id":1,"method":"ping"} x`, status: s400, code: parse},
		{name: "bad batch element then trailing data", body: `[{"jsonrpc":"1.0","id":1,"method":"ping"},1] x`, status: s400, code: parse},
		{name: "bad batch element then bad JSON", body: `[{"jsonrpc":"1.0","id":1,"method":"ping"},x]`, status: s400, code: parse},
		{name: "first bad batch element is reported", body: `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2},{"jsonrpc":"1.0","id":3,"method":"ping"}]`,
			status: s400, code: invalid, id: "2"},
		{name: "two messages", body: callRead + "\n" + callRead, status: s400, code: parse},
		{name: "trailing comma", body: `{"jsonrpc":"2.0","method":"ping",}`, status: s400, code: parse},
		{name: "single quotes", body: `{'jsonrpc':'2.0','method':'ping'}`, status: s400, code: parse},
		{name: "comment", body: `{"jsonrpc":"2.0",/*x*/"method":"ping"}`, status: s400, code: parse},
		{name: "NaN", body: `{"jsonrpc":"2.0","id":NaN,"method":"ping"}`, status: s400, code: parse},
		{name: "leading zero", body: `{"jsonrpc":"2.0","id":01,"method":"ping"}`, status: s400, code: parse},
		{name: "bare dot number", body: `{"jsonrpc":"2.0","id":1.,"method":"ping"}`, status: s400, code: parse},
		{name: "plus number", body: `{"jsonrpc":"2.0","id":+1,"method":"ping"}`, status: s400, code: parse},
		{name: "bad literal", body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":tru}}`, status: s400, code: parse},
		{name: "raw control character in a string", body: "{\"jsonrpc\":\"2.0\",\"method\":\"pi\nng\"}", status: s400, code: parse},
		{name: "raw NUL in a string", body: "{\"jsonrpc\":\"2.0\",\"method\":\"pi\x00ng\"}", status: s400, code: parse},
		{name: "bad escape", body: `{"jsonrpc":"2.0","method":"\x"}`, status: s400, code: parse},
		{name: "short unicode escape", body: `{"jsonrpc":"2.0","method":"\u12"}`, status: s400, code: parse},
		{name: "invalid UTF-8", body: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"read\xff\"}}", status: s400, code: parse, msg: "UTF-8"},
		{name: "UTF-8 encoded surrogate", body: "{\"jsonrpc\":\"2.0\",\"method\":\"\xed\xa0\x80\"}", status: s400, code: parse, msg: "UTF-8"},
		{name: "byte order mark", body: "\xef\xbb\xbf" + callRead, status: s400, code: parse},
		{name: "lone high surrogate", body: callNamed(`"read\ud800"`), status: s400, code: invalid, msg: "surrogate"},
		{name: "lone low surrogate", body: callNamed(`"read\udc00"`), status: s400, code: invalid, msg: "surrogate"},
		{name: "reversed surrogates", body: callNamed(`"\ude00\ud83d"`), status: s400, code: invalid, msg: "surrogate"},
		{name: "high surrogate then other escape", body: callNamed(`"\ud83d\u0041"`), status: s400, code: invalid, msg: "surrogate"},
		{name: "lone surrogate in a key", body: `{"jsonrpc":"2.0","method":"ping","params":{"\ud800":1}}`, status: s400, code: invalid, msg: "surrogate"},
		{name: "too deep", body: deep, status: s400, code: invalid, msg: "nesting deeper than 64"},

		// Duplicate keys.
		{name: "duplicate name", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","name":"delete_file"}}`,
			status: s400, code: invalid, msg: `duplicate key "name"`},
		{name: "escaped duplicate name", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","n\u0061me":"delete_file"}}`,
			status: s400, code: invalid, msg: `duplicate key "name"`},
		{name: "escaped first, plain second", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"\u006eame":"read_file","name":"delete_file"}}`,
			status: s400, code: invalid, msg: `duplicate key "name"`},
		{name: "case duplicate name", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","NAME":"delete_file"}}`,
			status: s400, code: invalid, msg: `duplicate key "NAME" (same as "name" ignoring case)`},
		{name: "long s duplicate", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"safe":"/tmp","\u017fafe":"/etc"}}}`,
			status: s400, code: invalid, msg: "ignoring case"},
		{name: "Kelvin sign duplicate", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"kind":"a","` + "\u212a" + `ind":"b"}}}`,
			status: s400, code: invalid, msg: "ignoring case"},
		{name: "duplicate method", body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}`,
			status: s400, code: invalid, msg: `duplicate key "method"`},
		{name: "duplicate params", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}`,
			status: s400, code: invalid, msg: `duplicate key "params"`},
		{name: "duplicate id", body: `{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}`, status: s400, code: invalid, msg: `duplicate key "id"`},
		{name: "duplicate nested in arguments", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"opts":{"force":false,"force":true}}}}`,
			status: s400, code: invalid, msg: `duplicate key "force"`},
		{name: "duplicate deep in an array", body: `{"jsonrpc":"2.0","id":1,"method":"x","params":[[{"a":1}],[{"b":1,"b":2}]]}`,
			status: s400, code: invalid, msg: `duplicate key "b"`},
		{name: "duplicate in a large object", body: manyKeys("k7"), status: s400, code: invalid, msg: `duplicate key "k7"`},
		{name: "case duplicate in a large object", body: manyKeys("K99"), status: s400, code: invalid, msg: `(same as "k99" ignoring case)`},
		{name: "duplicate in a response", body: `{"jsonrpc":"2.0","id":1,"result":{"a":1,"a":2}}`, status: s400, code: invalid, msg: "duplicate"},
		{name: "duplicate in a batch element", body: `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a","name":"b"}}]`,
			status: s400, code: invalid, msg: "duplicate"},

		// Keys a case-insensitive decoder would take for the fields read.
		{name: "Method", body: `{"jsonrpc":"2.0","id":1,"Method":"tools/call","result":{}}`, status: s400, code: invalid, msg: `differs from "method"`},
		{name: "PARAMS", body: `{"jsonrpc":"2.0","id":1,"method":"ping","PARAMS":{}}`, status: s400, code: invalid, msg: `differs from "params"`},
		{name: "NAME only", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"x"}}`, status: s400, code: invalid, msg: `differs from "name"`, id: "1"},
		{name: "Arguments", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","Arguments":{"path":"/etc"}}}`,
			status: s400, code: invalid, msg: `differs from "arguments"`, id: "1"},
		{name: "URI", body: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"URI":"file:///etc/shadow"}}`, status: s400, code: invalid, msg: `differs from "uri"`, id: "1"},

		// Batches.
		{name: "empty batch", body: `[]`, status: s400, code: invalid, msg: "empty batch"},
		{name: "batch of a number", body: `[1]`, status: s400, code: invalid, msg: "not an object"},
		{name: "batch with a non-object", body: `[{"jsonrpc":"2.0","method":"ping"},"x"]`, status: s400, code: invalid, msg: "batch element 1"},
		{name: "nested batch", body: `[[{"jsonrpc":"2.0","method":"ping"}]]`, status: s400, code: invalid},
		{name: "batch on 2025-06-18", hdr: []string{"MCP-Protocol-Version", "2025-06-18"}, body: `[{"jsonrpc":"2.0","method":"ping"}]`, status: s400, code: invalid, msg: "batches are not allowed"},
		{name: "batch on 2025-11-25", hdr: []string{"MCP-Protocol-Version", "2025-11-25"}, body: `[{"jsonrpc":"2.0","method":"ping"}]`, status: s400, code: invalid},
		{name: "batch on 2026-07-28", hdr: v2026("tools/call", "read_file"), body: `[` + callRead + `]`, status: s400, code: invalid},
		{name: "two version headers", hdr: []string{"MCP-Protocol-Version", "2025-03-26", "MCP-Protocol-Version", "2025-06-18"}, body: callRead, status: s400, code: invalid},
		{name: "scalar body", body: `"tools/call"`, status: s400, code: invalid},
		{name: "null body", body: `null`, status: s400, code: invalid},

		// Message shape.
		{name: "no jsonrpc", body: `{"id":1,"method":"ping"}`, status: s400, code: invalid, msg: `"jsonrpc"`, id: "1"},
		{name: "jsonrpc 1.0", body: `{"jsonrpc":"1.0","id":1,"method":"ping"}`, status: s400, code: invalid, id: "1"},
		{name: "jsonrpc number", body: `{"jsonrpc":2.0,"id":1,"method":"ping"}`, status: s400, code: invalid, id: "1"},
		{name: "method number", body: `{"jsonrpc":"2.0","id":1,"method":1}`, status: s400, code: invalid, id: "1"},
		{name: "empty method", body: `{"jsonrpc":"2.0","id":1,"method":""}`, status: s400, code: invalid, id: "1"},
		{name: "null id", body: `{"jsonrpc":"2.0","id":null,"method":"ping"}`, status: s400, code: invalid, msg: `"id"`, id: "null"},
		{name: "bool id", body: `{"jsonrpc":"2.0","id":true,"method":"ping"}`, status: s400, code: invalid, id: "true"},
		{name: "object id", body: `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, status: s400, code: invalid},
		{name: "array id", body: `{"jsonrpc":"2.0","id":[1],"method":"ping"}`, status: s400, code: invalid},
		{name: "request with result", body: `{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`, status: s400, code: invalid, id: "1"},
		{name: "neither request nor response", body: `{"jsonrpc":"2.0","id":1}`, status: s400, code: invalid, id: "1"},
		{name: "response with result and error", body: `{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}`, status: s400, code: invalid, id: "1"},
		{name: "response without id", body: `{"jsonrpc":"2.0","result":{}}`, status: s400, code: invalid},
		{name: "result response with null id", body: `{"jsonrpc":"2.0","id":null,"result":{}}`, status: s400, code: invalid},
		{name: "response with params", body: `{"jsonrpc":"2.0","id":1,"result":{},"params":{}}`, status: s400, code: invalid},
		{name: "error not an object", body: `{"jsonrpc":"2.0","id":1,"error":"x"}`, status: s400, code: invalid},
		{name: "string params", body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}`, status: s400, code: invalid},
		{name: "null params", body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":null}`, status: s400, code: invalid},
		{name: "tools/call without params", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, status: s400, code: invalid, id: "1"},
		{name: "tools/call array params", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["delete_file"]}`, status: s400, code: invalid},
		{name: "tools/call without name", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}`, status: s400, code: invalid, msg: "params.name"},
		{name: "tools/call number name", body: callNamed(`1`), status: s400, code: invalid},
		{name: "tools/call null name", body: callNamed(`null`), status: s400, code: invalid},
		{name: "tools/call object name", body: callNamed(`{"name":"x"}`), status: s400, code: invalid},
		{name: "tools/call empty name", body: callNamed(`""`), status: s400, code: invalid},
		{name: "tools/call array arguments", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":["/etc"]}}`, status: s400, code: invalid, msg: "arguments"},
		{name: "tools/call null arguments", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":null}}`, status: s400, code: invalid},
		{name: "prompts/get without name", body: `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{}}`, status: s400, code: invalid},
		{name: "resources/read without uri", body: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"x"}}`, status: s400, code: invalid},
		{name: "resources/read number uri", body: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":5}}`, status: s400, code: invalid},

		// MCP 2026-07-28 header/body agreement.
		{name: "2026 missing Mcp-Method", hdr: []string{"MCP-Protocol-Version", "2026-07-28", "Mcp-Name", "read_file"}, body: callRead,
			status: s400, code: mismatch, msg: "missing Mcp-Method", id: "1"},
		{name: "2026 wrong Mcp-Method", hdr: v2026("tools/list", "read_file"), body: callRead, status: s400, code: mismatch, msg: "Mcp-Method", id: "1"},
		{name: "2026 Mcp-Method differs in case", hdr: v2026("Tools/Call", "read_file"), body: callRead, status: s400, code: mismatch, msg: "Mcp-Method"},
		{name: "2026 missing Mcp-Name", hdr: v2026("tools/call", ""), body: callRead, status: s400, code: mismatch, msg: "missing Mcp-Name"},
		{name: "2026 wrong Mcp-Name", hdr: v2026("tools/call", "list_files"), body: callRead, status: s400, code: mismatch, msg: "Mcp-Name", id: "1"},
		{name: "2026 Mcp-Name differs in case", hdr: v2026("tools/call", "Read_File"), body: callRead, status: s400, code: mismatch, msg: "Mcp-Name"},
		{name: "2026 two Mcp-Name headers", hdr: v2026("tools/call", "read_file", "Mcp-Name", "delete_file"), body: callRead, status: s400, code: mismatch, msg: "more than one Mcp-Name"},
		{name: "2026 base64 of another name", hdr: v2026("tools/call", b64("delete_file")), body: callRead, status: s400, code: mismatch, msg: "Mcp-Name"},
		{name: "2026 bad base64", hdr: v2026("tools/call", "=?base64?cmVhZF9maWxl!?="), body: callRead, status: s400, code: mismatch, msg: "base64"},
		{name: "2026 unpadded base64", hdr: v2026("tools/call", "=?base64?cmVhZF9maWxlMQ?="),
			body: callNamed(`"read_file1"`), status: s400, code: mismatch, msg: "base64"},
		{name: "2026 base64 of invalid UTF-8", hdr: v2026("tools/call", "=?base64?/w==?="), body: callRead, status: s400, code: mismatch, msg: "base64"},
		{name: "2026 raw UTF-8 name differs", hdr: v2026("tools/call", "été"), body: callNamed(`"ete"`), status: s400, code: mismatch},
		{name: "2026 resources/read wrong Mcp-Name", hdr: v2026("resources/read", "file:///tmp/a"),
			body: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/shadow"}}`, status: s400, code: mismatch, msg: "params.uri"},
		{name: "2026 prompts/get wrong Mcp-Name", hdr: v2026("prompts/get", "a"),
			body: `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"b"}}`, status: s400, code: mismatch},
		{name: "2026 _meta version differs", hdr: v2026("tools/call", "read_file"),
			body:   `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","_meta":{"io.modelcontextprotocol/protocolVersion":"2025-06-18"}}}`,
			status: s400, code: mismatch, msg: "MCP-Protocol-Version"},
		{name: "2026 _meta version not a string", hdr: v2026("ping", ""),
			body:   `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":20260728}}}`,
			status: s400, code: mismatch},
		{name: "2026 _meta version key in other case", hdr: v2026("ping", ""),
			body:   `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolversion":"2025-06-18"}}}`,
			status: s400, code: invalid, msg: "letter case"},
		{name: "2026 _meta not an object", hdr: v2026("ping", ""), body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":[]}}`, status: s400, code: invalid},
		{name: "2026 _META", hdr: v2026("ping", ""), body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_META":{}}}`, status: s400, code: invalid},
		{name: "2026 _meta with no version header", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
			status: s400, code: mismatch, msg: "MCP-Protocol-Version", id: "1"},
		{name: "2026 _meta with an older header", hdr: []string{"MCP-Protocol-Version", "2025-11-25"},
			body:   `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
			status: s400, code: mismatch},
		{name: "2026 _meta in a batch element", body: `[{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}]`,
			status: s400, code: mismatch, id: "2"},
		{name: "2026 response", hdr: v2026("", ""), body: `{"jsonrpc":"2.0","id":1,"result":{}}`, status: s400, code: invalid, msg: "responses"},
		{name: "2026 notification needs Mcp-Method", hdr: []string{"MCP-Protocol-Version", "2026-07-28"}, body: `{"jsonrpc":"2.0","method":"notifications/cancelled"}`,
			status: s400, code: mismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := Inspect([]byte(tt.body), inspHdr(tt.hdr...))
			if err == nil {
				t.Fatalf("Inspect accepted it: %s", inspDump(req.Messages))
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v, want *ParseError", err, err)
			}
			if pe.Status != tt.status || pe.Code != tt.code {
				t.Errorf("Status, Code = %d, %d; want %d, %d (%s)", pe.Status, pe.Code, tt.status, tt.code, pe.Message)
			}
			if !strings.Contains(pe.Message, tt.msg) {
				t.Errorf("Message %q does not contain %q", pe.Message, tt.msg)
			}
			if tt.id != "" && string(pe.ID) != tt.id {
				t.Errorf("ID = %s, want %s", pe.ID, tt.id)
			}
			if pe.Error() == "" {
				t.Error("empty Error()")
			}
		})
	}
}

// TestInspectBatchHidesNothing: a batch is every one of its messages, so a write call hidden
// behind a read call is seen and decided.
func TestInspectBatchHidesNothing(t *testing.T) {
	body := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"a"}}},` +
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}},` +
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/etc/passwd"}}}]`
	req, err := Inspect([]byte(body), inspHdr())
	if err != nil {
		t.Fatal(err)
	}
	if !req.Batch || len(req.Messages) != 3 {
		t.Fatalf("Batch %v, %d messages; want a batch of 3", req.Batch, len(req.Messages))
	}
	if got := req.Messages[2]; got.Name != "write_file" || string(got.ID) != "2" || string(got.Arguments) != `{"path":"/etc/passwd"}` {
		t.Errorf("hidden call read as %+v", got)
	}
}

// TestInspectAtTheLimit: a body of exactly DefaultMaxBody bytes is read; one byte more is not.
func TestInspectAtTheLimit(t *testing.T) {
	head := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"pad":"`
	tail := `"}}}`
	body := head + strings.Repeat("a", DefaultMaxBody-len(head)-len(tail)) + tail
	if _, err := Inspect([]byte(body), inspHdr()); err != nil {
		t.Fatalf("%d bytes: %v", len(body), err)
	}
	_, err := Inspect([]byte(body+" "), inspHdr())
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("%d bytes: %v, want 413", len(body)+1, err)
	}
}

// TestInspectDepth: 64 levels are read, 65 are not (the message object is level 1).
func TestInspectDepth(t *testing.T) {
	nest := func(levels int) string { // the message, params and arguments are 3 levels
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":` +
			strings.Repeat("[", levels-3) + strings.Repeat("]", levels-3) + `}}}`
	}
	if _, err := Inspect([]byte(nest(64)), inspHdr()); err != nil {
		t.Fatalf("64 levels: %v", err)
	}
	if _, err := Inspect([]byte(nest(65)), inspHdr()); err == nil {
		t.Fatal("65 levels accepted")
	}
	// Very deep input is refused without deep recursion.
	if _, err := Inspect([]byte(strings.Repeat("[", 100000)), inspHdr()); err == nil {
		t.Fatal("deep brackets accepted")
	}
}

// TestInspectAgreesWithEncodingJSON: whatever Inspect accepts, encoding/json reads the same
// method, name, uri, arguments and id from, whether into a struct (case-insensitive keys,
// the last duplicate wins) or a map.
func TestInspectAgreesWithEncodingJSON(t *testing.T) {
	for _, body := range inspSeeds {
		inspAgree(t, []byte(body.body), inspHdr(body.hdr...))
	}
}

// inspAgree checks Inspect's result against encoding/json's reading of the same body.
func inspAgree(t *testing.T, body []byte, h http.Header) {
	t.Helper()
	req, err := Inspect(body, h)
	if err != nil {
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Fatalf("error %T %v, want *ParseError", err, err)
		}
		if pe.Status < 400 || pe.Status > 499 {
			t.Fatalf("status %d for %v", pe.Status, err)
		}
		switch pe.Code {
		case CodeParseError, CodeInvalidRequest, CodeHeaderMismatch:
		default:
			t.Fatalf("code %d for %v", pe.Code, err)
		}
		return
	}
	if !json.Valid(body) {
		t.Fatalf("accepted a body encoding/json finds invalid: %q", body)
	}
	type wireParams struct {
		Name      string          `json:"name"`
		URI       string          `json:"uri"`
		Arguments json.RawMessage `json:"arguments"`
	}
	type wire struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	var ws []wire
	var maps []map[string]any
	if req.Batch {
		if err := json.Unmarshal(body, &ws); err != nil {
			t.Fatalf("encoding/json: %v for %q", err, body)
		}
		if err := inspDecodeNumbers(body, &maps); err != nil {
			t.Fatalf("encoding/json: %v for %q", err, body)
		}
	} else {
		var w wire
		var m map[string]any
		if err := json.Unmarshal(body, &w); err != nil {
			t.Fatalf("encoding/json: %v for %q", err, body)
		}
		if err := inspDecodeNumbers(body, &m); err != nil {
			t.Fatalf("encoding/json: %v for %q", err, body)
		}
		ws, maps = []wire{w}, []map[string]any{m}
	}
	if len(ws) != len(req.Messages) {
		t.Fatalf("%d messages, encoding/json reads %d, for %q", len(req.Messages), len(ws), body)
	}
	for i, m := range req.Messages {
		w := ws[i]
		if m.Method != w.Method || string(m.ID) != string(w.ID) {
			t.Fatalf("message %d: method %q id %s; encoding/json: %q %s; body %q", i, m.Method, m.ID, w.Method, w.ID, body)
		}
		if mm, _ := maps[i]["method"].(string); mm != m.Method {
			t.Fatalf("message %d: method %q; encoding/json map: %q; body %q", i, m.Method, mm, body)
		}
		if m.Method != "tools/call" && m.Method != "prompts/get" && m.Method != "resources/read" {
			continue
		}
		var p wireParams
		if err := json.Unmarshal(w.Params, &p); err != nil {
			t.Fatalf("encoding/json params: %v for %q", err, body)
		}
		pm, _ := maps[i]["params"].(map[string]any)
		if m.Method == "resources/read" {
			if mu, _ := pm["uri"].(string); m.URI != p.URI || m.URI != mu {
				t.Fatalf("message %d: uri %q; encoding/json: %q, map %q; body %q", i, m.URI, p.URI, mu, body)
			}
			continue
		}
		if mn, _ := pm["name"].(string); m.Name != p.Name || m.Name != mn {
			t.Fatalf("message %d: name %q; encoding/json: %q, map %q; body %q", i, m.Name, p.Name, mn, body)
		}
		// Re-encoding the name gives back the same string.
		enc, _ := json.Marshal(m.Name)
		var back string
		if err := json.Unmarshal(enc, &back); err != nil || back != p.Name {
			t.Fatalf("message %d: name %q re-encoded as %s reads back as %q", i, m.Name, enc, back)
		}
		if string(m.Arguments) != string(p.Arguments) {
			t.Fatalf("message %d: arguments %s; encoding/json: %s; body %q", i, m.Arguments, p.Arguments, body)
		}
	}
}

// inspDecodeNumbers decodes with numbers kept as json.Number (1e999 is a valid id).
func inspDecodeNumbers(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	return d.Decode(v)
}

// inspSeeds are tricky bodies, shared by the agreement test and the fuzz seeds.
var inspSeeds = []struct {
	body string
	hdr  []string
}{
	{body: callRead},
	{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","name":"delete_file"}}`},
	{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","n\u0061me":"delete_file"}}`},
	{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","NAME":"delete_file"}}`},
	{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"delete_file"}}`},
	{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"safe":"a","\u017fafe":"b"}}}`},
	{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":{"b":1,"b":2}}}}`},
	{body: `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_file"}}]`},
	{body: `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}]`, hdr: []string{"MCP-Protocol-Version", "2025-06-18"}},
	{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read\ud800"}}`},
	{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\ud83d\ude00\u0000\"\\\/\b\f\n\r\t"}}`},
	{body: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"read\xff\"}}"},
	{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"Delete_File"}}`},
	{body: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a","URI":"file:///b"}}`},
	{body: `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","arguments":{"k":"v"}}}`},
	{body: `{"jsonrpc":"2.0","id":"s","result":{}}`},
	{body: callRead + `{}`},
	{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}`, hdr: v2026("tools/call", "delete_file")},
	{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"été"}}`, hdr: v2026("tools/call", "=?base64?w6l0w6k=?=")},
	{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, hdr: v2026("tools/call", "x")},
	{body: `{"jsonrpc":"2.0","id":1e999,"method":"tools/call","params":{"arguments":{},"name":"x"},"x":[[[{}]]]}`},
	{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"Params":{"name":"y"}}`},
}

func TestParseErrorError(t *testing.T) {
	e := &ParseError{Status: 400, Code: CodeInvalidRequest, Message: `duplicate key "name"`}
	if got := e.Error(); !strings.Contains(got, `duplicate key "name"`) || !strings.Contains(got, "400") {
		t.Errorf("Error() = %q", got)
	}
}

// inspBenchBody is a tools/call body of about size bytes.
func inspBenchBody(size int) []byte {
	head := `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/home/user/project/notes.md","mode":"overwrite","create":true,"content":"`
	tail := `"},"_meta":{"progressToken":"tok-42"}}}`
	var b strings.Builder
	b.WriteString(head)
	line := `Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n`
	for b.Len()+len(tail)+len(line) <= size {
		b.WriteString(line)
	}
	b.WriteString(strings.Repeat("x", size-b.Len()-len(tail)))
	b.WriteString(tail)
	return []byte(b.String())
}

func BenchmarkInspect(b *testing.B) {
	h := inspHdr("MCP-Protocol-Version", "2025-06-18")
	for _, size := range []int{1 << 10, 64 << 10} {
		body := inspBenchBody(size)
		if _, err := Inspect(body, h); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := Inspect(body, h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
