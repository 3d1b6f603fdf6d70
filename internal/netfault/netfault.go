// Package netfault makes network failures for tests.
package netfault

import (
	"net"
	"sync/atomic"
	"syscall"
)

// FlakyListener fails its first Fails Accepts with EMFILE, as a process
// out of file descriptors does, then accepts for real.
type FlakyListener struct {
	net.Listener
	Fails atomic.Int32
}

// Accept implements net.Listener.
func (l *FlakyListener) Accept() (net.Conn, error) {
	if l.Fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}
