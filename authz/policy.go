package authz

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"go.yaml.in/yaml/v3"
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
}

// UsesArguments reports whether any rule's condition mentions the call's arguments. When
// none does, the caller need not decode them: for a large call, decoding costs more than
// the whole rest of the decision.
func (p *Policy) UsesArguments() bool {
	if p == nil {
		return false
	}
	for _, r := range p.rules {
		// A textual test: a false positive only costs a decoding, and the condition has
		// been parsed and type-checked already, so the word cannot hide elsewhere.
		if strings.Contains(r.when, "arguments") {
			return true
		}
	}
	return false
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
	act := newActivation(in, p.maxAuthAge)
	for i := range p.rules {
		r := &p.rules[i]
		matched, err := r.eval(act)
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
	return p
}

// PolicyError is a problem in a policy file, at a line and column (1-based; 0 when unknown).
type PolicyError struct {
	File         string
	Line, Column int
	Msg          string
}

func (e *PolicyError) Error() string {
	switch {
	case e.Line > 0 && e.Column > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// ParsePolicy compiles a policy file; name is used in error messages. Every problem is an
// error naming the line and column, and no partial policy is returned. When the file has
// several problems the errors are joined (errors.Join), in file order; each is a
// *PolicyError.
func ParsePolicy(name string, src []byte) (*Policy, error) {
	pp := &policyParser{file: name, src: src}
	p := pp.parse()
	if len(pp.errs) > 0 {
		return nil, errors.Join(pp.errs...)
	}
	p.name, p.src = name, bytes.Clone(src)
	return p, nil
}

// Source returns the name the policy was parsed under and the YAML text it was compiled from:
// what is in force, even after the file has changed on disk. The built-in policy's is the
// text DefaultPolicy generated.
func (p *Policy) Source() (name string, src []byte) {
	if p == nil {
		return "", nil
	}
	return p.name, p.src
}

type policyParser struct {
	file string
	src  []byte
	errs []error
	env  *cel.Env
}

func (pp *policyParser) errorf(line, col int, format string, args ...any) {
	pp.errs = append(pp.errs, &PolicyError{File: pp.file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

func (pp *policyParser) nodeErrorf(n *yaml.Node, format string, args ...any) {
	pp.errorf(n.Line, n.Column, format, args...)
}

func (pp *policyParser) parse() *Policy {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(pp.src))
	if err := dec.Decode(&doc); err != nil {
		pp.yamlError(err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		pp.nodeErrorf(&extra, "a policy file has one YAML document")
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		pp.nodeErrorf(root, "a policy is a mapping with the key rules (and optionally max_auth_age and classes)")
		return nil
	}
	env, err := newPolicyEnv()
	if err != nil {
		pp.errorf(0, 0, "CEL environment: %v", err)
		return nil
	}
	pp.env = env
	p := &Policy{maxAuthAge: DefaultMaxAuthAge}
	var rules *yaml.Node
	pp.mapping(root, func(key string, k, v *yaml.Node) {
		switch key {
		case "max_auth_age":
			s, ok := pp.scalar(v, "max_auth_age")
			if !ok {
				return
			}
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				pp.nodeErrorf(v, "max_auth_age: want a positive duration such as 1h or 15m, not %q", s)
				return
			}
			p.maxAuthAge = d
		case "classes":
			p.classes = pp.classes(v)
		case "rules":
			rules = v
		default:
			pp.nodeErrorf(k, "unknown key %q (want max_auth_age, classes or rules)", key)
		}
	})
	if rules == nil {
		if len(pp.errs) == 0 {
			pp.nodeErrorf(root, "no rules: a policy needs a rules list")
		}
		return nil
	}
	p.rules = pp.rules(rules)
	return p
}

// yamlError turns a YAML syntax error, which reads "yaml: line N: msg", into a PolicyError.
func (pp *policyParser) yamlError(err error) {
	msg := err.Error()
	if msg == "EOF" {
		pp.errorf(0, 0, "empty policy: it needs a rules list")
		return
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	var line int
	if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
		_, rest, _ := strings.Cut(msg, ":")
		rest = strings.TrimSpace(rest)
		if yamlParserProblems[rest] {
			// yaml.v3 reports the lines of parser (not scanner) errors counting from 0.
			line++
		}
		pp.errorf(line, 0, "YAML: %s", rest)
		return
	}
	pp.errorf(0, 0, "YAML: %s", msg)
}

// yamlParserProblems are the problems yaml.v3's parser (rather than its scanner) reports; it
// gives their lines 0-based. They are reported at the start of the construct being parsed.
var yamlParserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// mapping calls f for each key of a mapping node, refusing non-mapping nodes, non-string
// keys and duplicate keys.
func (pp *policyParser) mapping(n *yaml.Node, f func(key string, k, v *yaml.Node)) bool {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		pp.nodeErrorf(n, "want a mapping, not %s", kindName(n))
		return false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			pp.nodeErrorf(k, "want a string key, not %s", kindName(k))
			continue
		}
		if k.Value == "<<" && k.Tag == "!!merge" {
			pp.nodeErrorf(k, "merge keys (<<) are not supported in a policy")
			continue
		}
		if seen[k.Value] {
			pp.nodeErrorf(k, "duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		f(k.Value, k, v)
	}
	return true
}

func (pp *policyParser) scalar(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" && n.Value == "" {
		pp.nodeErrorf(n, "%s: want a string, not %s", what, kindName(n))
		return "", false
	}
	return n.Value, true
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" && n.Value == "" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func (pp *policyParser) classes(n *yaml.Node) map[string]map[string]Class {
	out := map[string]map[string]Class{}
	pp.mapping(n, func(tunnel string, _, v *yaml.Node) {
		tools := map[string]Class{}
		out[tunnel] = tools
		pp.mapping(v, func(tool string, _, cv *yaml.Node) {
			s, ok := pp.scalar(cv, fmt.Sprintf("classes: %s: %s", tunnel, tool))
			if !ok {
				return
			}
			switch c := Class(s); c {
			case Read, Write, Destructive:
				tools[tool] = c
			default:
				pp.nodeErrorf(cv, "classes: %s: %s: unknown class %q (want read, write or destructive)", tunnel, tool, s)
			}
		})
	})
	return out
}

func (pp *policyParser) rules(n *yaml.Node) []rule {
	if n.Kind != yaml.SequenceNode {
		pp.nodeErrorf(n, "rules: want a list of rules, not %s", kindName(n))
		return nil
	}
	names := map[string]*yaml.Node{}
	out := make([]rule, 0, len(n.Content))
	for _, rn := range n.Content {
		if rn.Kind == yaml.AliasNode {
			rn = rn.Alias
		}
		var r rule
		var nameNode, whenNode, effectNode, scopesNode *yaml.Node
		present := map[string]bool{}
		if !pp.mapping(rn, func(key string, k, v *yaml.Node) {
			present[key] = true
			switch key {
			case "name":
				if s, ok := pp.scalar(v, "name"); ok {
					r.name, nameNode = s, v
				}
			case "when":
				if s, ok := pp.scalar(v, "when"); ok {
					r.when, whenNode = s, v
				}
			case "effect":
				if s, ok := pp.scalar(v, "effect"); ok {
					r.effect, effectNode = Effect(s), v
				}
			case "message":
				if s, ok := pp.scalar(v, "message"); ok {
					r.message = s
				}
			case "scopes":
				scopesNode = v
				r.scopes = pp.scopes(v)
			default:
				pp.nodeErrorf(k, "unknown key %q in a rule (want name, when, effect, message or scopes)", key)
			}
		}) {
			continue
		}
		label := "rule"
		switch {
		case nameNode == nil:
			if !present["name"] {
				pp.nodeErrorf(rn, "a rule needs a name")
			}
		case strings.TrimSpace(r.name) == "":
			pp.nodeErrorf(nameNode, "a rule's name must not be empty")
		case r.name == defaultRule:
			pp.nodeErrorf(nameNode, "rule name %q is reserved for the decision when no rule matches", defaultRule)
		case names[r.name] != nil:
			first := names[r.name]
			pp.nodeErrorf(nameNode, "rule %q: duplicate rule name (first at line %d)", r.name, first.Line)
		default:
			names[r.name] = nameNode
		}
		if nameNode != nil {
			label = fmt.Sprintf("rule %q", r.name)
		}
		switch {
		case effectNode == nil:
			if !present["effect"] {
				pp.nodeErrorf(rn, "%s: needs an effect (allow, deny or step_up)", label)
			}
		case r.effect != Allow && r.effect != Deny && r.effect != StepUp:
			pp.nodeErrorf(effectNode, "%s: unknown effect %q (want allow, deny or step_up)", label, string(r.effect))
		case scopesNode != nil && r.effect != StepUp:
			pp.nodeErrorf(scopesNode, "%s: scopes only apply to step_up rules", label)
		}
		if whenNode == nil {
			if !present["when"] {
				pp.nodeErrorf(rn, "%s: needs a condition (when)", label)
			}
		} else {
			r.prg = pp.compile(label, r.when, whenNode)
		}
		out = append(out, r)
	}
	return out
}

func (pp *policyParser) scopes(n *yaml.Node) []string {
	if n.Kind != yaml.SequenceNode {
		pp.nodeErrorf(n, "scopes: want a list of scopes, not %s", kindName(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for _, s := range n.Content {
		v, ok := pp.scalar(s, "scopes")
		if !ok {
			continue
		}
		if v == "" || strings.ContainsAny(v, " \t\r\n\"\\") {
			pp.nodeErrorf(s, "scopes: %q is not a valid OAuth scope", v)
			continue
		}
		out = append(out, v)
	}
	return out
}

// compile compiles, checks and costs one condition; errors point into the YAML file.
func (pp *policyParser) compile(label, expr string, n *yaml.Node) cel.Program {
	if strings.TrimSpace(expr) == "" {
		pp.nodeErrorf(n, "%s: empty condition", label)
		return nil
	}
	ast, iss := pp.env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		for _, e := range iss.Errors() {
			line, col := n.Line, n.Column
			if e.Location != nil && e.Location.Line() > 0 {
				line, col = exprPosition(pp.src, n, expr, e.Location.Line(), e.Location.Column())
			}
			pp.errorf(line, col, "%s: %s", label, e.Message)
		}
		return nil
	}
	if lits := celast.MatchDescendants(celast.NavigateAST(ast.NativeRep()), celast.KindMatcher(celast.StructKind)); len(lits) > 0 {
		loc := ast.NativeRep().SourceInfo().GetStartLocation(lits[0].ID())
		line, col := exprPosition(pp.src, n, expr, loc.Line(), loc.Column())
		pp.errorf(line, col, "%s: a condition cannot create objects", label)
		return nil
	}
	if !ast.OutputType().IsExactType(types.BoolType) {
		pp.nodeErrorf(n, "%s: the condition is %s, not bool", label, ast.OutputType())
		return nil
	}
	est, err := pp.env.EstimateCost(ast, sizeEstimator{})
	if err != nil {
		pp.nodeErrorf(n, "%s: estimating the condition's cost: %v", label, err)
		return nil
	}
	if est.Max > MaxEstimatedCost {
		pp.nodeErrorf(n, "%s: the condition may cost up to %s (limit %d): it could do too much work for one request", label, costString(est.Max), MaxEstimatedCost)
		return nil
	}
	// Runtime cost tracking is what bounds a comprehension (all, exists, map, filter) over
	// inputs larger than the estimate assumed, such as a call's arguments; it costs
	// allocations on every evaluation. A condition without comprehensions does work linear in
	// its inputs at most, bounded by the request size, so it runs untracked.
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if len(celast.MatchDescendants(celast.NavigateAST(ast.NativeRep()), celast.KindMatcher(celast.ComprehensionKind))) > 0 {
		opts = append(opts, cel.CostLimit(CostLimit))
	}
	prg, err := pp.env.Program(ast, opts...)
	if err != nil {
		pp.nodeErrorf(n, "%s: %v", label, err)
		return nil
	}
	return prg
}

func costString(c uint64) string {
	if c == ^uint64(0) {
		return "an unbounded amount"
	}
	return fmt.Sprint(c)
}

// sizeEstimator bounds, for the cost estimate, strings and bytes to maxEstimatedString and
// lists and maps (including what arguments may hold) to maxEstimatedItems elements.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	var est cost.SizeEstimate
	switch n.Type().Kind() {
	case types.StringKind, types.BytesKind:
		est = cost.RangedSizeEstimate(0, maxEstimatedString)
	case types.ListKind, types.MapKind, types.DynKind:
		est = cost.RangedSizeEstimate(0, maxEstimatedItems)
	default:
		return nil
	}
	return &est
}

func (sizeEstimator) EstimateCallCost(function, overloadID string, target *cost.AstNode, args []cost.AstNode) *cost.CallEstimate {
	return nil
}

// exprPosition maps a position in a condition (CEL's 1-based line, 0-based column) to the
// file's line and column, from the YAML scalar's position and style. Folding in plain and
// folded scalars is followed line by line; escapes in double-quoted strings are not.
func exprPosition(src []byte, n *yaml.Node, expr string, line, col int) (int, int) {
	// The offset of the position in expr, in bytes.
	off := 0
	for l := 1; l < line; l++ {
		i := strings.IndexByte(expr[off:], '\n')
		if i < 0 {
			break
		}
		off += i + 1
	}
	off += col
	lines := strings.Split(string(src), "\n")
	type segment struct{ line, col, len int }
	var segs []segment
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		indent := -1
		for l := n.Line; l < len(lines); l++ { // lines[n.Line] is the line after the indicator
			s := strings.TrimRight(lines[l], " \t\r")
			if s == "" {
				if indent >= 0 {
					segs = append(segs, segment{l + 1, indent + 1, 0})
				}
				continue
			}
			lead := len(s) - len(strings.TrimLeft(s, " "))
			if indent < 0 {
				indent = lead
			} else if lead < indent {
				break
			}
			segs = append(segs, segment{l + 1, indent + 1, len(s) - indent})
		}
	default:
		start := n.Column - 1
		if n.Style == yaml.DoubleQuotedStyle || n.Style == yaml.SingleQuotedStyle {
			start++
		}
		for l := n.Line - 1; l < len(lines); l++ {
			s := strings.TrimRight(lines[l], " \t\r")
			c := 0
			if l == n.Line-1 {
				c = min(start, len(s))
			} else {
				c = len(s) - len(strings.TrimLeft(s, " \t"))
			}
			segs = append(segs, segment{l + 1, c + 1, len(s) - c})
		}
	}
	for i, s := range segs {
		if off <= s.len || i == len(segs)-1 {
			if i == 0 && (n.Style == yaml.DoubleQuotedStyle || n.Style == yaml.SingleQuotedStyle) {
				off = quotedOffset(lines[s.line-1][s.col-1:], off, n.Style == yaml.DoubleQuotedStyle)
			}
			return s.line, s.col + off
		}
		off -= s.len + 1
	}
	return n.Line, n.Column
}

// quotedOffset is how many bytes of a quoted scalar's source text (after the opening quote)
// hold its first off characters: escapes (\" \n \x41 \u00e9, or a doubled quote in single
// quotes) take more than one.
func quotedOffset(src string, off int, double bool) int {
	i := 0
	for ; off > 0 && i < len(src); off-- {
		switch {
		case double && src[i] == '\\' && i+1 < len(src):
			switch src[i+1] {
			case 'x':
				i += 4
			case 'u':
				i += 6
			case 'U':
				i += 10
			default:
				i += 2
			}
		case !double && src[i] == '\'' && i+1 < len(src) && src[i+1] == '\'':
			i += 2
		default:
			i++
		}
	}
	return min(i, len(src)) + off
}
