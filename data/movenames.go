package data

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// MoveNames gives every name claimed by fromOwner to toOwner, in one transaction, and returns
// how many it moved. Only Owner changes: kind, hint and deadlines stay, so a moved name lapses
// when it would have. It is for when an SSH key that claimed names on its own is linked to a
// user, and the names should follow the person rather than the key; so do the names' saved
// shares (shares.go).
//
// Expired claims move too: whether they are released is the sweep's business, which treats
// them the same under either owner. ErrInvalid for an empty owner or one containing NUL;
// moving an owner to itself moves nothing.
func (s *Store) MoveNames(ctx context.Context, fromOwner, toOwner string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := checkID("owner", fromOwner); err != nil {
		return 0, err
	}
	if err := checkID("owner", toOwner); err != nil {
		return 0, err
	}
	if fromOwner == toOwner {
		return 0, nil
	}
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		// Collect first: putName rewrites the index the cursor walks.
		var names []string
		prefix := ownerKey(fromOwner, "")
		c := tx.Bucket([]byte(bucketNamesByOwner)).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			names = append(names, string(k[len(prefix):]))
		}
		for _, name := range names {
			old, found, err := getName(tx, name)
			if err != nil {
				return err
			}
			if !found || old.Owner != fromOwner {
				// A stale entry: drop it rather than move a name fromOwner does not hold.
				if err := tx.Bucket([]byte(bucketNamesByOwner)).Delete(ownerKey(fromOwner, name)); err != nil {
					return fmt.Errorf("data: drop stale owner entry for %q: %w", name, err)
				}
				continue
			}
			c := old
			c.Owner = toOwner
			if _, err := putName(tx, c, &old); err != nil {
				return err
			}
			if err := moveShares(tx, name, fromOwner, toOwner); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
