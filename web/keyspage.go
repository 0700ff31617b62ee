package web

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/toolgate/toolgate/data"
)

// KeyCloser closes the live SSH connections that authenticated with a key. The sshd server
// implements it; without one, revoking a key only stops its next connection.
type KeyCloser interface {
	// CloseKey closes every connection of the key with this SHA-256 fingerprint, telling the
	// client reason, and returns how many it closed.
	CloseKey(fingerprint, reason string) int
}

// keyView is one row of the keys page.
type keyView struct {
	Fingerprint, Type, LinkedFrom string
	LinkedAt, ExpiresAt, LastUsed time.Time
	Lapsed                        bool
}

// keysList shows the signed-in user's keys, newest link first.
func (a *apex) keysList(w http.ResponseWriter, r *http.Request) {
	_, user := SessionFromContext(r.Context())
	keys, err := a.cfg.Links.cfg.Store.KeysByUser(r.Context(), user.ID)
	if err != nil {
		writeError(w, r, http.StatusInternalServerError, "internal", "Listing your keys failed.")
		return
	}
	now := a.cfg.Links.cfg.Now()
	slices.SortFunc(keys, func(x, y data.SSHKey) int { return y.LinkedAt.Compare(x.LinkedAt) })
	views := make([]keyView, len(keys))
	for i, k := range keys {
		views[i] = keyView{
			Fingerprint: k.Fingerprint, Type: k.Type, LinkedFrom: k.LinkedFrom,
			LinkedAt: k.LinkedAt, ExpiresAt: k.ExpiresAt, LastUsed: k.LastUsed, Lapsed: k.Expired(now),
		}
	}
	render(w, r, http.StatusOK, keysPage, struct {
		pageBase
		Keys []keyView
	}{a.base(w, r, "SSH keys"), views})
}

// keysRevoke revokes one key: the user's own, or anyone's for an admin. Someone else's key is
// answered as if it did not exist, so the form cannot probe whose keys are whose.
func (a *apex) keysRevoke(w http.ResponseWriter, r *http.Request) {
	_, user := SessionFromContext(r.Context())
	store := a.cfg.Links.cfg.Store
	fp := strings.TrimSpace(r.PostFormValue("fingerprint"))
	k, err := store.GetKey(r.Context(), fp)
	if err == nil && k.UserID != user.ID && !user.Admin {
		err = data.ErrNotFound
	}
	if err == nil {
		_, err = store.RevokeKey(r.Context(), fp)
	}
	switch {
	case errors.Is(err, data.ErrNotFound):
		writeError(w, r, http.StatusNotFound, "no_such_key", "You have no key with that fingerprint.")
		return
	case err != nil:
		writeError(w, r, http.StatusInternalServerError, "internal", "Revoking the key failed; try again.")
		return
	}
	closed := 0
	if a.cfg.KeyCloser != nil {
		closed = a.cfg.KeyCloser.CloseKey(fp, "this key was revoked")
	}
	a.cfg.Links.cfg.Logger.Info("ssh key revoked", "fingerprint", fp, "owner", k.UserID, "by", user.ID, "closed", closed)
	msg := fmt.Sprintf("Revoked %s.", fp)
	switch closed {
	case 0:
	case 1:
		msg += " Its connection was closed."
	default:
		msg += fmt.Sprintf(" Its %d connections were closed.", closed)
	}
	a.cfg.Sessions.setFlash(w, msg)
	http.Redirect(w, r, "/keys", http.StatusSeeOther)
}
