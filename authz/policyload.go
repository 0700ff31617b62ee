package authz

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"go.yaml.in/yaml/v3"
)

// This file loads a policy file: the YAML read with positions kept, every CEL condition
// compiled and its cost bounded at load, and every problem reported with its line and column.
// What a loaded policy does with a request is policy.go's.

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
			r.prg, r.byClass = pp.compile(label, r.when, whenNode)
			// A textual test: a false positive only costs a decoding, and the condition has
			// been parsed and type-checked already, so the word cannot hide elsewhere.
			r.usesArgs = strings.Contains(r.when, "arguments")
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

// compile compiles, checks and costs one condition; errors point into the YAML file. The bool
// says whether the condition sees a tool only through its class (see readsToolByClassOnly).
func (pp *policyParser) compile(label, expr string, n *yaml.Node) (cel.Program, bool) {
	if strings.TrimSpace(expr) == "" {
		pp.nodeErrorf(n, "%s: empty condition", label)
		return nil, false
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
		return nil, false
	}
	if lits := celast.MatchDescendants(celast.NavigateAST(ast.NativeRep()), celast.KindMatcher(celast.StructKind)); len(lits) > 0 {
		loc := ast.NativeRep().SourceInfo().GetStartLocation(lits[0].ID())
		line, col := exprPosition(pp.src, n, expr, loc.Line(), loc.Column())
		pp.errorf(line, col, "%s: a condition cannot create objects", label)
		return nil, false
	}
	if !ast.OutputType().IsExactType(types.BoolType) {
		pp.nodeErrorf(n, "%s: the condition is %s, not bool", label, ast.OutputType())
		return nil, false
	}
	est, err := pp.env.EstimateCost(ast, sizeEstimator{})
	if err != nil {
		pp.nodeErrorf(n, "%s: estimating the condition's cost: %v", label, err)
		return nil, false
	}
	if est.Max > MaxEstimatedCost {
		pp.nodeErrorf(n, "%s: the condition may cost up to %s (limit %d): it could do too much work for one request", label, costString(est.Max), MaxEstimatedCost)
		return nil, false
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
		return nil, false
	}
	return prg, readsToolByClassOnly(ast.NativeRep())
}

// readsToolByClassOnly reports whether a checked condition looks at the tool only as
// tool.class, and not at all at the call's arguments: every "tool" identifier in it is the
// operand of a plain selection of "class". A "tool" anywhere else (tool.name, has(tool.name),
// a comprehension variable of that name) answers false, which is only ever the cautious
// answer (see Policy.DecidesToolsByClass).
func readsToolByClassOnly(a *celast.AST) bool {
	idents := celast.MatchDescendants(celast.NavigateAST(a), celast.KindMatcher(celast.IdentKind))
	for _, id := range idents {
		switch strings.TrimPrefix(id.AsIdent(), ".") {
		case varArguments:
			return false
		case varTool:
			parent, ok := id.Parent()
			if !ok || parent.Kind() != celast.SelectKind {
				return false
			}
			if sel := parent.AsSelect(); sel.IsTestOnly() || sel.FieldName() != "class" {
				return false
			}
		}
	}
	return true
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
