package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/toolgate/toolgate/e2e/sshtest"
)

// everythingServer runs the MCP Go SDK's conformance server over streamable HTTP on loopback.
func everythingServer(t testing.TB) int {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(everythingBin, "-http", fmt.Sprintf("127.0.0.1:%d", port))
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	waitFor(t, 10*time.Second, "the everything-server to listen", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return port
}

// TestMCPClientThroughTunnel is the headline: OpenSSH forwards a real MCP server, and the
// MCP Go SDK client lists and calls its tools at https://NAME.toolgate.localhost/mcp over the
// development CA's TLS.
func TestMCPClientThroughTunnel(t *testing.T) {
	in := startToolgate(t)
	port := everythingServer(t)
	key := sshtest.NewKey(t)
	start := time.Now()
	ssh := in.sshClient(key, []string{"-T", "-R", fmt.Sprintf("0:127.0.0.1:%d", port)})
	host := tunnelHost(t, ssh, 1)[0]
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the URL took %s to appear", d)
	}
	if !strings.HasSuffix(host, ".toolgate.localhost") {
		t.Fatalf("tunnel host %q is not under the domain", host)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:   in.url(host, "/mcp"),
		HTTPClient: in.client(),
	}, nil)
	if err != nil {
		t.Fatalf("MCP connect through the tunnel: %v", err)
	}
	defer session.Close()
	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tool := range tools.Tools {
		found = found || tool.Name == "test_simple_text"
	}
	if !found || len(tools.Tools) < 5 {
		t.Fatalf("tools/list returned %d tools, without test_simple_text", len(tools.Tools))
	}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
	if err != nil {
		t.Fatal(err)
	}
	if res.IsError || len(res.Content) == 0 {
		t.Fatalf("tools/call: %+v", res)
	}
	if txt, ok := res.Content[0].(*mcp.TextContent); !ok || txt.Text == "" {
		t.Fatalf("tools/call content: %#v", res.Content[0])
	}

	// The terminal shows a line per request.
	waitFor(t, 5*time.Second, "request lines on the terminal", func() bool {
		return strings.Contains(ssh.Stdout(), "POST   /mcp")
	})
}

// TestLocalServerSeesLocalhost checks the Host decision against the SDK that motivated it: the
// Go SDK's server refuses a non-loopback Host with 403, so by default toolgate sends
// localhost:PORT, and the host-header=public option passes the public Host through.
func TestLocalServerSeesLocalhost(t *testing.T) {
	in := startToolgate(t)
	port := everythingServer(t)
	key := sshtest.NewKey(t)
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}`
	post := func(host string) int {
		req, _ := http.NewRequest("POST", in.url(host, "/mcp"), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := in.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	local := in.sshClient(key, []string{"-T", "-R", fmt.Sprintf("0:127.0.0.1:%d", port)})
	if code := post(tunnelHost(t, local, 1)[0]); code != 200 {
		t.Fatalf("default Host: initialize got %d, want 200", code)
	}
	public := in.sshClient(key, []string{"-T", "-R", fmt.Sprintf("0:127.0.0.1:%d", port)}, "host-header=public")
	host := tunnelHost(t, public, 1)[0]
	public.WaitFor(regexpMust(`now sees the public Host`), 5*time.Second)
	if code := post(host); code != http.StatusForbidden {
		t.Fatalf("public Host: the SDK answered %d, want its DNS-rebinding 403", code)
	}
}
