package authz

import (
	"fmt"
	"reflect"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
)

// This file declares what a policy's CEL conditions see and supplies it from an [Input]
// without converting the Input into maps: user, client, tunnel and tool are object types
// known to the type checker (so `user.idd` or `tool.name > 3` is refused at load), read at
// run time straight from the Input's fields.

// The object types of the policy's variables.
var (
	userType   = types.NewObjectType("toolgate.User")
	clientType = types.NewObjectType("toolgate.Client")
	tunnelType = types.NewObjectType("toolgate.Tunnel")
	toolType   = types.NewObjectType("toolgate.Tool")
)

// field is one field of an object variable: its type and how to read it, through the
// activation, which keeps each string field's CEL value once made (see activation.str).
type field struct {
	t   *types.Type
	get func(a *activation) ref.Val
}

var stringListType = types.NewListType(types.StringType)

// The string fields an activation keeps CEL values of.
const (
	strUserID = iota
	strUserEmail
	strClientID
	strClientName
	strTunnel
	strOwner
	strTool
	numStrFields
)

// objectFields are the object types' fields. A field is "set" (for has()) when it is not its
// zero value, as for protobuf scalars.
var objectFields = map[string]map[string]field{
	userType.TypeName(): {
		"id":     {types.StringType, func(a *activation) ref.Val { return a.str(strUserID, a.in.User.ID) }},
		"email":  {types.StringType, func(a *activation) ref.Val { return a.str(strUserEmail, a.in.User.Email) }},
		"groups": {stringListType, func(a *activation) ref.Val { return stringList(a.in.User.Groups) }},
	},
	clientType.TypeName(): {
		"id":   {types.StringType, func(a *activation) ref.Val { return a.str(strClientID, a.in.Client.ID) }},
		"name": {types.StringType, func(a *activation) ref.Val { return a.str(strClientName, a.in.Client.Name) }},
	},
	tunnelType.TypeName(): {
		"name":   {types.StringType, func(a *activation) ref.Val { return a.str(strTunnel, a.in.Tunnel) }},
		"owner":  {types.StringType, func(a *activation) ref.Val { return a.str(strOwner, a.in.Owner) }},
		"shared": {types.BoolType, func(a *activation) ref.Val { return types.Bool(a.in.Shared) }},
	},
	toolType.TypeName(): {
		"name":  {types.StringType, func(a *activation) ref.Val { return a.str(strTool, a.in.Tool) }},
		"class": {types.StringType, func(a *activation) ref.Val { return classValue(a.in.Class) }},
	},
}

// celAdapter converts the few native values left (list elements, arguments) to CEL values.
var celAdapter = types.DefaultTypeAdapter

func stringList(s []string) ref.Val {
	if s == nil {
		s = []string{}
	}
	return types.NewStringList(celAdapter, s)
}

// provider adds the object types to CEL's standard type registry.
type provider struct {
	*types.Registry
}

func (p provider) FindStructType(name string) (*types.Type, bool) {
	if _, ok := objectFields[name]; ok {
		return types.NewTypeTypeWithParam(types.NewObjectType(name)), true
	}
	return p.Registry.FindStructType(name)
}

func (p provider) FindStructFieldNames(name string) ([]string, bool) {
	if fs, ok := objectFields[name]; ok {
		names := make([]string, 0, len(fs))
		for n := range fs {
			names = append(names, n)
		}
		return names, true
	}
	return p.Registry.FindStructFieldNames(name)
}

func (p provider) FindStructFieldType(name, fieldName string) (*types.FieldType, bool) {
	fs, ok := objectFields[name]
	if !ok {
		return p.Registry.FindStructFieldType(name, fieldName)
	}
	f, ok := fs[fieldName]
	if !ok {
		return nil, false
	}
	get := f.get
	zero := f.t.Kind() == types.BoolKind
	return &types.FieldType{
		Type: f.t,
		IsSet: func(target any) bool {
			a, ok := target.(*activation)
			if !ok {
				return false
			}
			v := get(a)
			if zero {
				return v == types.True
			}
			if s, ok := v.(types.String); ok {
				return s != ""
			}
			if l, ok := v.(interface{ Size() ref.Val }); ok {
				return l.Size() != types.IntZero
			}
			return true
		},
		GetFrom: func(target any) (any, error) {
			a, ok := target.(*activation)
			if !ok {
				return nil, fmt.Errorf("no such field %q", fieldName)
			}
			return get(a), nil
		},
	}, true
}

func (p provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := objectFields[name]; ok {
		return types.NewErr("%s values cannot be created in a policy", name)
	}
	return p.Registry.NewValue(name, fields)
}

// object is the run-time value of user, client, tunnel or tool: the Input, seen as one type.
// Field selection goes through the provider's GetFrom, which receives Value(), the activation
// (the Input with the values made from it so far).
type object struct {
	t   *types.Type
	act *activation
}

func (o *object) ConvertToNative(typeDesc reflect.Type) (any, error) {
	return nil, fmt.Errorf("%s cannot be converted to %v", o.t.TypeName(), typeDesc)
}

func (o *object) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return o.t
	}
	return types.NewErr("type conversion error from '%s' to '%s'", o.t.TypeName(), t.TypeName())
}

func (o *object) Equal(other ref.Val) ref.Val {
	p, ok := other.(*object)
	return types.Bool(ok && p.t == o.t && p.act == o.act)
}

func (o *object) Type() ref.Type { return o.t }
func (o *object) Value() any     { return o.act }

// The policy's variables.
const (
	varUser       = "user"
	varClient     = "client"
	varScopes     = "scopes"
	varTunnel     = "tunnel"
	varMethod     = "method"
	varTool       = "tool"
	varArguments  = "arguments"
	varSourceIP   = "source_ip"
	varNow        = "now"
	varAuthAge    = "auth_age"
	varMaxAuthAge = "max_auth_age"
)

var (
	policyEnvOnce sync.Once
	policyEnv     *cel.Env
	policyEnvErr  error
)

// newPolicyEnv is the CEL environment every policy is compiled in; it is built once.
func newPolicyEnv() (*cel.Env, error) {
	policyEnvOnce.Do(func() {
		policyEnv, policyEnvErr = cel.NewEnv(
			cel.CustomTypeProvider(provider{mustRegistry()}),
			cel.Variable(varUser, userType),
			cel.Variable(varClient, clientType),
			cel.Variable(varScopes, stringListType),
			cel.Variable(varTunnel, tunnelType),
			cel.Variable(varMethod, types.StringType),
			cel.Variable(varTool, toolType),
			cel.Variable(varArguments, types.NewMapType(types.StringType, types.DynType)),
			cel.Variable(varSourceIP, types.StringType),
			cel.Variable(varNow, types.TimestampType),
			cel.Variable(varAuthAge, types.DurationType),
			cel.Variable(varMaxAuthAge, types.DurationType),
			cel.ParserExpressionSizeLimit(maxExprSize),
		)
	})
	return policyEnv, policyEnvErr
}

// emptyArguments is arguments when a message has none, so has(arguments.x) is simply false.
var emptyArguments = types.NewStringInterfaceMap(celAdapter, map[string]any{})

// activation supplies one Input to a policy's programs. Values are made when a condition first
// asks for them and reused by the following rules: a string made into a CEL value costs an
// allocation, and the built-in policy alone reads tunnel.owner four times per decision.
type activation struct {
	in                         *Input
	maxAuthAge                 time.Duration
	user, client, tunnel, tool object
	scopes, args, authAge      ref.Val
	strs                       [numStrFields]ref.Val
}

func newActivation(in *Input, maxAuthAge time.Duration) *activation {
	a := &activation{in: in, maxAuthAge: maxAuthAge}
	a.user, a.client, a.tunnel, a.tool = object{userType, a}, object{clientType, a}, object{tunnelType, a}, object{toolType, a}
	return a
}

// str returns the string field i, whose value is s, as a CEL value, made once per activation.
func (a *activation) str(i int, s string) ref.Val {
	if a.strs[i] == nil {
		a.strs[i] = types.String(s)
	}
	return a.strs[i]
}

// classValue is a tool class as a CEL value; the three classes cost no allocation.
func classValue(c Class) ref.Val {
	switch c {
	case Read:
		return types.String(Read)
	case Write:
		return types.String(Write)
	case Destructive:
		return types.String(Destructive)
	}
	return types.String(c)
}

// methodValue is a method as a CEL value; the methods policies are written about cost no
// allocation.
func methodValue(m string) ref.Val {
	switch m {
	case "tools/call":
		return types.String("tools/call")
	case "tools/list":
		return types.String("tools/list")
	case "prompts/get":
		return types.String("prompts/get")
	case "resources/read":
		return types.String("resources/read")
	case "initialize":
		return types.String("initialize")
	case "get":
		return types.String("get")
	}
	return types.String(m)
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case varUser:
		return &a.user, true
	case varClient:
		return &a.client, true
	case varTunnel:
		return &a.tunnel, true
	case varTool:
		return &a.tool, true
	case varMethod:
		return methodValue(a.in.Method), true
	case varSourceIP:
		return types.String(a.in.SourceIP), true
	case varScopes:
		if a.scopes == nil {
			a.scopes = stringList(a.in.Scopes)
		}
		return a.scopes, true
	case varArguments:
		if a.args == nil {
			a.args = emptyArguments
			if a.in.Arguments != nil {
				a.args = types.NewStringInterfaceMap(celAdapter, a.in.Arguments)
			}
		}
		return a.args, true
	case varNow:
		t := a.in.Time
		if t.IsZero() {
			t = time.Now()
		}
		return types.Timestamp{Time: t}, true
	case varAuthAge:
		if a.authAge == nil {
			a.authAge = types.Duration{Duration: a.in.AuthAge}
		}
		return a.authAge, true
	case varMaxAuthAge:
		return types.Duration{Duration: a.maxAuthAge}, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

var _ interpreter.Activation = (*activation)(nil)

func mustRegistry() *types.Registry {
	r, err := types.NewRegistry()
	if err != nil {
		panic(err)
	}
	return r
}
