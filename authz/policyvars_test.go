package authz

import (
	"fmt"
	"testing"
	"time"
)

// TestPolicyVariables: every variable and field reads its own part of the Input, however
// often and in whatever order the conditions of one decision read them (values are made once
// per decision and kept), and has() sees empty strings as unset.
func TestPolicyVariables(t *testing.T) {
	in := &Input{}
	in.User.ID, in.User.Email, in.User.Groups = "uid", "mail@x", []string{"g1"}
	in.Client.ID, in.Client.Name = "cid", "cname"
	in.Scopes = []string{"mcp"}
	in.Tunnel, in.Owner, in.Shared = "tname", "towner", true
	in.Method, in.Tool, in.Class = "tools/call", "tool1", Write
	in.SourceIP, in.AuthAge = "192.0.2.1", 90*time.Minute
	empty := &Input{}
	for _, tc := range []struct {
		when       string
		in         *Input
		want       bool
		comparison string // a condition that must be false, reading the same fields
	}{
		{`user.id == "uid" && user.email == "mail@x" && user.id == "uid"`, in, true, `user.id == "mail@x"`},
		{`client.id == "cid" && client.name == "cname" && client.id == "cid"`, in, true, `client.name == "cid"`},
		{`tunnel.name == "tname" && tunnel.owner == "towner" && tunnel.name == "tname"`, in, true, `tunnel.owner == "tname"`},
		{`tool.name == "tool1" && tool.class == "write" && tool.name == "tool1"`, in, true, `tool.class == "tool1"`},
		{`method == "tools/call" && source_ip == "192.0.2.1"`, in, true, `method == "192.0.2.1"`},
		{`auth_age > max_auth_age && auth_age > duration("1h")`, in, true, `auth_age < max_auth_age`},
		{`tunnel.shared && "g1" in user.groups && "mcp" in scopes`, in, true, `!tunnel.shared`},
		{`has(user.id) && has(user.email) && has(client.id) && has(client.name) && has(tunnel.name) && has(tunnel.owner) && has(tool.name) && has(tool.class) && has(tunnel.shared) && has(user.groups)`,
			in, true, `!has(user.id)`},
		{`!has(user.id) && !has(user.email) && !has(client.id) && !has(client.name) && !has(tunnel.name) && !has(tunnel.owner) && !has(tool.name) && !has(tool.class) && !has(tunnel.shared) && !has(user.groups)`,
			empty, true, `has(tool.class)`},
		{`tool.class == "" && method == ""`, empty, true, `tool.class == "read"`},
	} {
		for i, when := range []string{tc.when, tc.comparison} {
			want := tc.want == (i == 0)
			src := fmt.Sprintf("max_auth_age: 1h\nrules:\n  - name: r\n    when: %q\n    effect: allow\n", when)
			p, err := ParsePolicy("vars.yaml", []byte(src))
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			d, errs := p.Decide(tc.in)
			if got := d.Effect == Allow; got != want || errs != nil {
				t.Errorf("%s: %v (%v), want %v", when, got, errs, want)
			}
		}
	}
}
