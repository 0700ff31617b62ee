package main

import (
	"context"
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
