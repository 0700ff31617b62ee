package web

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/tunnel"
)

// TunnelOwners finds tunnels and who holds their names. *tunnel.Registry implements it.
type TunnelOwners interface {
	// Owner returns the user holding name, live or not.
	Owner(ctx context.Context, name string) (string, bool)
	// Names lists the live tunnels.
	Names() []string
	// Lookup returns the live tunnel called name, or nil.
	Lookup(name string) *tunnel.Tunnel
}

// TunnelResources tells the authorization server which resources exist (oauth.Resources) and
// the consent page what a user may do with one (ResourceAccess): a resource is a tunnel's
// origin, https://NAME.TunnelDomain[:PORT], with any path.
type TunnelResources struct {
	// Tunnels finds names and owners. Required.
	Tunnels TunnelOwners
	// TunnelDomain is where tunnels live. Required.
	TunnelDomain string
	// Port is the public HTTPS port, part of every origin unless it is 443. Required.
	Port string
	// Policy, when set, is asked what a user could do with a tunnel (Describe). Default nil:
	// the owner may do everything and nobody else anything.
	Policy PolicySource
	// Users finds users' email and groups for Policy. Required with Policy.
	Users UserDirectory
	// Shares reads the shares saved for a tunnel that is not live, for Describe: someone a
	// tunnel is shared with may approve a client while its owner is offline. A live tunnel
	// answers for itself. Default nil: an offline tunnel counts as shared with nobody.
	Shares tunnel.ShareStore
}

// name returns the tunnel name of an origin on this server's tunnel domain and port.
func (t TunnelResources) name(origin string) (string, bool) {
	hostport, ok := strings.CutPrefix(origin, "https://")
	if !ok {
		return "", false
	}
	host, port := hostport, "443"
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	}
	if port != t.Port {
		return "", false
	}
	return tunnel.NameFromHost(host, t.TunnelDomain)
}

// Known implements oauth.Resources.
func (t TunnelResources) Known(ctx context.Context, origin string) bool {
	name, ok := t.name(origin)
	if !ok {
		return false
	}
	_, ok = t.Tunnels.Owner(ctx, name)
	return ok
}

// Only implements oauth.Resources: with exactly one live tunnel, a request that names no
// resource is for that one.
func (t TunnelResources) Only(context.Context) (string, bool) {
	names := t.Tunnels.Names()
	if len(names) != 1 {
		return "", false
	}
	origin := "https://" + names[0] + "." + t.TunnelDomain
	if t.Port != "443" {
		origin += ":" + t.Port
	}
	return origin, true
}

// Describe implements ResourceAccess: what the policy in force would let the user do, asked
// for each class of tool as a caller with a fresh sign-in. Without a policy, a tunnel's
// owner may do everything and nobody else anything.
func (t TunnelResources) Describe(ctx context.Context, userID, resource string) (string, bool) {
	origin := resource
	if i := strings.Index(strings.TrimPrefix(resource, "https://"), "/"); i >= 0 {
		origin = resource[:len("https://")+i]
	}
	name, ok := t.name(origin)
	if !ok {
		return "Nothing: this is not a tunnel of this server.", false
	}
	owner, ok := t.Tunnels.Owner(ctx, name)
	if ok && t.Policy != nil {
		return t.describePolicy(ctx, userID, name, owner)
	}
	switch {
	case !ok:
		return "Nothing: the tunnel " + name + " does not exist.", false
	case owner != userID:
		return "Nothing: the tunnel " + name + " belongs to someone else and is not shared with you.", false
	}
	return "Everything: list and call every tool of " + name + ", which is your tunnel, as you could yourself.", true
}

func (t TunnelResources) describePolicy(ctx context.Context, userID, name, owner string) (string, bool) {
	u, err := t.Users.GetUser(ctx, userID)
	if err != nil {
		return "Nothing: your account could not be read.", false
	}
	var shares []string
	if live := t.Tunnels.Lookup(name); live != nil {
		shares = live.Shares()
	} else if t.Shares != nil {
		// Only if still saved for this owner: the name may have changed hands since.
		if sh, err := t.Shares.GetNameShares(ctx, name); err == nil && sh.Owner == owner {
			shares = sh.With
		}
	}
	in := authz.Input{Tunnel: name, Owner: owner, Shared: SharedWith(shares, u.Email, u.Groups), Time: time.Now()}
	in.User.ID, in.User.Email, in.User.Groups = u.ID, u.Email, u.Groups
	pol := t.Policy.Current()
	var may []string
	for _, c := range []authz.Class{authz.Read, authz.Write, authz.Destructive} {
		probe := in
		probe.Method, probe.Class = "tools/call", c
		if d, _ := pol.Decide(&probe); d.Effect != authz.Deny {
			may = append(may, string(c))
		}
	}
	probe := in
	probe.Method = "tools/list"
	d, _ := pol.Decide(&probe)
	whose := "someone else's tunnel " + name
	if owner == userID {
		whose = "your tunnel " + name
	}
	switch {
	case len(may) == 3:
		return "Everything: list and call every tool of " + whose + ", as you could yourself.", true
	case len(may) > 0:
		return "Call the " + strings.Join(may, " and ") + " tools of " + whose + " (policy rules decide each call; other tools are hidden).", true
	case d.Effect == authz.Allow:
		return "List the tools of " + whose + ", but call none of them.", true
	}
	return "Nothing: " + whose + " is not shared with you.", false
}
