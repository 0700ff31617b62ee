package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/oauth"
	"github.com/toolgate/toolgate/sshd"
	"github.com/toolgate/toolgate/tunnel"
	"github.com/toolgate/toolgate/web"
)

// server is one running toolgate: every component, wired, with its listeners.
type server struct {
	s      *settings
	log    *slog.Logger
	store  *data.Store
	reg    *tunnel.Registry
	proxy  *tunnel.Proxy
	certs  *web.CertManager
	ssh    *sshd.Server
	https  *http.Server
	http   *http.Server
	admin  *http.Server
	caPath string

	accounts *web.Accounts
	sessions *web.Sessions
	links    *web.KeyLinks
	oidc     *web.OIDC // nil without oidc-issuer
	// oauth is the authorization server; nil with tunnel-auth none.
	oauth        *oauth.Server
	resources    web.TunnelResources
	methodScopes map[string][]string
	policies     *policies // nil with tunnel-auth none
	audit        *data.AuditLog
	stopExport   func() // ends the audit-jsonl export; nil without one
	// bootstrapLink is the first admin's one-time sign-in link, printed in the banner; empty
	// once the installation has a usable account.
	bootstrapLink string
	adminSock     *http.Server

	httpsL, sshL, httpL, adminL, adminSockL net.Listener
	ready                                   chan struct{}
	stopSweeps                              context.CancelFunc
}

// serve runs toolgate until ctx ends, then shuts down gracefully: new connections are refused,
// requests in flight get up to drain to finish, then SSH connections close.
func serve(ctx context.Context, s *settings, stdout io.Writer, log *slog.Logger) error {
	srv, err := start(ctx, s, log)
	if err != nil {
		return err
	}
	srv.printBanner(stdout)
	<-ctx.Done()
	log.Info("shutting down")
	return srv.shutdown(10 * time.Second)
}

func start(ctx context.Context, s *settings, log *slog.Logger) (_ *server, err error) {
	srv := &server{s: s, log: log, ready: make(chan struct{})}
	defer func() {
		if err != nil {
			srv.closeAll()
		}
	}()

	if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("setting data-dir: %w", err)
	}
	srv.store, err = data.Open(data.Config{Path: filepath.Join(s.DataDir, dbFileName), Logger: log})
	if err != nil {
		return nil, err
	}

	hostKey, err := loadHostKey(ctx, srv.store)
	if err != nil {
		return nil, err
	}
	srv.audit = srv.store.AuditLog(data.AuditLogConfig{MaxAge: s.AuditMaxAge, MaxRecords: s.AuditMaxRecords, Logger: log})
	if s.AuditJSONL != "" {
		if srv.stopExport, err = startAuditExport(context.Background(), srv.audit, s.AuditJSONL, log); err != nil {
			return nil, fmt.Errorf("setting audit-jsonl: %w", err)
		}
	}

	srv.reg, err = tunnel.NewRegistry(tunnel.Config{
		Domain:             s.TunnelDomain,
		Names:              srv.store,
		Reserved:           s.ReservedNames,
		MaxTunnelsPerOwner: s.MaxTunnelsPerUser,
		Shares:             srv.store,
		Logger:             log,
		Lifecycle:          srv.auditTunnel,
	})
	if err != nil {
		return nil, err
	}
	srv.proxy, err = tunnel.NewProxy(tunnel.ProxyConfig{
		ResponseHeaderTimeout: s.ResponseHeaderTimeout,
		DialTimeout:           s.TunnelDialTimeout,
		IdleConnTimeout:       s.TunnelIdleTimeout,
		WriteError:            web.WriteProxyError,
		Logger:                log,
	})
	if err != nil {
		return nil, err
	}

	// Listen before obtaining certificates: ACME's TLS-ALPN-01 challenge is answered by our
	// own HTTPS listener, so it must exist first.
	if srv.httpsL, err = net.Listen("tcp", s.HTTPSListen); err != nil {
		return nil, fmt.Errorf("setting https-listen: %w", err)
	}
	if srv.sshL, err = net.Listen("tcp", s.SSHListen); err != nil {
		return nil, fmt.Errorf("setting ssh-listen: %w", err)
	}
	if s.HTTPListen != "" {
		if srv.httpL, err = net.Listen("tcp", s.HTTPListen); err != nil {
			return nil, fmt.Errorf("setting http-listen: %w", err)
		}
	}
	if s.AdminListen != "" {
		if srv.adminL, err = net.Listen("tcp", s.AdminListen); err != nil {
			return nil, fmt.Errorf("setting admin-listen: %w", err)
		}
	}

	// The admin socket is taken before anything is served: a second server started on the same
	// data directory has already failed on the database lock, so the socket is ours.
	if srv.adminSockL, err = listenAdminSocket(s.DataDir); err != nil {
		return nil, err
	}

	if err := srv.newCerts(ctx); err != nil {
		return nil, err
	}
	if err := srv.newIdentity(ctx); err != nil {
		return nil, err
	}

	if err := srv.newOAuth(ctx); err != nil {
		return nil, err
	}

	auth, err := srv.authenticator()
	if err != nil {
		return nil, err
	}
	var greeting []string
	if srv.caPath != "" {
		greeting = append(greeting, "toolgate development server; trust its CA for TLS: "+srv.caPath)
	}
	srv.ssh, err = sshd.New(sshd.Config{
		HostKey:           hostKey,
		Auth:              auth,
		Tunnels:           srv.reg,
		PublicURL:         srv.publicURL,
		Greeting:          greeting,
		HostsHint:         isLocalDomain(s.TunnelDomain),
		HandshakeTimeout:  s.SSHHandshakeTimeout,
		KeepaliveInterval: s.SSHKeepaliveInterval,
		KeepaliveCountMax: s.SSHKeepaliveCount,
		MaxConnsPerOwner:  s.MaxConnsPerOwner,
		MaxConnsPerIP:     s.MaxConnsPerIP,
		Ciphers:           []string(s.SSHCiphers),
		Linker:            keyLinker{srv.links},
		LinkTimeout:       s.LinkCodeTTL + time.Minute,
		KeyUsed:           newKeyUses(srv.store, log).record,
		Shared:            srv.auditShared,
		Logger:            log,
	})
	if err != nil {
		return nil, err
	}

	var apexOAuth *web.OAuthConfig
	var tokens web.TokenChecker
	var policy web.PolicySource
	if srv.oauth != nil {
		apexOAuth = &web.OAuthConfig{Server: srv.oauth, Grants: srv.store, Access: srv.resources, MaxAuthAge: s.MaxAuthAge}
		tokens = srv.oauth
		policy = srv.policies
	}
	front, err := web.NewFront(web.FrontConfig{
		Domain:       s.Domain,
		TunnelDomain: s.TunnelDomain,
		Tunnels:      srv.reg,
		Proxy:        srv.proxy,
		Apex: web.NewApex(web.ApexConfig{
			Domain: s.Domain, SSHCommand: srv.sshCommand(), CAPath: srv.caPath,
			Sessions: srv.sessions, Accounts: srv.accounts, Links: srv.links, KeyCloser: srv.ssh,
			OIDC: srv.oidc, OAuth: apexOAuth,
		}),
		Auth:         tokens,
		MethodScopes: srv.methodScopes,
		Policy:       policy,
		Users:        srv.store,
		MaxBody:      int64(s.MaxBody),
		BodyTimeout:  s.BodyTimeout,
		Limits: web.RequestLimits{RatePerIP: s.RatePerIP, RatePerUser: s.RatePerUser,
			StreamsPerIP: s.MaxStreamsPerIP, StreamsPerUser: s.MaxStreamsPerUser},
		Audit:          srv.audit,
		AuditArgs:      s.AuditArgs,
		AllowedOrigins: []string(s.AllowedOrigins),
		Logger:         log,
	})
	if err != nil {
		return nil, err
	}

	srv.https = web.NewServer(web.ServerConfig{
		Handler:           front,
		TLSConfig:         srv.certs.TLSConfig(),
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		Logger:            log,
	})
	go srv.run("https", func() error { return srv.https.ServeTLS(srv.httpsL, "", "") })
	go srv.run("ssh", func() error { return srv.ssh.Serve(srv.sshL) })
	if srv.httpL != nil {
		srv.http = web.NewServer(web.ServerConfig{
			Handler:           srv.certs.HTTPChallengeHandler(web.RedirectToHTTPS(srv.publicHTTPSPort())),
			ReadHeaderTimeout: s.ReadHeaderTimeout,
			Logger:            log,
		})
		go srv.run("http", func() error { return srv.http.Serve(srv.httpL) })
	}
	if srv.adminL != nil {
		srv.admin = web.NewServer(web.ServerConfig{
			Handler: web.NewAdmin(web.AdminConfig{
				Ready:    srv.isReady,
				Gatherer: newMetrics(srv.reg, srv.ssh),
			}),
			ReadHeaderTimeout: s.ReadHeaderTimeout,
			Logger:            log,
		})
		go srv.run("admin", func() error { return srv.admin.Serve(srv.adminL) })
	}
	srv.adminSock = &http.Server{
		Handler: adminSocketHandler(func() adminEnv {
			env := adminEnv{store: srv.store, accounts: srv.accounts, closer: srv.ssh, keyTTL: s.KeyTTL,
				tunnels: srv.reg, reserved: s.ReservedNames, audit: srv.audit}
			if srv.oauth != nil {
				env.inspect = srv.oauth.Introspect
				env.policies = &policyEnv{policy: srv.policies.Current, tunnel: srv.tunnelPolicyInfo,
					reload: srv.policies.Reload, file: s.Policy}
			}
			return env
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.run("admin socket", func() error { return srv.adminSock.Serve(srv.adminSockL) })
	// Only now that the HTTPS (and HTTP) servers answer can ACME validate us: TLS-ALPN-01 is
	// answered by the HTTPS listener's handshakes, HTTP-01 by the HTTP handler.
	if err := srv.certs.Start(ctx); err != nil {
		return nil, fmt.Errorf("certificate for %s: %w", s.Domain, err)
	}
	sweepCtx, stopSweeps := context.WithCancel(context.Background())
	srv.stopSweeps = stopSweeps
	if srv.policies != nil {
		go srv.policies.reloadOnSIGHUP(sweepCtx)
	}
	go srv.store.RunSweeps(sweepCtx, data.SweepConfig{
		Audit:      srv.audit,
		NamesInUse: srv.reg.InUse,
		// A link that lapses ends its connections, as a revoke does: the key must be
		// approved again, and an open session would otherwise outlive the approval.
		KeysExpired: func(keys []data.SSHKey) {
			for _, k := range keys {
				srv.ssh.CloseKey(k.Fingerprint, "this SSH key's link expired; reconnect to approve it again")
			}
		},
	})

	close(srv.ready)
	log.Info("toolgate serving",
		"domain", s.Domain, "https", srv.httpsL.Addr().String(), "ssh", srv.sshL.Addr().String(),
		"admin", addrString(srv.adminL), "http", addrString(srv.httpL), "ca", srv.caPath)
	return srv, nil
}

// run serves one listener and logs how it ended.
func (srv *server) run(name string, serve func() error) {
	err := serve()
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		srv.log.Error("listener failed", "listener", name, "err", err)
	}
}

func (srv *server) isReady() bool {
	select {
	case <-srv.ready:
		return true
	default:
		return false
	}
}

func addrString(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

func (srv *server) publicHTTPSPort() int {
	if srv.s.PublicHTTPSPort != 0 {
		return srv.s.PublicHTTPSPort
	}
	return srv.httpsL.Addr().(*net.TCPAddr).Port
}

// publicURL is the URL of a host as users type it.
func (srv *server) publicURL(host string) string {
	if p := srv.publicHTTPSPort(); p != 443 {
		return "https://" + host + ":" + strconv.Itoa(p)
	}
	return "https://" + host
}

func (srv *server) sshCommand() string {
	port := srv.s.PublicSSHPort
	if port == 0 {
		port = srv.sshL.Addr().(*net.TCPAddr).Port
	}
	host := srv.s.Domain
	if isLocalDomain(host) {
		// ssh resolves through the C library, which (without systemd-resolved or
		// nss-myhostname, as on stock Debian) does not know *.localhost. Plain localhost
		// always works and reaches the same server.
		host = "localhost"
	}
	if port == 22 {
		return "ssh -R 0:localhost:3000 " + host
	}
	return fmt.Sprintf("ssh -p %d -R 0:localhost:3000 %s", port, host)
}

// printBanner tells the person who started toolgate how to use it.
func (srv *server) printBanner(w io.Writer) {
	fmt.Fprintf(w, "\ntoolgate is serving https://%s\n", srv.s.Domain)
	if srv.publicHTTPSPort() != 443 {
		fmt.Fprintf(w, "  (at %s)\n", srv.publicURL(srv.s.Domain))
	}
	if srv.bootstrapLink != "" {
		fmt.Fprintf(w, "\nSign in as the administrator and set a password (link valid 15 minutes, once):\n\n    %s\n", srv.bootstrapLink)
		fmt.Fprintf(w, "\nAdd people with: toolgate user add EMAIL\n")
	}
	fmt.Fprintf(w, "\nPut a local MCP server on the internet:\n\n    %s\n\n", srv.sshCommand())
	fmt.Fprintf(w, "The first time a key connects, ssh shows a link to approve it in the browser.\n")
	if srv.oauth != nil {
		fmt.Fprintf(w, "MCP clients get a token for a tunnel by signing you in at %s (OAuth 2.1);\nyour approvals are at %s/grants.\n\n", srv.publicURL(srv.s.Domain), srv.publicURL(srv.s.Domain))
	} else {
		fmt.Fprintf(w, "WARNING: tunnel-auth is none: every tunnel is open to anyone who knows its URL.\n\n")
	}
	if srv.caPath != "" {
		fmt.Fprintf(w, "Development CA (trust it, or pass it to your client): %s\n", srv.caPath)
		fmt.Fprintf(w, "  curl:  curl --cacert %s https://NAME.%s:%d/mcp\n", srv.caPath, srv.s.TunnelDomain, srv.publicHTTPSPort())
		fmt.Fprintf(w, "  Node:  NODE_EXTRA_CA_CERTS=%s\n", srv.caPath)
		fmt.Fprintf(w, "Browsers and curl resolve *.localhost; Go and Node programs need an /etc/hosts line per tunnel\n")
		fmt.Fprintf(w, "(the ssh session prints it) or a dialer that sends *.%s to 127.0.0.1.\n", srv.s.TunnelDomain)
	}
	fmt.Fprintln(w)
}

// shutdown drains: stop accepting, let requests finish for up to grace, then close the rest.
func (srv *server) shutdown(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var errs []error
	for _, h := range []*http.Server{srv.https, srv.http} {
		if h == nil {
			continue
		}
		// Streams (SSE, WebSocket) never become idle: after the grace period they are cut.
		if err := h.Shutdown(ctx); err != nil {
			h.Close()
		}
	}
	if srv.ssh != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := srv.ssh.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("ssh shutdown: %w", err))
		}
		scancel()
	}
	if srv.admin != nil {
		srv.admin.Close()
	}
	if srv.adminSock != nil {
		srv.adminSock.Close()
	}
	srv.closeAll()
	return errors.Join(errs...)
}

// closeAll releases whatever start got as far as creating.
func (srv *server) closeAll() {
	if srv.stopSweeps != nil {
		srv.stopSweeps()
	}
	for _, l := range []net.Listener{srv.httpsL, srv.sshL, srv.httpL, srv.adminL, srv.adminSockL} {
		if l != nil {
			l.Close()
		}
	}
	if srv.proxy != nil {
		srv.proxy.CloseIdleConnections()
	}
	if srv.certs != nil {
		srv.certs.Stop()
	}
	if srv.audit != nil {
		// Before the database: the last batch of records is committed here.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := srv.audit.Close(ctx); err != nil {
			srv.log.Error("closing the audit log", "err", err)
		}
		cancel()
		if srv.stopExport != nil {
			srv.stopExport() // after Close, so the last batch is exported too
		}
	}
	if srv.store != nil {
		if err := srv.store.Close(); err != nil {
			srv.log.Error("closing the database", "err", err)
		}
	}
}

// auditTunnel records a tunnel going live or away, with the owner's email.
func (srv *server) auditTunnel(event, name, owner string) {
	r := data.AuditRecord{Kind: event, Tunnel: name, Owner: owner, User: owner}
	if u, err := srv.store.GetUser(context.Background(), owner); err == nil && u.Email != "" {
		r.User = u.Email
	}
	srv.audit.Append(r)
}
