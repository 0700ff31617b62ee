// Package oauth is toolgate's OAuth 2.1 authorization server for MCP clients, built on fosite:
// authorization server and protected resource metadata, client registration (RFC 7591 dynamic
// registration, Client ID Metadata Documents and clients configured by the operator), the
// authorization and token endpoints with PKCE S256 and RFC 8707 resource indicators, refresh
// token rotation with a grace window, revocation and introspection, and the bearer-token check
// the proxy path runs on every tunnel request.
//
// It does not render pages or know who is signed in: package web signs people in, shows the
// consent page and hands the approved request back through [Server.Approve]. Records live in
// package data; which resources exist (tunnels and routes) is asked through [Resources].
package oauth
