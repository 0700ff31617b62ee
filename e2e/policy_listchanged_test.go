package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestPolicyToolsListChanged: the server re-annotates its tools while a shared user is
// connected: read_notes from read to destructive (no hints), write_note from write to read.
// The Go SDK server tells connected sessions with notifications/tools/list_changed; toolgate
// sees it pass and forgets the tunnel's classes before the client gets it. So the shared
// user's next call of read_notes is denied without reaching the server, as is write_note's
// (unknown, hence destructive) until the client lists the tools again. After that listing the
// user sees write_note and not read_notes, and may call write_note.
//
// The notification reaches the client one way per protocol revision: on the standalone GET
// stream up to 2025-11-25, in the POST response stream of subscriptions/listen from
// 2026-07-28 (which the SDK serves only statelessly).
func TestPolicyToolsListChanged(t *testing.T) {
	in := startOAuth(t)
	for _, version := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(version, func(t *testing.T) {
			ns := startNotesServerWith(t, &mcp.StreamableHTTPOptions{Stateless: version >= "2026-07-28"})
			mcpURL := policyTunnel(t, in, "owner@e2e.test", ns, "share=friend@e2e.test")
			changed := make(chan struct{}, 16)
			friend := policyClientWith(t, in, in.signIn(t, "friend@e2e.test"), mcpURL,
				&mcp.ClientOptions{ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
					select {
					case changed <- struct{}{}:
					default:
					}
				}},
				&mcp.ClientSessionOptions{ProtocolVersion: version})
			if v := friend.InitializeResult().ProtocolVersion; v != version {
				t.Fatalf("negotiated %s, want %s", v, version)
			}
			if got := toolNames(t, friend); !slices.Equal(got, []string{"read_notes"}) {
				t.Fatalf("the shared user's tools/list: %v, want only read_notes", got)
			}
			call := func(tool string) error {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				res, err := friend.CallTool(ctx, &mcp.CallToolParams{Name: tool})
				if err == nil && res.IsError {
					t.Fatalf("%s failed in the server: %+v", tool, res)
				}
				return err
			}
			if err := call("read_notes"); err != nil {
				t.Fatalf("calling read_notes before the change: %v", err)
			}

			yes := true
			ns.setTool(&mcp.Tool{Name: "read_notes", Description: "now destructive: no hints"})
			ns.setTool(&mcp.Tool{Name: "write_note", Description: "now read", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: yes}})
			select {
			case <-changed:
			case <-time.After(20 * time.Second):
				t.Fatal("the client never got notifications/tools/list_changed")
			}

			// The client has the notification but has not listed again.
			reads, writes := ns.count("read_notes"), ns.count("write_note")
			for _, tool := range []string{"read_notes", "write_note"} {
				if err := call(tool); err == nil || !strings.Contains(err.Error(), `rule "default"`) {
					t.Errorf("calling %s after the change, before listing again: %v; want a denial", tool, err)
				}
			}
			if ns.count("read_notes") != reads || ns.count("write_note") != writes {
				t.Errorf("denied calls reached the server: read_notes %d → %d, write_note %d → %d",
					reads, ns.count("read_notes"), writes, ns.count("write_note"))
			}

			// Listing again teaches toolgate the new classes, and the filter applies them.
			if got := toolNames(t, friend); !slices.Equal(got, []string{"write_note"}) {
				t.Errorf("the shared user's tools/list after the change: %v, want only write_note", got)
			}
			if err := call("read_notes"); err == nil || !strings.Contains(err.Error(), `rule "default"`) {
				t.Errorf("calling read_notes, now destructive: %v; want a denial", err)
			}
			if err := call("write_note"); err != nil {
				t.Errorf("calling write_note, now read: %v", err)
			}
			if r, w := ns.count("read_notes"), ns.count("write_note"); r != reads || w != writes+1 {
				t.Errorf("calls that reached the server: read_notes %d, write_note %d; want %d, %d", r, w, reads, writes+1)
			}
		})
	}
}
