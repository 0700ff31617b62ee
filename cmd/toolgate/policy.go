package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/web"
)

// policies holds the policy in force and swaps it on reload. A request takes one policy
// (Current) for its whole path, so a reload never splits a request between two policies.
type policies struct {
	path  string // "" for the built-in policy
	cur   atomic.Pointer[authz.Policy]
	log   *slog.Logger
	audit *data.AuditLog // records reloads; may be nil
	// reloadMu makes reloads (SIGHUP, `toolgate policy reload`) one at a time, so the
	// policy in force is always from the last read of the file, never an older one that
	// finished compiling later.
	reloadMu sync.Mutex
}

// errNoPolicyFile: Reload on a server that runs the built-in policy.
var errNoPolicyFile = errors.New("the server runs the built-in policy (no --policy file), so there is nothing to reload")

// loadPolicy reads the policy setting: a file, or the built-in default.
func loadPolicy(path string, def *authz.Policy, log *slog.Logger) (*policies, error) {
	p := &policies{path: path, log: log}
	if path == "" {
		p.cur.Store(def)
		return p, nil
	}
	pol, err := readPolicy(path)
	if err != nil {
		return nil, err
	}
	p.cur.Store(pol)
	return p, nil
}

func readPolicy(path string) (*authz.Policy, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("setting policy: %w", err)
	}
	pol, err := authz.ParsePolicy(path, src)
	if err != nil {
		return nil, fmt.Errorf("setting policy: %w", err)
	}
	return pol, nil
}

// Current implements web.PolicySource.
func (p *policies) Current() *authz.Policy { return p.cur.Load() }

// Reload reads the file again and returns the policy now in force. A broken file is refused
// with its line and column, and the policy in force stays. SIGHUP and `toolgate policy
// reload` both come here, so they log and audit alike.
func (p *policies) Reload() (*authz.Policy, error) {
	if p.path == "" {
		return nil, errNoPolicyFile
	}
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	pol, err := readPolicy(p.path)
	if err != nil {
		p.log.Error("policy reload refused; the previous policy stays in force", "file", p.path, "err", err)
		if p.audit != nil {
			p.audit.Append(data.AuditRecord{Kind: "policy_reload", Decision: "deny", Detail: err.Error()})
		}
		return nil, err
	}
	p.cur.Store(pol)
	p.log.Info("policy reloaded", "file", p.path, "rules", len(pol.Rules()))
	if p.audit != nil {
		p.audit.Append(data.AuditRecord{Kind: "policy_reload", Decision: "allow",
			Detail: fmt.Sprintf("%s: %d rules", p.path, len(pol.Rules()))})
	}
	return pol, nil
}

// reloadOnSIGHUP reloads until ctx ends.
func (p *policies) reloadOnSIGHUP(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			_, _ = p.Reload() // logged and audited there; a signal has nobody to answer
		}
	}
}

// tunnelPolicyInfo is what `policy test` needs to know about a live tunnel.
func (srv *server) tunnelPolicyInfo(name, tool string) (owner string, shares []string, class authz.Class, known, live bool) {
	t := srv.reg.Lookup(name)
	if t == nil {
		return "", nil, "", false, false
	}
	class, known = web.TunnelTools(t).Class(tool)
	return t.Owner(), t.Shares(), class, known, true
}
