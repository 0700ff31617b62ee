package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/toolgate/toolgate/e2e/sshtest"
)

// TestNamesSurviveRestart: a random name, the host key and the certificates live in the
// database, so after a restart the same key and command line get the same URL, and the ssh
// client sees the same host key.
func TestNamesSurviveRestart(t *testing.T) {
	in := startToolgate(t)
	port := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), 0)
	key := sshtest.NewKey(t)
	args := []string{"-T", "-R", fmt.Sprintf("0:127.0.0.1:%d", port), "-R", fmt.Sprintf("mine:80:127.0.0.1:%d", port)}
	known := filepath.Join(t.TempDir(), "known_hosts")
	in.linkKey(key) // the link is in the database, so it holds after the restart too
	c := sshtest.Start(t, sshtest.Options{Key: key, Port: in.ssh, Args: args, KnownHosts: known})
	before := tunnelHost(t, c, 2)
	c.Kill()
	in.stop()

	dataDir := in.dataDir
	again := startToolgateArgs(t, dataDir, "serve", "--data-dir", dataDir,
		"--https-listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--tunnel-auth", "none")
	if string(again.caPEM) != string(in.caPEM) {
		t.Fatal("the development CA changed across a restart")
	}
	// The host key recorded on the first run is checked: a new key would fail the connection.
	c2 := sshtest.Start(t, sshtest.Options{Key: key, Port: again.ssh, Args: args, KnownHosts: known})
	after := tunnelHost(t, c2, 2)
	if before[0] != after[0] || before[1] != after[1] {
		t.Fatalf("names before restart %v, after %v", before, after)
	}
	for _, h := range after {
		resp, err := again.client().Get(again.url(h, "/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s after restart: %d", h, resp.StatusCode)
		}
	}
}
