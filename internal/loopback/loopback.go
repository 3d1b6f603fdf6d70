// Package loopback helps tests bind servers to 127.0.0.1 only (a house
// rule: engineers share this machine) on ports nobody else uses.
package loopback

import (
	"net"
	"testing"
)

// FreeURL returns "http://127.0.0.1:<port>" with a port that was free a
// moment ago, for servers that take a URL rather than a listener (etcd).
func FreeURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}
