package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestAuditSurvivesKill9: toolgate is killed with SIGKILL in the middle of a stream of tool
// calls. After a restart on the same data, the audit log holds every call that was answered
// more than the documented bound (one flush interval, 1s) before the kill, and nothing that
// was never asked.
func TestAuditSurvivesKill9(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	args := []string{"serve", "--data-dir", dataDir, "--https-listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "info", "--tunnel-auth", "oauth"}
	in := startToolgateArgs(t, dataDir, args...)
	ns := startNotesServer(t)
	mcpURL := policyTunnel(t, in, "crash@e2e.test", ns)
	cs := policyClient(t, in, in.signIn(t, "crash@e2e.test"), mcpURL)
	toolNames(t, cs)

	// Four callers, each noting when every call was answered.
	var mu sync.Mutex
	var answered []time.Time
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "read_notes"})
				if err != nil || res.IsError {
					return
				}
				mu.Lock()
				answered = append(answered, time.Now())
				mu.Unlock()
			}
		}()
	}
	time.Sleep(3500 * time.Millisecond)
	killedAt := time.Now()
	if err := in.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-in.done
	cancel()
	wg.Wait()

	mu.Lock()
	total := len(answered)
	safe := 0
	for _, at := range answered {
		// The bound, plus a second for the commit that was under way (slow under the race
		// detector on a busy machine) and the moments between the server writing a
		// response, the client reading it, and this goroutine noting it.
		if at.Before(killedAt.Add(-2 * time.Second)) {
			safe++
		}
	}
	mu.Unlock()
	if safe < 50 {
		t.Fatalf("only %d calls answered well before the kill (%d in all); the load did not run", safe, total)
	}

	again := startToolgateArgs(t, dataDir, args...)
	out, stderr, code := again.adminRun("audit", "list", "--kind", "mcp", "--tool", "read_notes", "--limit", "10000", "--json")
	if code != 0 {
		t.Fatalf("audit list: %s", stderr)
	}
	// Every read_notes record is a call (the listing before the load has no tool).
	stored := strings.Count(out, `"tool":"read_notes"`)
	t.Logf("answered %d calls (%d more than 2s before the kill); the audit log kept %d", total, safe, stored)
	if stored < safe {
		t.Errorf("the audit log lost calls answered more than the bound before the kill: %d stored, %d answered by then", stored, safe)
	}
	// A call the server answered but the client never saw can be recorded; at most one per
	// caller was in flight.
	if stored > total+4 {
		t.Errorf("the audit log has %d calls, more than the %d answered plus 4 in flight", stored, total)
	}
}
