package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/tunnel"
)

// `toolgate tunnel names|release`: the claimed names (data.NameClaim) and the operator's way
// to take one back. A name belongs to whoever claimed it first until it is released; an
// unused claim lapses on its own (the expiry sweep), and `tunnel release` is the release that
// does not wait: the claim and its saved shares are deleted in one transaction, and inside a
// running server the name's live forwards are closed (tunnel.Registry.ReleaseName) with a
// line on the owner's terminal, the SSH connection staying up for its other forwards.

// nameRow is one claim in `tunnel names`, and its JSON line with --json.
type nameRow struct {
	Name  string `json:"name"`
	Owner string `json:"owner"` // the user's email, else the owner id
	Kind  string `json:"kind"`  // requested or random
	// Live is whether a tunnel serves the name now; null without a running server, which
	// alone knows.
	Live     *bool     `json:"live"`
	LastUsed time.Time `json:"last_used"`
	// Lapses is when the claim lapses if unused; null for never. A lapsed claim stays listed
	// until the sweep releases it.
	Lapses *time.Time `json:"lapses"`
	Shares int        `json:"shares"` // how many people and groups it is saved as shared with
}

// tunnelNames lists every claimed name, or one owner's, by name.
func tunnelNames(ctx context.Context, env adminEnv, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tunnel names", flag.ContinueOnError)
	ownerFlag := fs.String("owner", "", "only the names of this user (email) or owner id")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	if _, err := parseCommand(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	only := strings.TrimSpace(*ownerFlag)
	if strings.Contains(only, "@") {
		u, err := lookupUser(ctx, env, only)
		if err != nil {
			return err
		}
		only = u.ID
	}
	claims, err := env.store.ListNames(ctx)
	if err != nil {
		return err
	}
	saved, err := env.store.ListNameShares(ctx)
	if err != nil {
		return err
	}
	shares := make(map[string]int, len(saved))
	for _, sh := range saved {
		shares[sh.Name] = len(sh.With)
	}
	owners := map[string]string{}
	var rows []nameRow
	for _, c := range claims {
		if only != "" && c.Owner != only {
			continue
		}
		if _, ok := owners[c.Owner]; !ok {
			owners[c.Owner] = ownerName(ctx, env, c.Owner)
		}
		r := nameRow{Name: c.Name, Owner: owners[c.Owner], Kind: string(c.Kind), LastUsed: c.LastUsed.UTC(), Shares: shares[c.Name]}
		if env.tunnels != nil {
			live := env.tunnels.Lookup(c.Name) != nil
			r.Live = &live
		}
		if !c.ExpiresAt.IsZero() {
			exp := c.ExpiresAt.UTC()
			r.Lapses = &exp
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b nameRow) int { return strings.Compare(a.Name, b.Name) })

	if *asJSON {
		return writeJSONLines(out, rows)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tOWNER\tKIND\tLIVE\tLAST USED\tLAPSES\tSHARES")
	for _, r := range rows {
		live := "unknown"
		if r.Live != nil {
			live = map[bool]string{true: "yes", false: "no"}[*r.Live]
		}
		lapses := "never"
		if r.Lapses != nil {
			lapses = when(*r.Lapses)
			// A live name does not lapse: the sweep keeps it, and its close renews the claim.
			if !r.Lapses.After(env.now()) && (r.Live == nil || !*r.Live) {
				lapses = "lapsed " + lapses
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", r.Name, r.Owner, r.Kind, live, when(r.LastUsed), lapses, r.Shares)
	}
	return tw.Flush()
}

// tunnelRelease deletes a name's claim, its saved shares with it, and closes its live
// tunnel, so that anyone may claim it next.
func tunnelRelease(ctx context.Context, env adminEnv, args []string, out io.Writer) error {
	pos, err := parseCommand(flag.NewFlagSet("tunnel release", flag.ContinueOnError), args, 1, "NAME")
	if err != nil {
		return err
	}
	name := strings.ToLower(strings.TrimSpace(pos[0]))
	c, err := env.store.GetName(ctx, name)
	if errors.Is(err, data.ErrNotFound) {
		if env.isReserved(name) {
			return fmt.Errorf("%s is a reserved name: nobody can claim it, so there is no claim to release", name)
		}
		return fmt.Errorf("no tunnel named %q is claimed; nothing to release (toolgate tunnel names lists the claims)", name)
	}
	if err != nil {
		return err
	}
	sh, err := env.store.GetNameShares(ctx, name)
	if err != nil && !errors.Is(err, data.ErrNotFound) {
		return err
	}
	owner := ownerName(ctx, env, c.Owner)

	// The release is conditional on the owner read above: a claim that lapsed and changed
	// hands meanwhile is not released in the old owner's name.
	closed := 0
	if env.tunnels != nil {
		closed, err = env.tunnels.ReleaseName(ctx, name, c.Owner,
			fmt.Sprintf("toolgate: the operator released the name %s; this forward is closed", name))
	} else {
		err = env.store.ReleaseName(ctx, name, c.Owner)
	}
	switch {
	case errors.Is(err, data.ErrNotFound):
		return fmt.Errorf("no tunnel named %q is claimed: it was released meanwhile", name)
	case errors.Is(err, data.ErrNameTaken):
		return fmt.Errorf("%s changed hands while it was being released; nothing was released (look again with toolgate tunnel names)", name)
	case err != nil:
		return err
	}

	var live string
	switch {
	case env.tunnels == nil:
		live = "no server is running, so there was no live tunnel to close"
	case closed == 0:
		live = "it was not live"
	default:
		live = fmt.Sprintf("its live tunnel was closed (%d forward(s)) and the owner's terminal was told why", closed)
	}
	detail := "released by the operator (toolgate tunnel release); " + live
	if len(sh.With) > 0 {
		detail += "; its saved shares went with it: " + strings.Join(sh.With, ", ")
	}
	if env.audit != nil {
		env.audit.Append(data.AuditRecord{Kind: "name_release", Tunnel: name, Owner: owner, Decision: "allow", Detail: detail})
	}
	fmt.Fprintf(out, "released %s (owner %s); anyone may claim it now\n  %s\n", name, owner, live)
	if len(sh.With) > 0 {
		fmt.Fprintf(out, "  its saved shares went with it: %s\n", strings.Join(sh.With, ", "))
	}
	return nil
}

// isReserved reports whether nobody may claim name: the built-in list or the server's
// reserved-names setting.
func (env adminEnv) isReserved(name string) bool {
	return slices.Contains(tunnel.ReservedNames(), name) || slices.Contains(env.reserved, name)
}
