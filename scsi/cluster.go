package scsi

// Events of one gateway's copy of an LU that every gateway serving the LU
// must replay. SAM-5 scopes a logical unit reset to the logical unit, and
// with several gateways the logical unit is one thing behind several
// target ports: an initiator that resets it through one gateway expects
// the unit attention on its sessions through the others too (libiscsi's
// MultipathIO.Reset checks every path).

// LUEvents is told about such events; the gateway carries them to the
// other gateways (through etcd), which call ReplayReset on their LU.
// Calls come from the command path after the event took effect here and
// must not block for long.
type LUEvents interface {
	// Reset: a reset of the LU was performed here; ascq is the qualifier
	// of the 29h unit attention it raised (03h LOGICAL UNIT RESET, 00h
	// for a target reset).
	Reset(ascq byte)
}

// announceReset tells the LU's events, if any, about a reset done here.
func (lu *LogicalUnit) announceReset(ascq byte) {
	if lu.cfg.Events != nil {
		lu.cfg.Events.Reset(ascq)
	}
}

// ReplayReset performs here a reset of the LU that another gateway
// performed: the tasks of every nexus are aborted, the LU state a reset
// clears is cleared, and every nexus gets the 29h unit attention with
// qualifier ascq. It is not announced again.
func (lu *LogicalUnit) ReplayReset(ascq byte) {
	lu.abortNexusTasks(func(string) bool { return true })
	lu.reset(ascq)
}
