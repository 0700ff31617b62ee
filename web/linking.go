package web

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/toolgate/toolgate/data"
)

// Errors a [PendingLink] ends with, for errors.Is. Their text is written for the person at the
// SSH terminal, who sees it as is (after "toolgate: "), so it carries no package prefix.
var (
	ErrLinkDenied     = errors.New("the key link was denied in the browser")
	ErrLinkExpired    = errors.New("the sign-in code expired before anyone approved the key; connect again for a new one")
	ErrLinkCanceled   = errors.New("the key link was canceled")
	ErrTooManyPending = errors.New("too many keys are waiting to be linked; try again in a few minutes")
)

// codeAlphabet has no 0/O, 1/I: codes are read off one screen and typed or compared on another.
// It has 32 letters, so one random byte modulo 32 picks one without bias.
const codeAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// KeyLinksConfig configures [KeyLinks]. Fields are read once, by [NewKeyLinks].
type KeyLinksConfig struct {
	// Store records linked keys (and lists them on /keys). Required.
	Store *data.Store
	// BaseURL is the apex as browsers reach it, "https://D" (with ":port" when not 443); link
	// URLs are BaseURL/link/CODE. Required.
	BaseURL string
	// CodeTTL is how long a code can be approved. Default 10 minutes.
	CodeTTL time.Duration
	// KeyTTL is how long an approved key stays linked. Default 30 days.
	KeyTTL time.Duration
	// RememberTTL replaces KeyTTL when the person ticks "Remember this key". Default 90 days.
	RememberTTL time.Duration
	// MaxPending bounds the links waiting for a decision, in all. Default 1000.
	MaxPending int
	// MaxPendingPerIP bounds the links waiting for a decision per source IP. Default 5.
	MaxPendingPerIP int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives one line per decision. Default: discard.
	Logger *slog.Logger
	// Audit receives a "key_link" record per approval and denial. Default nil.
	Audit AuditSink
}

// KeyLinks holds pending SSH key links, in memory: an SSH client with an unknown key Begins a
// link, shows its URL, and Waits; a signed-in person approves or denies it on /link/CODE. A
// restart forgets pending links, whose clients then reconnect for new ones.
type KeyLinks struct {
	cfg KeyLinksConfig

	mu      sync.Mutex
	links   map[string]*PendingLink // by normalized code; decided links stay until they expire
	pending int                     // links not yet decided
	perIP   map[string]int          // undecided links per RemoteIP
}

// LinkRequest describes the key that wants linking; the approval page shows all of it.
type LinkRequest struct {
	Fingerprint string // SHA256:…
	KeyType     string // ssh-ed25519, …
	RemoteIP    string // the client's address, without port
}

// linkState is where a PendingLink is in its life. Only linkPending can change.
type linkState int

const (
	linkPending  linkState = iota
	linkDeciding           // an approval is being written
	linkApproved
	linkDenied
	linkFailed // the approval could not be recorded
	linkCanceled
	linkExpired
)

// PendingLink is one key waiting for a person. Its exported fields do not change.
type PendingLink struct {
	URL     string    // BaseURL/link/CODE, to show the user
	Code    string    // "XXXX-XXXX"
	Expires time.Time // when the code stops working

	k       *KeyLinks
	key     string // normalized code, the map key
	req     LinkRequest
	created time.Time
	done    chan struct{} // closed when the link is decided

	// Guarded by k.mu.
	state           linkState
	userID, display string
	err             error
}

// NewKeyLinks checks cfg and returns an empty set of pending links.
func NewKeyLinks(cfg KeyLinksConfig) (*KeyLinks, error) {
	if cfg.Store == nil {
		return nil, errors.New("web: KeyLinksConfig.Store is required")
	}
	if u, err := url.Parse(cfg.BaseURL); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("web: KeyLinksConfig.BaseURL %q must be https://HOST[:PORT]", cfg.BaseURL)
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if cfg.CodeTTL <= 0 {
		cfg.CodeTTL = 10 * time.Minute
	}
	if cfg.KeyTTL <= 0 {
		cfg.KeyTTL = 30 * 24 * time.Hour
	}
	if cfg.RememberTTL <= 0 {
		cfg.RememberTTL = 90 * 24 * time.Hour
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 1000
	}
	if cfg.MaxPendingPerIP <= 0 {
		cfg.MaxPendingPerIP = 5
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &KeyLinks{cfg: cfg, links: make(map[string]*PendingLink), perIP: make(map[string]int)}, nil
}

// Begin registers a pending link for req and returns it, with a fresh one-time code. Past the
// limits on pending links it returns ErrTooManyPending.
func (k *KeyLinks) Begin(req LinkRequest) (*PendingLink, error) {
	if req.Fingerprint == "" {
		return nil, errors.New("web: link request without a fingerprint")
	}
	now := k.cfg.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sweepLocked(now)
	if k.pending >= k.cfg.MaxPending || k.perIP[req.RemoteIP] >= k.cfg.MaxPendingPerIP {
		return nil, ErrTooManyPending
	}
	var key string
	for {
		key = newCode()
		if _, taken := k.links[key]; !taken {
			break
		}
	}
	code := key[:4] + "-" + key[4:]
	p := &PendingLink{
		URL: k.cfg.BaseURL + "/link/" + code, Code: code, Expires: now.Add(k.cfg.CodeTTL),
		k: k, key: key, req: req, created: now, done: make(chan struct{}),
	}
	k.links[key] = p
	k.pending++
	k.perIP[req.RemoteIP]++
	return p, nil
}

// newCode returns 8 random characters of codeAlphabet.
func newCode() string {
	var b [8]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = codeAlphabet[b[i]%32]
	}
	return string(b[:])
}

// normalizeCode turns what a person typed into the map key: upper case, without dashes or
// spaces.
func normalizeCode(s string) string {
	if len(s) > 32 {
		return ""
	}
	return strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(s))
}

// sweepLocked expires overdue pending links (waking their waiters) and forgets decided ones
// whose code has expired.
func (k *KeyLinks) sweepLocked(now time.Time) {
	for key, p := range k.links {
		if now.Before(p.Expires) {
			continue
		}
		if p.state == linkPending {
			k.finishLocked(p, linkExpired, "", "", ErrLinkExpired)
		}
		if p.state != linkDeciding {
			delete(k.links, key)
		}
	}
}

// finishLocked decides p, if it is still open, and wakes its waiter. Only approve finishes a
// link that is linkDeciding; everyone else checks for linkPending first.
func (k *KeyLinks) finishLocked(p *PendingLink, state linkState, userID, display string, err error) bool {
	if p.state != linkPending && p.state != linkDeciding {
		return false
	}
	p.state, p.userID, p.display, p.err = state, userID, display, err
	k.pending--
	if k.perIP[p.req.RemoteIP]--; k.perIP[p.req.RemoteIP] <= 0 {
		delete(k.perIP, p.req.RemoteIP)
	}
	close(p.done)
	return true
}

// Wait blocks until the link is decided and returns whose key it now is: the user's ID and
// email. It fails with ErrLinkDenied, ErrLinkExpired (at Expires), ErrLinkCanceled, an error
// recording the link, or ctx's error; a ctx that ends first cancels the link, since nobody is
// left to use it. Waiting again returns the same answer.
func (p *PendingLink) Wait(ctx context.Context) (userID, display string, err error) {
	t := time.NewTimer(p.Expires.Sub(p.k.cfg.Now()))
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.k.mu.Lock()
		if p.state == linkPending {
			p.k.finishLocked(p, linkExpired, "", "", ErrLinkExpired)
		}
		p.k.mu.Unlock()
		select { // an approval being written finishes first
		case <-p.done:
		case <-ctx.Done():
			return "", "", ctx.Err()
		}
	case <-ctx.Done():
		p.k.mu.Lock()
		if p.state == linkPending {
			p.k.finishLocked(p, linkCanceled, "", "", ctx.Err())
		}
		p.k.mu.Unlock()
		select {
		case <-p.done:
		default:
			return "", "", ctx.Err()
		}
	}
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	return p.userID, p.display, p.err
}

// Cancel withdraws the link: its code stops working and Wait returns ErrLinkCanceled. It does
// nothing to a link already decided.
func (p *PendingLink) Cancel() {
	p.k.mu.Lock()
	if p.state == linkPending {
		p.k.finishLocked(p, linkCanceled, "", "", ErrLinkCanceled)
	}
	p.k.mu.Unlock()
}

// Link runs one link the way an SSH server needs it: Begin, show the person the URL and code
// (show is called once; its error cancels the link and is returned), then Wait. The sshd
// package's Linker is this with its own types; cmd adapts one to the other.
func (k *KeyLinks) Link(ctx context.Context, req LinkRequest, show func(text string) error) (userID, display string, err error) {
	p, err := k.Begin(req)
	if err != nil {
		return "", "", err
	}
	mins := int(p.Expires.Sub(k.cfg.Now()).Round(time.Minute) / time.Minute)
	text := fmt.Sprintf("This key is not linked to an account yet. To link it, sign in at\n\n    %s\n\n"+
		"and check that the page shows the code %s. Waiting for approval (the code expires in %d minutes)...\n", p.URL, p.Code, mins)
	if err := show(text); err != nil {
		p.Cancel()
		return "", "", err
	}
	return p.Wait(ctx)
}

// lookup returns the link for a code as typed and its state, or nil. An overdue pending link is
// expired on the way.
func (k *KeyLinks) lookup(code string) (*PendingLink, linkState) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p := k.links[normalizeCode(code)]
	if p == nil {
		return nil, 0
	}
	if p.state == linkPending && !k.cfg.Now().Before(p.Expires) {
		k.finishLocked(p, linkExpired, "", "", ErrLinkExpired)
	}
	return p, p.state
}

// errNotPending: the link was decided, canceled or expired before this decision.
var errNotPending = errors.New("web: link no longer pending")

// approve links p's key to user for KeyTTL (or RememberTTL), moves the names the key held
// before it had an owner to the user, and wakes the waiter. Only one decision takes effect; a
// failure to record leaves the link pending, to be tried again.
func (k *KeyLinks) approve(ctx context.Context, p *PendingLink, user data.User, remember bool) error {
	now := k.cfg.Now()
	k.mu.Lock()
	if p.state == linkPending && !now.Before(p.Expires) {
		k.finishLocked(p, linkExpired, "", "", ErrLinkExpired)
	}
	if p.state != linkPending {
		k.mu.Unlock()
		return errNotPending
	}
	p.state = linkDeciding
	k.mu.Unlock()

	// The decision is made; a browser that goes away must not leave it half recorded.
	ctx = context.WithoutCancel(ctx)
	ttl := k.cfg.KeyTTL
	if remember {
		ttl = k.cfg.RememberTTL
	}
	_, err := k.cfg.Store.LinkKey(ctx, data.SSHKey{
		Fingerprint: p.req.Fingerprint, Type: p.req.KeyType, UserID: user.ID,
		LinkedAt: now, ExpiresAt: now.Add(ttl), LinkedFrom: p.req.RemoteIP,
	})
	if err != nil {
		k.mu.Lock()
		defer k.mu.Unlock()
		if errors.Is(err, data.ErrKeyLinked) {
			k.finishLocked(p, linkFailed, "", "", errors.New("this key is already linked to another account"))
			return err
		}
		p.state = linkPending
		return fmt.Errorf("web: link key: %w", err)
	}
	// Names the key claimed before it had an owner follow it to the person. The key is linked
	// either way; a failure here only leaves those names with the bare key.
	if n, err := k.cfg.Store.MoveNames(ctx, p.req.Fingerprint, user.ID); err != nil {
		k.cfg.Logger.Warn("moving a linked key's names to its user failed", "fingerprint", p.req.Fingerprint, "user", user.ID, "err", err)
	} else if n > 0 {
		k.cfg.Logger.Info("names moved to user", "fingerprint", p.req.Fingerprint, "user", user.ID, "names", n)
	}
	display := user.Email
	if display == "" {
		display = user.Name
	}
	k.cfg.Logger.Info("ssh key linked", "fingerprint", p.req.Fingerprint, "user", user.ID, "remote", p.req.RemoteIP, "expires", now.Add(ttl))
	k.auditLink(user, p, "allow")
	k.mu.Lock()
	k.finishLocked(p, linkApproved, user.ID, display, nil)
	k.mu.Unlock()
	return nil
}

// deny ends p with ErrLinkDenied.
func (k *KeyLinks) deny(p *PendingLink, user data.User) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p.state != linkPending {
		return errNotPending
	}
	k.finishLocked(p, linkDenied, "", "", ErrLinkDenied)
	k.cfg.Logger.Info("ssh key link denied", "fingerprint", p.req.Fingerprint, "user", user.ID, "remote", p.req.RemoteIP)
	k.auditLink(user, p, "deny")
	return nil
}

func (k *KeyLinks) auditLink(user data.User, p *PendingLink, decision string) {
	if k.cfg.Audit != nil {
		k.cfg.Audit.Append(data.AuditRecord{Kind: "key_link", User: user.Email, Decision: decision,
			SourceIP: p.req.RemoteIP, Detail: p.req.KeyType + " " + p.req.Fingerprint})
	}
}

type linkData struct {
	pageBase
	Code, Fingerprint, KeyType, RemoteIP string
	Requested, Expires                   time.Time
	KeyDays, RememberDays                int
}

// linkPageFor finds the link for the URL's code, or answers with a page that says why there is
// none. Unknown codes count against the user, so codes cannot be guessed from a session.
func (a *apex) linkPageFor(w http.ResponseWriter, r *http.Request) *PendingLink {
	_, user := SessionFromContext(r.Context())
	now := a.cfg.Links.cfg.Now()
	failKey := "user:" + user.ID
	if wait := a.codeFails.retryAfter(failKey, now); wait > 0 {
		a.message(w, r, http.StatusTooManyRequests, "Too many unknown codes",
			"Too many unknown codes were tried from this account; wait a few minutes.", "")
		return nil
	}
	p, state := a.cfg.Links.lookup(chi.URLParam(r, "code"))
	if p == nil {
		a.codeFails.add(failKey, now)
		a.message(w, r, http.StatusNotFound, "Unknown code",
			"No key is waiting with this code. Codes last a few minutes and work once; connect with ssh again for a new one.", "")
		return nil
	}
	switch state {
	case linkPending:
		return p
	case linkApproved:
		a.message(w, r, http.StatusConflict, "Already approved", "This key was already approved; the ssh session goes on in your terminal.", "/keys")
	case linkDenied:
		a.message(w, r, http.StatusConflict, "Denied", "This key link was denied.", "")
	case linkExpired:
		a.message(w, r, http.StatusGone, "Code expired", "This code has expired. Connect with ssh again for a new one.", "")
	case linkCanceled:
		a.message(w, r, http.StatusGone, "Request withdrawn", "The ssh client stopped waiting (it disconnected). Connect again for a new code.", "")
	default:
		a.message(w, r, http.StatusConflict, "Already decided", "This code was already used.", "")
	}
	return nil
}

func (a *apex) linkForm(w http.ResponseWriter, r *http.Request) {
	p := a.linkPageFor(w, r)
	if p == nil {
		return
	}
	cfg := a.cfg.Links.cfg
	render(w, r, http.StatusOK, linkPage, linkData{
		pageBase: a.base(w, r, "Link SSH key"),
		Code:     p.Code, Fingerprint: p.req.Fingerprint, KeyType: p.req.KeyType, RemoteIP: p.req.RemoteIP,
		Requested: p.created, Expires: p.Expires,
		KeyDays: int(cfg.KeyTTL / (24 * time.Hour)), RememberDays: int(cfg.RememberTTL / (24 * time.Hour)),
	})
}

func (a *apex) linkSubmit(w http.ResponseWriter, r *http.Request) {
	p := a.linkPageFor(w, r)
	if p == nil {
		return
	}
	_, user := SessionFromContext(r.Context())
	var err error
	switch r.PostFormValue("action") {
	case "approve":
		err = a.cfg.Links.approve(r.Context(), p, *user, r.PostFormValue("remember") != "")
	case "deny":
		err = a.cfg.Links.deny(p, *user)
	default:
		writeError(w, r, http.StatusBadRequest, "bad_action", `The form must say "approve" or "deny".`)
		return
	}
	switch {
	case errors.Is(err, errNotPending):
		a.message(w, r, http.StatusConflict, "Already decided", "Someone decided about this key already, or its code expired.", "")
	case errors.Is(err, data.ErrKeyLinked):
		a.message(w, r, http.StatusConflict, "Key belongs to someone else", "This key is already linked to another account; it was not linked to yours.", "")
	case err != nil:
		a.cfg.Links.cfg.Logger.Error("recording a key link failed", "err", err)
		writeError(w, r, http.StatusInternalServerError, "internal", "Recording the link failed; try again.")
	case r.PostFormValue("action") == "deny":
		a.message(w, r, http.StatusOK, "Denied", "The key was not linked; the ssh client has been told.", "")
	default:
		a.message(w, r, http.StatusOK, "Key linked", "The key is linked to your account. Go back to your terminal: the ssh session goes on.", "/keys")
	}
}
