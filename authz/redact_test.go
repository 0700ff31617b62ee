package authz

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRedactArguments(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"path":"/tmp","password":"hunter2"}`, `{"password":"[redacted]","path":"/tmp"}`},
		{`{"headers":{"Authorization":"Bearer x","Accept":"a"}}`, `{"headers":{"Accept":"a","Authorization":"[redacted]"}}`},
		{`{"items":[{"api_key":"k","n":1.50}]}`, `{"items":[{"api_key":"[redacted]","n":1.50}]}`},
		{`{"AccessToken":"t","sessionId":"s","privateKey":"p"}`, `{"AccessToken":"[redacted]","privateKey":"[redacted]","sessionId":"[redacted]"}`},
		{`[1,2]`, ``},
		{`not json`, ``},
	} {
		got := string(RedactArguments(json.RawMessage(tc.in)))
		if got != tc.want {
			t.Errorf("RedactArguments(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if d := ArgumentsDigest(json.RawMessage(`{"a":1}`)); !strings.HasPrefix(d, "sha256:") || len(d) != 7+64 {
		t.Errorf("digest %q", d)
	}
	if ArgumentsDigest(nil) != "" {
		t.Error("digest of no arguments")
	}
}
