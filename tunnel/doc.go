// Package tunnel owns the live side of toolgate: which public names exist right now, which SSH
// forwards serve them, how a name is chosen for a new forward, and the streaming reverse proxy
// that carries a public HTTP request over a forwarded-tcpip channel to the developer's local
// server.
//
// It does not speak the SSH protocol beyond opening forwarded-tcpip channels on a connection it
// is handed (package sshd accepts connections and global requests), it does not terminate TLS or
// route by Host (package web), and it persists nothing itself: name ownership goes through a
// [NameStore] and the shares saved for a name through a [ShareStore], both implemented by
// package data. An operator's release of a name ([Registry.ReleaseName]) deletes the claim and
// closes the name's forwards, leaving the SSH connections and their other forwards up.
//
// The hot path is [Registry.Lookup] followed by [Proxy.ServeHTTP]: a map read under a read lock,
// then an http.Transport whose pooled connections are SSH channels. Nothing on that path writes
// to disk.
package tunnel
