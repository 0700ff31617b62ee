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
		claim, err := env.store.GetName(ctx, *tunnelName)
		if errors.Is(err, data.ErrNotFound) {
			return fmt.Errorf("no tunnel named %q", *tunnelName)
		} else if err != nil {
			return err
		}
		in.Owner = claim.Owner
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
		fmt.Fprint(out, " (not connected: shares and the server's tool list are unknown)")
	}
	fmt.Fprintln(out)
	for _, e := range errs {
		fmt.Fprintf(out, "  rule error: %v\n", e)
	}
	return nil
}
