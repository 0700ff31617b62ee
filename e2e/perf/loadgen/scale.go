package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// ---------------------------------------------------------------------------------------------
// scale: n SSH connections, each with its own key and one tunnel (client.Listen on 0.0.0.0:0),
// opened at most par at a time; toolgate's /metrics before and after.

// adminRun runs a `toolgate user|key` command over a running server's admin socket.
func adminRun(sock string, args ...string) (string, error) {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(map[string]any{"args": args})
	resp, err := client.Post("http://toolgate/run", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Stdout, Stderr string
		Code           int
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("admin socket: %s: %w", resp.Status, err)
	}
	if out.Code != 0 {
		return out.Stdout, fmt.Errorf("toolgate %s: %s", strings.Join(args[:2], " "), strings.TrimSpace(out.Stderr))
	}
	return out.Stdout, nil
}

func runScale(args []string) error {
	fs := flag.NewFlagSet("scale", flag.ExitOnError)
	sshAddr := fs.String("ssh", "127.0.0.1:2222", "toolgate SSH address")
	admin := fs.String("admin", "127.0.0.1:9180", "toolgate admin address")
	n := fs.Int("n", 1000, "connections, one tunnel each")
	par := fs.Int("par", 8, "connections being opened at once (toolgate allows 16 handshakes per IP)")
	settle := fs.Duration("settle", 3*time.Second, "wait after the last tunnel before reading metrics")
	out := fs.String("out", "-", "JSONL results file (append)")
	sock := fs.String("admin-socket", "", "toolgate's admin socket (DATA-DIR/admin.sock), to link the keys")
	domain := fs.String("user-domain", "bench.test", "key i is linked to user scale-i@DOMAIN")
	fs.Parse(args)
	rec, err := openRecorder(*out)
	if err != nil {
		return err
	}
	signers := make([]ssh.Signer, *n)
	for i := range signers {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		if signers[i], err = ssh.NewSignerFromKey(priv); err != nil {
			return err
		}
	}
	// toolgate accepts only linked keys; link each to a user of its own, as `toolgate key add`
	// would, before the baseline is read. One user for all would not do: a person gets the
	// same random name back for the same -R, so every connection would land on one name.
	if *sock != "" {
		for i, sg := range signers {
			user := fmt.Sprintf("scale-%d@%s", i, *domain)
			if _, err := adminRun(*sock, "user", "add", user); err != nil && !strings.Contains(err.Error(), "already exists") {
				return err
			}
			line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sg.PublicKey())))
			if _, err := adminRun(*sock, "key", "add", "--user", user, "--ttl", "0", line); err != nil {
				return err
			}
		}
	}
	before, err := metrics(*admin)
	if err != nil {
		return err
	}
	clients := make([]*ssh.Client, *n)
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr atomic.Value
	s := time.Now()
	var wg sync.WaitGroup
	for range *par {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				c, err := ssh.Dial("tcp", *sshAddr, &ssh.ClientConfig{
					User:            "bench",
					Auth:            []ssh.AuthMethod{ssh.PublicKeys(signers[i])},
					HostKeyCallback: ssh.InsecureIgnoreHostKey(),
					Timeout:         10 * time.Second,
				})
				if err == nil {
					if _, lerr := c.Listen("tcp", "0.0.0.0:0"); lerr != nil {
						c.Close()
						err = lerr
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				clients[i] = c
			}
		})
	}
	wg.Wait()
	openTime := time.Since(s)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d connections failed; first: %v", f, *n, firstErr.Load())
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		m, err := metrics(*admin)
		if err == nil && int(m["toolgate_tunnels"]) >= *n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("toolgate_tunnels did not reach %d", *n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(*settle)
	// Three samples: a keepalive round may be in flight (one short-lived goroutine per
	// connection); take the smallest.
	var after map[string]float64
	for i := range 3 {
		m, err := metrics(*admin)
		if err != nil {
			return err
		}
		if after == nil || m["go_goroutines"] < after["go_goroutines"] {
			after = m
		}
		if i < 2 {
			time.Sleep(500 * time.Millisecond)
		}
	}
	per := func(k string) float64 { return (after[k] - before[k]) / float64(*n) }
	res := map[string]float64{
		"scale_rss_kib_per_tunnel":        per("process_resident_memory_bytes") / 1024,
		"scale_heap_inuse_kib_per_tunnel": per("go_memstats_heap_inuse_bytes") / 1024,
		"scale_stack_kib_per_tunnel":      per("go_memstats_stack_inuse_bytes") / 1024,
		"scale_goroutines_per_tunnel":     per("go_goroutines"),
		"scale_open_s":                    openTime.Seconds(),
		"scale_rss_before_mib":            before["process_resident_memory_bytes"] / (1 << 20),
		"scale_rss_after_mib":             after["process_resident_memory_bytes"] / (1 << 20),
		"scale_goroutines_before":         before["go_goroutines"],
		"scale_goroutines_after":          after["go_goroutines"],
	}
	fmt.Fprintf(os.Stderr, "scale: %d tunnels opened in %.1fs; RSS %.1f -> %.1f MiB = %.1f KiB/tunnel (heap %.1f, stacks %.1f KiB); goroutines %.0f -> %.0f = %.2f/tunnel\n",
		*n, openTime.Seconds(), res["scale_rss_before_mib"], res["scale_rss_after_mib"], res["scale_rss_kib_per_tunnel"],
		res["scale_heap_inuse_kib_per_tunnel"], res["scale_stack_kib_per_tunnel"], before["go_goroutines"], after["go_goroutines"],
		res["scale_goroutines_per_tunnel"])
	for k, v := range res {
		rec.add(record{Path: "c", Metric: k, Value: v})
	}
	// Close everything and check that toolgate lets go of it.
	for i, c := range clients {
		c.Close()
		clients[i] = nil
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		m, err := metrics(*admin)
		if err == nil && m["toolgate_tunnels"] == 0 && m["toolgate_ssh_connections"] == 0 {
			time.Sleep(time.Second)
			if m, err = metrics(*admin); err == nil {
				fmt.Fprintf(os.Stderr, "scale: after closing all: goroutines %.0f (before %.0f)\n", m["go_goroutines"], before["go_goroutines"])
				rec.add(record{Path: "c", Metric: "scale_goroutines_after_close", Value: m["go_goroutines"]})
			}
			break
		}
	}
	return nil
}

// metrics reads the unlabelled samples of toolgate's /metrics.
func metrics(admin string) (map[string]float64, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.Contains(line, "{") {
			continue
		}
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			m[k] = f
		}
	}
	return m, sc.Err()
}
