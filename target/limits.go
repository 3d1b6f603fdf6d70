package target

import "time"

// Limits bounds what initiators, authenticated or not, can make a Server
// hold. A zero field takes its Default* value.
type Limits struct {
	// MaxConnections caps the connections of the Server, in every phase.
	// A connection beyond it is closed as soon as it is accepted.
	MaxConnections int
	// MaxPreLoginPerSource caps the connections from one source IP address
	// that have not reached full feature phase; one beyond it is closed as
	// soon as it is accepted, before anything is read.
	MaxPreLoginPerSource int
	// MaxSessionsPerInitiator caps the sessions (normal and discovery) one
	// initiator name holds at once; a login beyond it is refused with
	// 0x0302 "Out of resources".
	MaxSessionsPerInitiator int
	// LoginTimeout bounds the time from accept to full feature phase.
	LoginTimeout time.Duration
}

// Defaults of Limits.
const (
	DefaultMaxConnections          = 1024
	DefaultMaxPreLoginPerSource    = 16
	DefaultMaxSessionsPerInitiator = 64
	DefaultLoginTimeout            = 15 * time.Second
)

// withDefaults fills zero (or negative) fields with the defaults.
func (l Limits) withDefaults() Limits {
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	if l.MaxPreLoginPerSource <= 0 {
		l.MaxPreLoginPerSource = DefaultMaxPreLoginPerSource
	}
	if l.MaxSessionsPerInitiator <= 0 {
		l.MaxSessionsPerInitiator = DefaultMaxSessionsPerInitiator
	}
	if l.LoginTimeout <= 0 {
		l.LoginTimeout = DefaultLoginTimeout
	}
	return l
}
