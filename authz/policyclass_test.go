package authz

import (
	"testing"
	"time"
)

// TestDecidesToolsByClass: a policy decides tools by class alone when no condition reads a
// tool's name or a call's arguments; every other use of "tool" counts as reading the name.
func TestDecidesToolsByClass(t *testing.T) {
	for _, p := range []*Policy{DefaultPolicy(time.Hour), DefaultPolicy(0)} {
		if !p.DecidesToolsByClass() {
			t.Errorf("the built-in policy (%v) does not decide tools by class", p.Rules())
		}
	}
	if (*Policy)(nil).DecidesToolsByClass() {
		t.Error("a nil policy decides tools by class")
	}
	for _, tc := range []struct {
		when string
		want bool
	}{
		{`user.id == tunnel.owner`, true},
		{`tool.class == "read"`, true},
		{`method != "tools/call" || tool.class != "destructive"`, true},
		{`"eng" in user.groups && tunnel.shared && tool.class != "destructive"`, true},
		{`auth_age < duration("1h") && client.name == "tool"`, true}, // a string, not the variable
		{`tool.name == "search"`, false},
		{`tool.class == "read" || tool.name.startsWith("get_")`, false},
		{`has(tool.name)`, false},
		{`has(tool.class)`, false}, // a presence test: cautious
		{`dyn(tool).class == "read"`, false},
		{`[tool.class, tool.name].exists(x, x == "read")`, false},
		{`["a"].exists(tool, tool == "a")`, false},
		{`"path" in arguments`, false},
		{`size(arguments) == 0 && tool.class == "read"`, false},
	} {
		src := "rules:\n  - name: r\n    when: '" + tc.when + "'\n    effect: allow\n  - name: other\n    when: user.id == \"x\"\n    effect: deny\n"
		p, err := ParsePolicy("test", []byte(src))
		if err != nil {
			t.Errorf("%s: %v", tc.when, err)
			continue
		}
		if got := p.DecidesToolsByClass(); got != tc.want {
			t.Errorf("%s: DecidesToolsByClass %v, want %v", tc.when, got, tc.want)
		}
	}
}
