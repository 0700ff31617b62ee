package authz

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// inspSame fails unless an Inspector that has already inspected other bodies reads body
// exactly as a fresh Inspect does: same Request, or same error.
func inspSame(t *testing.T, in *Inspector, body []byte, h http.Header) {
	t.Helper()
	want, wantErr := Inspect(body, h)
	got, err := in.Inspect(body, h)
	if !reflect.DeepEqual(err, wantErr) {
		t.Fatalf("reused Inspector: error %v, fresh: %v (body %q)", err, wantErr, body)
	}
	if err != nil {
		return
	}
	// Messages beyond their length may differ in capacity, never in content.
	if !reflect.DeepEqual(*got, *want) && !(len(got.Messages) == len(want.Messages) &&
		reflect.DeepEqual(got.Messages, want.Messages) && got.Batch == want.Batch && got.ProtocolVersion == want.ProtocolVersion) {
		t.Fatalf("reused Inspector:\n%+v\nfresh:\n%+v", got, want)
	}
}

func TestInspectorReuse(t *testing.T) {
	json := inspHdr()
	v0326 := inspHdr("MCP-Protocol-Version", "2025-03-26")
	// Forty keys, escaped and folded ones among them: past the key stack's array, into the
	// arena and the hashed lookup.
	var many strings.Builder
	for i := range 40 {
		fmt.Fprintf(&many, `"k\u00e9%d":%d,`, i, i)
	}
	long := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"n","arguments":{` + many.String() + `"Z":0}}}`
	dupLong := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"n","arguments":{` + many.String() + `"K\u00c97":0}}}`
	var in Inspector
	// One Inspector through every kind of body in turn: batches after single messages and the
	// other way round, refusals in between, escaped keys that use the arena.
	for i, tc := range []struct {
		body string
		h    http.Header
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write_file","arguments":{"p":"x"}}}`, json},
		{`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","method":"notifications/initialized"}]`, v0326},
		{`{"jsonrpc":"2.0","id":"s","method":"resources/read","params":{"uri":"file:///x"}}`, json},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","n\u0061me":"b"}}`, json},
		{`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, v0326},
		{`{"jsonrpc":"2.0","id":1,"result":{}}`, json},
		{long, json},
		{dupLong, json},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\u0077rite"}}`, json},
		{`not json`, json},
		{`{"jsonrpc":"2.0","id":7,"method":"prompts/get","params":{"name":"p","arguments":{}}}`, json},
	} {
		inspSame(t, &in, []byte(tc.body), tc.h)
		if t.Failed() {
			t.Fatalf("body %d", i)
		}
	}
}

// BenchmarkInspector is BenchmarkInspect with one Inspector reused, as the proxy does: what
// is left to allocate is the names that are not common methods (here "write_file").
func BenchmarkInspector(b *testing.B) {
	h := inspHdr("MCP-Protocol-Version", "2025-06-18")
	for _, size := range []int{1 << 10, 64 << 10} {
		body := inspBenchBody(size)
		var in Inspector
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := in.Inspect(body, h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
