package e2e

import (
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/toolgate/toolgate/e2e/sshtest"
)

// TestGracefulShutdownDrains: SIGTERM stops new work but lets a request in flight finish, then
// the process exits on its own and tells the ssh session why.
func TestGracefulShutdownDrains(t *testing.T) {
	in := startToolgate(t)
	started := make(chan struct{}, 1)
	port := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(time.Second)
		io.WriteString(w, "finished")
	}), 0)
	ssh := in.sshClient(sshtest.NewKey(t), []string{"-T", "-R", fmt.Sprintf("0:127.0.0.1:%d", port)})
	host := tunnelHost(t, ssh, 1)[0]

	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := in.client().Get(in.url(host, "/slow"))
		if err != nil {
			done <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{code: resp.StatusCode, body: string(b)}
	}()
	<-started
	in.cmd.Process.Signal(syscall.SIGTERM)
	r := <-done
	if r.err != nil || r.code != 200 || r.body != "finished" {
		t.Fatalf("request in flight during shutdown: %d %q %v", r.code, r.body, r.err)
	}
	select {
	case <-in.done:
	case <-time.After(15 * time.Second):
		t.Fatal("toolgate did not exit after draining")
	}
	if in.waitErr != nil {
		t.Fatalf("exit after SIGTERM: %v", in.waitErr)
	}
	ssh.WaitFor(regexpMust(`server is shutting down`), 5*time.Second)
}
