package web

import (
	"net"
	"net/http"
	"runtime"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/toolgate/toolgate/oauth"
)

// ApexConfig configures the apex site. Fields are read once, by [NewApex].
type ApexConfig struct {
	// Domain is the apex D. Required.
	Domain string
	// SSHCommand is the command that opens a tunnel, shown on the home page.
	SSHCommand string
	// CAPath is where the development CA certificate was written; empty outside development.
	CAPath string

	// Sessions enables browser sessions: sign-out, and every page below that needs a signed-in
	// user. Default nil: the home page only, as before there were accounts.
	Sessions *Sessions
	// Accounts enables local accounts: the password form at /signin, one-time sign-in links
	// (/signin/t/TOKEN) and /account/password. Used only with Sessions. Default nil: none.
	Accounts *Accounts
	// Links enables SSH key linking (/link/CODE) and the key list (/keys), which uses its
	// Store. Used only with Sessions. Default nil: neither page.
	Links *KeyLinks
	// KeyCloser closes a revoked key's live SSH connections. Default nil: nothing to close.
	KeyCloser KeyCloser
	// OIDC enables sign-in through an upstream OpenID Connect provider: a "Sign in with NAME"
	// link on /signin, /signin/oidc (which sends the browser to the provider) and
	// OIDCCallbackPath (where it comes back). Used only with Sessions. With OIDC and no
	// Accounts, /signin shows that link alone; it does not redirect by itself, so that a
	// refused sign-in does not loop through the provider. Default nil: no upstream provider.
	OIDC *OIDC
	// OAuth enables the authorization server: its JSON endpoints (metadata, token, revocation,
	// registration), the authorization endpoint with its consent page, and /grants, where
	// users see and revoke their approvals. Used only with Sessions. Default nil: none.
	OAuth *OAuthConfig
}

// apex holds the apex's configuration and the state its handlers share; the handlers live in
// signin.go, oidc.go, linking.go and keyspage.go.
type apex struct {
	cfg ApexConfig

	accountFails *failures     // failed sign-ins per account
	ipFails      *failures     // failed sign-ins per client network
	codeFails    *failures     // unknown link codes per user
	hashSlots    chan struct{} // bounds concurrent argon2id runs (each takes 19 MiB and a core)
}

// NewApex returns the handler for https://D: the home page and, with Sessions configured,
// sign-in (local accounts, an upstream OpenID Connect provider, or both), key linking and the
// key list.
//
// Every response carries headers for pages that hold tokens: no caching, no framing (the
// sign-in and approval forms must not be clickjacked), no Referer beyond this origin (sign-in
// and link URLs carry secrets in their paths), and no content sniffing. State-changing requests
// pass two CSRF checks before any handler: net/http's cross-origin protection (Sec-Fetch-Site
// and Origin) and the token check of [Sessions.RequireCSRF].
func NewApex(cfg ApexConfig) http.Handler {
	a := &apex{
		cfg:          cfg,
		accountFails: newFailures(5, signinWindow),
		ipFails:      newFailures(20, signinWindow),
		codeFails:    newFailures(20, signinWindow),
		hashSlots:    make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
	}
	r := chi.NewRouter()
	r.Use(securityHeaders)
	if o := cfg.OAuth; o != nil && cfg.Sessions != nil {
		// The JSON endpoints take no cookies and are called cross-origin by design: they sit
		// outside the CSRF checks that guard the pages, with CORS of their own.
		h := o.Server.Handler()
		for _, p := range o.Server.Paths() {
			r.Handle(p, h)
		}
	}
	r.Group(func(r chi.Router) { a.pages(r) })
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, "not_found", "Nothing here.")
	})
	return r
}

// pages routes the pages people use, behind the CSRF checks described at NewApex.
func (a *apex) pages(r chi.Router) {
	cfg := a.cfg
	if s := cfg.Sessions; s != nil {
		cop := http.NewCrossOriginProtection()
		cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, r, http.StatusForbidden, "cross_origin", "Forms on this site can only be sent from this site.")
		}))
		r.Use(cop.Handler, s.Load, s.RequireCSRF)
	}
	r.Get("/", a.home)
	if s := cfg.Sessions; s != nil {
		r.Post("/signout", a.signOut)
		if cfg.Accounts != nil || cfg.OIDC != nil {
			r.Get("/signin", a.signinForm)
		}
		if cfg.OIDC != nil {
			r.Get("/signin/oidc", a.oidcStart)
			r.Get(OIDCCallbackPath, a.oidcCallback)
		}
		if cfg.Accounts != nil {
			r.Post("/signin", a.signinSubmit)
			r.Get("/signin/t/{token}", a.linkSigninForm)
			r.Post("/signin/t/{token}", a.linkSigninSubmit)
			r.With(s.RequireSession).Get("/account/password", a.passwordForm)
			r.With(s.RequireSession).Post("/account/password", a.passwordSubmit)
		}
		if cfg.Links != nil {
			r.With(s.RequireSession).Get("/link/{code}", a.linkForm)
			r.With(s.RequireSession).Post("/link/{code}", a.linkSubmit)
			r.With(s.RequireSession).Get("/keys", a.keysList)
			r.With(s.RequireSession).Post("/keys/revoke", a.keysRevoke)
		}
		if cfg.OAuth != nil {
			r.Get(oauth.AuthorizePath, a.authorize)
			r.Post(oauth.AuthorizePath, a.authorize)
			r.With(s.RequireSession).Get("/grants", a.grantsList)
			r.With(s.RequireSession).Post("/grants/revoke", a.grantsRevoke)
		}
	}
}

// securityHeaders sets the headers described at NewApex. The CSP allows no scripts at all and
// inline styles only (the error page's and the layout's); form-action is left open for the
// OAuth consent page, whose approval redirects to a client's own redirect URI.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

// base fills in what the layout needs for this request.
func (a *apex) base(w http.ResponseWriter, r *http.Request, title string) pageBase {
	p := pageBase{Title: title}
	if s := a.cfg.Sessions; s != nil {
		_, p.User = SessionFromContext(r.Context())
		p.CSRF = s.CSRFToken(w, r)
		p.Flash = s.takeFlash(w, r)
		p.Nav.SignIn = a.cfg.Accounts != nil || a.cfg.OIDC != nil
		p.Nav.Keys = a.cfg.Links != nil
		p.Nav.Grants = a.cfg.OAuth != nil
	}
	return p
}

func (a *apex) home(w http.ResponseWriter, r *http.Request) {
	render(w, r, http.StatusOK, homePage, struct {
		pageBase
		Domain, SSHCommand, CAPath string
	}{a.base(w, r, a.cfg.Domain), a.cfg.Domain, a.cfg.SSHCommand, a.cfg.CAPath})
}

// RedirectToHTTPS answers plain-HTTP requests with a permanent redirect to the same host and
// path over HTTPS on httpsPort.
func RedirectToHTTPS(httpsPort int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := hostOnly(r.Host)
		if httpsPort != 443 {
			host = net.JoinHostPort(host, strconv.Itoa(httpsPort))
		} else if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			host = "[" + host + "]"
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}
