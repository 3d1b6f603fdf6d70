package ha

import (
	"net"
	"testing"
)

// A link on every address is published under the gateway's name; one on
// a given address under that address.
func TestPublicAddr(t *testing.T) {
	for _, tc := range []struct {
		addr *net.TCPAddr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4zero, Port: 3262}, "gw1.example.com:3262"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 3262}, "gw1.example.com:3262"},
		{&net.TCPAddr{IP: net.ParseIP("10.0.0.5"), Port: 3262}, "10.0.0.5:3262"},
		{&net.TCPAddr{IP: net.ParseIP("fd00::5"), Port: 3262}, "[fd00::5]:3262"},
	} {
		if got := publicAddr("gw1.example.com", tc.addr); got != tc.want {
			t.Errorf("%v: published %q, want %q", tc.addr, got, tc.want)
		}
	}
}
