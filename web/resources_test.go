package web

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/tunnel"
)

// offlineTunnels knows claimed names, none of them live.
type offlineTunnels map[string]string // name → owner

func (o offlineTunnels) Owner(_ context.Context, name string) (string, bool) {
	owner, ok := o[name]
	return owner, ok
}
func (offlineTunnels) Names() []string              { return nil }
func (offlineTunnels) Lookup(string) *tunnel.Tunnel { return nil }

type staticPolicy struct{ p *authz.Policy }

func (s staticPolicy) Current() *authz.Policy { return s.p }

type userMap map[string]data.User

func (u userMap) GetUser(_ context.Context, id string) (data.User, error) {
	if x, ok := u[id]; ok {
		return x, nil
	}
	return data.User{}, data.ErrNotFound
}
func (userMap) OAuthGeneration() uint64 { return 0 }

type savedShares map[string]data.NameShares

func (s savedShares) GetNameShares(_ context.Context, name string) (data.NameShares, error) {
	if sh, ok := s[name]; ok {
		return sh, nil
	}
	return data.NameShares{}, data.ErrNotFound
}

// TestDescribeOfflineTunnelUsesSavedShares: the consent page for a tunnel whose owner is not
// connected answers from the shares saved for its name, but only those saved for its
// current owner.
func TestDescribeOfflineTunnelUsesSavedShares(t *testing.T) {
	tr := TunnelResources{
		Tunnels:      offlineTunnels{"notes": "u_owner", "moved": "u_new"},
		TunnelDomain: "toolgate.localhost", Port: "443",
		Policy: staticPolicy{authz.DefaultPolicy(time.Hour)},
		Users:  userMap{"u_ada": {ID: "u_ada", Email: "ada@example.com"}},
		Shares: savedShares{
			"notes": {Name: "notes", Owner: "u_owner", With: []string{"ada@example.com"}},
			"moved": {Name: "moved", Owner: "u_old", With: []string{"ada@example.com"}},
		},
	}
	ctx := context.Background()
	if msg, ok := tr.Describe(ctx, "u_ada", "https://notes.toolgate.localhost/mcp"); !ok || !strings.Contains(msg, "read tools") {
		t.Errorf("shared, owner offline: %q, %v; want the read tools", msg, ok)
	}
	if msg, ok := tr.Describe(ctx, "u_ada", "https://moved.toolgate.localhost/mcp"); ok {
		t.Errorf("shares saved for a previous owner were used: %q", msg)
	}
	tr.Shares = nil
	if msg, ok := tr.Describe(ctx, "u_ada", "https://notes.toolgate.localhost/mcp"); ok {
		t.Errorf("without a share store an offline tunnel counts as shared: %q", msg)
	}
}
