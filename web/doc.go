// Package web is toolgate's HTTP(S) front: the listeners, TLS certificates (certmagic, with a
// local CA for development or ACME in production), routing by Host between the apex site and
// tunnels, and the chain every tunnel request passes through on its way to the proxy.
//
// A tunnel request's whole path reads top to bottom in front.go. The proxy itself, the tunnel
// table and name rules live in package tunnel; the SSH side in package sshd.
package web
