// Package web is toolgate's HTTP(S) front: the listeners, TLS certificates (certmagic, with a
// local CA for development or ACME in production), routing by Host between the apex site and
// tunnels, and the chain every tunnel request passes through on its way to the proxy.
//
// A tunnel request's whole path reads top to bottom in front.go; its OAuth steps (protected
// resource metadata, the bearer token, the scope step-up) are in frontauth.go, its limits per
// client address and per user in frontlimits.go. The proxy
// itself, the tunnel table and name rules live in package tunnel; the SSH side in package
// sshd; the authorization server, and what a token is worth, in package oauth.
//
// The apex site (apex.go) is where people are known: local accounts and their passwords
// (accounts.go), browser sessions with their cookies and CSRF tokens (sessions.go), the sign-in
// pages (signin.go), sign-in through an upstream OpenID Connect provider (oidc.go,
// oidcuser.go), the approval page that links an SSH key to its owner (linking.go), the
// key list (keyspage.go), and the OAuth authorization endpoint with its consent page and the
// list of approvals (consent.go), which tell the user which tunnels exist and who owns them
// through resources.go. Records live in package data; web decides what they mean: how
// passwords and tokens are hashed, how long sessions last, who may sign in. web does not know
// SSH: sshd asks it to link a key through the interface cmd/toolgate wires between them.
package web
