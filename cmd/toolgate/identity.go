package main

// Who is who: the accounts, browser sessions, key linking and OIDC sign-in the server sets up
// (newIdentity), which SSH keys may open tunnels (authenticator), and the glue through which
// sshd links keys and records their use.

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/sshd"
	"github.com/toolgate/toolgate/web"
)

// keyLinker lets sshd link keys through the web's approval page. sshd and web do not know each
// other; this is where the two meet.
type keyLinker struct{ links *web.KeyLinks }

func (l keyLinker) Link(ctx context.Context, req sshd.LinkRequest, show func(string) error) (sshd.Identity, error) {
	userID, display, err := l.links.Link(ctx, web.LinkRequest{
		Fingerprint: req.Fingerprint, KeyType: req.KeyType, RemoteIP: req.RemoteIP,
	}, show)
	if err != nil {
		return sshd.Identity{}, err
	}
	return sshd.Identity{Owner: userID, Display: display}, nil
}

// keyUses records when keys were last used, at most once per key per keyUseResolution.
//
// Every SSH connection would otherwise be a database write (and an fsync) on the handshake's
// heels, which is what bounds connections per second; the keys page shows last use to the
// minute, and "used within the last ten minutes" is all anyone asks of it.
type keyUses struct {
	store *data.Store
	log   *slog.Logger

	mu   sync.Mutex
	last map[string]time.Time // fingerprint → when this process last wrote its LastUsed
}

const keyUseResolution = 10 * time.Minute

func newKeyUses(store *data.Store, log *slog.Logger) *keyUses {
	return &keyUses{store: store, log: log, last: make(map[string]time.Time)}
}

// record is sshd.Config.KeyUsed. sshd calls it on its own goroutine.
func (k *keyUses) record(fingerprint string) {
	now := time.Now()
	k.mu.Lock()
	if t, ok := k.last[fingerprint]; ok && now.Sub(t) < keyUseResolution {
		k.mu.Unlock()
		return
	}
	k.last[fingerprint] = now
	if len(k.last) > 4096 {
		for fp, t := range k.last {
			if now.Sub(t) >= keyUseResolution {
				delete(k.last, fp)
			}
		}
	}
	k.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.store.TouchKey(ctx, fingerprint, now); err != nil {
		// A key revoked a moment ago has no record to touch; nothing else is expected.
		k.log.Debug("recording key use", "fingerprint", fingerprint, "err", err)
	}
}

// authenticator decides who may open tunnels: keys linked to users, each tunnel owned by the
// key's user; with an authorized_keys file, only keys listed there, and they too must be linked.
func (srv *server) authenticator() (sshd.Authenticator, error) {
	users := sshd.UserKeys{Keys: srv.store}
	if srv.s.AuthorizedKeys == "" {
		return users, nil
	}
	a, err := sshd.NewAuthorizedKeys(srv.s.AuthorizedKeys)
	if err != nil {
		return nil, fmt.Errorf("setting authorized-keys: %w", err)
	}
	srv.log.Info("ssh key allow-list loaded", "file", srv.s.AuthorizedKeys, "keys", a.Len())
	return sshd.Both{a, users}, nil
}

// newIdentity sets up accounts, browser sessions, key linking and, with oidc-issuer, sign-in
// through the identity provider, and makes sure a new installation has someone who can sign
// in.
func (srv *server) newIdentity(ctx context.Context) error {
	s, base := srv.s, srv.publicURL(srv.s.Domain)
	var err error
	if srv.accounts, err = web.NewAccounts(web.AccountsConfig{Store: srv.store, BaseURL: base}); err != nil {
		return err
	}
	secret, err := web.LoadSessionSecret(ctx, srv.store)
	if err != nil {
		return err
	}
	srv.sessions, err = web.NewSessions(web.SessionsConfig{
		Store: srv.store, Secret: secret,
		IdleTimeout: s.SessionIdleTimeout, MaxAge: s.SessionMaxAge,
		Logger: srv.log, Audit: srv.audit,
	})
	if err != nil {
		return err
	}
	srv.links, err = web.NewKeyLinks(web.KeyLinksConfig{
		Store: srv.store, BaseURL: base,
		CodeTTL: s.LinkCodeTTL, KeyTTL: s.KeyTTL, RememberTTL: s.KeyRememberTTL,
		Logger: srv.log, Audit: srv.audit,
	})
	if err != nil {
		return err
	}
	if s.OIDCIssuer != "" {
		if s.oidcSecretLiteral {
			srv.log.Warn("literal secret in configuration: give oidc-client-secret as env:NAME or file:PATH",
				"setting", "oidc-client-secret")
		}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		srv.oidc, err = web.NewOIDC(dctx, web.OIDCConfig{
			Issuer: s.OIDCIssuer, ClientID: s.OIDCClientID, ClientSecret: s.oidcSecret,
			RedirectURL: base + web.OIDCCallbackPath, DisplayName: s.OIDCName,
			Scopes: s.OIDCScopes, GroupsClaim: s.OIDCGroupsClaim,
			AllowedDomains: s.OIDCAllowedDomains, ProvisionedOnly: s.OIDCProvisionedOnly,
			Store: srv.store, Logger: srv.log,
		})
		cancel()
		if err != nil {
			return fmt.Errorf("setting oidc-issuer: %w", err)
		}
		srv.log.Info("sign-in through OpenID Connect", "issuer", s.OIDCIssuer, "redirect_uri", base+web.OIDCCallbackPath)
	}
	if srv.bootstrapLink, err = srv.accounts.Bootstrap(ctx); err != nil {
		return err
	}
	if srv.bootstrapLink != "" {
		// Not the link itself: logs are kept and shipped, and the link is a credential.
		srv.log.Info("first start: created the admin account; its sign-in link is printed on standard output")
	}
	return nil
}
