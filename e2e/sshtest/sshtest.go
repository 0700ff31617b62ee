// Package sshtest runs the real OpenSSH client in tests: keys in OpenSSH format, a client process
// isolated from the machine's ssh configuration, and its output collected safely while it runs.
//
// It is test support only; nothing in toolgate's binary imports it.
package sshtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Require returns the path of the OpenSSH client. Without one the test is skipped, except under
// CI (CI=true), where a missing tool is a failure: CI must install it.
func Require(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("ssh")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the OpenSSH client (ssh) is required under CI: %v", err)
		}
		t.Skipf("OpenSSH client not installed: %v", err)
	}
	return p
}

// Key is a client key pair on disk, ready for ssh -i.
type Key struct {
	Path        string
	Signer      ssh.Signer
	Fingerprint string // SHA256:…
}

// NewKey writes a fresh ed25519 key in OpenSSH format, mode 0600 (ssh refuses anything looser).
func NewKey(t testing.TB) *Key {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "sshtest")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &Key{Path: path, Signer: signer, Fingerprint: ssh.FingerprintSHA256(signer.PublicKey())}
}

// AuthorizedKey returns the key's authorized_keys line.
func (k *Key) AuthorizedKey() string {
	return string(ssh.MarshalAuthorizedKey(k.Signer.PublicKey()))
}

// Options describe one ssh invocation.
type Options struct {
	Key  *Key
	Port int    // server port
	Host string // default 127.0.0.1
	User string // default "dev"
	// Args are the arguments between the fixed options and the destination, e.g.
	// {"-N", "-R", "0:127.0.0.1:3000"}.
	Args []string
	// Command is the remote command (words after the destination), if any.
	Command []string
	// ExtraOptions are more -o settings, e.g. "ServerAliveInterval=1".
	ExtraOptions []string
	// Interactive leaves BatchMode off, so the client answers keyboard-interactive (key linking
	// uses it; its prompts have no questions, so nothing waits for a person). Default false:
	// BatchMode=yes. It is a field rather than an ExtraOption because OpenSSH keeps the first
	// value it is given for an option.
	Interactive bool
	// KnownHosts, if set, is a known_hosts file the client records the server's host key in
	// on first use and checks it against afterwards (under a fixed alias, so the check holds
	// across server ports). Default: host keys are not checked.
	KnownHosts string
}

// Client is a running ssh process.
type Client struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *syncBuffer // stdout and stderr, interleaved as they arrive
	stdout *syncBuffer
	done   chan struct{}
	err    error
}

// Start runs ssh. It is killed at the end of the test if still running. Stdin stays open (ssh
// exits on EOF in some modes) until CloseStdin.
func Start(t testing.TB, o Options) *Client {
	t.Helper()
	bin := Require(t)
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.User == "" {
		o.User = "dev"
	}
	hostKeys := []string{"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"}
	if o.KnownHosts != "" {
		hostKeys = []string{"-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile=" + o.KnownHosts,
			"-o", "HostKeyAlias=toolgate-under-test"}
	}
	batch := "BatchMode=yes"
	if o.Interactive {
		batch = "BatchMode=no"
	}
	args := append([]string{"-F", "/dev/null",
		"-i", o.Key.Path,
		"-o", "IdentitiesOnly=yes",
		"-o", batch}, hostKeys...)
	args = append(args,
		"-o", "LogLevel=INFO",
		"-o", "ExitOnForwardFailure=yes",
		"-p", strconv.Itoa(o.Port),
	)
	for _, x := range o.ExtraOptions {
		args = append(args, "-o", x)
	}
	args = append(args, o.Args...)
	args = append(args, o.User+"@"+o.Host)
	args = append(args, o.Command...)
	cmd := exec.Command(bin, args...)
	c := &Client{t: t, cmd: cmd, out: &syncBuffer{}, stdout: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = io.MultiWriter(c.out, c.stdout)
	cmd.Stderr = c.out
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ssh: %v", err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.Kill()
		if t.Failed() {
			t.Logf("ssh %v output:\n%s", o.Args, c.Output())
		}
	})
	return c
}

// Pid is the process id.
func (c *Client) Pid() int { return c.cmd.Process.Pid }

// Output returns everything ssh printed so far, stdout and stderr interleaved.
func (c *Client) Output() string { return c.out.String() }

// Stdout returns what ssh printed on stdout: the server's session output.
func (c *Client) Stdout() string { return c.stdout.String() }

// Write sends bytes to ssh's stdin (keys for a -tt session).
func (c *Client) Write(b []byte) error {
	_, err := c.stdin.Write(b)
	return err
}

// CloseStdin sends EOF.
func (c *Client) CloseStdin() { c.stdin.Close() }

// WaitFor waits until the output matches re and returns the submatches of the first match.
func (c *Client) WaitFor(re *regexp.Regexp, timeout time.Duration) []string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(c.Output()); m != nil {
			return m
		}
		select {
		case <-c.done:
			if m := re.FindStringSubmatch(c.Output()); m != nil {
				return m
			}
			c.t.Fatalf("ssh exited (%v) before printing %q; output:\n%s", c.err, re, c.Output())
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("ssh did not print %q within %s; output:\n%s", re, timeout, c.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Signal sends sig to the process.
func (c *Client) Signal(sig syscall.Signal) {
	c.cmd.Process.Signal(sig)
}

// Kill kills the process (continuing it first if stopped) and waits for it.
func (c *Client) Kill() {
	c.cmd.Process.Signal(syscall.SIGCONT)
	c.cmd.Process.Kill()
	<-c.done
}

// Exited reports whether the process has ended.
func (c *Client) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns its exit code, or fails the test.
func (c *Client) Wait(timeout time.Duration) int {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		c.t.Fatalf("ssh still running after %s; output:\n%s", timeout, c.Output())
	}
	return c.cmd.ProcessState.ExitCode()
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine and test readers: reading a plain
// buffer assigned to cmd.Stdout while the process runs is a data race.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// AllocatedPort extracts the port OpenSSH reports for a "-R 0:…" forward.
var AllocatedPort = regexp.MustCompile(`Allocated port (\d+) for remote forward`)

// URLLine matches toolgate's tunnel line and captures the URL's host.
var URLLine = regexp.MustCompile(`https://([a-z0-9-]+\.[a-z0-9.-]+)(?::\d+)?/mcp  ->  `)

// String formats options as a shell command, for logs.
func (o Options) String() string { return fmt.Sprintf("ssh -p %d %v", o.Port, o.Args) }
