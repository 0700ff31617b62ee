// Package authz decides MCP requests: it reads each request's JSON-RPC body strictly
// (inspect.go), knows each tunnel's tools and their classes (read, write, destructive) from the
// server's own tools/list answers (classes.go), filters tools/list answers so a caller never
// sees a tool it may not call (filter.go per message, responsefilter.go per response body,
// listingfilter.go for event streams that answer no one request), and evaluates the policy,
// YAML rules with CEL conditions, first match wins, default deny (policy.go; loaded and
// compiled by policyload.go), into a [Decision]. It also keeps token buckets per client
// address or user ([RateLimiter], ratelimit.go), for limits on how often someone may ask.
//
// It does not see HTTP connections, tokens or users' records: package web runs the request
// path, gathers the [Input] (who, which client, which tunnel, what the body asks) and acts on
// the decision; records of what was decided belong to the audit log.
package authz
