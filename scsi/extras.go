package scsi

import (
	"sync"
	"sync/atomic"
)

// This file belongs to the extras engineer (reservations, COMPARE AND
// WRITE, WRITE SAME, UNMAP, GET LBA STATUS, EXTENDED COPY). The core calls
// the hooks below.

// registerExtras adds the extras commands to the opcode table.
func registerExtras(t *opcodeTable) {
	registerPR(t)
	registerReserve(t)
	registerCAW(t)
	registerWriteSame(t)
	registerUnmap(t)
	registerLBAStatus(t)
	registerXCopy(t)
	registerOrWrite(t)
	registerWriteAtomic(t)
	registerReadDefectData(t)
	registerSanitize(t)
}

// extrasState is the per-LU state of the extras commands.
type extrasState struct {
	// prMu serialises PERSISTENT RESERVE OUT and RESERVE/RELEASE, so a
	// state is computed, committed to the store and published by one
	// command at a time.
	prMu sync.Mutex
	// pr is the committed persistent reservation state; readers (the
	// conflict check on every command) load it without locking.
	pr      atomic.Pointer[PRState]
	prStore PRStore
	prKey   string

	// spc2 is the nexus key (nexusKey) of the RESERVE(6)/(10) holder, ""
	// when none; guarded by prMu for writers, atomic for readers.
	spc2 atomic.Pointer[string]
	// ports maps relative target port identifiers to target port names
	// seen on PR commands (REGISTER AND MOVE names its destination port by
	// identifier).
	ports sync.Map

	// xcopy keeps the results of recent EXTENDED COPY commands for
	// RECEIVE COPY RESULTS.
	xcopy xcopyResults

	// sanitize is the LU's SANITIZE operation (sanitize.go).
	sanitize sanitizeState
}

// initExtras is called once by NewLogicalUnit, after lu.cfg is validated.
func (lu *LogicalUnit) initExtras() error {
	lu.initSanitize()
	return lu.initPR()
}

// closeExtras is called by Close before the backend is closed.
func (lu *LogicalUnit) closeExtras() { lu.closeSanitize() }

// reservationConflict reports whether r must end in RESERVATION CONFLICT
// (SPC-4 5.13.1, table 66). It is called for every command whose entry
// lacks opResvAllowed; r.entry.Flags carries opResvRead for commands
// allowed under Write Exclusive reservations.
func (lu *LogicalUnit) reservationConflict(r *request) bool {
	if lu.spc2Conflict(r) {
		return true
	}
	return lu.prConflict(r)
}

// extrasReset is called after a logical unit reset (SPC-4 5.13.12: RESERVE
// reservations are released; persistent ones survive).
func (lu *LogicalUnit) extrasReset() { lu.releaseSPC2(nil) }

// extrasNexusLost is called when an I_T nexus ends.
func (lu *LogicalUnit) extrasNexusLost(n *Nexus) { lu.releaseSPC2(n) }
