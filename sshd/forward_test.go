package sshd

import (
	"net"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/toolgate/toolgate/tunnel"
)

func TestParseForwardRequest(t *testing.T) {
	for _, tc := range []struct {
		payload []byte
		ok      bool
		want    ForwardRequest
	}{
		{ssh.Marshal(ForwardRequest{"localhost", 0}), true, ForwardRequest{"localhost", 0}},
		{ssh.Marshal(ForwardRequest{"MyApp", 80}), true, ForwardRequest{"MyApp", 80}},
		{ssh.Marshal(ForwardRequest{"", 65535}), true, ForwardRequest{"", 65535}},
		{ssh.Marshal(ForwardRequest{"x", 65536}), false, ForwardRequest{}},
		{nil, false, ForwardRequest{}},
		{[]byte{0, 0, 0, 9, 'x'}, false, ForwardRequest{}},                        // string longer than the payload
		{append(ssh.Marshal(ForwardRequest{"a", 1}), 0), false, ForwardRequest{}}, // trailing junk
	} {
		got, err := ParseForwardRequest(tc.payload)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseForwardRequest(%x) = %+v, %v; want %+v ok=%v", tc.payload, got, err, tc.want, tc.ok)
		}
	}
}

func TestForwardSpec(t *testing.T) {
	for in, want := range map[ForwardRequest]string{
		{"localhost", 0}: "0", {"localhost", 80}: "80", {"", 80}: ":80", {"myapp", 80}: "myapp:80",
	} {
		if got := in.spec(); got != want {
			t.Errorf("%+v.spec() = %q, want %q", in, got, want)
		}
	}
}

// FuzzForwardRequest feeds arbitrary global-request payloads (the client controls them) to the
// parser and then to the name rules, as the server does: nothing may panic, and whatever is
// accepted must survive a round trip and yield a valid name or none.
func FuzzForwardRequest(f *testing.F) {
	for _, p := range []ForwardRequest{{"localhost", 0}, {"", 80}, {"MyApp", 80}, {"a.toolgate.localhost", 443}, {"::1", 0}, {"\x00", 1}} {
		f.Add(ssh.Marshal(p))
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, payload []byte) {
		p, err := ParseForwardRequest(payload)
		if err != nil {
			return
		}
		if p.BindPort > 65535 {
			t.Fatalf("accepted port %d", p.BindPort)
		}
		again, err := ParseForwardRequest(ssh.Marshal(p))
		if err != nil || again != p {
			t.Fatalf("round trip of %+v: %+v, %v", p, again, err)
		}
		_ = p.spec()
		req, err := tunnel.ParseBindAddr(p.BindAddr, "toolgate.localhost")
		if err == nil && req.Name != "" {
			if verr := tunnel.ValidateName(req.Name); verr != nil {
				t.Fatalf("bind %q gave invalid name %q", p.BindAddr, req.Name)
			}
		}
	})
}

func TestHandshakeKey(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 1}, "203.0.113.7"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:203.0.113.7"), Port: 1}, "203.0.113.7"},
		// Any address in one /64 counts as the same client.
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2::1"), Port: 1}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::9"), Port: 1}, "2001:db8:1:2::/64"},
		{&net.UnixAddr{Name: "@", Net: "unix"}, "@"},
	} {
		if got := handshakeKey(tc.addr); got != tc.want {
			t.Errorf("handshakeKey(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
