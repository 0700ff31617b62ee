package web

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/tunnel"
)

// openTestTunnel is what the front's tests and benchmarks stand on: a store (no fsync) with a
// user per email, a registry for domain, and one live tunnel, bind.domain, owned by the first
// user, whose streams go nowhere (benchDialer) and whose terminal is benchConn. Everything is
// closed when tb ends.
func openTestTunnel(tb testing.TB, domain, bind string, emails ...string) (*data.Store, *tunnel.Registry, *tunnel.Forward, []data.User) {
	tb.Helper()
	st, err := data.Open(data.Config{Path: filepath.Join(tb.TempDir(), "t.db"), NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	users := make([]data.User, len(emails))
	for i, e := range emails {
		if users[i], err = st.CreateUser(context.Background(), data.User{Email: e}); err != nil {
			tb.Fatal(err)
		}
	}
	reg, err := tunnel.NewRegistry(tunnel.Config{Domain: domain, Names: st})
	if err != nil {
		tb.Fatal(err)
	}
	fwd, err := reg.Open(context.Background(), tunnel.OpenRequest{Owner: users[0].ID, Conn: benchConn{},
		Dialer: benchDialer{}, BindAddr: bind, LocalHost: "localhost:80"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { fwd.Close() })
	return st, reg, fwd, users
}
