package web

import (
	"context"
	"net"
	"strings"

	"github.com/toolgate/toolgate/tunnel"
)

// TunnelOwners finds tunnels and who holds their names. *tunnel.Registry implements it.
type TunnelOwners interface {
	// Owner returns the user holding name, live or not.
	Owner(ctx context.Context, name string) (string, bool)
	// Names lists the live tunnels.
	Names() []string
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

// Describe implements ResourceAccess. Until per-tool policy, a tunnel's owner may do
// everything and nobody else anything.
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
	switch {
	case !ok:
		return "Nothing: the tunnel " + name + " does not exist.", false
	case owner != userID:
		return "Nothing: the tunnel " + name + " belongs to someone else and is not shared with you.", false
	}
	return "Everything: list and call every tool of " + name + ", which is your tunnel, as you could yourself.", true
}
