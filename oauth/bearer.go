package oauth

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

// Errors of [Server.Check], for the proxy path to turn into challenges.
var (
	// ErrNoToken: the request carries no bearer token in its Authorization header. A token in
	// the query string or a form does not count (RFC 9700 §2.5: they leak into logs and
	// Referer headers).
	ErrNoToken = errors.New("oauth: no bearer token")
	// ErrInvalidToken: the token is malformed, forged, unknown, expired, revoked, or belongs to
	// a disabled user.
	ErrInvalidToken = errors.New("oauth: invalid token")
	// ErrWrongResource: the token is valid, for another resource.
	ErrWrongResource = errors.New("oauth: token is for another resource")
)

// BearerToken returns the token of an "Authorization: Bearer" header, or ErrNoToken.
func BearerToken(r *http.Request) (string, error) {
	v := r.Header.Values("Authorization")
	if len(v) != 1 {
		return "", ErrNoToken
	}
	scheme, token, ok := strings.Cut(v[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", ErrNoToken
	}
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", ErrInvalidToken
	}
	return token, nil
}

// Check validates an access token for a request to origin ("https://host[:port]", lower case)
// and path: the token must be live and its audience must be this origin, with a path that is
// the request's path or a parent of it. It reads the database once (the token) plus once for
// the user, and never writes.
func (s *Server) Check(ctx context.Context, token, origin, path string) (*Access, error) {
	a, err := s.lookup(ctx, token)
	if errors.Is(err, errTokenUnknown) {
		return nil, ErrInvalidToken
	}
	if err != nil {
		return nil, err
	}
	if !ResourceCovers(a.Resource, origin, path) {
		return a, ErrWrongResource
	}
	return a, nil
}

// ResourceCovers reports whether a token for resource may be used at origin+path.
func ResourceCovers(resource, origin, path string) bool {
	host, ok := strings.CutPrefix(origin, "https://")
	if !ok || strings.IndexByte(host, '/') >= 0 {
		return false // not an origin: it has a path
	}
	rest, ok := strings.CutPrefix(resource, origin)
	if !ok || (rest != "" && rest[0] != '/') {
		return false
	}
	if rest == "" {
		return true
	}
	return path == rest || strings.HasPrefix(path, rest+"/")
}
