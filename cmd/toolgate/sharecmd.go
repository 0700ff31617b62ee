package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/tunnel"
)

// `toolgate tunnel share|unshare|shares`: the shares saved for a tunnel name
// (data.NameShares). They last across the owner's connections, where share= on the ssh
// command lasts for that connection only; a live tunnel is shared with both. The operator may
// change any name's list (the admin socket is theirs); the owner of the name stays its owner,
// and the list is deleted when the name is released.
//
// Run inside a server, a change applies to the live tunnel before the command returns
// (tunnel.Registry.ReloadShares) and the owner's terminal is told; without a server, the
// tunnel reads the list when it next goes live. Changes are security events in the audit
// log, either way.

// liveTunnels is what the tunnel commands need from a running server; *tunnel.Registry.
type liveTunnels interface {
	ReloadShares(ctx context.Context, name string) (*tunnel.Tunnel, error)
	Lookup(name string) *tunnel.Tunnel
	Names() []string
	// ReleaseName deletes owner's claim on name and closes its live forwards, showing line
	// on their terminals (`tunnel release`).
	ReleaseName(ctx context.Context, name, owner, line string) (int, error)
}

// tunnelShare is `tunnel share` (add) and `tunnel unshare`.
func tunnelShare(ctx context.Context, env adminEnv, args []string, add bool, out io.Writer) error {
	verb := map[bool]string{true: "share", false: "unshare"}[add]
	pos, err := parsePositional(flag.NewFlagSet("tunnel "+verb, flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return usageError{fmt.Sprintf("tunnel %s: expected NAME and at least one EMAIL or group:NAME", verb)}
	}
	// Names are lower-case labels; people type them as the URL shows them, or not.
	name := strings.ToLower(pos[0])
	var with []string
	for _, a := range pos[1:] {
		// Commas as well as spaces, as share= on the ssh command takes them.
		for w := range strings.SplitSeq(a, ",") {
			if strings.TrimSpace(w) != "" {
				with = append(with, w)
			}
		}
	}

	var sh data.NameShares
	if add {
		sh, err = env.store.ShareName(ctx, name, "", with)
	} else {
		sh, err = env.store.UnshareName(ctx, name, "", with)
	}
	if errors.Is(err, data.ErrNotFound) {
		if _, gerr := env.store.GetName(ctx, name); errors.Is(gerr, data.ErrNotFound) {
			return fmt.Errorf("no tunnel named %q: a name can be shared once its owner has connected with it", name)
		}
	}
	if err != nil {
		return err
	}
	changed, _ := data.NormalizeShares(with) // valid: the store took them
	owner := ownerName(ctx, env, sh.Owner)

	// Live first, then the record: the audit log should not say "shared" before it is.
	var live *tunnel.Tunnel
	var applyErr error
	if env.tunnels != nil {
		live, applyErr = env.tunnels.ReloadShares(ctx, name)
	}
	if env.audit != nil {
		env.audit.Append(data.AuditRecord{
			Kind: "tunnel_" + verb, Tunnel: name, Owner: owner, Decision: "allow",
			Detail: fmt.Sprintf("%s by the operator (toolgate tunnel %s): %s; now shared with %s",
				map[bool]string{true: "shared", false: "unshared"}[add], verb, strings.Join(changed, ", "), listOrNobody(sh.With)),
		})
	}

	fmt.Fprintf(out, "%s (owner %s) is shared with %s\n", name, owner, listOrNobody(sh.With))
	switch {
	case applyErr != nil:
		return fmt.Errorf("saved, but applying it to the live tunnel failed (it is shared with nobody but its ssh command's list until it reconnects): %w", applyErr)
	case live == nil:
		fmt.Fprintln(out, "  not connected: applies when the owner next connects")
		return nil
	}
	fmt.Fprintln(out, "  applied to the live tunnel")
	cmd := live.CommandShares()
	if len(cmd) > 0 {
		fmt.Fprintf(out, "  its ssh command also shares it with %s, for that connection\n", strings.Join(cmd, ", "))
	}
	if !add {
		// An unshare that leaves someone in through share= must not look complete.
		var still []string
		for _, w := range changed {
			if slices.Contains(cmd, w) {
				still = append(still, w)
			}
		}
		if len(still) > 0 {
			fmt.Fprintf(out, "  note: %s keep access through the owner's ssh command (share=) until that connection ends\n", strings.Join(still, ", "))
		}
	}
	live.Notify(fmt.Sprintf("toolgate: the operator %sd %s; %s is now shared with %s", verb, strings.Join(changed, ", "), name, listOrNobody(live.Shares())))
	return nil
}

// shareRow is one tunnel in `tunnel shares`, and its JSON line with --json.
type shareRow struct {
	Tunnel string   `json:"tunnel"`
	Owner  string   `json:"owner"`
	Live   bool     `json:"live"`
	Saved  []string `json:"saved"`
	SSH    []string `json:"ssh"`
	// SharedWith is what is in force: saved and ssh for a live tunnel, saved otherwise.
	SharedWith []string `json:"shared_with"`
}

// tunnelShares lists whom tunnels are shared with: one name, or every name that has saved
// shares and every live tunnel shared from its ssh command.
func tunnelShares(ctx context.Context, env adminEnv, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tunnel shares", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	pos, err := parsePositional(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usageError{"tunnel shares: expected at most one NAME"}
	}
	var rows []shareRow
	if len(pos) == 1 {
		name := strings.ToLower(pos[0])
		sh, err := env.store.GetNameShares(ctx, name)
		if errors.Is(err, data.ErrNotFound) {
			return fmt.Errorf("no tunnel named %q", name)
		} else if err != nil {
			return err
		}
		rows = append(rows, shareRowFor(ctx, env, sh))
	} else {
		saved, err := env.store.ListNameShares(ctx)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, sh := range saved {
			seen[sh.Name] = true
			rows = append(rows, shareRowFor(ctx, env, sh))
		}
		if env.tunnels != nil {
			for _, n := range env.tunnels.Names() {
				t := env.tunnels.Lookup(n)
				if seen[n] || t == nil || len(t.CommandShares()) == 0 {
					continue
				}
				rows = append(rows, shareRowFor(ctx, env, data.NameShares{Name: n, Owner: t.Owner()}))
			}
		}
		slices.SortFunc(rows, func(a, b shareRow) int { return strings.Compare(a.Tunnel, b.Tunnel) })
	}

	if *asJSON {
		return writeJSONLines(out, rows)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TUNNEL\tOWNER\tLIVE\tSAVED\tSSH COMMAND")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Tunnel, r.Owner, map[bool]string{true: "yes", false: "no"}[r.Live],
			dash(strings.Join(r.Saved, ", ")), dash(strings.Join(r.SSH, ", ")))
	}
	return tw.Flush()
}

// shareRowFor describes sh with what the live tunnel of its name, if any, adds. A live
// tunnel's own lists are what is in force, so its saved part is shown from there: it is the
// store's, unless a read failed.
func shareRowFor(ctx context.Context, env adminEnv, sh data.NameShares) shareRow {
	r := shareRow{Tunnel: sh.Name, Owner: ownerName(ctx, env, sh.Owner), Saved: nonNil(sh.With), SSH: []string{}}
	r.SharedWith = r.Saved
	if env.tunnels == nil {
		return r
	}
	if t := env.tunnels.Lookup(sh.Name); t != nil {
		r.Live = true
		r.Saved, r.SSH, r.SharedWith = nonNil(t.SavedShares()), nonNil(t.CommandShares()), nonNil(t.Shares())
	}
	return r
}

// ownerName is an owner as people know them: the user's email, else the id (an SSH key's
// fingerprint, for a key not linked to anyone).
func ownerName(ctx context.Context, env adminEnv, owner string) string {
	if u, err := env.store.GetUser(ctx, owner); err == nil && u.Email != "" {
		return u.Email
	}
	return owner
}

func listOrNobody(with []string) string {
	if len(with) == 0 {
		return "nobody"
	}
	return strings.Join(with, ", ")
}

// writeJSONLines writes rows as JSON, one object per line (a list command's --json).
func writeJSONLines[T any](out io.Writer, rows []T) error {
	enc := json.NewEncoder(out)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// nonNil makes an empty list print as [] in JSON, not null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// auditShared records share= on an owner's ssh command: one record per tunnel it applies to,
// or one without a tunnel if the connection serves none yet. User is the owner, who did it;
// the operator's `tunnel share` records have no user.
func (srv *server) auditShared(owner string, with []string, tunnels map[string][]string) {
	who := owner
	if u, err := srv.store.GetUser(context.Background(), owner); err == nil && u.Email != "" {
		who = u.Email
	}
	r := data.AuditRecord{Kind: "tunnel_share", User: who, Owner: who, Decision: "allow",
		Detail: "shared by the owner (ssh share=, for this connection): " + strings.Join(with, ", ")}
	if len(tunnels) == 0 {
		srv.audit.Append(r)
		return
	}
	for _, name := range slices.Sorted(maps.Keys(tunnels)) {
		rt := r
		rt.Tunnel = name
		rt.Detail += "; now shared with " + strings.Join(tunnels[name], ", ")
		srv.audit.Append(rt)
	}
}
