package authz

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// polInput is a request by user u on alice's tunnel "files".
func polInput(u, method, tool string, class Class, mod ...func(*Input)) *Input {
	in := &Input{}
	in.User.ID = u
	in.User.Email = u + "@example.com"
	in.Client.ID, in.Client.Name = "client-1", "Claude"
	in.Scopes = []string{"mcp"}
	in.Tunnel, in.Owner = "files", "alice"
	in.Method, in.Tool, in.Class = method, tool, class
	in.SourceIP = "192.0.2.7"
	in.Time = time.Date(2026, 3, 2, 10, 30, 0, 0, time.UTC)
	in.AuthAge = 5 * time.Minute
	for _, f := range mod {
		f(in)
	}
	return in
}

func shared(in *Input)  { in.Shared = true }
func oldAuth(in *Input) { in.AuthAge = 3 * time.Hour }

type polCase struct {
	name   string
	in     *Input
	effect Effect
	rule   string
}

func polCheck(t *testing.T, p *Policy, cases []polCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, errs := p.Decide(c.in)
			if len(errs) > 0 {
				t.Errorf("errors: %v", errs)
			}
			if d.Effect != c.effect || d.Rule != c.rule {
				t.Errorf("Decide = %s by %q (%q), want %s by %q", d.Effect, d.Rule, d.Message, c.effect, c.rule)
			}
		})
	}
}

func TestDefaultPolicy(t *testing.T) {
	p := DefaultPolicy(time.Hour)
	if got, want := p.Rules(), []string{"fresh-sign-in-for-destructive", "owner", "shared-read"}; !slices.Equal(got, want) {
		t.Fatalf("Rules = %q, want %q", got, want)
	}
	polCheck(t, p, []polCase{
		{"owner read", polInput("alice", "tools/call", "search", Read), Allow, "owner"},
		{"owner write", polInput("alice", "tools/call", "save", Write), Allow, "owner"},
		{"owner destructive fresh", polInput("alice", "tools/call", "rm", Destructive), Allow, "owner"},
		{"owner destructive old", polInput("alice", "tools/call", "rm", Destructive, oldAuth), StepUp, "fresh-sign-in-for-destructive"},
		{"owner destructive exactly max age", polInput("alice", "tools/call", "rm", Destructive, func(in *Input) { in.AuthAge = time.Hour }), StepUp, "fresh-sign-in-for-destructive"},
		{"owner write old", polInput("alice", "tools/call", "save", Write, oldAuth), Allow, "owner"},
		{"owner tools/list", polInput("alice", "tools/list", "", ""), Allow, "owner"},
		{"shared read", polInput("bob", "tools/call", "search", Read, shared), Allow, "shared-read"},
		{"shared read old sign-in", polInput("bob", "tools/call", "search", Read, shared, oldAuth), Allow, "shared-read"},
		{"shared write", polInput("bob", "tools/call", "save", Write, shared), Deny, "default"},
		{"shared destructive", polInput("bob", "tools/call", "rm", Destructive, shared), Deny, "default"},
		{"shared destructive old sign-in", polInput("bob", "tools/call", "rm", Destructive, shared, oldAuth), Deny, "default"},
		{"shared unknown class", polInput("bob", "tools/call", "x", "", shared), Deny, "default"},
		{"shared tools/list", polInput("bob", "tools/list", "", "", shared), Allow, "shared-read"},
		{"shared initialize", polInput("bob", "initialize", "", "", shared), Allow, "shared-read"},
		{"shared resources/read", polInput("bob", "resources/read", "file:///a", "", shared), Allow, "shared-read"},
		{"shared resources/read as read", polInput("bob", "resources/read", "file:///a", Read, shared), Allow, "shared-read"},
		{"shared prompts/get", polInput("bob", "prompts/get", "summarize", "", shared), Allow, "shared-read"},
		{"not shared read", polInput("carol", "tools/call", "search", Read), Deny, "default"},
		{"not shared tools/list", polInput("carol", "tools/list", "", ""), Deny, "default"},
		{"no owner, no user", polInput("", "tools/call", "search", Read, func(in *Input) { in.Owner = "" }), Deny, "default"},
		{"nil-ish input", &Input{}, Deny, "default"},
	})

	d, _ := p.Decide(polInput("alice", "tools/call", "rm", Destructive, oldAuth))
	if !slices.Equal(d.Scopes, []string{"mcp"}) || !strings.Contains(d.Message, "1h0m0s") {
		t.Errorf("step-up decision = %+v, want the token's scopes and a message naming the age", d)
	}
	d, _ = p.Decide(polInput("bob", "tools/call", "save", Write, shared))
	if d.Message == "" || d.Scopes != nil {
		t.Errorf("default denial = %+v, want a message and no scopes", d)
	}
	if d, _ := p.Decide(nil); d.Effect != Deny {
		t.Errorf("Decide(nil) = %+v", d)
	}
	if d, _ := (*Policy)(nil).Decide(polInput("alice", "tools/list", "", "")); d.Effect != Deny {
		t.Errorf("nil policy: %+v", d)
	}

	// Without a maximum age the owner is never asked to sign in again.
	p0 := DefaultPolicy(0)
	if got := p0.Rules(); !slices.Equal(got, []string{"owner", "shared-read"}) {
		t.Errorf("DefaultPolicy(0).Rules = %q", got)
	}
	polCheck(t, p0, []polCase{
		{"owner destructive old, no max", polInput("alice", "tools/call", "rm", Destructive, oldAuth), Allow, "owner"},
	})
	p15 := DefaultPolicy(15 * time.Minute)
	polCheck(t, p15, []polCase{
		{"owner destructive 20m", polInput("alice", "tools/call", "rm", Destructive, func(in *Input) { in.AuthAge = 20 * time.Minute }), StepUp, "fresh-sign-in-for-destructive"},
		{"owner destructive 10m", polInput("alice", "tools/call", "rm", Destructive, func(in *Input) { in.AuthAge = 10 * time.Minute }), Allow, "owner"},
	})
}

const polFile = `# A file policy exercising every variable.
max_auth_age: 30m
classes:
  "*": { send_email: destructive }
  files: { search: read, rm: write }
rules:
  - name: no-night-deletes
    when: tool.class == "destructive" && (now.getHours() < 6 || now.getHours() >= 22)
    effect: deny
    message: "No destructive calls at night."
  - name: fresh
    when: tool.class == "destructive" && auth_age > max_auth_age
    effect: step_up
    scopes: ["mcp", "mcp:admin"]
  - name: admins
    when: '"admins" in user.groups'
    effect: allow
  - name: block-etc
    when: has(arguments.path) && arguments.path.startsWith("/etc/")
    effect: deny
    message: Not under /etc.
  - name: ci-client
    when: client.id == "ci" && tool.name.startsWith("get_") && source_ip.startsWith("10.")
    effect: allow
  - name: scoped-writer
    when: '"files:write" in scopes && tool.class == "write"'
    effect: allow
  - name: small-batches
    when: >-
      tool.name == "send" &&
      has(arguments.to) && size(arguments.to) <= 3 &&
      arguments.to.all(a, a.endsWith("@example.com"))
    effect: allow
  - name: named-client
    when: client.name == "Claude" && method == "tools/list" && tunnel.name == "files" && user.email.endsWith("@example.com")
    effect: allow
  - name: owner
    when: user.id == tunnel.owner && !tunnel.shared
    effect: allow
`

func TestFilePolicy(t *testing.T) {
	p, err := ParsePolicy("policy.yaml", []byte(polFile))
	if err != nil {
		t.Fatal(err)
	}
	if p.MaxAuthAge() != 30*time.Minute {
		t.Errorf("MaxAuthAge = %v", p.MaxAuthAge())
	}
	want := []string{"no-night-deletes", "fresh", "admins", "block-etc", "ci-client", "scoped-writer", "small-batches", "named-client", "owner"}
	if got := p.Rules(); !slices.Equal(got, want) {
		t.Errorf("Rules = %q, want %q", got, want)
	}
	admin := func(in *Input) { in.User.Groups = []string{"staff", "admins"} }
	night := func(in *Input) { in.Time = time.Date(2026, 3, 2, 23, 0, 0, 0, time.UTC) }
	args := func(kv ...any) func(*Input) {
		return func(in *Input) {
			in.Arguments = map[string]any{}
			for i := 0; i < len(kv); i += 2 {
				in.Arguments[kv[i].(string)] = kv[i+1]
			}
		}
	}
	ci := func(ip string) func(*Input) {
		return func(in *Input) { in.Client.ID, in.SourceIP = "ci", ip }
	}
	polCheck(t, p, []polCase{
		{"group admins", polInput("bob", "tools/call", "save", Write, admin), Allow, "admins"},
		{"group other", polInput("bob", "tools/call", "save", Write, func(in *Input) { in.User.Groups = []string{"staff"} }), Deny, "default"},
		{"no groups", polInput("bob", "tools/call", "save", Write), Deny, "default"},
		{"night destructive", polInput("bob", "tools/call", "rm", Destructive, admin, night), Deny, "no-night-deletes"},
		{"day destructive", polInput("bob", "tools/call", "rm", Destructive, admin), Allow, "admins"},
		{"old sign-in", polInput("bob", "tools/call", "rm", Destructive, admin, func(in *Input) { in.AuthAge = 31 * time.Minute }), StepUp, "fresh"},
		{"arguments /etc", polInput("alice", "tools/call", "read_file", Read, args("path", "/etc/passwd")), Deny, "block-etc"},
		{"arguments /tmp", polInput("alice", "tools/call", "read_file", Read, args("path", "/tmp/x")), Allow, "owner"},
		{"arguments absent", polInput("alice", "tools/call", "read_file", Read), Allow, "owner"},
		{"arguments other key", polInput("alice", "tools/call", "read_file", Read, args("file", "/etc/passwd")), Allow, "owner"},
		{"ci client inside", polInput("bob", "tools/call", "get_status", Read, ci("10.1.2.3")), Allow, "ci-client"},
		{"ci client outside", polInput("bob", "tools/call", "get_status", Read, ci("192.0.2.1")), Deny, "default"},
		{"ci client other tool", polInput("bob", "tools/call", "status", Read, ci("10.1.2.3")), Deny, "default"},
		{"scope", polInput("bob", "tools/call", "save", Write, func(in *Input) { in.Scopes = []string{"mcp", "files:write"} }), Allow, "scoped-writer"},
		{"scope for write only", polInput("bob", "tools/call", "search", Read, func(in *Input) { in.Scopes = []string{"files:write"} }), Deny, "default"},
		{"list arguments", polInput("bob", "tools/call", "send", Write, args("to", []any{"a@example.com", "b@example.com"})), Allow, "small-batches"},
		{"list arguments outside", polInput("bob", "tools/call", "send", Write, args("to", []any{"a@example.com", "b@evil.example"})), Deny, "default"},
		{"list arguments too many", polInput("bob", "tools/call", "send", Write, args("to", []any{"a@example.com", "a@example.com", "a@example.com", "a@example.com"})), Deny, "default"},
		{"client name and method", polInput("bob", "tools/list", "", ""), Allow, "named-client"},
		{"client name other tunnel", polInput("bob", "tools/list", "", "", func(in *Input) { in.Tunnel = "other" }), Deny, "default"},
		{"owner shared", polInput("alice", "tools/call", "save", Write, shared), Deny, "default"},
	})
	d, _ := p.Decide(polInput("bob", "tools/call", "rm", Destructive, admin, func(in *Input) { in.AuthAge = 2 * time.Hour }))
	if !slices.Equal(d.Scopes, []string{"mcp", "mcp:admin"}) {
		t.Errorf("step-up scopes = %q", d.Scopes)
	}
	d, _ = p.Decide(polInput("bob", "tools/call", "rm", Destructive, night))
	if d.Message != "No destructive calls at night." {
		t.Errorf("message = %q", d.Message)
	}
}

func TestPolicyJSONArguments(t *testing.T) {
	p, err := ParsePolicy("p.yaml", []byte(`rules:
  - name: numbers
    when: has(arguments.limit) && arguments.limit > 10 && arguments.limit == 50
    effect: deny
  - name: nested
    when: has(arguments.opts) && has(arguments.opts.recursive) && arguments.opts.recursive == true
    effect: deny
  - name: null
    when: has(arguments.x) && arguments.x == null
    effect: deny
  - name: any-key
    when: arguments.exists(k, k.startsWith("danger"))
    effect: deny
  - name: rest
    when: "true"
    effect: allow
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		json string
		rule string
	}{
		{`{"limit": 50}`, "numbers"},
		{`{"limit": 5}`, "rest"},
		{`{"opts": {"recursive": true}}`, "nested"},
		{`{"opts": {"recursive": false}}`, "rest"},
		{`{"opts": {}}`, "rest"},
		{`{"x": null}`, "null"},
		{`{"danger_mode": 1}`, "any-key"},
		{`{}`, "rest"},
	} {
		var args map[string]any
		if err := json.Unmarshal([]byte(c.json), &args); err != nil {
			t.Fatal(err)
		}
		d, errs := p.Decide(polInput("bob", "tools/call", "t", Write, func(in *Input) { in.Arguments = args }))
		if d.Rule != c.rule || len(errs) > 0 {
			t.Errorf("%s: %+v %v, want rule %q", c.json, d, errs, c.rule)
		}
	}
}

func TestPolicyTimeZone(t *testing.T) {
	p, err := ParsePolicy("tz.yaml", []byte(`rules:
  - name: office-hours
    when: now.getHours("Europe/Berlin") >= 9 && now.getHours("Europe/Berlin") < 18 && now.getDayOfWeek() != 0
    effect: allow
`))
	if err != nil {
		t.Fatal(err)
	}
	at := func(h int) func(*Input) {
		return func(in *Input) { in.Time = time.Date(2026, 3, 2, h, 0, 0, 0, time.UTC) } // a Monday; CET = UTC+1
	}
	polCheck(t, p, []polCase{
		{"08 UTC is 09 Berlin", polInput("x", "tools/call", "t", Read, at(8)), Allow, "office-hours"},
		{"07 UTC is 08 Berlin", polInput("x", "tools/call", "t", Read, at(7)), Deny, "default"},
		{"17 UTC is 18 Berlin", polInput("x", "tools/call", "t", Read, at(17)), Deny, "default"},
	})
}

func TestPolicyClassOverride(t *testing.T) {
	p, err := ParsePolicy("policy.yaml", []byte(polFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tunnel, tool string
		class        Class
		ok           bool
	}{
		{"files", "search", Read, true},
		{"files", "rm", Write, true},
		{"files", "send_email", Destructive, true},
		{"other", "send_email", Destructive, true},
		{"other", "search", "", false},
		{"files", "Search", "", false},
		{"files", "send_email ", "", false},
	} {
		class, ok := p.ClassOverride(c.tunnel, c.tool)
		if class != c.class || ok != c.ok {
			t.Errorf("ClassOverride(%q, %q) = %q, %v; want %q, %v", c.tunnel, c.tool, class, ok, c.class, c.ok)
		}
	}
	// A tunnel's own override wins over "*".
	p, err = ParsePolicy("p.yaml", []byte("classes:\n  \"*\": {x: destructive}\n  t: {x: read}\nrules: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := p.ClassOverride("t", "x"); c != Read {
		t.Errorf("tunnel override = %q, want read", c)
	}
	if c, _ := p.ClassOverride("u", "x"); c != Destructive {
		t.Errorf("* override = %q, want destructive", c)
	}
	if _, ok := DefaultPolicy(time.Hour).ClassOverride("t", "x"); ok {
		t.Error("the default policy overrides a class")
	}
	// An empty rule list is allowed and denies everything.
	if d, _ := p.Decide(polInput("alice", "tools/list", "", "")); d.Effect != Deny || d.Rule != "default" {
		t.Errorf("empty policy: %+v", d)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	for _, c := range []struct {
		name, src string
		want      string // the error, after "p.yaml:"
	}{
		{"yaml syntax", "rules:\n  - name: a\n    when: [true\n", `3: YAML: did not find expected ',' or ']'`},
		{"yaml tab", "rules:\n\t- name: a\n", `2: YAML: found character that cannot start any token`},
		{"empty", "", `p.yaml: empty policy`},
		{"not a mapping", "- a\n", `1:1: a policy is a mapping`},
		{"no rules", "max_auth_age: 1h\n", `1:1: no rules`},
		{"unknown top key", "rules: []\nrule: []\n", `2:1: unknown key "rule"`},
		{"unknown rule key", "rules:\n  - name: a\n    when: true\n    efect: allow\n", `4:5: unknown key "efect" in a rule`},
		{"duplicate key", "rules:\n  - name: a\n    when: true\n    when: false\n    effect: allow\n", `4:5: duplicate key "when"`},
		{"rules not a list", "rules: {a: b}\n", `1:8: rules: want a list of rules, not a mapping`},
		{"rule not a mapping", "rules:\n  - allow\n", `2:5: want a mapping, not "allow"`},
		{"no name", "rules:\n  - when: true\n    effect: allow\n", `2:5: a rule needs a name`},
		{"empty name", "rules:\n  - name: \"\"\n    when: true\n    effect: allow\n", `2:11: a rule's name must not be empty`},
		{"null name", "rules:\n  - name:\n    when: true\n    effect: allow\n", `2:10: name: want a string, not nothing`},
		{"reserved name", "rules:\n  - name: default\n    when: true\n    effect: allow\n", `2:11: rule name "default" is reserved`},
		{"no when", "rules:\n  - name: a\n    effect: allow\n", `2:5: rule "a": needs a condition (when)`},
		{"no effect", "rules:\n  - name: a\n    when: true\n", `2:5: rule "a": needs an effect`},
		{"unknown effect", "rules:\n  - name: a\n    when: true\n    effect: permit\n", `4:13: rule "a": unknown effect "permit"`},
		{"scopes on allow", "rules:\n  - name: a\n    when: true\n    effect: allow\n    scopes: [x]\n", `5:13: rule "a": scopes only apply to step_up rules`},
		{"scopes not a list", "rules:\n  - name: a\n    when: true\n    effect: step_up\n    scopes: x\n", `5:13: scopes: want a list of scopes`},
		{"bad scope", "rules:\n  - name: a\n    when: true\n    effect: step_up\n    scopes: [\"a b\"]\n", `5:14: scopes: "a b" is not a valid OAuth scope`},
		{"duplicate names", "rules:\n  - name: a\n    when: true\n    effect: allow\n  - name: a\n    when: false\n    effect: deny\n", `5:11: rule "a": duplicate rule name (first at line 2)`},
		{"max_auth_age", "max_auth_age: soon\nrules: []\n", `1:15: max_auth_age: want a positive duration`},
		{"negative max_auth_age", "max_auth_age: -1h\nrules: []\n", `1:15: max_auth_age: want a positive duration`},
		{"unknown class", "classes:\n  t: {x: dangerous}\nrules: []\n", `2:10: classes: t: x: unknown class "dangerous"`},
		{"classes not nested", "classes:\n  t: read\nrules: []\n", `2:6: want a mapping, not "read"`},
		{"empty condition", "rules:\n  - name: a\n    when: \"  \"\n    effect: allow\n", `3:11: rule "a": empty condition`},
		// CEL: the position is the condition's in the file plus the offset in it.
		{"cel syntax", "rules:\n  - name: a\n    when: user.id == = \"x\"\n    effect: allow\n", `3:22: rule "a": Syntax error: `},
		{"cel syntax quoted", "rules:\n  - name: a\n    when: \"user.id == ) \"\n    effect: allow\n", `3:23: rule "a": Syntax error`},
		{"cel escapes", "rules:\n  - name: x\n    when: \"user.id == \\\"a\\\" && tool.nam == 1\"\n    effect: allow\n", `3:36: rule "x": undefined field 'nam'`},
		{"cel single-quote escapes", "rules:\n  - name: x\n    when: 'user.id == \"it''s\" && tool.nam == 1'\n    effect: allow\n", `3:38: rule "x": undefined field 'nam'`},
		{"cel undeclared", "rules:\n  - name: x\n    when: usr.id == \"a\"\n    effect: allow\n", `3:11: rule "x": undeclared reference to 'usr'`},
		{"cel unknown field", "rules:\n  - name: x\n    when: user.idd == \"a\"\n    effect: allow\n", `3:15: rule "x": undefined field 'idd'`},
		{"cel type error", "rules:\n  - name: x\n    when: tool.name > 3\n    effect: allow\n", `3:21: rule "x": found no matching overload for '_>_' applied to '(string, int)'`},
		{"cel type error duration", "rules:\n  - name: x\n    when: auth_age > 15\n    effect: allow\n", `3:20: rule "x": found no matching overload for '_>_'`},
		{"cel block literal", "rules:\n  - name: x\n    when: |\n      user.id == \"a\" &&\n        tunnel.sharde\n    effect: allow\n", `5:15: rule "x": undefined field 'sharde'`},
		{"cel block folded", "rules:\n  - name: x\n    when: >-\n      user.id == \"a\" &&\n      tool.nam == \"b\"\n    effect: allow\n", `5:11: rule "x": undefined field 'nam'`},
		{"cel plain multiline", "rules:\n  - name: x\n    when: user.id == \"a\" &&\n      tool.nam == \"b\"\n    effect: allow\n", `4:11: rule "x": undefined field 'nam'`},
		{"not bool", "rules:\n  - name: x\n    when: user.id\n    effect: allow\n", `3:11: rule "x": the condition is string, not bool`},
		{"not bool dyn", "rules:\n  - name: x\n    when: arguments.x\n    effect: allow\n", `3:11: rule "x": the condition is dyn, not bool`},
		{"runaway cost", "rules:\n  - name: x\n    when: arguments.exists(k, arguments.exists(j, j == k))\n    effect: deny\n", `3:11: rule "x": the condition may cost up to`},
		{"runaway cost nested lists", "rules:\n  - name: ok\n    when: true\n    effect: deny\n  - name: x\n    when: 'arguments.all(k, arguments.all(j, arguments.all(i, i != j)))'\n    effect: deny\n", `6:11: rule "x": the condition may cost up to`},
		{"struct literal", "rules:\n  - name: x\n    when: 'toolgate.User{id: \"a\"}.id == \"a\"'\n    effect: allow\n", `3:25: rule "x": a condition cannot create objects`},
		{"yaml mapping in plain scalar", "rules:\n  - name: a\n    when: a: b\n", `3: YAML: mapping values are not allowed in this context`},
		{"yaml flow mapping", "rules:\n  - name: a\n    when: {a: b\n", `3: YAML: did not find expected ',' or '}'`},
		{"yaml bad indent", "rules:\n  - name: a\n   when: x\n", `2: YAML: did not find expected '-' indicator`},
		{"yaml merge key", "x: &a {b: 1}\n<<: *a\nrules: []\n", `1:1: unknown key "x"`},
		{"two documents", "rules: []\n---\nrules: []\n", `2:1: a policy file has one YAML document`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := ParsePolicy("p.yaml", []byte(c.src))
			if err == nil {
				t.Fatalf("no error; rules %q", p.Rules())
			}
			if p != nil {
				t.Error("a policy came with the error")
			}
			want := c.want
			if !strings.HasPrefix(want, "p.yaml") {
				want = "p.yaml:" + want
			}
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error:\n %s\nwant prefix:\n %s", err, want)
			}
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Errorf("%T is not a *PolicyError", err)
			}
		})
	}
}

func TestParsePolicyAllErrors(t *testing.T) {
	_, err := ParsePolicy("p.yaml", []byte("rules:\n  - name: a\n    when: usr\n    effect: allow\n  - name: b\n    when: true\n    effect: nope\n"))
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "p.yaml:3:11:") || !strings.HasPrefix(lines[1], "p.yaml:7:13:") {
		t.Errorf("errors = %q", lines)
	}
}

func TestPolicyRuntimeErrors(t *testing.T) {
	p, err := ParsePolicy("p.yaml", []byte(`rules:
  - name: missing-key
    when: arguments.path == "/x"
    effect: allow
  - name: wrong-type
    when: has(arguments.n) && arguments.n.startsWith("a")
    effect: allow
  - name: too-much
    when: has(arguments.items) && arguments.items.exists(i, i == "needle")
    effect: allow
  - name: owner
    when: user.id == tunnel.owner
    effect: allow
`))
	if err != nil {
		t.Fatal(err)
	}
	long := make([]any, 20000)
	for i := range long {
		long[i] = "hay"
	}
	for _, c := range []struct {
		name      string
		args      map[string]any
		effect    Effect
		rule      string
		errs      []string
		errsMatch []string
	}{
		{"all fine", map[string]any{"path": "/x"}, Allow, "missing-key", nil, nil},
		{"missing key", map[string]any{"other": 1}, Allow, "owner", []string{`policy rule "missing-key": no such key: path`}, nil},
		{"wrong type", map[string]any{"path": "/y", "n": 1.0}, Allow, "owner", []string{`policy rule "wrong-type": no such overload`}, nil},
		{"cost", map[string]any{"path": "/y", "items": long}, Allow, "owner", []string{`policy rule "too-much": operation cancelled: actual cost limit exceeded`}, nil},
		{"small list", map[string]any{"path": "/y", "items": []any{"a", "needle"}}, Allow, "too-much", nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, errs := p.Decide(polInput("alice", "tools/call", "t", Read, func(in *Input) { in.Arguments = c.args }))
			if d.Effect != c.effect || d.Rule != c.rule {
				t.Errorf("Decide = %s by %q, want %s by %q", d.Effect, d.Rule, c.effect, c.rule)
			}
			if len(errs) != len(c.errs) {
				t.Fatalf("errors = %v, want %q", errs, c.errs)
			}
			for i, e := range errs {
				if !strings.HasPrefix(e.Error(), c.errs[i]) {
					t.Errorf("error %d = %q, want prefix %q", i, e, c.errs[i])
				}
			}
		})
	}
}

// A deny or step_up rule whose condition fails denies: otherwise a caller could get past a
// deny rule by sending an argument of an unexpected type.
func TestPolicyRuntimeErrorsFailClosed(t *testing.T) {
	p, err := ParsePolicy("p.yaml", []byte(`rules:
  - name: no-competitors
    when: arguments.to.endsWith("@competitor.example")
    effect: deny
    message: No mail to competitors.
  - name: everyone
    when: "true"
    effect: allow
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		args   map[string]any
		effect Effect
		rule   string
		nerrs  int
	}{
		{"matches", map[string]any{"to": "x@competitor.example"}, Deny, "no-competitors", 0},
		{"does not match", map[string]any{"to": "x@example.com"}, Allow, "everyone", 0},
		{"list instead of string", map[string]any{"to": []any{"x@competitor.example"}}, Deny, "no-competitors", 1},
		{"missing", nil, Deny, "no-competitors", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, errs := p.Decide(polInput("bob", "tools/call", "send", Write, func(in *Input) { in.Arguments = c.args }))
			if d.Effect != c.effect || d.Rule != c.rule || len(errs) != c.nerrs {
				t.Errorf("Decide = %+v, %v; want %s by %q with %d errors", d, errs, c.effect, c.rule, c.nerrs)
			}
		})
	}
}

func TestPolicyConcurrent(t *testing.T) {
	p, err := ParsePolicy("policy.yaml", []byte(polFile))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				u := "bob"
				if i%2 == 0 {
					u = "alice"
				}
				in := polInput(u, "tools/call", fmt.Sprintf("t%d", g), Write, func(in *Input) {
					in.Arguments = map[string]any{"path": fmt.Sprintf("/tmp/%d", i)}
				})
				d, errs := p.Decide(in)
				want := Deny
				if u == "alice" {
					want = Allow
				}
				if d.Effect != want || len(errs) > 0 {
					t.Errorf("%s: %+v %v", u, d, errs)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// polBenchFile is a ten-rule policy whose rules mostly do not match a shared user's read call,
// so Decide evaluates them all.
const polBenchFile = `max_auth_age: 1h
rules:
  - name: night
    when: tool.class == "destructive" && now.getHours() < 6
    effect: deny
  - name: fresh
    when: tool.class == "destructive" && auth_age > max_auth_age
    effect: step_up
  - name: etc
    when: has(arguments.path) && arguments.path.startsWith("/etc/")
    effect: deny
  - name: admins
    when: '"admins" in user.groups'
    effect: allow
  - name: ci
    when: client.id == "ci" && source_ip.startsWith("10.")
    effect: allow
  - name: scoped
    when: '"files:write" in scopes && tool.class == "write"'
    effect: allow
  - name: get
    when: tool.name.startsWith("get_") && tunnel.shared
    effect: allow
  - name: owner
    when: tunnel.owner != "" && user.id == tunnel.owner
    effect: allow
  - name: email
    when: user.email.endsWith("@corp.example") && tool.class == "read"
    effect: allow
  - name: shared-read
    when: tunnel.shared && (method != "tools/call" || tool.class == "read")
    effect: allow
`

func BenchmarkDecide(b *testing.B) {
	file, err := ParsePolicy("bench.yaml", []byte(polBenchFile))
	if err != nil {
		b.Fatal(err)
	}
	if n := len(file.Rules()); n != 10 {
		b.Fatalf("%d rules", n)
	}
	in := polInput("bob", "tools/call", "search", Read, shared, func(in *Input) {
		in.User.Groups = []string{"staff", "dev"}
		in.Arguments = map[string]any{"path": "/tmp/x", "limit": 10.0}
	})
	for _, c := range []struct {
		name string
		p    *Policy
		rule string
	}{
		{"default", DefaultPolicy(time.Hour), "shared-read"},
		{"file10", file, "shared-read"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d, errs := c.p.Decide(in)
				if d.Rule != c.rule || errs != nil {
					b.Fatalf("%+v %v", d, errs)
				}
			}
		})
	}
}

func TestUsesArguments(t *testing.T) {
	if DefaultPolicy(time.Hour).UsesArguments() {
		t.Error("the built-in policy reads no arguments")
	}
	p, err := ParsePolicy("p.yaml", []byte("rules:\n  - name: a\n    when: has(arguments.path)\n    effect: deny\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.UsesArguments() {
		t.Error("a rule reading arguments.path")
	}
}

// TestPolicySource: a policy keeps the text it was compiled from, unaffected by later changes
// to the caller's buffer, so that what is in force can be shown after the file has changed.
func TestPolicySource(t *testing.T) {
	src := []byte("rules:\n  - name: all\n    when: \"true\"\n    effect: allow\n")
	p, err := ParsePolicy("p.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	want := string(src)
	src[0] = 'X'
	if name, got := p.Source(); name != "p.yaml" || string(got) != want {
		t.Errorf("Source = %q, %q; want p.yaml, %q", name, got, want)
	}
	if name, got := DefaultPolicy(time.Hour).Source(); name != "default policy" || !strings.Contains(string(got), "name: shared-read") {
		t.Errorf("the built-in policy's Source = %q, %q", name, got)
	}
}
