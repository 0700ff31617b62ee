package authz

import (
	"reflect"
	"testing"
	"time"
)

// The built-in policy's rules are decided by Go functions (rule.native), not by their CEL
// programs; the CEL text stays what `policy show` prints. Every rule's Go condition must give
// the CEL program's answer for every combination of the fields the rules read, with values
// on both sides of each comparison, and whole decisions must be the same either way.
func TestDefaultPolicyNativeMatchesCEL(t *testing.T) {
	const maxAge = time.Hour
	for _, age := range []time.Duration{maxAge, 0} {
		p := DefaultPolicy(age)
		cel := *p
		cel.rules = append([]rule(nil), p.rules...)
		natives := 0
		for i := range cel.rules {
			if cel.rules[i].native != nil {
				natives++
			}
			cel.rules[i].native = nil
		}
		if natives != len(p.rules) {
			t.Fatalf("maxAuthAge %v: %d of %d built-in rules have a Go condition", age, natives, len(p.rules))
		}
		n := 0
		for _, user := range []string{"", "u_1", "u_2", "U_1"} {
			for _, owner := range []string{"", "u_1"} {
				for _, shared := range []bool{false, true} {
					for _, method := range []string{"tools/call", "tools/list", "resources/read", "prompts/get", "initialize", "get", "Tools/call", "tools/call ", ""} {
						for _, class := range []Class{"", Read, Write, Destructive, "READ", "other"} {
							for _, authAge := range []time.Duration{-time.Second, 0, maxAge - 1, maxAge, maxAge + 1, 30 * 24 * time.Hour} {
								in := &Input{Owner: owner, Shared: shared, Method: method, Class: class, AuthAge: authAge,
									Tunnel: "t", Tool: "x"}
								in.User.ID = user
								act := newActivation(in, p.maxAuthAge)
								for _, r := range p.rules {
									want, err := r.eval(act)
									if err != nil {
										t.Fatalf("rule %s: CEL failed on %+v: %v", r.name, in, err)
									}
									if got := r.native(in, p.maxAuthAge); got != want {
										t.Fatalf("rule %s on %+v: Go says %v, CEL %v", r.name, in, got, want)
									}
								}
								dn, _ := p.Decide(in)
								dc, _ := cel.Decide(in)
								if !reflect.DeepEqual(dn, dc) {
									t.Fatalf("decision on %+v: Go rules %+v, CEL %+v", in, dn, dc)
								}
								n++
							}
						}
					}
				}
			}
		}
		t.Logf("maxAuthAge %v: %d inputs", age, n)
	}
}

// A policy from a file has no Go conditions, even when its rules carry the built-in names.
func TestParsedPolicyHasNoNativeRules(t *testing.T) {
	p, err := ParsePolicy("p.yaml", []byte("rules:\n  - name: owner\n    when: user.id == \"u_9\"\n    effect: allow\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.rules[0].native != nil {
		t.Fatal("a parsed rule named owner got the built-in Go condition")
	}
	in := &Input{Owner: "u_1"}
	in.User.ID = "u_1"
	if d, _ := p.Decide(in); d.Effect != Deny {
		t.Fatalf("the file's owner rule was not the one evaluated: %+v", d)
	}
}
