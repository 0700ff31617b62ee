package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/web"
)

// The account and key commands (`toolgate user …`, `toolgate key …`) run the same code whether
// or not a server is running. bbolt lets one process hold the file, so when a server holds it
// the command line is sent over the server's admin socket (adminsocket.go) and executed there,
// against the live store and with the power to close SSH connections; otherwise the command
// opens the file itself. adminEnv is what either side provides.
type adminEnv struct {
	store    *data.Store
	accounts *web.Accounts
	// closer closes live SSH connections of a key or user; nil when no server runs (there are
	// none to close).
	closer interface {
		CloseKey(fp, reason string) int
		CloseOwner(owner, reason string) int
	}
	now func() time.Time
	// keyTTL is how long `key add` links a key for unless told otherwise: the key-ttl setting.
	keyTTL time.Duration
	// inspect says what an access token grants (`token inspect`); nil with tunnel-auth none.
	inspect func(ctx context.Context, token string) (*oauth.Access, error)
	// policies is what `policy test|show|reload` ask; nil with tunnel-auth none.
	policies *policyEnv
	// tunnels applies saved shares to live tunnels (`tunnel share` and friends) and closes a
	// released name's (`tunnel release`); nil when no server runs (there are none).
	tunnels liveTunnels
	// reserved is the reserved-names setting, the names nobody may claim besides the built-in
	// ones (`tunnel release` tells them from unknown names).
	reserved []string
	// audit records the commands' security events: the server's log, or, without a server,
	// one opened on the database for the command. nil: not recorded (tests).
	audit *data.AuditLog
}

const adminUsage = `usage:
  toolgate user add EMAIL [--name NAME] [--admin]   create a local account; prints a one-time sign-in link
  toolgate user list                                 list accounts
  toolgate user disable EMAIL                        refuse sign-in, end sessions, close SSH connections
  toolgate user enable EMAIL                         allow sign-in again
  toolgate user reset EMAIL                          print a one-time sign-in link (to set a new password)
  toolgate key list [--user EMAIL]                   list linked SSH keys
  toolgate key add --user EMAIL [--ttl D] PUBKEY     link a public key (a .pub file or its text) to a
                                                     user without the browser; --ttl 0: no expiry
  toolgate key revoke FINGERPRINT                    unlink a key and close its SSH connections
  toolgate grant list [--user EMAIL]                 list approvals users gave OAuth clients
  toolgate grant revoke --user EMAIL [--resource URL] CLIENT_ID
                                                     forget an approval and revoke its tokens
  toolgate token inspect TOKEN                       what an OAuth access token grants, or why not
  toolgate tunnel share NAME WHO...                  share a tunnel name with people (email) or
                                                     groups (group:NAME) until unshared; it lasts
                                                     across the owner's connections
  toolgate tunnel unshare NAME WHO...                take a share back
  toolgate tunnel shares [NAME] [--json]             whom tunnels are shared with: saved, and by
                                                     the ssh command of live ones
  toolgate tunnel names [--owner EMAIL|ID] [--json]  claimed names: owner, live, last used, when
                                                     the claim lapses, saved shares
  toolgate tunnel release NAME                       delete a name's claim and its saved shares and
                                                     close its live tunnel; anyone may claim it next
  toolgate policy test --user EMAIL --tunnel NAME --tool TOOL [--client ID] [--args JSON]
                                                     what the policy decides, and by which rule
  toolgate policy reload                             read the policy file again (as SIGHUP does); a
                                                     broken file is refused and the old one stays
  toolgate policy show                               the policy in force: its file and rules
  toolgate audit list [--user EMAIL] [--tunnel NAME] [--tool NAME] [--decision allow|deny|step_up]
                      [--kind KIND] [--since D|TIME] [--until D|TIME] [--after SEQ] [--before SEQ]
                      [--limit N] [--json]
                                                     audit records, newest first (--after SEQ: oldest
                                                     first from there); --since 1h or RFC 3339; --json:
                                                     JSON lines
Each takes --config FILE and --data-dir DIR (or TOOLGATE_CONFIG, TOOLGATE_DATA_DIR) to find the
database; with a server running on it, the command runs inside that server.`

// signInLinkTTL is how long links printed by user add and user reset stay valid.
const signInLinkTTL = 24 * time.Hour

// runAdminCommand executes one admin command (args[0] is "user", "key", "tunnel", …) and
// returns its exit code: 0 done, 1 failed, 2 misuse.
func runAdminCommand(ctx context.Context, env adminEnv, args []string, stdout, stderr io.Writer) int {
	if env.now == nil {
		env.now = time.Now
	}
	if len(args) < 2 {
		fmt.Fprintln(stderr, adminUsage)
		return 2
	}
	if h := args[1]; h == "help" || h == "-h" || h == "--help" {
		fmt.Fprintln(stdout, adminUsage)
		return 0
	}
	err := func() error {
		switch args[0] + " " + args[1] {
		case "user add":
			return userAdd(ctx, env, args[2:], stdout)
		case "user list":
			return userList(ctx, env, args[2:], stdout)
		case "user disable":
			return userSetDisabled(ctx, env, args[2:], true, stdout)
		case "user enable":
			return userSetDisabled(ctx, env, args[2:], false, stdout)
		case "user reset":
			return userReset(ctx, env, args[2:], stdout)
		case "key list":
			return keyList(ctx, env, args[2:], stdout)
		case "key add":
			return keyAdd(ctx, env, args[2:], stdout)
		case "key revoke":
			return keyRevoke(ctx, env, args[2:], stdout)
		case "grant list":
			return grantList(ctx, env, args[2:], stdout)
		case "grant revoke":
			return grantRevoke(ctx, env, args[2:], stdout)
		case "token inspect":
			return tokenInspect(ctx, env, args[2:], stdout)
		case "tunnel share":
			return tunnelShare(ctx, env, args[2:], true, stdout)
		case "tunnel unshare":
			return tunnelShare(ctx, env, args[2:], false, stdout)
		case "tunnel shares":
			return tunnelShares(ctx, env, args[2:], stdout)
		case "tunnel names":
			return tunnelNames(ctx, env, args[2:], stdout)
		case "tunnel release":
			return tunnelRelease(ctx, env, args[2:], stdout)
		case "policy test":
			return policyTest(ctx, env, args[2:], stdout)
		case "policy reload":
			return policyReload(ctx, env, args[2:], stdout)
		case "policy show":
			return policyShow(ctx, env, args[2:], stdout)
		case "audit list":
			return auditList(ctx, env, args[2:], stdout)
		}
		return usageError{fmt.Sprintf("unknown command %q", args[0]+" "+args[1])}
	}()
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "toolgate: %s\n\n%s\n", ue.msg, adminUsage)
		return 2
	default:
		fmt.Fprintf(stderr, "toolgate: %v\n", err)
		return 1
	}
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// parseCommand parses a command's flags and returns exactly want positional arguments. Flags
// may come before or after the positional ones (`user add --admin a@b` and `user add a@b
// --admin` both work), as people type them either way.
func parseCommand(fs *flag.FlagSet, args []string, want int, names string) ([]string, error) {
	pos, err := parsePositional(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != want {
		return nil, usageError{fmt.Sprintf("%s: expected %s", fs.Name(), names)}
	}
	return pos, nil
}

// parsePositional is parseCommand for any number of positional arguments.
func parsePositional(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	return pos, nil
}

func userAdd(ctx context.Context, env adminEnv, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("user add", flag.ContinueOnError)
	name := fs.String("name", "", "display name")
	admin := fs.Bool("admin", false, "administrator")
	pos, err := parseCommand(fs, args, 1, "EMAIL")
	if err != nil {
		return err
	}
	u, err := env.accounts.AddUser(ctx, pos[0], *name, *admin)
	if err != nil {
		return err
	}
	link, err := env.accounts.IssueSignInLink(ctx, u.ID, signInLinkTTL)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "added %s%s\none-time sign-in link (valid %s; the user sets a password there):\n  %s\n",
		u.Email, map[bool]string{true: " (admin)"}[u.Admin], signInLinkTTL, link)
	return nil
}

func userList(ctx context.Context, env adminEnv, args []string, out io.Writer) error {
	if _, err := parseCommand(flag.NewFlagSet("user list", flag.ContinueOnError), args, 0, "no arguments"); err != nil {
		return err
	}
	users, err := env.store.ListUsers(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "EMAIL\tNAME\tROLE\tSTATE\tSIGN-IN\tLAST SIGN-IN")
	for _, u := range users {
		role, state, method := "user", "active", "link"
		if u.Admin {
			role = "admin"
		}
		if u.Disabled {
			state = "disabled"
		}
		switch {
		case u.Subject != "":
			method = "oidc"
		case u.PasswordHash != "":
			method = "password"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Email, dash(u.Name), role, state, method, when(u.LastSignIn))
	}
	return tw.Flush()
}

func userSetDisabled(ctx context.Context, env adminEnv, args []string, disabled bool, out io.Writer) error {
	verb := map[bool]string{true: "user disable", false: "user enable"}[disabled]
	pos, err := parseCommand(flag.NewFlagSet(verb, flag.ContinueOnError), args, 1, "EMAIL")
	if err != nil {
		return err
	}
	if !disabled {
		u, err := env.accounts.Enable(ctx, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "enabled %s\n", u.Email)
		return nil
	}
	u, err := env.accounts.Disable(ctx, pos[0])
	if err != nil {
		return err
	}
	closed := 0
	if env.closer != nil {
		closed = env.closer.CloseOwner(u.ID, "your account was disabled")
	}
	fmt.Fprintf(out, "disabled %s; its browser sessions ended, %d SSH connection(s) closed\n", u.Email, closed)
	return nil
}

func userReset(ctx context.Context, env adminEnv, args []string, out io.Writer) error {
	pos, err := parseCommand(flag.NewFlagSet("user reset", flag.ContinueOnError), args, 1, "EMAIL")
	if err != nil {
		return err
	}
	u, err := lookupUser(ctx, env, pos[0])
	if err != nil {
		return err
	}
	if u.Disabled {
		return fmt.Errorf("%s is disabled; enable it first", u.Email)
	}
	link, err := env.accounts.IssueSignInLink(ctx, u.ID, signInLinkTTL)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "one-time sign-in link for %s (valid %s; it asks for a new password):\n  %s\n", u.Email, signInLinkTTL, link)
	return nil
}

func keyList(ctx context.Context, env adminEnv, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("key list", flag.ContinueOnError)
	email := fs.String("user", "", "only this user's keys")
	if _, err := parseCommand(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	users, err := env.store.ListUsers(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FINGERPRINT\tTYPE\tUSER\tLINKED\tEXPIRES\tLAST USED\tFROM")
	found := false
	for _, u := range users {
		if *email != "" && !strings.EqualFold(u.Email, *email) {
			continue
		}
		found = true
		keys, err := env.store.KeysByUser(ctx, u.ID)
		if err != nil {
			return err
		}
		for _, k := range keys {
			exp := when(k.ExpiresAt)
			if k.Expired(env.now()) {
				exp = "expired " + exp
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Fingerprint, k.Type, u.Email, when(k.LinkedAt), exp, when(k.LastUsed), dash(k.LinkedFrom))
		}
	}
	if *email != "" && !found {
		return fmt.Errorf("no user %q", *email)
	}
	return tw.Flush()
}

// keyAdd links a key an administrator vouches for, as the approval page would for its owner:
// for machines that cannot open a browser (CI, a server behind a permanent route) and for
// setting up a team ahead of time. The key text arrives inline; runAdminCLI reads a file
// argument in the caller's process, since a running server may not see the caller's files.
func keyAdd(ctx context.Context, env adminEnv, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("key add", flag.ContinueOnError)
	email := fs.String("user", "", "the user the key belongs to (required)")
	ttl := fs.Duration("ttl", env.keyTTL, "how long the link lasts; 0: until revoked")
	pos, err := parseCommand(fs, args, 1, "PUBKEY")
	if err != nil {
		return err
	}
	if *email == "" {
		return usageError{"key add: --user is required"}
	}
	if *ttl < 0 {
		return usageError{"key add: --ttl must not be negative"}
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pos[0]))
	if err != nil {
		return fmt.Errorf("not an OpenSSH public key (expected a line like \"ssh-ed25519 AAAA… comment\" or a .pub file): %w", err)
	}
	u, err := lookupUser(ctx, env, *email)
	if err != nil {
		return err
	}
	if u.Disabled {
		return fmt.Errorf("%s is disabled", u.Email)
	}
	now := env.now()
	k := data.SSHKey{Fingerprint: ssh.FingerprintSHA256(pub), Type: pub.Type(), UserID: u.ID, LinkedAt: now, LinkedFrom: "cli"}
	if *ttl > 0 {
		k.ExpiresAt = now.Add(*ttl)
	}
	k, err = env.store.LinkKey(ctx, k)
	if errors.Is(err, data.ErrKeyLinked) {
		return fmt.Errorf("%s is linked to another user; revoke it first", k.Fingerprint)
	}
	if err != nil {
		return err
	}
	// As on the approval page: names the bare key claimed before it had an owner follow it.
	if _, err := env.store.MoveNames(ctx, k.Fingerprint, u.ID); err != nil {
		return fmt.Errorf("key linked, but moving its names to %s failed: %w", u.Email, err)
	}
	exp := "never expires"
	if !k.ExpiresAt.IsZero() {
		exp = "expires " + when(k.ExpiresAt)
	}
	fmt.Fprintf(out, "linked %s (%s) to %s; %s\n", k.Fingerprint, k.Type, u.Email, exp)
	return nil
}

func keyRevoke(ctx context.Context, env adminEnv, args []string, out io.Writer) error {
	pos, err := parseCommand(flag.NewFlagSet("key revoke", flag.ContinueOnError), args, 1, "FINGERPRINT")
	if err != nil {
		return err
	}
	fp := pos[0]
	if !strings.HasPrefix(fp, "SHA256:") {
		fp = "SHA256:" + fp // as `ssh-keygen -lf` prints it, or without the prefix
	}
	k, err := env.store.RevokeKey(ctx, fp)
	if errors.Is(err, data.ErrNotFound) {
		return fmt.Errorf("no linked key %s", fp)
	}
	if err != nil {
		return err
	}
	closed := 0
	if env.closer != nil {
		closed = env.closer.CloseKey(k.Fingerprint, "this SSH key was revoked")
	}
	fmt.Fprintf(out, "revoked %s; %d SSH connection(s) closed\n", k.Fingerprint, closed)
	return nil
}

// lookupUser finds a user by email as typed (any case, surrounding spaces).
func lookupUser(ctx context.Context, env adminEnv, email string) (data.User, error) {
	e, err := web.NormalizeEmail(email)
	if err != nil {
		return data.User{}, err
	}
	u, err := env.store.UserByEmail(ctx, e)
	if errors.Is(err, data.ErrNotFound) {
		return data.User{}, fmt.Errorf("no user %q", e)
	}
	return u, err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04")
}
