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

	// MaxDataPerSession and MaxDataPerServer bound the bytes of data
	// buffers held for commands: write data solicited with R2T, and read
	// data until it is on the wire. A command whose buffer does not fit
	// waits, without an R2T and without MaxCmdSN advancing, until buffers
	// come back. Immediate and unsolicited data are not gated: RFC 7143
	// lets the initiator send them unasked, at most FirstBurstLength per
	// command (13.14) within the CmdSN window (3.2.2.1). A command's
	// expected data transfer length may not exceed either bound.
	MaxDataPerSession int64
	MaxDataPerServer  int64
	// CmdSNGapTimeout bounds how long commands wait behind a missing
	// CmdSN before the connection is dropped (session recovery) and
	// whatever they hold is released.
	CmdSNGapTimeout time.Duration

	// AuthFailureDelay is how long the Login Response refusing a CHAP
	// response waits after the first failure of an initiator name at a
	// source address; each further failure doubles it, up to
	// AuthFailureMaxDelay. Until it has passed, no other CHAP response of
	// that name and address is checked (authGuard).
	AuthFailureDelay    time.Duration
	AuthFailureMaxDelay time.Duration
}

// Defaults of Limits.
const (
	DefaultMaxConnections          = 1024
	DefaultMaxPreLoginPerSource    = 16
	DefaultMaxSessionsPerInitiator = 64
	DefaultLoginTimeout            = 15 * time.Second
	// DefaultMaxDataPerSession holds a whole CmdSN window of 512 KiB
	// commands (ceph-iscsi's hw_max_sectors 1024 at cmdsn_depth 128), and
	// one command of the largest length we accept (maxTransferLength).
	DefaultMaxDataPerSession = 64 << 20
	DefaultMaxDataPerServer  = 1 << 30
	// DefaultCmdSNGapTimeout: we negotiate one connection per session
	// (MaxConnections=1, RFC 7143 13.2), and TCP delivers that connection's
	// commands in the order the initiator sent them, so a CmdSN gap is not
	// reordering. Only a command retry could fill it (RFC 7143 7.2.1,
	// "plugging" a gap left by a PDU discarded for a digest error), which
	// needs ErrorRecoveryLevel 1; we run at 0 and close the connection on
	// a digest error. A gap that lasts is a broken or hostile initiator,
	// and session recovery (7.1.5) the only way on; the bound need only
	// outlast a slow network.
	DefaultCmdSNGapTimeout = 10 * time.Second
	// 0.5 s doubling to 8 s: a typo costs its author half a second; a
	// guesser gets about 8 tries a minute per name and address after the
	// first five, instead of the 1,793 a second measured before.
	DefaultAuthFailureDelay    = 500 * time.Millisecond
	DefaultAuthFailureMaxDelay = 8 * time.Second
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
	if l.MaxDataPerSession <= 0 {
		l.MaxDataPerSession = DefaultMaxDataPerSession
	}
	if l.MaxDataPerServer <= 0 {
		l.MaxDataPerServer = DefaultMaxDataPerServer
	}
	if l.CmdSNGapTimeout <= 0 {
		l.CmdSNGapTimeout = DefaultCmdSNGapTimeout
	}
	if l.AuthFailureDelay <= 0 {
		l.AuthFailureDelay = DefaultAuthFailureDelay
	}
	if l.AuthFailureMaxDelay <= 0 {
		l.AuthFailureMaxDelay = DefaultAuthFailureMaxDelay
	}
	l.AuthFailureMaxDelay = max(l.AuthFailureMaxDelay, l.AuthFailureDelay)
	return l
}
