package scsi

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// Glue between the LU and the pure persistent reservation state machine of
// pr_state.go: commands, the store commit, unit attentions and the
// reservation conflict check of SPC-4 5.13.1.

// maxPROutParamLen bounds the PERSISTENT RESERVE OUT parameter list we
// accept: 24 fixed bytes plus TransportIDs (at most 228 bytes each for an
// iSCSI name of 223 characters) for every registration we can hold.
const maxPROutParamLen = 28 + prMaxRegistrationsDefault*260

func registerPR(t *opcodeTable) {
	// SPC-4 5.16.2.4.4: PERSISTENT RESERVE IN/OUT are served in every ALUA
	// state. Reservations never block them (SPC-4 table 66: "Allowed"); a
	// RESERVE(6) holder does (SPC-2 5.5.1), so the conflict hook decides.
	for _, sa := range []byte{prInReadKeys, prInReadReservation, prInReportCaps, prInReadFullStatus} {
		t.add(define("PERSISTENT RESERVE IN", usage(0x5E, sa, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x07),
			opALUAStandby, decodePersistentReserveIn, execPersistentReserveIn).withSA(uint16(sa)))
	}
	for _, sa := range []byte{prOutRegister, prOutReserve, prOutRelease, prOutClear, prOutPreempt,
		prOutPreemptAndAbort, prOutRegisterIgnore, prOutRegisterAndMove} {
		t.add(define("PERSISTENT RESERVE OUT", usage(0x5F, sa, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x07),
			opALUAStandby|opOwner, decodePersistentReserveOut, execPersistentReserveOut).withSA(uint16(sa)))
	}
}

// initPR loads the committed state of the LU from its store.
func (lu *LogicalUnit) initPR() error {
	x := &lu.extras
	x.prStore = lu.cfg.PRStore
	if x.prStore == nil {
		x.prStore = NewMemPRStore()
	}
	x.prKey = hex.EncodeToString(lu.cfg.WWN[:])
	st, err := x.prStore.Load(x.prKey)
	if err != nil {
		return fmt.Errorf("scsi: LU %q: loading persistent reservations: %w", lu.cfg.Name, err)
	}
	if st == nil {
		st = &PRState{}
	}
	x.pr.Store(st)
	none := ""
	x.spc2.Store(&none)
	return nil
}

// PRState returns a copy of the committed persistent reservation state.
func (lu *LogicalUnit) PRState() *PRState { return lu.extras.pr.Load().Clone() }

// ReloadPR replaces the LU's reservation state with the store's: a gateway
// that becomes the LU's owner calls it so it serves what the previous
// owner committed.
func (lu *LogicalUnit) ReloadPR() error {
	x := &lu.extras
	x.prMu.Lock()
	defer x.prMu.Unlock()
	st, err := x.prStore.Load(x.prKey)
	if err != nil {
		return err
	}
	if st == nil {
		st = &PRState{}
	}
	x.pr.Store(st)
	return nil
}

func execPersistentReserveIn(r *request, c PersistentReserveIn) error {
	r.lu.notePort(r.nexus)
	st := r.lu.extras.pr.Load()
	var b []byte
	switch c.ServiceAction {
	case prInReadKeys:
		b = prInReadKeysData(st)
	case prInReadReservation:
		b = prInReadReservationData(st)
	case prInReportCaps:
		b = prInReportCapsData(st)
	default:
		b = prInReadFullStatusData(st)
	}
	r.dataIn(b, int(c.AllocLen))
	return nil
}

func execPersistentReserveOut(r *request, c PersistentReserveOut) error {
	lu := r.lu
	// SPC-4 6.16.3.1: the parameter list is at least 24 bytes; PARAMETER
	// LIST LENGTH ERROR otherwise (also for a list too long to be a valid
	// set of TransportIDs).
	if c.ParamLen < prOutParamLenBasic || c.ParamLen > maxPROutParamLen {
		return errParamListLength()
	}
	data := r.cmd.DataOut
	if uint32(len(data)) > c.ParamLen {
		data = data[:c.ParamLen]
	}
	p, err := decodePROutParams(c.ServiceAction, data)
	if err != nil {
		return err
	}
	if r.nexus == nil {
		return newCC(SenseIllegalRequest, 0x26, 0x00)
	}
	lu.notePort(r.nexus)
	preempted, err := lu.applyPROut(r.nexus, c, p)
	if err != nil {
		return err
	}
	// SPC-4 5.13.11.2.5: PREEMPT AND ABORT aborts the preempted nexuses'
	// tasks before it completes. Done after prMu is released: a preempted
	// nexus's own PR command may be waiting for it.
	lu.abortPreempted(r.nexus, preempted)
	return nil
}

// applyPROut runs the reservation state machine and commits its result
// under prMu; it returns the registrations PREEMPT AND ABORT removed.
func (lu *LogicalUnit) applyPROut(n *Nexus, c PersistentReserveOut, p *PROutParams) ([]PRPort, error) {
	x := &lu.extras
	x.prMu.Lock()
	defer x.prMu.Unlock()
	req := &PROutRequest{Nexus: n, CDB: c, Params: p, TargetPort: lu.targetPortByRTPI}
	res, err := lu.commitPROut(req)
	if err != nil {
		return nil, err
	}
	for _, ua := range res.UAs {
		lu.raisePRUA(ua)
	}
	if c.ServiceAction != prOutPreemptAndAbort {
		return nil, nil
	}
	return res.Preempted, nil
}

// targetPortByRTPI resolves a relative target port identifier to the name
// of a target port this LU has seen commands on (REGISTER AND MOVE).
func (lu *LogicalUnit) targetPortByRTPI(rtpi uint16) (string, bool) {
	v, ok := lu.extras.ports.Load(rtpi)
	if !ok {
		return "", false
	}
	return v.(string), true
}

// notePort remembers the target port name of a relative target port id.
func (lu *LogicalUnit) notePort(n *Nexus) {
	if n != nil && n.TargetPort != "" {
		lu.extras.ports.Store(n.RelativeTargetPort, n.TargetPort)
	}
}

// raisePRUA queues a unit attention on every known nexus the registration
// port covers.
func (lu *LogicalUnit) raisePRUA(ua PRUnitAttention) {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	for k, st := range lu.nexuses {
		n, ok := parseNexusKey(k)
		if ok && ua.Port.Covers(n) {
			st.queueUA(ua.ASC, ua.ASCQ)
		}
	}
}

// parseNexusKey recovers the identity of a nexus from the LU's nexus map
// key (nexusKey: "<initiator port>\x00<target port>", the initiator port
// being "<iqn>,i,0x<ISID>"). RelativeTargetPort is not part of the key.
func parseNexusKey(k string) (*Nexus, bool) {
	ip, tp, ok := strings.Cut(k, "\x00")
	if !ok {
		return nil, false
	}
	i := strings.LastIndex(ip, ",i,0x")
	if i < 0 {
		i = strings.LastIndex(ip, ",I,0X")
	}
	if i < 0 {
		return nil, false
	}
	n := &Nexus{InitiatorPort: ip, InitiatorName: ip[:i], TargetPort: tp}
	v, err := hex.DecodeString(ip[i+5:])
	if err != nil || len(v) != 6 {
		return nil, false
	}
	copy(n.ISID[:], v)
	return n, true
}

// prConflict applies SPC-4 5.13.1 table 66 for the persistent reservation.
func (lu *LogicalUnit) prConflict(r *request) bool {
	st := lu.extras.pr.Load()
	if st == nil || !st.Reserved || r.nexus == nil || len(r.cmd.CDB) == 0 {
		return false
	}
	switch r.cmd.CDB[0] {
	case 0x5E, 0x5F:
		// SPC-4 table 66: PERSISTENT RESERVE IN/OUT are allowed; PR OUT
		// checks keys itself.
		return false
	case opReserve6, opRelease6, opReserve10, opRelease10:
		// SPC-4 5.13.3: decided by the RESERVE/RELEASE commands.
		return false
	}
	return prAccessConflict(st, r.nexus, r.entry != nil && r.entry.Flags&opResvRead != 0)
}

// prAccessConflict is SPC-4 table 66 for one access: may nexus n read
// (read) or otherwise use the medium under reservation st?
func prAccessConflict(st *PRState, n *Nexus, read bool) bool {
	if st == nil || !st.Reserved || st.IsHolder(n) {
		return false
	}
	registered := st.Registered(n)
	switch st.Type {
	case PRTypeWriteExclusive:
		// Table 66: reads allowed, everything else conflicts for every
		// non-holder, registered or not.
		return !read
	case PRTypeExclusiveAccess:
		return true
	case PRTypeWriteExclusiveRO, PRTypeWriteExclusiveAR:
		// Registered nexuses have full access; others may read.
		return !registered && !read
	case PRTypeExclusiveAccessRO, PRTypeExclusiveAccessAR:
		return !registered
	}
	return false
}

// accessConflict reports whether nexus n may not read (write=false) or
// write the medium of lu because of a reservation: EXTENDED COPY uses it
// for the copy targets other than the LU that received the command.
func (lu *LogicalUnit) accessConflict(n *Nexus, write bool) bool {
	if hp := lu.extras.spc2.Load(); hp != nil && *hp != "" && *hp != nexusKey(n) {
		return true
	}
	return prAccessConflict(lu.extras.pr.Load(), n, !write)
}
