package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/toolgate/toolgate/data"
)

// Cookie names. The __Host- prefix makes browsers refuse these cookies unless they are Secure,
// have Path=/ and no Domain, so a tunnel at NAME.D (same site as D, and running anyone's code)
// can neither read nor plant them.
const (
	SessionCookie = "__Host-toolgate_session"
	csrfCookie    = "__Host-toolgate_csrf"
	flashCookie   = "__Host-toolgate_flash"
)

// SessionSecretName is the data secret that holds the sessions' HMAC key; see [LoadSessionSecret].
const SessionSecretName = "web-session-hmac"

// maxFormBytes bounds a form body; every form here is a few short fields.
const maxFormBytes = 64 << 10

// Errors from [Sessions.Lookup], for errors.Is.
var (
	ErrNoSession      = errors.New("web: not signed in")
	ErrBadSession     = errors.New("web: session cookie is malformed or unknown (signed out elsewhere, or tampered with)")
	ErrSessionExpired = errors.New("web: session expired")
	ErrUserDisabled   = errors.New("web: this account is disabled")
)

// SessionStore is what sessions need from storage. *data.Store implements it.
type SessionStore interface {
	CreateSession(ctx context.Context, s data.Session) error
	GetSession(ctx context.Context, id string) (data.Session, error)
	TouchSession(ctx context.Context, id string, lastSeen, idleExpiresAt time.Time) error
	DeleteSession(ctx context.Context, id string) error
	GetUser(ctx context.Context, id string) (data.User, error)
}

// SessionsConfig configures [Sessions]. Fields are read once, by [NewSessions].
type SessionsConfig struct {
	// Store keeps sessions and users. Required.
	Store SessionStore
	// Secret keys the HMACs of CSRF tokens and flash messages: at least 32 bytes, the same
	// across restarts (or every open form breaks). Required; see LoadSessionSecret.
	Secret []byte
	// IdleTimeout ends a session nobody used for this long. Default 12h.
	IdleTimeout time.Duration
	// MaxAge ends a session this long after sign-in, used or not. Default 7 days.
	MaxAge time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives failures to record activity (which fail no request). Default: discard.
	Logger *slog.Logger
	// Audit receives a "sign_in" record per session started. Default nil.
	Audit AuditSink
}

// Sessions are browser sessions on the apex: a cookie holding a random token, a record stored
// under the token's SHA-256 (so the database never holds a usable cookie), and CSRF tokens
// bound to the session.
//
// Idle expiry slides without a disk write per request. Each request's time is kept in memory,
// and the stored IdleExpiresAt is rewritten only when it would move forward by more than
// min(IdleTimeout/10, 5 minutes): at most one write per session per five minutes, however busy
// the session. The in-memory time counts for expiry too, so a session lives IdleTimeout after
// its last request; after a restart, which forgets it, it may end up to that interval earlier.
type Sessions struct {
	cfg        SessionsConfig
	touchEvery time.Duration

	mu      sync.Mutex
	seen    map[string]seenSession // by session ID
	pruneAt int
}

// seenSession is what memory knows beyond the stored record.
type seenSession struct {
	lastSeen time.Time // the latest request
	written  time.Time // the IdleExpiresAt this process last wrote (or is writing)
}

// NewSessions checks cfg and returns the session manager.
func NewSessions(cfg SessionsConfig) (*Sessions, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("web: SessionsConfig.Store is required")
	case len(cfg.Secret) < 32:
		return nil, errors.New("web: SessionsConfig.Secret must be at least 32 bytes")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 12 * time.Hour
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 7 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Secret = append([]byte(nil), cfg.Secret...)
	return &Sessions{
		cfg:        cfg,
		touchEvery: min(cfg.IdleTimeout/10, 5*time.Minute),
		seen:       make(map[string]seenSession),
		pruneAt:    1024,
	}, nil
}

// LoadSessionSecret returns the sessions' HMAC key from the store, creating 32 random bytes the
// first time.
func LoadSessionSecret(ctx context.Context, st *data.Store) ([]byte, error) {
	return st.LoadOrCreateSecret(ctx, SessionSecretName, func() ([]byte, error) {
		b := make([]byte, 32)
		rand.Read(b)
		return b, nil
	})
}

// Start signs user in on this browser: it stores a new session and sets its cookie. A session
// the browser already had is ended first, so a sign-in never keeps a session ID someone else
// may have planted or seen.
func (s *Sessions) Start(w http.ResponseWriter, r *http.Request, user data.User, method string) (data.Session, error) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		if _, ok := decodeToken(c.Value); ok {
			id := tokenHash(c.Value)
			s.cfg.Store.DeleteSession(r.Context(), id)
			s.forget(id)
		}
	}
	token := newToken()
	now := s.cfg.Now()
	sess := data.Session{
		ID:            tokenHash(token),
		UserID:        user.ID,
		AuthMethod:    method,
		CreatedAt:     now,
		LastSeen:      now,
		IdleExpiresAt: now.Add(s.cfg.IdleTimeout),
		ExpiresAt:     now.Add(s.cfg.MaxAge),
		IP:            remoteHost(r),
		UserAgent:     truncate(r.UserAgent(), 256),
	}
	if err := s.cfg.Store.CreateSession(r.Context(), sess); err != nil {
		return data.Session{}, fmt.Errorf("web: start session: %w", err)
	}
	http.SetCookie(w, &http.Cookie{
		// Max-Age rather than Expires: relative, so a browser with a wrong clock keeps it.
		Name: SessionCookie, Value: token, Path: "/", MaxAge: int(s.cfg.MaxAge / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	if s.cfg.Audit != nil {
		s.cfg.Audit.Append(data.AuditRecord{Time: now, Kind: "sign_in", User: user.Email, SourceIP: sess.IP,
			Decision: "allow", Detail: "signed in with " + method})
	}
	return sess, nil
}

// Lookup returns the request's session and its user. It fails with ErrNoSession (no cookie),
// ErrBadSession (a cookie that names no session), ErrSessionExpired or ErrUserDisabled, or a
// wrapped storage error. On the hot path it only reads; see [Sessions] for when it writes.
func (s *Sessions) Lookup(r *http.Request) (*data.Session, *data.User, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return nil, nil, ErrNoSession
	}
	if _, ok := decodeToken(c.Value); !ok {
		return nil, nil, ErrBadSession
	}
	ctx := r.Context()
	id := tokenHash(c.Value)
	sess, err := s.cfg.Store.GetSession(ctx, id)
	if errors.Is(err, data.ErrNotFound) {
		return nil, nil, ErrBadSession
	}
	if err != nil {
		return nil, nil, fmt.Errorf("web: look up session: %w", err)
	}
	now := s.cfg.Now()
	if s.expired(&sess, now) {
		// Deleting is a write, but once per session, not per request.
		s.cfg.Store.DeleteSession(context.WithoutCancel(ctx), id)
		s.forget(id)
		return nil, nil, ErrSessionExpired
	}
	user, err := s.cfg.Store.GetUser(ctx, sess.UserID)
	if errors.Is(err, data.ErrNotFound) {
		return nil, nil, ErrBadSession
	}
	if err != nil {
		return nil, nil, fmt.Errorf("web: look up session user: %w", err)
	}
	if user.Disabled {
		return nil, nil, ErrUserDisabled
	}
	s.markSeen(ctx, &sess, now)
	return &sess, &user, nil
}

// expired reports whether sess has ended at now, counting the last request this process saw
// (which may be later than the stored LastSeen).
func (s *Sessions) expired(sess *data.Session, now time.Time) bool {
	if !now.Before(sess.ExpiresAt) {
		return true
	}
	idle := sess.IdleExpiresAt
	s.mu.Lock()
	e, ok := s.seen[sess.ID]
	s.mu.Unlock()
	if ok {
		if mem := earlier(e.lastSeen.Add(s.cfg.IdleTimeout), sess.ExpiresAt); mem.After(idle) {
			idle = mem
		}
	}
	return !now.Before(idle)
}

// markSeen notes a request at now and writes the new idle deadline when it has moved far
// enough (see [Sessions]). The decision is made under the lock, so concurrent requests of one
// session write once.
func (s *Sessions) markSeen(ctx context.Context, sess *data.Session, now time.Time) {
	idle := earlier(now.Add(s.cfg.IdleTimeout), sess.ExpiresAt)
	s.mu.Lock()
	e := s.seen[sess.ID]
	if now.After(e.lastSeen) {
		e.lastSeen = now
	}
	stored := sess.IdleExpiresAt
	if e.written.After(stored) {
		stored = e.written
	}
	write := idle.Sub(stored) > s.touchEvery
	if write {
		e.written = idle
	}
	s.seen[sess.ID] = e
	if write && len(s.seen) > s.pruneAt {
		s.pruneLocked(now)
	}
	s.mu.Unlock()
	if write {
		if err := s.cfg.Store.TouchSession(context.WithoutCancel(ctx), sess.ID, now, idle); err != nil && !errors.Is(err, data.ErrNotFound) {
			s.cfg.Logger.Warn("recording session activity failed", "err", err)
		}
	}
	// What the caller sees is the session as of this request, written or not.
	sess.LastSeen, sess.IdleExpiresAt = e.lastSeen, idle
}

// pruneLocked drops memory of sessions idle past the timeout, which Lookup would refuse anyway.
func (s *Sessions) pruneLocked(now time.Time) {
	for id, e := range s.seen {
		if !now.Before(e.lastSeen.Add(s.cfg.IdleTimeout)) {
			delete(s.seen, id)
		}
	}
	s.pruneAt = max(1024, 2*len(s.seen))
}

func (s *Sessions) forget(id string) {
	s.mu.Lock()
	delete(s.seen, id)
	s.mu.Unlock()
}

// End signs the browser out: the session record is deleted and the cookie cleared.
func (s *Sessions) End(w http.ResponseWriter, r *http.Request) error {
	clearCookie(w, SessionCookie)
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return nil
	}
	if _, ok := decodeToken(c.Value); !ok {
		return nil
	}
	id := tokenHash(c.Value)
	s.forget(id)
	if err := s.cfg.Store.DeleteSession(r.Context(), id); err != nil && !errors.Is(err, data.ErrNotFound) {
		return fmt.Errorf("web: end session: %w", err)
	}
	return nil
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// sessionState is the outcome of one request's lookup, kept in its context.
type sessionState struct {
	sess *data.Session
	user *data.User
	err  error
}

type sessionKey struct{}

// Load looks the request's session up once and keeps the outcome in the request context for
// RequireSession, the CSRF check and the pages. A cookie that names no live session is
// cleared; the request goes on signed out.
func (s *Sessions) Load(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := s.state(r)
		if errors.Is(st.err, ErrBadSession) || errors.Is(st.err, ErrSessionExpired) {
			clearCookie(w, SessionCookie)
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, st)))
	})
}

// state returns what Load found, or looks the session up when Load did not run.
func (s *Sessions) state(r *http.Request) *sessionState {
	if st, ok := r.Context().Value(sessionKey{}).(*sessionState); ok {
		return st
	}
	sess, user, err := s.Lookup(r)
	if err != nil && !errors.Is(err, ErrNoSession) && !errors.Is(err, ErrBadSession) &&
		!errors.Is(err, ErrSessionExpired) && !errors.Is(err, ErrUserDisabled) {
		s.cfg.Logger.Error("session lookup failed", "err", err)
	}
	return &sessionState{sess: sess, user: user, err: err}
}

// SessionFromContext returns the signed-in session and user that Load found, or nils.
func SessionFromContext(ctx context.Context) (*data.Session, *data.User) {
	if st, ok := ctx.Value(sessionKey{}).(*sessionState); ok && st.err == nil {
		return st.sess, st.user
	}
	return nil, nil
}

// RequireSession lets only signed-in requests through. A browser navigating (GET) is sent to
// /signin?next=PATH and comes back after signing in; other clients get 401. A disabled user
// gets 403.
func (s *Sessions) RequireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := s.state(r)
		switch {
		case st.err == nil:
			next.ServeHTTP(w, r)
		case errors.Is(st.err, ErrUserDisabled):
			writeError(w, r, http.StatusForbidden, "account_disabled", "This account is disabled.")
		case (r.Method == http.MethodGet || r.Method == http.MethodHead) && wantsHTML(r):
			http.Redirect(w, r, "/signin?next="+url.QueryEscape(safeNext(r.URL.RequestURI())), http.StatusSeeOther)
		case isNotSignedIn(st.err):
			writeError(w, r, http.StatusUnauthorized, "sign_in_required", "Sign in first.")
		default:
			writeError(w, r, http.StatusInternalServerError, "internal", "Looking up your session failed.")
		}
	})
}

func isNotSignedIn(err error) bool {
	return errors.Is(err, ErrNoSession) || errors.Is(err, ErrBadSession) || errors.Is(err, ErrSessionExpired)
}

// CSRF protection. Every state-changing request must carry a token, as the form field "csrf" or
// the X-CSRF-Token header; SameSite=Lax alone is not enough, because tunnels at NAME.D are the
// same site as D. A signed-in request's token is HMAC(Secret, "csrf|" + session ID). Before
// there is a session (the sign-in forms), it is HMAC(Secret, "login|" + V), where V is a random
// value in the __Host-toolgate_csrf cookie: double-submit, and bound to the secret so that a
// value planted in the cookie is no help without a page of D that shows its token.

// RequireCSRF refuses POST, PUT, PATCH and DELETE requests without the right token with 403,
// before any handler runs.
func (s *Sessions) RequireCSRF(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
			next.ServeHTTP(w, r)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if !s.checkCSRF(r) {
			writeError(w, r, http.StatusForbidden, "csrf",
				"This form's security token is missing or out of date (it may come from an earlier session). Go back, reload the page and try again.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Sessions) checkCSRF(r *http.Request) bool {
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	if got == "" {
		return false
	}
	want := ""
	if st := s.state(r); st.err == nil {
		want = s.mac("csrf|", st.sess.ID)
	} else if c, err := r.Cookie(csrfCookie); err == nil && c.Value != "" {
		want = s.mac("login|", c.Value)
	}
	return want != "" && hmac.Equal([]byte(got), []byte(want))
}

// CSRFToken returns the token for a form on the page being rendered: the session's, or for a
// signed-out browser the pre-session one, setting its cookie if the browser has none yet.
func (s *Sessions) CSRFToken(w http.ResponseWriter, r *http.Request) string {
	if st := s.state(r); st.err == nil {
		return s.mac("csrf|", st.sess.ID)
	}
	v := ""
	if c, err := r.Cookie(csrfCookie); err == nil {
		if _, ok := decodeToken(c.Value); ok {
			v = c.Value
		}
	}
	if v == "" {
		v = newToken()
		http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	}
	return s.mac("login|", v)
}

func (s *Sessions) mac(purpose, msg string) string {
	h := hmac.New(sha256.New, s.cfg.Secret)
	io.WriteString(h, purpose)
	io.WriteString(h, msg)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// setFlash leaves a one-line message for the next page this browser shows (after a redirect).
// It is signed so that nobody else can put words on toolgate's pages.
func (s *Sessions) setFlash(w http.ResponseWriter, msg string) {
	v := base64.RawURLEncoding.EncodeToString([]byte(msg))
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: v + "." + s.mac("flash|", v), Path: "/", MaxAge: 60,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// takeFlash returns and clears the message setFlash left, or "".
func (s *Sessions) takeFlash(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return ""
	}
	clearCookie(w, flashCookie)
	v, sig, ok := strings.Cut(c.Value, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(s.mac("flash|", v))) {
		return ""
	}
	msg, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return ""
	}
	return string(msg)
}

// safeNext returns next if it is a path on this site, else "/". A next that a browser could
// read as another origin is refused: "//host" and "/\host" (browsers treat \ as /), anything
// with a scheme or host, and control characters (browsers drop tabs and newlines from URLs, so
// "/\t/host" would become "//host").
func safeNext(next string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.ContainsRune(next, '\\') {
		return "/"
	}
	for i := 0; i < len(next); i++ {
		if next[i] < 0x20 || next[i] == 0x7f {
			return "/"
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return next
}

// remoteHost is the client's IP address, without port.
func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
