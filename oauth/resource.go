package oauth

import (
	"context"
	"net/url"
	"strings"

	"github.com/ory/fosite"
)

// errInvalidTarget is RFC 8707's error for a resource this server does not protect. fosite has
// no such error.
var errInvalidTarget = &fosite.RFC6749Error{
	ErrorField:       "invalid_target",
	DescriptionField: "The requested resource is invalid, unknown, or malformed.",
	CodeField:        400,
}

func invalidTarget(format string, args ...any) error {
	return errInvalidTarget.WithHintf(format, args...)
}

// CanonicalResource returns the canonical form of an RFC 8707 resource URL: https, lower-case
// host, the path as given without a trailing slash, no query or fragment. ok is false for
// anything else. A token's audience is always in this form, and so is every comparison with
// it.
func CanonicalResource(raw string) (resource, origin string, ok bool) {
	if len(raw) > 2048 {
		return "", "", false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Opaque != "" ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		return "", "", false
	}
	host := strings.ToLower(u.Host)
	host = strings.TrimSuffix(host, ":443")
	origin = "https://" + host
	path := strings.TrimRight(u.EscapedPath(), "/")
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return "", "", false
		}
	}
	return origin + path, origin, true
}

// ResourceOrigin returns the origin of a canonical resource.
func ResourceOrigin(resource string) string {
	rest, ok := strings.CutPrefix(resource, "https://")
	if !ok {
		return ""
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	return "https://" + rest
}

// resolveResource checks the resource parameters of an authorization request and returns the
// one resource to bind: the one given, or the only one that exists when none is given.
func (s *Server) resolveResource(ctx context.Context, values []string) (string, error) {
	switch len(values) {
	case 0:
		origin, ok := s.cfg.Resources.Only(ctx)
		if !ok {
			return "", invalidTarget("This server protects several MCP servers; the client must name one with the resource parameter (RFC 8707).")
		}
		return origin, nil
	case 1:
	default:
		return "", invalidTarget("Ask for one resource at a time.")
	}
	res, origin, ok := CanonicalResource(values[0])
	if !ok {
		return "", invalidTarget("The resource must be an https URL without query or fragment.")
	}
	if !s.cfg.Resources.Known(ctx, origin) {
		return "", invalidTarget("There is no MCP server at %s on this toolgate.", origin)
	}
	return res, nil
}

// checkResourceAgainst validates a token request's resource parameters against what the grant
// holds: a client may repeat the resource it was granted, never ask for another.
func checkResourceAgainst(values []string, granted []string) error {
	if len(values) == 0 {
		return nil
	}
	if len(values) > 1 {
		return invalidTarget("Ask for one resource at a time.")
	}
	res, _, ok := CanonicalResource(values[0])
	if !ok {
		return invalidTarget("The resource must be an https URL without query or fragment.")
	}
	for _, g := range granted {
		if g == res {
			return nil
		}
	}
	return invalidTarget("This grant is for another resource.")
}
