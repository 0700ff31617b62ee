package authz

import (
	"net/http"
	"testing"
)

// FuzzInspect: Inspect never panics; what it refuses is refused with a *ParseError and a 4xx
// status; what it accepts, encoding/json reads the same way (method, id, params.name,
// params.uri, params.arguments), so the server cannot see another request than the one
// decided. One Inspector, reused across the inputs, reads each the way a fresh one does.
func FuzzInspect(f *testing.F) {
	for _, s := range inspSeeds {
		h := inspHdr(s.hdr...)
		f.Add([]byte(s.body), h.Get("Content-Type"), h.Get("Mcp-Protocol-Version"), h.Get("Mcp-Method"), h.Get("Mcp-Name"))
	}
	f.Add([]byte(`[]`), "application/json", "", "", "")
	f.Add([]byte(`{"jsonrpc":"2.0","method":"ping"}`), "text/plain", "", "", "")
	f.Add([]byte(`{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}`), "application/json; charset=utf-8", "2025-03-26", "", "")
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}`), "application/json", "2026-07-28", "resources/read", "file:///x")
	var reused Inspector
	f.Fuzz(func(t *testing.T, body []byte, ct, version, method, name string) {
		h := http.Header{}
		for k, v := range map[string]string{"Content-Type": ct, "Mcp-Protocol-Version": version, "Mcp-Method": method, "Mcp-Name": name} {
			if v != "" {
				h.Set(k, v)
			}
		}
		inspAgree(t, body, h)
		inspSame(t, &reused, body, h)
	})
}
