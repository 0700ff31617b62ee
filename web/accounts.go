package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/toolgate/toolgate/data"
)

// Password rules. The maximum exists only so that nobody can make the server hash a megabyte.
const (
	MinPasswordLen = 12   // characters (runes)
	MaxPasswordLen = 1024 // bytes
)

// argon2id parameters for new hashes: the first configuration of the OWASP Password Storage
// Cheat Sheet (m=19 MiB, t=2, p=1). OWASP's alternatives trade memory for passes at equal cost;
// the low-memory end keeps a burst of sign-ins from taking gigabytes (signin.go also bounds
// concurrent hashing). Existing hashes carry their own parameters, so raising these later only
// affects new passwords.
const (
	argonMemory  = 19 * 1024 // KiB
	argonTime    = 2
	argonThreads = 1
	argonSaltLen = 16
	argonKeyLen  = 32
)

// SignInTicketKind is the data.Ticket Kind of one-time sign-in links.
const SignInTicketKind = "signin"

// bootstrapLinkTTL is how long the first start's sign-in link lasts.
const bootstrapLinkTTL = 15 * time.Minute

// Errors of local accounts, for errors.Is. Returned errors wrap them with detail.
var (
	ErrInvalidEmail    = errors.New("web: not a valid email address")
	ErrInvalidPassword = errors.New("web: password does not meet the rules")
)

// errWrongPassword is what a failed password check is, whatever the reason (unknown email, no
// password set, wrong password): the sign-in page must not tell them apart.
var errWrongPassword = errors.New("web: wrong email or password")

// HashPassword returns the argon2id hash of pw in PHC string format,
// "$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH" (unpadded standard base64). It does not apply the
// length rules of [ValidatePassword], only refuses an empty or oversized password.
func HashPassword(pw string) (string, error) {
	if pw == "" || len(pw) > MaxPasswordLen {
		return "", fmt.Errorf("%w: empty or longer than %d bytes", ErrInvalidPassword, MaxPasswordLen)
	}
	salt := make([]byte, argonSaltLen)
	rand.Read(salt) // never fails (crypto/rand panics rather than return short)
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword reports whether pw matches hash, a PHC argon2id string as HashPassword writes
// (with any parameters). The comparison is constant-time. An error means the hash itself is
// unusable; a wrong password is (false, nil).
func VerifyPassword(hash, pw string) (bool, error) {
	p, err := parsePHC(hash)
	if err != nil {
		return false, err
	}
	if len(pw) > MaxPasswordLen {
		return false, nil
	}
	key := argon2.IDKey([]byte(pw), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(key, p.key) == 1, nil
}

type phc struct {
	memory, time uint32
	threads      uint8
	salt, key    []byte
}

// parsePHC reads "$argon2id$v=19$m=…,t=…,p=…$salt$hash". Parameters are bounded so that a
// corrupt record cannot make one sign-in take the machine's memory or minutes of CPU.
func parsePHC(s string) (phc, error) {
	var p phc
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, errors.New("web: password hash is not in argon2id PHC format")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return p, fmt.Errorf("web: password hash has unsupported argon2 version %q", parts[2])
	}
	var m, t, th uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &th); err != nil {
		return p, fmt.Errorf("web: password hash parameters %q: %w", parts[3], err)
	}
	if m < 8 || m > 1<<21 || t < 1 || t > 16 || th < 1 || th > 16 {
		return p, fmt.Errorf("web: password hash parameters %q out of range", parts[3])
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(p.salt) < 8 {
		return p, errors.New("web: password hash has a bad salt")
	}
	if p.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(p.key) < 16 || len(p.key) > 64 {
		return p, errors.New("web: password hash has a bad key")
	}
	p.memory, p.time, p.threads = m, t, uint8(th)
	return p, nil
}

// ValidatePassword checks the rules for a new password: at least MinPasswordLen characters, at
// most MaxPasswordLen bytes, valid UTF-8.
func ValidatePassword(pw string) error {
	switch {
	case !utf8.ValidString(pw):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidPassword)
	case utf8.RuneCountInString(pw) < MinPasswordLen:
		return fmt.Errorf("%w: use at least %d characters", ErrInvalidPassword, MinPasswordLen)
	case len(pw) > MaxPasswordLen:
		return fmt.Errorf("%w: use at most %d bytes", ErrInvalidPassword, MaxPasswordLen)
	}
	return nil
}

// NormalizeEmail lower-cases and trims an email address and checks its shape: one "@", a
// non-empty local part of ordinary characters and a domain of DNS labels. It does not try to
// accept everything RFC 5322 allows; addresses people actually use pass.
func NormalizeEmail(email string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(email))
	local, domain, ok := strings.Cut(e, "@")
	if !ok || local == "" || len(local) > 64 || len(e) > 254 || !validDomain(domain) {
		return "", fmt.Errorf("%w: %q", ErrInvalidEmail, email)
	}
	for _, c := range []byte(local) {
		if !isAlnum(c) && !strings.ContainsRune(".!#$%&'*+/=?^_`{|}~-", rune(c)) {
			return "", fmt.Errorf("%w: %q", ErrInvalidEmail, email)
		}
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return "", fmt.Errorf("%w: %q", ErrInvalidEmail, email)
	}
	return e, nil
}

func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !isAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// AccountsConfig configures [Accounts]. Fields are read once, by [NewAccounts].
type AccountsConfig struct {
	// Store holds users and tickets. Required.
	Store *data.Store
	// BaseURL is the apex as browsers reach it, "https://D" (with ":port" when not 443), no
	// trailing slash. Sign-in links point there; the bootstrap admin is admin@ its host. Required.
	BaseURL string
	// Now is the clock for tickets and timestamps. Default time.Now.
	Now func() time.Time
}

// Accounts manages local accounts: users, passwords, one-time sign-in links and the first
// admin. It speaks no HTTP, so the server and an offline CLI (`toolgate user …`) share it.
// Its methods are safe for concurrent use.
type Accounts struct {
	cfg    AccountsConfig
	domain string
	boot   sync.Mutex // one Bootstrap at a time, so two starts in one process create one admin

	dummyOnce sync.Once
	dummy     string // a hash to verify against when there is no user, so timing says nothing
}

// NewAccounts checks cfg and returns the accounts manager.
func NewAccounts(cfg AccountsConfig) (*Accounts, error) {
	if cfg.Store == nil {
		return nil, errors.New("web: AccountsConfig.Store is required")
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("web: AccountsConfig.BaseURL %q must be https://HOST[:PORT]", cfg.BaseURL)
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Accounts{cfg: cfg, domain: strings.ToLower(u.Hostname())}, nil
}

// AddUser creates a user with no password; they sign in with a link from IssueSignInLink and
// then set one. The email is normalized; an existing one is data.ErrUserExists.
func (a *Accounts) AddUser(ctx context.Context, email, name string, admin bool) (data.User, error) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return data.User{}, err
	}
	now := a.cfg.Now()
	u, err := a.cfg.Store.CreateUser(ctx, data.User{Email: e, Name: strings.TrimSpace(name), Admin: admin, CreatedAt: now, UpdatedAt: now})
	if err != nil {
		return data.User{}, fmt.Errorf("web: add user %s: %w", e, err)
	}
	return u, nil
}

// SetPassword checks pw against the rules, stores its hash, ends the user's browser sessions
// and voids their unused sign-in links: a new password is the way out of a stolen session or a
// leaked link. The web page that calls it starts a fresh session for the person who changed it.
func (a *Accounts) SetPassword(ctx context.Context, email, pw string) (data.User, error) {
	u, err := a.userByEmail(ctx, email)
	if err != nil {
		return data.User{}, err
	}
	return a.setPassword(ctx, u.ID, pw)
}

func (a *Accounts) setPassword(ctx context.Context, userID, pw string) (data.User, error) {
	if err := ValidatePassword(pw); err != nil {
		return data.User{}, err
	}
	hash, err := HashPassword(pw)
	if err != nil {
		return data.User{}, err
	}
	u, err := a.cfg.Store.UpdateUser(ctx, userID, func(u *data.User) error {
		u.PasswordHash = hash
		u.UpdatedAt = a.cfg.Now()
		return nil
	})
	if err != nil {
		return data.User{}, fmt.Errorf("web: set password: %w", err)
	}
	if _, err := a.cfg.Store.DeleteUserSessions(ctx, userID); err != nil {
		return u, fmt.Errorf("web: password set, but ending old sessions failed: %w", err)
	}
	if err := a.cfg.Store.DeleteUserTickets(ctx, userID); err != nil {
		return u, fmt.Errorf("web: password set, but voiding sign-in links failed: %w", err)
	}
	return u, nil
}

// Disable stops the user from signing in, ends their browser sessions and voids their sign-in
// links. It returns the user
// so that the caller can also close their SSH connections (sshd's CloseOwner); their keys stay
// linked but are refused while the account is disabled.
func (a *Accounts) Disable(ctx context.Context, email string) (data.User, error) {
	u, err := a.setDisabled(ctx, email, true)
	if err != nil {
		return u, err
	}
	if _, err := a.cfg.Store.DeleteUserSessions(ctx, u.ID); err != nil {
		return u, fmt.Errorf("web: disabled %s, but ending sessions failed: %w", u.Email, err)
	}
	if err := a.cfg.Store.DeleteUserTickets(ctx, u.ID); err != nil {
		return u, fmt.Errorf("web: disabled %s, but voiding sign-in links failed: %w", u.Email, err)
	}
	return u, nil
}

// Enable lets a disabled user sign in again.
func (a *Accounts) Enable(ctx context.Context, email string) (data.User, error) {
	return a.setDisabled(ctx, email, false)
}

func (a *Accounts) setDisabled(ctx context.Context, email string, disabled bool) (data.User, error) {
	u, err := a.userByEmail(ctx, email)
	if err != nil {
		return data.User{}, err
	}
	u, err = a.cfg.Store.UpdateUser(ctx, u.ID, func(u *data.User) error {
		u.Disabled = disabled
		u.UpdatedAt = a.cfg.Now()
		return nil
	})
	if err != nil {
		return data.User{}, fmt.Errorf("web: update %s: %w", email, err)
	}
	return u, nil
}

func (a *Accounts) userByEmail(ctx context.Context, email string) (data.User, error) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return data.User{}, err
	}
	u, err := a.cfg.Store.UserByEmail(ctx, e)
	if err != nil {
		return data.User{}, fmt.Errorf("web: user %s: %w", e, err)
	}
	return u, nil
}

// IssueSignInLink returns a one-time sign-in URL for the user, BaseURL/signin/t/TOKEN, valid
// for ttl (15 minutes if ttl <= 0). TOKEN is 32 random bytes; only its SHA-256 is stored, so the
// database never holds a usable link. Links issued before stay valid until used or expired
// (setting a password or disabling the user voids them). A disabled user gets no link.
func (a *Accounts) IssueSignInLink(ctx context.Context, userID string, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		ttl = bootstrapLinkTTL
	}
	u, err := a.cfg.Store.GetUser(ctx, userID)
	if err != nil {
		return "", fmt.Errorf("web: sign-in link: %w", err)
	}
	if u.Disabled {
		return "", fmt.Errorf("web: sign-in link: %s is disabled", u.Email)
	}
	token := newToken()
	now := a.cfg.Now()
	t := data.Ticket{ID: tokenHash(token), Kind: SignInTicketKind, UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := a.cfg.Store.CreateTicket(ctx, t); err != nil {
		return "", fmt.Errorf("web: sign-in link: %w", err)
	}
	return a.cfg.BaseURL + "/signin/t/" + token, nil
}

// Bootstrap makes sure someone can sign in to a new installation. With no users at all it
// creates the admin, admin@D, without a password, and returns a 15-minute sign-in link to print
// on the console. It also returns a fresh link while that admin is still the only user and has
// neither a password nor a sign-in yet, so that a link that expired unused, or a crash before it
// was printed, does not lock the operator out. Otherwise it returns "". Calls in one process are
// serialized, so concurrent calls create one admin.
func (a *Accounts) Bootstrap(ctx context.Context) (string, error) {
	a.boot.Lock()
	defer a.boot.Unlock()
	n, err := a.cfg.Store.CountUsers(ctx)
	if err != nil {
		return "", fmt.Errorf("web: bootstrap: %w", err)
	}
	var admin data.User
	switch n {
	case 0:
		if admin, err = a.AddUser(ctx, "admin@"+a.domain, "Administrator", true); err != nil {
			return "", fmt.Errorf("web: bootstrap: %w", err)
		}
	case 1:
		users, err := a.cfg.Store.ListUsers(ctx)
		if err != nil {
			return "", fmt.Errorf("web: bootstrap: %w", err)
		}
		if len(users) != 1 {
			return "", nil
		}
		u := users[0]
		if !u.Admin || u.Disabled || u.PasswordHash != "" || !u.LastSignIn.IsZero() || u.Email != "admin@"+a.domain {
			return "", nil
		}
		admin = u
	default:
		return "", nil
	}
	return a.IssueSignInLink(ctx, admin.ID, bootstrapLinkTTL)
}

// checkPassword returns the user with this email and password. Every kind of mismatch is
// errWrongPassword and costs one argon2id run, so neither the answer nor its timing tells
// whether the email exists. A disabled user with the right password gets errAccountDisabled.
func (a *Accounts) checkPassword(ctx context.Context, email, pw string) (data.User, error) {
	hash := ""
	e, err := NormalizeEmail(email)
	var u data.User
	if err == nil {
		u, err = a.cfg.Store.UserByEmail(ctx, e)
		if err != nil && !errors.Is(err, data.ErrNotFound) {
			return data.User{}, fmt.Errorf("web: sign in: %w", err)
		}
		hash = u.PasswordHash
	}
	if hash == "" {
		a.dummyOnce.Do(func() { a.dummy, _ = HashPassword("no user has this password, it only costs time") })
		VerifyPassword(a.dummy, pw)
		return data.User{}, errWrongPassword
	}
	ok, err := VerifyPassword(hash, pw)
	if err != nil {
		return data.User{}, fmt.Errorf("web: sign in %s: %w", e, err)
	}
	if !ok {
		return data.User{}, errWrongPassword
	}
	if u.Disabled {
		return u, ErrUserDisabled
	}
	return u, nil
}

// redeemSignInLink consumes the ticket behind token and returns its user.
func (a *Accounts) redeemSignInLink(ctx context.Context, token string) (data.User, error) {
	if _, ok := decodeToken(token); !ok {
		return data.User{}, errLinkUnusable
	}
	t, err := a.cfg.Store.ConsumeTicket(ctx, tokenHash(token), SignInTicketKind, a.cfg.Now())
	if err != nil {
		if errors.Is(err, data.ErrNotFound) || errors.Is(err, data.ErrTicketExpired) {
			return data.User{}, errLinkUnusable
		}
		return data.User{}, fmt.Errorf("web: sign-in link: %w", err)
	}
	u, err := a.cfg.Store.GetUser(ctx, t.UserID)
	if errors.Is(err, data.ErrNotFound) {
		return data.User{}, errLinkUnusable
	}
	if err != nil {
		return data.User{}, fmt.Errorf("web: sign-in link: %w", err)
	}
	if u.Disabled {
		return u, ErrUserDisabled
	}
	return u, nil
}

var errLinkUnusable = errors.New("web: sign-in link unknown, used or expired")

// noteSignIn records the time of a successful sign-in. Failing to record it fails nothing.
func (a *Accounts) noteSignIn(ctx context.Context, userID string) {
	a.cfg.Store.UpdateUser(ctx, userID, func(u *data.User) error {
		u.LastSignIn = a.cfg.Now()
		return nil
	})
}

// newToken returns 32 random bytes, base64url without padding (43 characters).
func newToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// decodeToken decodes a token from newToken, refusing anything but the one canonical encoding
// of 32 bytes (base64 ignores the last character's spare bits, so two strings could otherwise
// name the same token).
func decodeToken(s string) ([32]byte, bool) {
	var b [32]byte
	if len(s) != 43 {
		return b, false
	}
	n, err := base64.RawURLEncoding.Decode(b[:], []byte(s))
	if err != nil || n != 32 {
		return b, false
	}
	var again [43]byte
	base64.RawURLEncoding.Encode(again[:], b[:])
	return b, string(again[:]) == s
}

// tokenHash is how a token is stored: hex SHA-256.
func tokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}
