package target

import "sync/atomic"

// Stats is a snapshot of a Server's counters, totals since NewServer, and
// of its gauges, values now. Metrics read it through Server.Stats.
type Stats struct {
	// Connections.
	Accepted     uint64 // connections accepted (admitted or not)
	AcceptErrors uint64 // Accept failures the portal backed off from (EMFILE, ENFILE, ECONNABORTED...)
	// Connections closed at accept because a cap was reached
	// (Limits.MaxConnections, Limits.MaxPreLoginPerSource).
	RefusedMaxConnections    uint64
	RefusedPreLoginPerSource uint64
	LoginTimeouts            uint64 // connections closed for not completing login in Limits.LoginTimeout

	// Logins.
	Logins        uint64 // logins that reached full feature phase
	LoginRefusals uint64 // Login Responses with a non-zero status class
	// Logins refused with 0x0302 for Limits.MaxSessionsPerInitiator.
	RefusedSessionsPerInitiator uint64
	// AuthFailures counts logins refused with 0x0201 Authentication
	// failure (a wrong CHAP response, or CHAP required and not offered);
	// AuthDelays the CHAP checks and refusals held by the failure delay.
	AuthFailures uint64
	AuthDelays   uint64

	// Buffered data.
	DataWaits        uint64 // commands that waited for room under Limits.MaxData*
	CmdSNGapTimeouts uint64 // connections dropped for Limits.CmdSNGapTimeout

	// Gauges.
	Connections         int64 // open connections
	PreLoginConnections int64 // of which not yet in full feature phase
	Sessions            int64 // sessions, normal and discovery
	// DataBytes is the memory of the data buffers held under
	// Limits.MaxDataPerServer; UnsolicitedDataBytes that of immediate and
	// unsolicited write data, which the initiator sends unasked.
	DataBytes            int64
	UnsolicitedDataBytes int64
}

// serverStats holds the counters behind Stats; each is updated where its
// event happens, without the Server's lock.
type serverStats struct {
	accepted, acceptErrors                          atomic.Uint64
	refusedMaxConnections, refusedPreLoginPerSource atomic.Uint64
	loginTimeouts                                   atomic.Uint64
	logins, loginRefusals                           atomic.Uint64
	refusedSessionsPerInitiator                     atomic.Uint64
	dataWaits, cmdSNGapTimeouts                     atomic.Uint64
	authFailures, authDelays                        atomic.Uint64
	unsolicitedBytes                                atomic.Int64
}

// Stats returns the Server's counters and gauges.
func (s *Server) Stats() Stats {
	st := &s.stats
	out := Stats{
		Accepted:                    st.accepted.Load(),
		AcceptErrors:                st.acceptErrors.Load(),
		RefusedMaxConnections:       st.refusedMaxConnections.Load(),
		RefusedPreLoginPerSource:    st.refusedPreLoginPerSource.Load(),
		LoginTimeouts:               st.loginTimeouts.Load(),
		Logins:                      st.logins.Load(),
		LoginRefusals:               st.loginRefusals.Load(),
		RefusedSessionsPerInitiator: st.refusedSessionsPerInitiator.Load(),
		AuthFailures:                st.authFailures.Load(),
		AuthDelays:                  st.authDelays.Load(),
		DataWaits:                   st.dataWaits.Load(),
		CmdSNGapTimeouts:            st.cmdSNGapTimeouts.Load(),
		DataBytes:                   s.budget.held.Load(),
		UnsolicitedDataBytes:        st.unsolicitedBytes.Load(),
	}
	s.mu.Lock()
	out.Connections = int64(len(s.conns))
	for _, n := range s.preLogin {
		out.PreLoginConnections += int64(n)
	}
	out.Sessions = int64(len(s.byTSIH))
	s.mu.Unlock()
	return out
}
