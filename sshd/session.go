package sshd

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/toolgate/toolgate/data"
)

// session serves one "session" channel: the user's terminal. It never runs a shell; it shows
// the console and reads a few keys. ssh -N opens no session, -T opens one without a pty, plain
// ssh and -tt open one with a pty.
type session struct {
	c     *conn
	ch    ssh.Channel
	stop  chan struct{}
	once  sync.Once
	pty   atomic.Bool // set by pty-req, read by the input reader
	start sync.Once
}

// Session-channel request payloads (RFC 4254 §6).
type execRequest struct{ Command string }
type exitStatus struct{ Status uint32 }

func (c *conn) session(nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	s := &session{c: c, ch: ch, stop: make(chan struct{})}
	go s.readInput()
	for req := range reqs {
		switch req.Type {
		case "pty-req":
			s.pty.Store(true)
			req.Reply(true, nil)
		case "env", "window-change":
			req.Reply(true, nil)
		case "shell":
			req.Reply(true, nil)
			s.begin()
		case "exec":
			var e execRequest
			if err := ssh.Unmarshal(req.Payload, &e); err != nil {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			s.begin()
			s.options(e.Command)
		default:
			// subsystem (sftp and friends), x11-req, signal, …
			req.Reply(false, nil)
		}
	}
	s.end()
}

// begin attaches the console once the client asked for a shell or a command, so the first lines
// land after OpenSSH has set up the terminal.
func (s *session) begin() {
	s.start.Do(func() {
		eol := "\n"
		if s.pty.Load() {
			eol = "\r\n"
		}
		var b strings.Builder
		for _, l := range s.c.srv.cfg.Greeting {
			b.WriteString(l + eol)
		}
		// Tunnels opened before the session started were queued already; nothing to repeat.
		if s.pty.Load() {
			b.WriteString("Press Ctrl-C to close the tunnels." + eol)
		}
		if b.Len() > 0 {
			s.ch.Write([]byte(b.String()))
		}
		s.c.console.attach(s.ch, s.pty.Load(), s.stop, func() error {
			// Any channel request with want-reply: OpenSSH answers it (with failure) after
			// handling the data before it.
			_, err := s.ch.SendRequest("keepalive@openssh.com", true, nil)
			return err
		})
	})
}

func (s *session) end() {
	s.once.Do(func() {
		close(s.stop)
		s.ch.Close()
	})
}

// readInput watches for Ctrl-C and Ctrl-D on a pty. EOF on input means nothing: `ssh -T …
// </dev/null` sends EOF at once, and closing the session then would make OpenSSH exit and drop
// its forwards.
func (s *session) readInput() {
	buf := make([]byte, 64)
	for {
		n, err := s.ch.Read(buf)
		if err != nil {
			return
		}
		if !s.pty.Load() {
			continue
		}
		for _, b := range buf[:n] {
			if b == 0x03 || b == 0x04 {
				s.ch.Write([]byte("\r\ntoolgate: closing your tunnels\r\n"))
				s.ch.SendRequest("exit-status", false, ssh.Marshal(exitStatus{0}))
				// Closing the session lets OpenSSH exit cleanly (status 0) and hang up; the
				// connection is closed here only if it does not.
				s.end()
				time.AfterFunc(2*time.Second, func() { s.c.close("closed by the user") })
				return
			}
		}
	}
}

// optionsWait bounds how long the options wait for the forwards requested before them.
const optionsWait = 10 * time.Second

// options applies the words of the remote command, e.g. `ssh -R 0:localhost:3000 D
// host-header=public`. OpenSSH sends its tcpip-forward requests first; the options wait until
// those are answered (see globalQueue), so they apply to the tunnels on the command line and
// are shown after their URLs. Forwards added later get them too.
func (s *session) options(cmd string) {
	if strings.TrimSpace(cmd) == "" {
		return
	}
	ctx, cancel := context.WithTimeout(s.c.ctx, optionsWait)
	s.c.global.wait(ctx)
	cancel()
	for _, w := range strings.Fields(cmd) {
		k, v, _ := strings.Cut(w, "=")
		switch {
		case k == "host-header" && (v == "public" || v == "local"):
			s.c.setPassHost(v == "public")
			if v == "public" {
				s.c.console.Notify("toolgate: the local server now sees the public Host header")
			} else {
				s.c.console.Notify("toolgate: the local server now sees Host: localhost")
			}
		case k == "share" && v != "":
			with, err := parseShares(v)
			if err != nil {
				s.c.console.Notify("toolgate: " + err.Error())
				continue
			}
			all, ts, err := s.c.addShares(with)
			if err != nil {
				s.c.console.Notify("toolgate: " + err.Error())
				continue
			}
			const may = " (what they may do is the policy's: by default, read tools)"
			if len(ts) == 0 {
				s.c.console.Notify("toolgate: shared with " + strings.Join(all, ", ") + may)
			}
			// Per tunnel, with the shares saved for its name: whom it is shared with now.
			now := make(map[string][]string, len(ts))
			for _, t := range ts {
				now[t.Name()] = t.Shares()
				s.c.console.Notify("toolgate: " + t.Name() + " shared with " + strings.Join(now[t.Name()], ", ") + may)
			}
			if f := s.c.srv.cfg.Shared; f != nil {
				f(s.c.id.Owner, with, now)
			}
		case k == "help":
			for _, l := range strings.Split(helpText, "\n") {
				s.c.console.Notify(l)
			}
		default:
			s.c.console.Notify(fmt.Sprintf("toolgate: unknown option %q; try `help`", w))
		}
	}
}

const helpText = `toolgate options (words after the host name):
  host-header=public   pass the public Host header to the local server
  host-header=local    send Host: localhost:PORT (the default; MCP SDKs require it)
  share=WHO[,WHO...]   share the tunnels with people (email) or groups (group:NAME), for
                       this connection; an operator's "toolgate tunnel share" lasts
  help                 this text`

// parseShares reads the share option's value: emails and group:NAME, comma-separated, with
// the syntax and bound saved shares have (data.NormalizeShare), so that what the ssh command
// accepts an operator could also save, and the other way round.
func parseShares(v string) ([]string, error) {
	var out []string
	for _, w := range strings.Split(v, ",") {
		if strings.TrimSpace(w) == "" {
			continue
		}
		n, err := data.NormalizeShare(w)
		if err != nil {
			return nil, fmt.Errorf("share=%s: %w", v, err)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	switch {
	case len(out) == 0:
		return nil, fmt.Errorf("share= needs an email or group:NAME")
	case len(out) > data.MaxShares:
		return nil, fmt.Errorf("share= takes at most %d people and groups; share with a group instead", data.MaxShares)
	}
	return out, nil
}
