package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/e2e/sshtest"
)

// TestReleaseNameFromCLI: user A holds a name with `ssh -N -R NAME:80:…`, and a second
// connection of A's serves it too, next to a random name. The operator's `toolgate tunnel
// release NAME`, over the admin socket, takes the name away at once: the public URL answers
// 404 no_tunnel (as for a name nobody holds) the moment the command returns, A's terminal says
// why, and A's connections stay up with their other forward. User B then claims the name with
// ssh and serves it, and A's ssh ending later does not disturb B.
func TestReleaseNameFromCLI(t *testing.T) {
	in := startToolgate(t)
	serve := func(who string) int {
		return localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, who) }), 0)
	}
	portA, portB := serve("A"), serve("B")
	client := in.client()
	get := func(host string) (int, string) {
		t.Helper()
		resp, err := client.Get(in.url(host, "/"))
		if err != nil {
			t.Fatalf("GET %s: %v", host, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	host := "held-name." + in.domain

	keyA, keyB := sshtest.NewKey(t), sshtest.NewKey(t)
	quiet := in.sshClient(keyA, []string{"-N", "-R", fmt.Sprintf("held-name:80:127.0.0.1:%d", portA)})
	waitFor(t, 10*time.Second, "A's -N tunnel to answer", func() bool {
		code, body := get(host)
		return code == 200 && body == "A"
	})
	// A's second connection joins the name's pool, and has a random name of its own.
	talky := in.sshClient(keyA, []string{"-T", "-R", fmt.Sprintf("held-name:80:127.0.0.1:%d", portA),
		"-R", fmt.Sprintf("0:127.0.0.1:%d", portA)})
	hosts := tunnelHost(t, talky, 2)
	random := hosts[1]
	if hosts[0] != host || random == host {
		t.Fatalf("A's second connection got %v", hosts)
	}

	out, stderr, code := in.cli("tunnel", "release", "held-name")
	if want := "released held-name (owner " + keyOwner(keyA) + "); anyone may claim it now\n" +
		"  its live tunnel was closed (2 forward(s)) and the owner's terminal was told why\n"; code != 0 || out != want {
		t.Fatalf("toolgate tunnel release: exit %d, %q %q; want %q", code, out, stderr, want)
	}
	// No waiting: nothing of A's answers on the name once the command has returned.
	if code, body := get(host); code != http.StatusNotFound || !strings.Contains(body, `"error":"no_tunnel"`) {
		t.Fatalf("the released name answered %d %q; want 404 no_tunnel", code, body)
	}
	waitFor(t, 5*time.Second, "A's terminal to say why", func() bool {
		return strings.Contains(talky.Output(), "toolgate: the operator released the name held-name; this forward is closed")
	})
	if code, body := get(random); code != 200 || body != "A" {
		t.Fatalf("A's other forward answered %d %q after the release", code, body)
	}
	if quiet.Exited() || talky.Exited() {
		t.Fatalf("A's ssh exited (-N: %v, -T: %v); its connections should stay up", quiet.Exited(), talky.Exited())
	}

	// B claims the released name with ssh and serves it.
	b := in.sshClient(keyB, []string{"-T", "-R", fmt.Sprintf("held-name:80:127.0.0.1:%d", portB)})
	if got := tunnelHost(t, b, 1)[0]; got != host {
		t.Fatalf("B asked for held-name and got %s", got)
	}
	if code, body := get(host); code != 200 || body != "B" {
		t.Fatalf("after B claimed it, the name answered %d %q", code, body)
	}
	// A's clients ending (and with them the forwards that were closed) leave B's tunnel be.
	quiet.Kill()
	talky.Kill()
	waitFor(t, 10*time.Second, "A's random name to go offline", func() bool {
		code, _ := get(random)
		return code == http.StatusBadGateway
	})
	if code, body := get(host); code != 200 || body != "B" {
		t.Fatalf("after A's ssh ended, the name answered %d %q", code, body)
	}
	out, _, _ = in.cli("tunnel", "names", "--owner", keyOwner(keyB), "--json")
	if !strings.HasPrefix(out, `{"name":"held-name","owner":"`+keyOwner(keyB)+`","kind":"requested","live":true,`) {
		t.Fatalf("tunnel names --owner B: %q", out)
	}

	waitFor(t, 10*time.Second, "the release in the audit log", func() bool {
		out, _, _ := in.adminRun("audit", "list", "--kind", "name_release", "--json")
		return strings.Count(out, "\n") == 1 &&
			strings.Contains(out, `"kind":"name_release","tunnel":"held-name","owner":"`+keyOwner(keyA)+`","decision":"allow","detail":"released by the operator (toolgate tunnel release); its live tunnel was closed (2 forward(s))`)
	})
}
