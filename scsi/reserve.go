package scsi

// RESERVE(6)/RELEASE(6) and RESERVE(10)/RELEASE(10): SPC-2 7.21-7.24
// reservations of the whole LU by one I_T nexus, with the exceptions SPC-4
// 5.13.3 makes when a persistent reservation exists (REPORT CAPABILITIES
// reports CRH=1).

const (
	opReserve6  = 0x16
	opRelease6  = 0x17
	opReserve10 = 0x56
	opRelease10 = 0x57
)

// Reserve is RESERVE(6) or RESERVE(10) (SPC-2 7.21, 7.22).
type Reserve struct{ Ten bool }

// Release is RELEASE(6) or RELEASE(10) (SPC-2 7.19, 7.20).
type Release struct{ Ten bool }

func registerReserve(t *opcodeTable) {
	t.add(define("RESERVE(6)", usage(opReserve6, 0, 0, 0, 0, 0x07), 0, decodeReserve6, execReserve))
	t.add(define("RELEASE(6)", usage(opRelease6, 0, 0, 0, 0, 0x07), 0, decodeRelease6, execRelease))
	t.add(define("RESERVE(10)", usage(opReserve10, 0, 0, 0, 0, 0, 0, 0, 0, 0x07), 0, decodeReserve10, execReserve))
	t.add(define("RELEASE(10)", usage(opRelease10, 0, 0, 0, 0, 0, 0, 0, 0, 0x07), 0, decodeRelease10, execRelease))
}

// checkReserveCDB rejects the obsolete extent and third-party forms: SPC-2
// 7.21.1: "If the device server does not support ... third-party
// reservations ... INVALID FIELD IN CDB"; extents (bit 0 of RESERVE(6)) and
// LONGID likewise are not supported here.
func checkReserveCDB(cdb []byte, ten bool) error {
	if ten {
		if cdb[1]&0x10 != 0 { // 3RDPTY
			return invalidCDB(1, 4)
		}
		if cdb[1]&0x02 != 0 { // LONGID
			return invalidCDB(1, 1)
		}
		return nil
	}
	if cdb[1]&0x01 != 0 { // EXTENT (obsolete)
		return invalidCDB(1, 0)
	}
	if cdb[1]&0x10 != 0 { // 3RDPTY (obsolete)
		return invalidCDB(1, 4)
	}
	return nil
}

func decodeReserve6(cdb []byte) (Reserve, error) { return Reserve{}, checkReserveCDB(cdb, false) }
func decodeRelease6(cdb []byte) (Release, error) { return Release{}, checkReserveCDB(cdb, false) }
func decodeReserve10(cdb []byte) (Reserve, error) {
	return Reserve{Ten: true}, checkReserveCDB(cdb, true)
}
func decodeRelease10(cdb []byte) (Release, error) {
	return Release{Ten: true}, checkReserveCDB(cdb, true)
}

// prCRH applies SPC-4 5.13.3 when a persistent reservation exists: a
// RESERVE or RELEASE from the holder (or from a registrant of a
// registrants only / all registrants reservation) completes with GOOD and
// does nothing; from anyone else it is a RESERVATION CONFLICT. It reports
// whether it decided the command.
func prCRH(st *PRState, n *Nexus) (bool, error) {
	if st == nil || !st.Reserved {
		return false, nil
	}
	if st.IsHolder(n) {
		return true, nil
	}
	if st.Registered(n) && st.Type != PRTypeWriteExclusive && st.Type != PRTypeExclusiveAccess {
		return true, nil
	}
	return true, errReservationConflict
}

func execReserve(r *request, c Reserve) error {
	x := &r.lu.extras
	x.prMu.Lock()
	defer x.prMu.Unlock()
	if done, err := prCRH(x.pr.Load(), r.nexus); done {
		return err
	}
	me := nexusKey(r.nexus)
	h := *x.spc2.Load()
	// SPC-2 7.21.2: "If the logical unit is reserved by another I_T nexus,
	// the device server shall return RESERVATION CONFLICT"; a reservation
	// by the same nexus is simply re-established.
	if h != "" && h != me {
		return errReservationConflict
	}
	x.spc2.Store(&me)
	return nil
}

func execRelease(r *request, c Release) error {
	x := &r.lu.extras
	x.prMu.Lock()
	defer x.prMu.Unlock()
	if done, err := prCRH(x.pr.Load(), r.nexus); done {
		return err
	}
	// SPC-2 7.19.1: "If a RELEASE command is received from an I_T nexus
	// that does not hold the reservation, the device server shall return
	// GOOD status and the reservation shall not be released".
	if *x.spc2.Load() == nexusKey(r.nexus) {
		none := ""
		x.spc2.Store(&none)
	}
	return nil
}

// spc2Conflict: SPC-2 5.5.1: while one I_T nexus holds a RESERVE
// reservation, other nexuses' commands conflict, except those the table
// allows (flagged opResvAllowed, which never reach here) and RELEASE,
// which completes with GOOD doing nothing.
func (lu *LogicalUnit) spc2Conflict(r *request) bool {
	hp := lu.extras.spc2.Load()
	if hp == nil || *hp == "" || *hp == nexusKey(r.nexus) {
		return false
	}
	if len(r.cmd.CDB) > 0 && (r.cmd.CDB[0] == opRelease6 || r.cmd.CDB[0] == opRelease10) {
		return false
	}
	return true
}

// releaseSPC2 drops the RESERVE reservation: of nexus n (nexus loss, SPC-2
// 5.5.1) or, with n nil, whoever holds it (logical unit reset, SPC-4
// 5.13.12 / SAM-5 6.6).
func (lu *LogicalUnit) releaseSPC2(n *Nexus) {
	x := &lu.extras
	x.prMu.Lock()
	defer x.prMu.Unlock()
	hp := x.spc2.Load()
	if hp == nil || *hp == "" {
		return
	}
	if n == nil || *hp == nexusKey(n) {
		none := ""
		x.spc2.Store(&none)
	}
}

// SPC2Holder reports whether a RESERVE(6)/(10) reservation is held, and
// whether n holds it.
func (lu *LogicalUnit) SPC2Holder(n *Nexus) (reserved, mine bool) {
	hp := lu.extras.spc2.Load()
	if hp == nil || *hp == "" {
		return false, false
	}
	return true, *hp == nexusKey(n)
}
