package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/web"
)

// policyEnv is what `toolgate policy test` needs from a running server: the policy in force
// and what it knows about live tunnels. Without a server the command uses the configured
// policy file (or the built-in policy) and the database alone.
type policyEnv struct {
	policy func() *authz.Policy
	// reload reads the policy file again in the running server, as SIGHUP does, and
	// returns the policy in force; nil without a server.
	reload func() (*authz.Policy, error)
	// file is the policy setting: the file, or "" for the built-in policy.
	file string
	// tunnel returns a live tunnel's owner and shares, and the class its server's listing
	// gave a tool; live is false for a tunnel that is not connected.
	tunnel func(name, tool string) (owner string, shares []string, class authz.Class, known, live bool)
}

// policyTest answers "may USER with CLIENT call TOOL on TUNNEL?" and names the rule.
func policyTest(ctx context.Context, env adminEnv, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("policy test", flag.ContinueOnError)
	email := fs.String("user", "", "the person (required)")
	client := fs.String("client", "cli", "the client id")
	tunnelName := fs.String("tunnel", "", "the tunnel's name (required)")
	tool := fs.String("tool", "", "the tool (for tools/call)")
	method := fs.String("method", "tools/call", "the JSON-RPC method")
	class := fs.String("class", "", "the tool's class, if the server's listing is not known (read, write, destructive)")
	argsJSON := fs.String("args", "", "the call's arguments, a JSON object")
	scopes := fs.String("scopes", "mcp", "the token's scopes, space-separated")
	age := fs.Duration("auth-age", 0, "how long ago the person signed in")
	if _, err := parseCommand(fs, args, 0, "flags only"); err != nil {
		return err
	}
	if *email == "" || *tunnelName == "" || (*method == "tools/call" && *tool == "") {
		return usageError{"policy test: --user, --tunnel and (for tools/call) --tool are required"}
	}
	if env.policies == nil || env.policies.policy == nil {
		return errors.New("policy test: no policy (the server runs with tunnel-auth none)")
	}
	u, err := lookupUser(ctx, env, *email)
	if err != nil {
		return err
	}
	in := authz.Input{Method: *method, Tool: *tool, Scopes: strings.Fields(*scopes), Tunnel: *tunnelName,
		Time: time.Now(), AuthAge: *age}
	in.User.ID, in.User.Email, in.User.Groups = u.ID, u.Email, u.Groups
	in.Client.ID = *client
	if cl, err := env.store.GetOAuthClient(ctx, *client); err == nil {
		in.Client.Name = cl.Name
	}
	if *argsJSON != "" {
		if err := json.Unmarshal([]byte(*argsJSON), &in.Arguments); err != nil {
			return usageError{"policy test: --args is not a JSON object: " + err.Error()}
		}
	}

	pol := env.policies.policy()
	source := ""
	var shares []string
	live := false
	if env.policies.tunnel != nil {
		var known bool
		var c authz.Class
		in.Owner, shares, c, known, live = env.policies.tunnel(*tunnelName, *tool)
		if known {
			in.Class, source = c, "from the server's tools/list"
		}
	}
	if !live {
		// The claim and the shares saved for it: what the tunnel would have if it connected
		// now, less its ssh command's share=.
		sh, err := env.store.GetNameShares(ctx, *tunnelName)
		if errors.Is(err, data.ErrNotFound) {
			return fmt.Errorf("no tunnel named %q", *tunnelName)
		} else if err != nil {
			return err
		}
		in.Owner, shares = sh.Owner, sh.With
	}
	in.Shared = web.SharedWith(shares, u.Email, u.Groups)
	switch {
	case *method == "prompts/get" || *method == "resources/read":
		in.Class, source = authz.Read, "resources and prompts count as read"
	case *method != "tools/call":
		in.Class, source = "", ""
	case *class != "":
		in.Class, source = authz.Class(*class), "as given"
	default:
		if c, ok := pol.ClassOverride(*tunnelName, *tool); ok {
			in.Class, source = c, "the policy's override"
		} else if source == "" {
			in.Class, source = authz.Destructive, "never listed by the server, so destructive"
		}
	}
	d, errs := pol.Decide(&in)
	fmt.Fprintf(out, "%s by rule %q\n", strings.ToUpper(string(d.Effect)), d.Rule)
	if d.Message != "" {
		fmt.Fprintf(out, "  message: %s\n", d.Message)
	}
	if in.Class != "" {
		fmt.Fprintf(out, "  class:   %s (%s)\n", in.Class, source)
	}
	owner := in.Owner
	if ou, err := env.store.GetUser(ctx, in.Owner); err == nil {
		owner = ou.Email
	}
	fmt.Fprintf(out, "  tunnel:  %s, owned by %s, shared with this user: %v", *tunnelName, owner, in.Shared)
	if !live {
		fmt.Fprint(out, " (not connected: saved shares only, and the server's tool list is unknown)")
	}
	fmt.Fprintln(out)
	for _, e := range errs {
		fmt.Fprintf(out, "  rule error: %v\n", e)
	}
	return nil
}

// policyReload is SIGHUP from the command line, with an answer: the running server reads its
// policy file again (policies.Reload, which logs and audits it), and the command says what
// is in force now or, for a broken file, every error with its line and column and that the
// old policy stays. It exits non-zero then, so a deploy script stops.
func policyReload(_ context.Context, env adminEnv, args []string, out io.Writer) error {
	if _, err := parseCommand(flag.NewFlagSet("policy reload", flag.ContinueOnError), args, 0, "no arguments"); err != nil {
		return err
	}
	switch {
	case env.policies == nil:
		return errors.New("policy reload: no policy (the server runs with tunnel-auth none)")
	case env.policies.reload == nil:
		// No server: nothing holds a policy to replace. The file has been compiled already
		// to get here (runAdminCLI refuses a broken one), which still answers what the
		// operator wants to know: whether the next start takes it.
		if env.policies.file == "" {
			return errors.New("policy reload: no server is running, and the configuration names no policy file")
		}
		return fmt.Errorf("policy reload: no server is running (%s checks out; a server started now uses it)", env.policies.file)
	}
	pol, err := env.policies.reload()
	if err != nil {
		return fmt.Errorf("policy reload refused; the policy in force stays:\n%w", err)
	}
	name, _ := pol.Source()
	fmt.Fprintf(out, "reloaded %s: %d rules (%s)\n", name, len(pol.Rules()), strings.Join(pol.Rules(), ", "))
	return nil
}

// policyShow prints the policy in force: where it came from and its text as it was
// compiled, which is what decides even if the file has changed since.
func policyShow(_ context.Context, env adminEnv, args []string, out io.Writer) error {
	if _, err := parseCommand(flag.NewFlagSet("policy show", flag.ContinueOnError), args, 0, "no arguments"); err != nil {
		return err
	}
	if env.policies == nil || env.policies.policy == nil {
		return errors.New("policy show: no policy (the server runs with tunnel-auth none)")
	}
	pol := env.policies.policy()
	name, src := pol.Source()
	where := "the built-in policy"
	if env.policies.file != "" {
		where = "from " + name
	}
	if env.policies.reload == nil {
		where += " (no server is running: what a server started now would use)"
	}
	fmt.Fprintf(out, "# %s; %d rules: %s\n", where, len(pol.Rules()), strings.Join(pol.Rules(), ", "))
	out.Write(src)
	if len(src) > 0 && src[len(src)-1] != '\n' {
		fmt.Fprintln(out)
	}
	return nil
}
