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
)

// `toolgate grant list|revoke`: the approvals users gave OAuth clients, the same records the
// /grants page shows. Revoking one also revokes every token issued under it, so the client's
// next request gets a 401 and must ask its user again.

func grantList(ctx context.Context, env adminEnv, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("grant list", flag.ContinueOnError)
	email := fs.String("user", "", "only this user's approvals")
	if _, err := parseCommand(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	var consents []data.OAuthConsent
	var err error
	users := map[string]string{}
	if *email != "" {
		u, err := lookupUser(ctx, env, *email)
		if err != nil {
			return err
		}
		users[u.ID] = u.Email
		consents, err = env.store.OAuthConsentsByUser(ctx, u.ID)
		if err != nil {
			return err
		}
	} else if consents, err = env.store.ListOAuthConsents(ctx); err != nil {
		return err
	}
	slices.SortFunc(consents, func(a, b data.OAuthConsent) int {
		return strings.Compare(a.UserID+a.ClientID+a.Resource, b.UserID+b.ClientID+b.Resource)
	})
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tCLIENT\tNAME\tRESOURCE\tSCOPES\tAPPROVED")
	for _, c := range consents {
		who, ok := users[c.UserID]
		if !ok {
			who = c.UserID
			if u, err := env.store.GetUser(ctx, c.UserID); err == nil {
				who = u.Email
			}
			users[c.UserID] = who
		}
		name := "-"
		if cl, err := env.store.GetOAuthClient(ctx, c.ClientID); err == nil && cl.Name != "" {
			name = cl.Name
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", who, c.ClientID, name, c.Resource,
			strings.Join(c.Scopes, " "), c.UpdatedAt.UTC().Format("2006-01-02 15:04"))
	}
	return tw.Flush()
}

func grantRevoke(ctx context.Context, env adminEnv, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("grant revoke", flag.ContinueOnError)
	email := fs.String("user", "", "whose approval (required)")
	resource := fs.String("resource", "", "only the approval for this MCP URL (default: all of the client's)")
	pos, err := parseCommand(fs, args, 1, "CLIENT_ID")
	if err != nil {
		return err
	}
	if *email == "" {
		return usageError{"grant revoke: --user EMAIL is required"}
	}
	u, err := lookupUser(ctx, env, *email)
	if err != nil {
		return err
	}
	consents, err := env.store.OAuthConsentsByUser(ctx, u.ID)
	if err != nil {
		return err
	}
	n := 0
	for _, c := range consents {
		if c.ClientID != pos[0] || (*resource != "" && c.Resource != *resource) {
			continue
		}
		if err := env.store.RevokeOAuthConsent(ctx, u.ID, c.ClientID, c.Resource); err != nil && !errors.Is(err, data.ErrNotFound) {
			return err
		}
		n++
		fmt.Fprintf(out, "revoked %s's approval of %s for %s, and its tokens\n", u.Email, c.ClientID, c.Resource)
	}
	if n == 0 {
		return fmt.Errorf("%s has no approval for client %q", u.Email, pos[0])
	}
	return nil
}

// tokenInspect is introspection for the operator: what an access token grants. It runs
// inside the server (the token check needs the server's key, and a stopped server has no
// tokens in use worth asking about).
func tokenInspect(ctx context.Context, env adminEnv, args []string, out io.Writer) error {
	pos, err := parseCommand(flag.NewFlagSet("token inspect", flag.ContinueOnError), args, 1, "TOKEN")
	if err != nil {
		return err
	}
	if env.inspect == nil {
		return errors.New("token inspect needs a running server with tunnel-auth oauth")
	}
	a, err := env.inspect(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("not a live access token: %w", err)
	}
	who := a.UserID
	if u, err := env.store.GetUser(ctx, a.UserID); err == nil {
		who = u.Email + " (" + u.ID + ")"
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "user\t%s\n", who)
	fmt.Fprintf(tw, "client\t%s\n", a.ClientID)
	fmt.Fprintf(tw, "resource\t%s\n", a.Resource)
	fmt.Fprintf(tw, "scopes\t%s\n", strings.Join(a.Scopes, " "))
	fmt.Fprintf(tw, "signed in\t%s\n", a.AuthTime.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "expires\t%s\n", a.ExpiresAt.UTC().Format(time.RFC3339))
	return tw.Flush()
}
