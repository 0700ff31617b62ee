package authz

import (
	"encoding/json"
	"time"
)

// Class is what a tool does, as far as authorization cares.
type Class string

// The classes. A tool whose server gives no hints is destructive: the MCP specification's
// defaults are readOnlyHint false and destructiveHint true.
const (
	Read        Class = "read"
	Write       Class = "write"
	Destructive Class = "destructive"
)

// Message is one JSON-RPC message of a request body, with the parts policy looks at.
type Message struct {
	// ID is the request id as sent (a JSON string or number); nil for a notification.
	ID json.RawMessage
	// Method is the method; empty for a response (a client answering a server's request,
	// such as sampling or elicitation), which is never decided.
	Method string
	// Name is params.name for tools/call and prompts/get; URI is params.uri for
	// resources/read.
	Name string
	URI  string
	// Arguments is params.arguments for tools/call (and prompts/get), as sent; nil if absent.
	Arguments json.RawMessage
	// HasCursor is true when params.cursor is a non-empty string: the request asks for a
	// later page of a paginated list (tools/list and the other list methods). An absent,
	// null or empty cursor, or one that is not a string, asks for the first page, as servers
	// read it; counting doubtful cases as first pages is the safe side for tools/list (see
	// [Tools.Learn]).
	HasCursor bool
}

// IsResponse reports whether the message answers a server's request rather than asking.
func (m Message) IsResponse() bool { return m.Method == "" }

// Request is what inspection read from one HTTP request body.
type Request struct {
	Messages []Message
	// Batch is true for a JSON array body (allowed by MCP 2025-03-26 only; each element is
	// decided, and one denial denies the whole batch).
	Batch bool
	// ProtocolVersion is the MCP-Protocol-Version header ("" when absent).
	ProtocolVersion string
}

// Effect is what a decision does with a request.
type Effect string

const (
	// Allow forwards the request.
	Allow Effect = "allow"
	// Deny answers it with a JSON-RPC error naming the rule; nothing is forwarded.
	Deny Effect = "deny"
	// StepUp answers 403 insufficient_scope: the client can fix it by asking its user again
	// (for more scope, or a fresher sign-in).
	StepUp Effect = "step_up"
)

// Decision is the outcome of a policy for one message.
type Decision struct {
	Effect Effect
	// Rule names the rule that matched ("default" when none did).
	Rule string
	// Message is the rule's explanation, shown to the caller in a denial.
	Message string
	// Scopes are, for StepUp, the scopes the client must ask for.
	Scopes []string
}

// Input is everything a policy may look at for one message. web fills it in.
type Input struct {
	User struct {
		ID     string
		Email  string
		Groups []string
	}
	Client struct {
		ID   string
		Name string
	}
	Scopes []string
	// Tunnel is the tunnel's name; Owner its owner's user id; Shared says whether the owner
	// shares the tunnel with this user (directly or through a group).
	Tunnel string
	Owner  string
	Shared bool
	// Method, Tool (tools/call, prompts/get name, resources/read URI) and Class (tools only)
	// of the message; Arguments decoded from JSON (nil when none).
	Method    string
	Tool      string
	Class     Class
	Arguments map[string]any
	SourceIP  string
	Time      time.Time
	// AuthAge is how long ago the user signed in before approving the client.
	AuthAge time.Duration
}
