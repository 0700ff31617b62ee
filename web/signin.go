package web

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
)

// signinWindow is the window of the sign-in failure limits.
const signinWindow = 15 * time.Minute

// maxFailureKeys bounds the memory of the failure limits; past it, the oldest keys are dropped.
const maxFailureKeys = 100_000

// failures counts failed attempts per key in a sliding window: at most limit per window. It
// lives in memory; a restart forgets it, which only gives an attacker a fresh window.
type failures struct {
	limit  int
	window time.Duration

	mu sync.Mutex
	m  map[string][]time.Time // recent failure times per key, oldest first
}

func newFailures(limit int, window time.Duration) *failures {
	return &failures{limit: limit, window: window, m: make(map[string][]time.Time)}
}

// retryAfter returns how long key must wait before trying again, 0 if it may now.
func (f *failures) retryAfter(key string, now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	ts := f.recentLocked(key, now)
	if len(ts) < f.limit {
		return 0
	}
	// Blocked until the failure that put it at the limit leaves the window.
	return ts[len(ts)-f.limit].Add(f.window).Sub(now)
}

// add records a failure of key at now.
func (f *failures) add(key string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.m) >= maxFailureKeys {
		for k := range f.m {
			if len(f.recentLocked(k, now)) == 0 {
				delete(f.m, k)
			}
		}
		for k := range f.m { // still full: forget arbitrary keys rather than grow
			if len(f.m) < maxFailureKeys*9/10 {
				break
			}
			delete(f.m, k)
		}
	}
	ts := f.recentLocked(key, now)
	if len(ts) >= f.limit { // keep only what decides the answer
		ts = ts[len(ts)-f.limit+1:]
	}
	f.m[key] = append(ts, now)
}

func (f *failures) reset(key string) {
	f.mu.Lock()
	delete(f.m, key)
	f.mu.Unlock()
}

// recentLocked drops key's failures older than the window and returns the rest.
func (f *failures) recentLocked(key string, now time.Time) []time.Time {
	ts := f.m[key]
	i := 0
	for i < len(ts) && !now.Before(ts[i].Add(f.window)) {
		i++
	}
	if i == len(ts) {
		delete(f.m, key)
		return nil
	}
	if i > 0 {
		ts = append(ts[:0], ts[i:]...)
		f.m[key] = ts
	}
	return ts
}

// clientNet is the sign-in limits' key for a client: its IPv4 address, or its IPv6 /64, which is
// what one household or host usually gets.
func clientNet(r *http.Request) string {
	addr, err := netip.ParseAddr(remoteHost(r))
	if err != nil {
		return r.RemoteAddr
	}
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}

func (a *apex) now() time.Time {
	if a.cfg.Accounts != nil {
		return a.cfg.Accounts.cfg.Now()
	}
	return a.cfg.Sessions.cfg.Now()
}

type signinData struct {
	pageBase
	Next, Email string
	OIDCName    string // the upstream provider's name; "" without one
	Password    bool   // local accounts: show the password form
}

// newSigninData fills in what every rendering of the sign-in page needs.
func (a *apex) newSigninData(w http.ResponseWriter, r *http.Request, next string) signinData {
	d := signinData{pageBase: a.base(w, r, "Sign in"), Next: next, Password: a.cfg.Accounts != nil}
	if a.cfg.OIDC != nil {
		d.OIDCName = a.cfg.OIDC.Name()
	}
	return d
}

func (a *apex) signinForm(w http.ResponseWriter, r *http.Request) {
	render(w, r, http.StatusOK, signinPage, a.newSigninData(w, r, safeNext(r.URL.Query().Get("next"))))
}

// signinSubmit checks an email and password. Failures are limited per account and per client
// network before any hashing happens; every failure looks the same ("wrong email or
// password"), except that a disabled account is named as such once the password is right.
func (a *apex) signinSubmit(w http.ResponseWriter, r *http.Request) {
	email, pw, next := r.PostFormValue("email"), r.PostFormValue("password"), safeNext(r.PostFormValue("next"))
	if norm, err := NormalizeEmail(email); err == nil {
		email = norm
	}
	acctKey, ipKey := "account:"+email, "net:"+clientNet(r)
	now := a.now()
	if wait := max(a.accountFails.retryAfter(acctKey, now), a.ipFails.retryAfter(ipKey, now)); wait > 0 {
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		a.signinFailed(w, r, http.StatusTooManyRequests, "too_many_attempts",
			fmt.Sprintf("Too many failed sign-ins. Try again in %d minutes.", (secs+59)/60), email, next)
		return
	}

	select {
	case a.hashSlots <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	user, err := a.cfg.Accounts.checkPassword(r.Context(), email, pw)
	<-a.hashSlots
	switch {
	case errors.Is(err, errWrongPassword):
		a.accountFails.add(acctKey, now)
		a.ipFails.add(ipKey, now)
		a.signinFailed(w, r, http.StatusUnauthorized, "wrong_credentials", "Wrong email or password.", email, next)
		return
	case errors.Is(err, ErrUserDisabled):
		a.signinFailed(w, r, http.StatusForbidden, "account_disabled", "This account is disabled.", email, next)
		return
	case err != nil:
		writeError(w, r, http.StatusInternalServerError, "internal", "Signing in failed; try again.")
		return
	}
	a.accountFails.reset(acctKey)
	if _, err := a.cfg.Sessions.Start(w, r, user, "password"); err != nil {
		writeError(w, r, http.StatusInternalServerError, "internal", "Signing in failed; try again.")
		return
	}
	a.cfg.Accounts.noteSignIn(r.Context(), user.ID)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (a *apex) signinFailed(w http.ResponseWriter, r *http.Request, status int, code, msg, email, next string) {
	if wantsJSON(r) {
		writeError(w, r, status, code, msg)
		return
	}
	d := a.newSigninData(w, r, next)
	d.Email, d.Error = email, msg
	render(w, r, status, signinPage, d)
}

// linkSigninForm shows a button rather than signing in: mail and chat scanners fetch links, and
// a GET that consumed the ticket would burn it before the person clicks.
func (a *apex) linkSigninForm(w http.ResponseWriter, r *http.Request) {
	token := chi.URLParam(r, "token")
	if _, ok := decodeToken(token); !ok {
		a.message(w, r, http.StatusNotFound, "Sign-in link not valid",
			"This is not a toolgate sign-in link; check that it was copied whole.", "")
		return
	}
	render(w, r, http.StatusOK, signinLinkPage, struct {
		pageBase
		Token, Next string
	}{a.base(w, r, "Sign in"), token, safeNext(r.URL.Query().Get("next"))})
}

// linkSigninSubmit consumes the link's ticket and signs in. A user without a password is asked
// to set one next.
func (a *apex) linkSigninSubmit(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.PostFormValue("next"))
	user, err := a.cfg.Accounts.redeemSignInLink(r.Context(), chi.URLParam(r, "token"))
	switch {
	case errors.Is(err, errLinkUnusable):
		a.message(w, r, http.StatusGone, "Sign-in link expired or used",
			"This sign-in link has expired or was already used. Ask an administrator for a new one.", "")
		return
	case errors.Is(err, ErrUserDisabled):
		a.message(w, r, http.StatusForbidden, "Account disabled", "This account is disabled.", "")
		return
	case err != nil:
		writeError(w, r, http.StatusInternalServerError, "internal", "Signing in failed; try again.")
		return
	}
	if _, err := a.cfg.Sessions.Start(w, r, user, "link"); err != nil {
		writeError(w, r, http.StatusInternalServerError, "internal", "Signing in failed; try again.")
		return
	}
	a.cfg.Accounts.noteSignIn(r.Context(), user.ID)
	if user.PasswordHash == "" {
		next = "/account/password?next=" + url.QueryEscape(next)
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (a *apex) signOut(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Sessions.End(w, r); err != nil {
		writeError(w, r, http.StatusInternalServerError, "internal", "Signing out failed; try again.")
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

type passwordData struct {
	pageBase
	Next                     string
	HasPassword, NeedCurrent bool
	MinLen                   int
}

func (a *apex) passwordData(w http.ResponseWriter, r *http.Request, next string) passwordData {
	sess, user := SessionFromContext(r.Context())
	return passwordData{
		pageBase:    a.base(w, r, "Password"),
		Next:        next,
		HasPassword: user.PasswordHash != "",
		// Someone who signed in with a link proved control of the account as much as a current
		// password would (the link is how a forgotten password is replaced).
		NeedCurrent: user.PasswordHash != "" && sess.AuthMethod != "link",
		MinLen:      MinPasswordLen,
	}
}

func (a *apex) passwordForm(w http.ResponseWriter, r *http.Request) {
	render(w, r, http.StatusOK, passwordPage, a.passwordData(w, r, safeNext(r.URL.Query().Get("next"))))
}

// passwordSubmit sets the password, which ends every session of the user (see
// Accounts.SetPassword), and signs this browser in again with a fresh session.
func (a *apex) passwordSubmit(w http.ResponseWriter, r *http.Request) {
	sess, user := SessionFromContext(r.Context())
	d := a.passwordData(w, r, safeNext(r.PostFormValue("next")))
	fail := func(status int, code, msg string) {
		if wantsJSON(r) {
			writeError(w, r, status, code, msg)
			return
		}
		d.Error = msg
		render(w, r, status, passwordPage, d)
	}
	pw := r.PostFormValue("password")
	if pw != r.PostFormValue("confirm") {
		fail(http.StatusBadRequest, "mismatch", "The two new passwords differ.")
		return
	}
	if err := ValidatePassword(pw); err != nil {
		fail(http.StatusBadRequest, "weak_password", fmt.Sprintf("Use at least %d characters (and at most %d bytes).", MinPasswordLen, MaxPasswordLen))
		return
	}
	// The current password is checked under the sign-in limits: a stolen session must not
	// become a way to guess it.
	acctKey, now := "account:"+user.Email, a.now()
	if wait := a.accountFails.retryAfter(acctKey, now); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		fail(http.StatusTooManyRequests, "too_many_attempts", "Too many wrong passwords. Try again later.")
		return
	}
	select {
	case a.hashSlots <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	defer func() { <-a.hashSlots }()
	if d.NeedCurrent {
		if ok, err := VerifyPassword(user.PasswordHash, r.PostFormValue("current")); err != nil || !ok {
			a.accountFails.add(acctKey, now)
			fail(http.StatusUnauthorized, "wrong_credentials", "The current password is wrong.")
			return
		}
	}
	updated, err := a.cfg.Accounts.setPassword(r.Context(), user.ID, pw)
	if err != nil && updated.ID == "" {
		writeError(w, r, http.StatusInternalServerError, "internal", "Saving the password failed; try again.")
		return
	}
	if _, err := a.cfg.Sessions.Start(w, r, updated, sess.AuthMethod); err != nil {
		writeError(w, r, http.StatusInternalServerError, "internal", "The password is saved, but signing in again failed.")
		return
	}
	a.cfg.Sessions.setFlash(w, "Password saved.")
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
}

// message shows a page with one heading and one paragraph; a failure is the JSON error, coded
// after the heading ("Code expired" is code_expired), for clients that want JSON.
func (a *apex) message(w http.ResponseWriter, r *http.Request, status int, heading, msg, next string) {
	if status >= 400 && wantsJSON(r) {
		code := strings.Map(func(c rune) rune {
			if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
				return c
			}
			return '_'
		}, strings.ToLower(heading))
		writeError(w, r, status, code, msg)
		return
	}
	render(w, r, status, messagePage, struct {
		pageBase
		Heading, Message, Next string
	}{a.base(w, r, heading), heading, msg, next})
}
