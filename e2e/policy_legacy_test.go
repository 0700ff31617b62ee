package e2e

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestPolicyLegacySSE: a server that speaks only the 2024-11-05 HTTP+SSE transport (the Go
// SDK's SSE handler) behind a tunnel shared with a user. That transport answers every POST
// with 202 and sends every response, tools/list's included, on the GET stream the session
// began with; toolgate filters the listings there too. The shared user, with the SDK's legacy
// client, lists the read tool only; the owner lists all three.
func TestPolicyLegacySSE(t *testing.T) {
	in := startOAuth(t)
	ns := newNotesServer()
	ns.port = localServer(t, mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return ns.srv }, nil), 0)
	sseURL := strings.TrimSuffix(policyTunnel(t, in, "owner@e2e.test", ns, "share=friend@e2e.test"), "/mcp") + "/sse"

	for _, tc := range []struct {
		email string
		want  []string
	}{
		{"friend@e2e.test", []string{"read_notes"}},
		{"owner@e2e.test", []string{"delete_all", "read_notes", "write_note"}},
	} {
		t.Run(tc.email, func(t *testing.T) {
			cs := legacyClient(t, in, tc.email, sseURL)
			// The answer comes on the GET stream; one the filter left out would never come.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := cs.ListTools(ctx, nil)
			if err != nil {
				t.Fatalf("tools/list over the legacy transport: %v", err)
			}
			var got []string
			for _, tool := range res.Tools {
				got = append(got, tool.Name)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("tools/list over the legacy transport: %v, want %v", got, tc.want)
			}
		})
	}
}

// legacyClient connects the Go SDK's HTTP+SSE client as the person with this email, with an
// OAuth token for url (that client has no OAuth handler of its own: the token is added to
// each of its requests). It asks for 2024-11-05, the transport's own revision: left to its
// default, the SDK's client first tries 2026-07-28's server/discover, without the
// MCP-Protocol-Version header that revision requires, which toolgate refuses with a 400 that
// this client does not fall back from.
func legacyClient(t testing.TB, in *instance, email, url string) *mcp.ClientSession {
	t.Helper()
	access, _ := tokenFor(t, in, in.signIn(t, email), url)
	hc := &http.Client{Transport: bearerTransport{token: access, next: in.transport()}}
	// The context holds the session's GET stream open: it ends with the test, not with Connect.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stuck := time.AfterFunc(60*time.Second, cancel)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e-legacy", Version: "1"}, nil).Connect(ctx,
		&mcp.SSEClientTransport{Endpoint: url, HTTPClient: hc}, &mcp.ClientSessionOptions{ProtocolVersion: "2024-11-05"})
	stuck.Stop()
	if err != nil {
		t.Fatalf("connecting over HTTP+SSE: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// bearerTransport adds a bearer token to every request.
type bearerTransport struct {
	token string
	next  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
