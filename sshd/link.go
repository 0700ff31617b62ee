package sshd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// A Linker asks a person to claim an SSH key that belongs to no one yet.
//
// Link registers a pending link for req, calls show exactly once with the text for the user's
// terminal (the sign-in URL and its one-time code), and then blocks until the person signs in
// and approves, returning whose key it now is. It returns an error when the person denies, the
// code expires or ctx ends (the client went away); the error's message is shown on the user's
// terminal, so it must be written for them and carry no secret. If show fails, Link cancels the
// pending link and returns show's error. It must be safe for concurrent use.
type Linker interface {
	Link(ctx context.Context, req LinkRequest, show func(text string) error) (Identity, error)
}

// LinkRequest describes the key and connection that want linking: what the approval page shows
// the person, so they can tell their own request from someone else's.
type LinkRequest struct {
	Fingerprint   string // SHA256:…
	KeyType       string // ssh-ed25519, …
	RemoteIP      string // the source address, without port
	ClientVersion string // the client's SSH identification, e.g. "SSH-2.0-OpenSSH_9.2p1"
}

// extLink marks the permissions of a key that no one owns: its holder proved the key and must
// now link it (see verifiedKey).
const extLink = "toolgate-link"

// linkAttempt is the per-connection state of key linking: OpenSSH tries keyboard-interactive up
// to NumberOfPasswordPrompts times, and a denied or expired link must not start another one.
type linkAttempt struct {
	err error // the outcome of the first attempt, when it failed
}

// partialLink answers a proven but unknown key with "keyboard-interactive next", whose callback
// runs the link. It is the per-connection part of verifiedKey.
func (s *Server) partialLink(nc net.Conn, key ssh.PublicKey, attempt *linkAttempt) error {
	return &ssh.PartialSuccessError{Next: ssh.ServerAuthCallbacks{
		KeyboardInteractiveCallback: func(meta ssh.ConnMetadata, client ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			if attempt.err != nil {
				return nil, attempt.err
			}
			perms, err := s.link(nc, meta, key, client)
			if err != nil {
				// Later attempts fail with the bare error: the banner saying why was shown once,
				// and OpenSSH retries keyboard-interactive up to NumberOfPasswordPrompts times.
				attempt.err = err
				var be *ssh.BannerError
				if errors.As(err, &be) {
					attempt.err = be.Err
				}
			}
			return perms, err
		},
	}}
}

// link runs one key link inside the SSH handshake. The handshake goroutine waits here while the
// person signs in, so the handshake deadline is lifted for the link's lifetime and put back
// after; a client that hangs up meanwhile is noticed by polling the socket (the SSH library
// reads nothing while its auth callback runs).
func (s *Server) link(nc net.Conn, meta ssh.ConnMetadata, key ssh.PublicKey, client ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
	fp := ssh.FingerprintSHA256(key)
	req := LinkRequest{
		Fingerprint:   fp,
		KeyType:       key.Type(),
		RemoteIP:      remoteIP(meta.RemoteAddr()),
		ClientVersion: string(meta.ClientVersion()),
	}
	nc.SetDeadline(time.Now().Add(s.cfg.LinkTimeout))
	// The rest of the handshake gets a fresh HandshakeTimeout from when the link ends.
	defer func() { nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout)) }()

	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.LinkTimeout)
	defer cancel()
	stopWatch := watchHangup(ctx, nc, cancel)
	defer stopWatch()

	show := func(text string) error {
		// A challenge with no questions: OpenSSH prints the name and instruction (also under -N,
		// as long as LogLevel is INFO or more verbose) and answers at once, and the server is
		// then free to wait as long as it likes before it replies.
		_, err := client("", terminalText(text), nil, nil)
		return err
	}
	id, err := s.cfg.Linker.Link(ctx, req, show)
	if err != nil {
		s.cfg.Logger.Info("ssh key not linked", "fingerprint", fp, "remote", req.RemoteIP, "err", err)
		msg := err.Error()
		if ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
			msg = "the connection closed before the key was linked"
		}
		return nil, &ssh.BannerError{
			Err:     fmt.Errorf("sshd: link %s: %w", fp, err),
			Message: terminalText("toolgate: " + msg + "\n"),
		}
	}
	s.cfg.Logger.Info("ssh key linked", "fingerprint", fp, "owner", id.Owner, "remote", req.RemoteIP)
	return &ssh.Permissions{Extensions: map[string]string{extOwner: id.Owner, extDisplay: id.Display, extKey: fp}}, nil
}

// terminalText turns line breaks into CRLF: the client writes banners and instructions to a
// terminal that may be in raw mode.
func terminalText(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}
