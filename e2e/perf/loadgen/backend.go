package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ---------------------------------------------------------------------------------------------
// backend: the developer's local server.

const (
	sseEvents   = 5
	sseInterval = 100 * time.Millisecond
)

// mcpReply is a ~100-byte JSON-RPC answer, the size of a small MCP tool result.
var mcpReply = []byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"pong"}],"isError":false}}` + "\n")

// mcpRequest is what the load generator posts.
var mcpRequest = []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ping","arguments":{}}}`)

func runBackend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:3950", "listen address")
	fs.Parse(args)
	block := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	mux := http.NewServeMux()
	mux.HandleFunc("POST /mcp", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(mcpReply)))
		w.Write(mcpReply)
	})
	mux.HandleFunc("GET /bulk", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
		if err != nil || n <= 0 {
			n = 200 << 20
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			m := min(n, int64(len(block)))
			if _, err := w.Write(block[:m]); err != nil {
				return
			}
			n -= m
		}
	})
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		rc := http.NewResponseController(w)
		for i := range sseEvents {
			if i > 0 {
				select {
				case <-time.After(sseInterval):
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":%d}}\n\n", i)
			if err := rc.Flush(); err != nil {
				return
			}
		}
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Printf("backend listening %s\n", l.Addr())
	return srv.Serve(l)
}

// ---------------------------------------------------------------------------------------------
// freeports: ports for run.sh (closed again at once; a race with other programs is possible but
// unlikely on a benchmark machine).

func runFreePorts(args []string) error {
	fs := flag.NewFlagSet("freeports", flag.ExitOnError)
	n := fs.Int("n", 1, "how many")
	fs.Parse(args)
	var ls []net.Listener
	for range *n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ls = append(ls, l)
	}
	var ports []string
	for _, l := range ls {
		ports = append(ports, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
		l.Close()
	}
	fmt.Println(strings.Join(ports, " "))
	return nil
}

// ---------------------------------------------------------------------------------------------
// name: runs a command (ssh -T -R 0:… to toolgate), waits for the tunnel URL it prints, prints
// the host and stops the command. With the same key and the same -R, a later ssh -N gets the
// same name back: toolgate keeps a key's random names.

func runName(args []string) error {
	fs := flag.NewFlagSet("name", flag.ExitOnError)
	timeout := fs.Duration("timeout", 15*time.Second, "wait this long for the URL")
	fs.Parse(args)
	if fs.NArg() == 0 {
		return errors.New("usage: loadgen name -- CMD ARGS")
	}
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	var out lockedBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return err
	}
	defer stopCmd(cmd)
	re := regexp.MustCompile(`https://([a-z0-9-]+\.[a-z0-9.-]+):\d+/mcp`)
	deadline := time.Now().Add(*timeout)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			fmt.Println(m[1])
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no tunnel URL within %s; output:\n%s", *timeout, out.String())
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func stopCmd(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}
