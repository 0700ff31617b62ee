package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/toolgate/toolgate/data"
)

// identity is what a verified ID token says about its user, checked against the policy.
type identity struct {
	subject string   // issuer + "|" + sub: data.User.Subject
	email   string   // normalized
	name    string   // "" if the token has none
	groups  []string // sorted, without duplicates; unused when groups are off
}

// identity reads the user from a verified ID token and applies the policy that needs no
// lookup: an email is required, must not be marked unverified, and must be at an allowed
// domain. See [OIDC] for why.
func (o *OIDC) identity(t *oidc.IDToken) (identity, error) {
	var c struct {
		Email             string          `json:"email"`
		EmailVerified     json.RawMessage `json:"email_verified"`
		Name              json.RawMessage `json:"name"`
		PreferredUsername json.RawMessage `json:"preferred_username"`
		AZP               string          `json:"azp"`
	}
	if err := t.Claims(&c); err != nil {
		e := o.refuse(http.StatusBadGateway, "id_token_claims", "Sign-in failed",
			"The identity "+o.name+" sent could not be read. Tell an administrator.")
		e.err = err
		return identity{}, e
	}
	if t.Subject == "" {
		return identity{}, o.refuse(http.StatusBadGateway, "no_subject", "Sign-in failed",
			"The identity "+o.name+" sent names nobody. Tell an administrator.")
	}
	// With several audiences, the token must have been issued to toolgate (OIDC Core 3.1.3.7).
	if len(t.Audience) > 1 && c.AZP != o.cfg.ClientID {
		return identity{}, o.refuse(http.StatusBadGateway, "id_token_azp", "Sign-in failed",
			"The identity "+o.name+" sent was issued to another application. Tell an administrator.")
	}
	id := identity{subject: o.issuer + "|" + t.Subject, name: firstString(c.Name, c.PreferredUsername)}
	who := []any{"subject", id.subject, "email", c.Email}
	if c.Email == "" {
		e := o.refuse(http.StatusForbidden, "no_email", "No email address",
			o.name+" did not share your email address, which toolgate needs. Ask an administrator to check the email scope.")
		e.attrs = who
		return identity{}, e
	}
	email, err := NormalizeEmail(c.Email)
	if err != nil {
		e := o.refuse(http.StatusForbidden, "bad_email", "Email address not usable",
			fmt.Sprintf("toolgate cannot use the email address %s shared (%q).", o.name, c.Email))
		e.attrs = who
		return identity{}, e
	}
	id.email = email
	if !emailVerifiedOK(c.EmailVerified) {
		e := o.refuse(http.StatusForbidden, "email_unverified", "Email address not verified",
			o.name+" says your email address "+email+" is not verified. Verify it there, then sign in again.")
		e.attrs = who
		return identity{}, e
	}
	if len(o.cfg.AllowedDomains) > 0 {
		_, domain, _ := strings.Cut(email, "@")
		if !slices.Contains(o.cfg.AllowedDomains, domain) {
			e := o.refuse(http.StatusForbidden, "domain_not_allowed", "Email domain not allowed",
				"Accounts at "+domain+" cannot sign in to this toolgate. Use an account at "+strings.Join(o.cfg.AllowedDomains, " or ")+".")
			e.attrs = who
			return identity{}, e
		}
	}
	if o.groups != "" {
		if id.groups, err = o.groupsOf(t); err != nil {
			e := o.refuse(http.StatusBadGateway, "bad_groups_claim", "Sign-in failed",
				"The groups "+o.name+" sent could not be read. Tell an administrator.")
			e.attrs, e.err = append(who, "claim", o.groups), err
			return identity{}, e
		}
	}
	return id, nil
}

// emailVerifiedOK reads an email_verified claim: true (or the string "true", which some
// providers send) passes, and so does an absent or null claim (see [OIDC]); false, or
// anything else, does not.
func emailVerifiedOK(raw json.RawMessage) bool {
	switch strings.TrimSpace(string(raw)) {
	case "", "null", "true", `"true"`:
		return true
	}
	return false
}

// firstString returns the first of the claims that is a non-empty string, trimmed.
func firstString(claims ...json.RawMessage) string {
	for _, raw := range claims {
		var s string
		if json.Unmarshal(raw, &s) == nil && strings.TrimSpace(s) != "" {
			return truncate(strings.TrimSpace(s), 200)
		}
	}
	return ""
}

// groupsOf reads the groups claim: an array of strings, or one string. Absent or null is no
// groups. The result is sorted, without empty strings or duplicates.
func (o *OIDC) groupsOf(t *oidc.IDToken) ([]string, error) {
	var all map[string]json.RawMessage
	if err := t.Claims(&all); err != nil {
		return nil, err
	}
	raw, ok := all[o.groups]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		var one string
		if json.Unmarshal(raw, &one) != nil {
			return nil, fmt.Errorf("claim %q is neither a string nor an array of strings", o.groups)
		}
		list = []string{one}
	}
	groups := make([]string, 0, len(list))
	for _, g := range list {
		if g = strings.TrimSpace(g); g != "" {
			groups = append(groups, g)
		}
	}
	slices.Sort(groups)
	return slices.Compact(groups), nil
}

// signIn finds or creates the user for id and refreshes them, in one write; see [OIDC]. Every
// refusal comes before that write.
func (o *OIDC) signIn(ctx context.Context, id identity) (data.User, error) {
	st := o.cfg.Store
	who := []any{"subject", id.subject, "email", id.email}
	refuse := func(status int, reason, heading, message string) error {
		e := o.refuse(status, reason, heading, message)
		e.attrs = who
		return e
	}
	linkedElsewhere := func() error {
		return refuse(http.StatusForbidden, "subject_conflict", "Account linked to someone else",
			"The toolgate account for "+id.email+" belongs to a different "+o.name+" identity. Ask an administrator.")
	}
	errSubjectTaken := errors.New("web: user already has another subject")
	for try := 0; ; try++ {
		u, err := st.UserBySubject(ctx, id.subject)
		if errors.Is(err, data.ErrNotFound) {
			u, err = st.UserByEmail(ctx, id.email)
			switch {
			case err == nil && u.Subject != "":
				return data.User{}, linkedElsewhere()
			case errors.Is(err, data.ErrNotFound) && o.cfg.ProvisionedOnly:
				return data.User{}, refuse(http.StatusForbidden, "not_provisioned", "No account",
					"There is no toolgate account for "+id.email+". Ask an administrator to add you.")
			case errors.Is(err, data.ErrNotFound):
				u, err = o.create(ctx, id)
				if errors.Is(err, data.ErrUserExists) && try == 0 {
					continue // a concurrent first sign-in of the same person won; use theirs
				}
				if err != nil {
					return data.User{}, fmt.Errorf("web: oidc sign-in: create %s: %w", id.email, err)
				}
				o.cfg.Logger.Info("oidc user created", "user", u.ID, "email", u.Email, "subject", u.Subject, "groups", u.Groups)
				return u, nil
			}
		}
		if err != nil {
			return data.User{}, fmt.Errorf("web: oidc sign-in: look up %s: %w", id.email, err)
		}
		if u.Disabled {
			return data.User{}, refuse(http.StatusForbidden, "disabled", "Account disabled", "This account is disabled.")
		}
		now := o.cfg.Now()
		u, err = st.UpdateUser(ctx, u.ID, func(x *data.User) error {
			// Checked again inside the write: the user may have changed since the lookup.
			if x.Disabled {
				return ErrUserDisabled
			}
			if x.Subject != "" && x.Subject != id.subject {
				return errSubjectTaken
			}
			x.Subject, x.Email, x.LastSignIn = id.subject, id.email, now
			if id.name != "" {
				x.Name = id.name
			}
			if o.groups != "" {
				x.Groups = id.groups
			}
			return nil
		})
		switch {
		case errors.Is(err, ErrUserDisabled):
			return data.User{}, refuse(http.StatusForbidden, "disabled", "Account disabled", "This account is disabled.")
		case errors.Is(err, errSubjectTaken):
			return data.User{}, linkedElsewhere()
		case errors.Is(err, data.ErrUserExists):
			// Their email changed at the provider to one another user has.
			return data.User{}, refuse(http.StatusForbidden, "email_in_use", "Email address in use",
				"Another toolgate account already uses "+id.email+". Ask an administrator.")
		case errors.Is(err, data.ErrNotFound) && try == 0:
			continue // deleted since the lookup: start over
		case err != nil:
			return data.User{}, fmt.Errorf("web: oidc sign-in: update %s: %w", id.email, err)
		}
		return u, nil
	}
}

// create stores a new user for id, signed in now.
func (o *OIDC) create(ctx context.Context, id identity) (data.User, error) {
	now := o.cfg.Now()
	u := data.User{Email: id.email, Name: id.name, Subject: id.subject, CreatedAt: now, UpdatedAt: now, LastSignIn: now}
	if o.groups != "" {
		u.Groups = id.groups
	}
	return o.cfg.Store.CreateUser(ctx, u)
}
