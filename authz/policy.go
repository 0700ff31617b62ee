package authz

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
)

// A policy file (YAML):
//
//	# Rules are tried in order; the first whose `when` is true decides. No match: deny
//	# (rule "default").
//	max_auth_age: 1h          # optional (default 1h): the value of max_auth_age in conditions
//	classes:                  # optional per-tool class overrides, by tunnel name ("*" any)
//	  "*": { send_email: destructive }
//	  my-tunnel: { search: read }
//	rules:
//	  - name: owner-everything
//	    when: user.id == tunnel.owner
//	    effect: allow               # allow | deny | step_up
//	    message: "..."              # optional, shown in denials
//	    scopes: ["mcp"]             # only for step_up: scopes to ask for (default: the token's)
//
// Conditions are CEL expressions (the standard library and macros) over:
//
//	user        {id string, email string, groups list(string)}
//	client      {id string, name string}
//	scopes      list(string)                 the access token's scopes
//	tunnel      {name string, owner string, shared bool}
//	method      string                       the JSON-RPC method
//	tool        {name string, class string}  class is "" for methods other than tools/call
//	arguments   map(string, dyn)             params.arguments, {} when absent
//	source_ip   string
//	now         timestamp
//	auth_age    duration                     time since the user signed in
//	max_auth_age duration                    the file's max_auth_age
//
// For example `"admins" in user.groups`, `auth_age > duration("15m")`,
// `tool.name.startsWith("get_")`, `has(arguments.path) && arguments.path.startsWith("/tmp/")`,
// `now.getHours("Europe/Berlin") < 18`.
//
// A condition that fails to evaluate (a missing key, a value of the wrong type, too much
// work) fails closed: an allow rule does not match, a deny or step_up rule denies. Either way
// Decide reports the error.

// DefaultMaxAuthAge is max_auth_age when a policy file does not set it.
const DefaultMaxAuthAge = time.Hour

// Limits on a condition's work. CostLimit bounds each evaluation (in CEL's cost units, about
// one per operation or per byte/element scanned); a condition whose worst case, estimated at
// load for strings up to maxEstimatedString bytes and lists and maps up to maxEstimatedItems
// elements, exceeds MaxEstimatedCost is refused.
const (
	CostLimit          = 10_000
	MaxEstimatedCost   = 10_000
	maxEstimatedString = 1024
	maxEstimatedItems  = 100
	maxExprSize        = 4096
)

// defaultRule is the name of the decision when no rule matches.
const defaultRule = "default"

// Policy is a compiled policy: rules tried in order, first match wins, default deny; and the
// per-tunnel class overrides. It is immutable and safe for concurrent use.
type Policy struct {
	rules      []rule
	classes    map[string]map[string]Class // tunnel ("*" any) → tool → class
	maxAuthAge time.Duration
	name       string // as given to ParsePolicy
	src        []byte // the YAML it was compiled from, for showing what is in force
}

type rule struct {
	name    string
	when    string
	effect  Effect
	message string
	scopes  []string
	prg     cel.Program
	// native, when set, is the condition written in Go, used instead of prg. Only the built-in
	// policy's rules have one: they decide nearly every request of a server without a policy
	// file, where the CEL programs cost about 1.3 µs per request and these nothing to speak
	// of. prg stays compiled from the same text, which is what `policy show` prints, and
	// TestDefaultPolicyNativeMatchesCEL holds the two to the same answers.
	native func(in *Input, maxAuthAge time.Duration) bool
	// usesArgs: the condition mentions the call's arguments (see UsesArguments).
	usesArgs bool
	// byClass: the condition sees a tool only through its class (see DecidesToolsByClass).
	byClass bool
}

// UsesArguments reports whether any rule's condition mentions the call's arguments. When
// none does, the caller need not decode them: for a large call, decoding costs more than
// the whole rest of the decision.
func (p *Policy) UsesArguments() bool {
	if p == nil {
		return false
	}
	for i := range p.rules {
		if p.rules[i].usesArgs {
			return true
		}
	}
	return false
}

// DecidesToolsByClass reports whether, for one caller, the decision on a tools/call depends on
// the tool only through its class: no rule's condition reads the tool's name or the call's
// arguments. A caller may then be shown every tool, whatever a listing holds, if a call of
// each class is allowed or stepped up; three decisions tell, where filtering a listing takes
// one per tool.
func (p *Policy) DecidesToolsByClass() bool {
	if p == nil {
		return false
	}
	for i := range p.rules {
		if !p.rules[i].byClass {
			return false
		}
	}
	return true
}

// Rules lists the rules' names in order.
func (p *Policy) Rules() []string {
	if p == nil {
		return nil
	}
	names := make([]string, len(p.rules))
	for i, r := range p.rules {
		names[i] = r.name
	}
	return names
}

// MaxAuthAge is the policy's max_auth_age.
func (p *Policy) MaxAuthAge() time.Duration {
	if p == nil {
		return 0
	}
	return p.maxAuthAge
}

// ClassOverride returns the policy's class for tool on tunnel, if it sets one: the tunnel's own
// override first, then the one for every tunnel ("*"). Tool names are compared exactly.
func (p *Policy) ClassOverride(tunnel, tool string) (Class, bool) {
	if p == nil {
		return "", false
	}
	if c, ok := p.classes[tunnel][tool]; ok {
		return c, true
	}
	c, ok := p.classes["*"][tool]
	return c, ok
}

// Decide evaluates the rules for one message: the first rule whose condition is true decides;
// none: deny by rule "default". The errors are conditions that failed to evaluate, for the
// log; a failing allow rule does not match and a failing deny or step_up rule denies, so an
// error never allows more than the rule's author meant. Decide does not modify in.
func (p *Policy) Decide(in *Input) (d Decision, errs []error) {
	if in == nil {
		in = &Input{}
	}
	if p == nil {
		return Decision{Effect: Deny, Rule: defaultRule, Message: "No policy is loaded."}, nil
	}
	var act *activation // made when the first CEL condition needs it
	for i := range p.rules {
		r := &p.rules[i]
		var matched bool
		var err error
		if r.native != nil {
			matched = r.native(in, p.maxAuthAge)
		} else {
			if act == nil {
				act = newActivation(in, p.maxAuthAge)
			}
			matched, err = r.eval(act)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("policy rule %q: %w", r.name, err))
			if r.effect == Allow {
				continue
			}
			return Decision{Effect: Deny, Rule: r.name,
				Message: "The rule's condition could not be evaluated for this request."}, errs
		}
		if !matched {
			continue
		}
		d = Decision{Effect: r.effect, Rule: r.name, Message: r.message}
		if r.effect == StepUp {
			d.Scopes = slices.Clone(r.scopes)
			if d.Scopes == nil {
				d.Scopes = slices.Clone(in.Scopes)
			}
		}
		return d, errs
	}
	return Decision{Effect: Deny, Rule: defaultRule, Message: "No policy rule allows this request."}, errs
}

func (r *rule) eval(act *activation) (matched bool, err error) {
	defer func() {
		if v := recover(); v != nil {
			matched, err = false, fmt.Errorf("evaluation panicked: %v", v)
		}
	}()
	out, _, err := r.prg.Eval(act)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("condition gave %v, not a bool", out.Type())
	}
	return bool(b), nil
}

// DefaultPolicy is the built-in policy:
//
//   - fresh-sign-in-for-destructive (step_up): the owner calling a destructive tool with a
//     sign-in maxAuthAge old or older must sign in again (maxAuthAge ≤ 0 leaves this rule out);
//   - owner (allow): the tunnel's owner may do everything;
//   - shared-read (allow): users the owner shares the tunnel with may call read tools, and
//     use every method that is not tools/call (resources/read and prompts/get count as read);
//   - default: everything else is denied.
//
// Step-up applies to the owner only: for anyone else signing in again would not help.
func DefaultPolicy(maxAuthAge time.Duration) *Policy {
	var src strings.Builder
	if maxAuthAge > 0 {
		fmt.Fprintf(&src, "max_auth_age: %s\n", maxAuthAge)
	}
	src.WriteString("rules:\n")
	if maxAuthAge > 0 {
		fmt.Fprintf(&src, `  - name: fresh-sign-in-for-destructive
    when: tunnel.owner != "" && user.id == tunnel.owner && method == "tools/call" && tool.class == "destructive" && auth_age >= max_auth_age
    effect: step_up
    message: Destructive tools need a sign-in less than %s old; sign in again.
`, maxAuthAge)
	}
	src.WriteString(`  - name: owner
    when: tunnel.owner != "" && user.id == tunnel.owner
    effect: allow
  - name: shared-read
    when: tunnel.shared && (method != "tools/call" || tool.class == "read")
    effect: allow
`)
	p, err := ParsePolicy("default policy", []byte(src.String()))
	if err != nil {
		panic("authz: the default policy does not compile: " + err.Error())
	}
	if maxAuthAge <= 0 {
		p.maxAuthAge = 0
	}
	for i := range p.rules {
		p.rules[i].native = defaultRuleNative(p.rules[i].name)
	}
	return p
}

// defaultRuleNative is the condition, in Go, of the built-in policy's rule called name, or nil;
// each reads exactly the Input fields its CEL text names (see the activation in
// policyvars.go).
func defaultRuleNative(name string) func(in *Input, maxAuthAge time.Duration) bool {
	switch name {
	case "fresh-sign-in-for-destructive":
		return func(in *Input, maxAuthAge time.Duration) bool {
			return in.Owner != "" && in.User.ID == in.Owner && in.Method == "tools/call" && in.Class == Destructive &&
				in.AuthAge >= maxAuthAge
		}
	case "owner":
		return func(in *Input, _ time.Duration) bool {
			return in.Owner != "" && in.User.ID == in.Owner
		}
	case "shared-read":
		return func(in *Input, _ time.Duration) bool {
			return in.Shared && (in.Method != "tools/call" || in.Class == Read)
		}
	}
	return nil
}
