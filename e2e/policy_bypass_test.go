package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPolicyBypassAttempts: requests crafted to slip a write or destructive call past the
// policy, each from a user the tunnel is shared with (who may call read tools only). Every one
// is refused by toolgate and none reaches the server: its call counts stay at zero.
func TestPolicyBypassAttempts(t *testing.T) {
	in := startOAuth(t, "--max-body", "4096", "--body-timeout", "1s")
	ns := startNotesServer(t)
	mcpURL := policyTunnel(t, in, "owner@e2e.test", ns, "share=friend@e2e.test")
	friend := in.signIn(t, "friend@e2e.test")
	cs := policyClient(t, in, friend, mcpURL)
	toolNames(t, cs) // toolgate learns the classes from this listing
	access, _ := tokenFor(t, in, friend, mcpURL)

	call := `{"jsonrpc":"2.0","id":%ID%,"method":"tools/call","params":{"name":"%NAME%","arguments":{}}}`
	msg := func(id, name string) string {
		return strings.NewReplacer("%ID%", id, "%NAME%", name).Replace(call)
	}
	for _, tc := range []struct {
		name       string
		body       string
		header     []string
		wantStatus int
		wantCode   int // JSON-RPC error code; 0: don't check
	}{
		{name: "batch hiding a write call", body: "[" + msg("1", "read_notes") + "," + msg("2", "write_note") + "]",
			wantStatus: 200, wantCode: -31403},
		{name: "duplicate name keys", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_notes","name":"write_note"}}`,
			wantStatus: 400, wantCode: -32600},
		{name: "escaped duplicate key", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_notes","n\u0061me":"delete_all"}}`,
			wantStatus: 400, wantCode: -32600},
		{name: "case-folded duplicate key", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_notes","NAME":"delete_all"}}`,
			wantStatus: 400, wantCode: -32600},
		{name: "body just over the limit", body: msg("1", "read_notes")[:60] + strings.Repeat(" ", 4096) + `"x"}}`,
			wantStatus: 413},
		{name: "not JSON", body: `tools/call delete_all`, wantStatus: 400, wantCode: -32700},
		{name: "wrong content type", body: msg("1", "delete_all"), header: []string{"Content-Type", "text/plain"}, wantStatus: 415},
		{name: "unknown tool", body: msg("1", "drop_database"), wantStatus: 200, wantCode: -31403},
		{name: "case trick in the tool name", body: msg("1", "Read_Notes"), wantStatus: 200, wantCode: -31403},
		{name: "lookalike tool name", body: msg("1", "read_notes\u200b"), wantStatus: 200, wantCode: -31403},
		{name: "2026-07-28 header disagrees with the body", body: msg("1", "delete_all"),
			header:     []string{"MCP-Protocol-Version", "2026-07-28", "Mcp-Method", "tools/call", "Mcp-Name", "read_notes"},
			wantStatus: 400, wantCode: -32020},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", mcpURL, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Authorization", "Bearer "+access)
			for i := 0; i+1 < len(tc.header); i += 2 {
				req.Header.Set(tc.header[i], tc.header[i+1])
			}
			resp, err := in.client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %s, want %d: %s", resp.Status, tc.wantStatus, body)
			}
			if tc.wantCode != 0 {
				var one struct {
					Error struct{ Code int } `json:"error"`
				}
				var many []struct {
					Error struct{ Code int } `json:"error"`
				}
				if json.Unmarshal(body, &one) != nil || one.Error.Code == 0 {
					if json.Unmarshal(body, &many) != nil || len(many) == 0 {
						t.Fatalf("not a JSON-RPC error: %s", body)
					}
					one = many[len(many)-1]
				}
				if one.Error.Code != tc.wantCode {
					t.Errorf("JSON-RPC code %d, want %d: %s", one.Error.Code, tc.wantCode, body)
				}
			}
		})
	}
	t.Run("body trickled past --body-timeout", func(t *testing.T) {
		// Half a destructive call, then nothing: toolgate answers 408 and forwards nothing,
		// rather than hold the connection for as long as the client likes.
		pipe, send := io.Pipe()
		defer send.Close()
		bound := time.AfterFunc(10*time.Second, func() { send.CloseWithError(errors.New("the test's bound")) })
		defer bound.Stop()
		go io.WriteString(send, msg("1", "delete_all")[:40]) //nolint:errcheck
		req, _ := http.NewRequest("POST", mcpURL, pipe)
		req.ContentLength = int64(len(msg("1", "delete_all")))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+access)
		start := time.Now()
		resp, err := in.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "did not arrive within 1s") {
			t.Fatalf("status %s: %s", resp.Status, body)
		}
		if took := time.Since(start); took < time.Second {
			t.Fatalf("408 after %v", took)
		}
	})
	for _, tool := range []string{"write_note", "delete_all"} {
		if n := ns.count(tool); n != 0 {
			t.Errorf("%s reached the server %d times", tool, n)
		}
	}
}
