package scsi

import (
	"encoding/hex"
	"slices"
	"strings"
)

// Persistent reservation types (SPC-4 6.16.4, table 216).
const (
	PRTypeWriteExclusive      byte = 0x1
	PRTypeExclusiveAccess     byte = 0x3
	PRTypeWriteExclusiveRO    byte = 0x5 // registrants only
	PRTypeExclusiveAccessRO   byte = 0x6
	PRTypeWriteExclusiveAR    byte = 0x7 // all registrants
	PRTypeExclusiveAccessAR   byte = 0x8
	prScopeLU                 byte = 0x0
	prMaxRegistrationsDefault      = 256
)

// PERSISTENT RESERVE OUT service actions (SPC-4 6.16.2, table 211).
const (
	prOutRegister           byte = 0x00
	prOutReserve            byte = 0x01
	prOutRelease            byte = 0x02
	prOutClear              byte = 0x03
	prOutPreempt            byte = 0x04
	prOutPreemptAndAbort    byte = 0x05
	prOutRegisterIgnore     byte = 0x06
	prOutRegisterAndMove    byte = 0x07
	prOutReplaceLostReserve byte = 0x08
)

// validPRType reports whether t is one of the six types of SPC-4 table 216.
func validPRType(t byte) bool {
	switch t {
	case PRTypeWriteExclusive, PRTypeExclusiveAccess, PRTypeWriteExclusiveRO,
		PRTypeExclusiveAccessRO, PRTypeWriteExclusiveAR, PRTypeExclusiveAccessAR:
		return true
	}
	return false
}

// prAllRegistrants: every registered I_T nexus is a reservation holder
// (SPC-4 5.13.10).
func prAllRegistrants(t byte) bool {
	return t == PRTypeWriteExclusiveAR || t == PRTypeExclusiveAccessAR
}

// PRPort identifies the I_T nexuses one registration covers. A registration
// made through a TransportID of format 00h carries no ISID and covers every
// initiator port of that initiator device; one made with ALL_TG_PT covers
// every target port (SPC-4 6.16.3.2).
type PRPort struct {
	// Initiator is the lower-cased iSCSI initiator name (names compare
	// case-insensitively, RFC 3722).
	Initiator string `json:"initiator"`
	// ISID is 12 lower-case hex digits, or "" for any session.
	ISID string `json:"isid,omitempty"`
	// TargetPort is Nexus.TargetPort, or "" with AllTgPt.
	TargetPort string `json:"target_port,omitempty"`
	AllTgPt    bool   `json:"all_tg_pt,omitempty"`
}

// PRPortOf is the port identity of the nexus itself.
func PRPortOf(n *Nexus) PRPort {
	return PRPort{Initiator: strings.ToLower(n.InitiatorName), ISID: hex.EncodeToString(n.ISID[:]), TargetPort: n.TargetPort}
}

// Covers reports whether the registration port p includes nexus n.
func (p PRPort) Covers(n *Nexus) bool {
	if p.Initiator != strings.ToLower(n.InitiatorName) {
		return false
	}
	if p.ISID != "" && p.ISID != hex.EncodeToString(n.ISID[:]) {
		return false
	}
	return p.AllTgPt || p.TargetPort == n.TargetPort
}

// overlaps reports whether two registration ports share an I_T nexus.
func (p PRPort) overlaps(q PRPort) bool {
	if p.Initiator != q.Initiator {
		return false
	}
	if p.ISID != "" && q.ISID != "" && p.ISID != q.ISID {
		return false
	}
	return p.AllTgPt || q.AllTgPt || p.TargetPort == q.TargetPort
}

// PRRegistration is one registered reservation key.
type PRRegistration struct {
	Key  uint64 `json:"key"`
	Port PRPort `json:"port"`
	// RelativeTargetPort is reported by READ FULL STATUS (ignored there
	// when AllTgPt).
	RelativeTargetPort uint16 `json:"rtpi,omitempty"`
}

// PRState is the whole persistent reservation state of one logical unit.
// It is a value: the state machine never mutates a PRState it was given,
// so a state a store has not committed is simply dropped.
type PRState struct {
	Generation    uint32           `json:"generation"`
	Registrations []PRRegistration `json:"registrations,omitempty"`
	Reserved      bool             `json:"reserved,omitempty"`
	Type          byte             `json:"type,omitempty"`
	Scope         byte             `json:"scope,omitempty"`
	// Holder is the registration port of the holder; unused for all
	// registrants types, where every registrant holds the reservation.
	Holder PRPort `json:"holder,omitempty"`
	APTPL  bool   `json:"aptpl,omitempty"`
	// Version counts the commits of this state to its PRStore (the
	// compare-and-swap token of the PRStore contract); it is not the
	// PRgeneration of SPC-4, which only some service actions bump.
	Version uint64 `json:"version,omitempty"`
}

// Clone returns a deep copy.
func (st *PRState) Clone() *PRState {
	if st == nil {
		return &PRState{}
	}
	c := *st
	c.Registrations = slices.Clone(st.Registrations)
	return &c
}

// regIndex returns the index of the registration covering n, or -1.
func (st *PRState) regIndex(n *Nexus) int {
	for i := range st.Registrations {
		if st.Registrations[i].Port.Covers(n) {
			return i
		}
	}
	return -1
}

// Registered reports whether nexus n is registered.
func (st *PRState) Registered(n *Nexus) bool { return st != nil && st.regIndex(n) >= 0 }

// IsHolder reports whether n is a persistent reservation holder (SPC-4
// 5.13.10: for all registrants types every registered nexus is one).
func (st *PRState) IsHolder(n *Nexus) bool {
	if st == nil || !st.Reserved {
		return false
	}
	i := st.regIndex(n)
	if i < 0 {
		return false
	}
	if prAllRegistrants(st.Type) {
		return true
	}
	return st.Registrations[i].Port == st.Holder
}

// holderKey is the key of the holder's registration (non-AR types).
func (st *PRState) holderKey() (uint64, bool) {
	for _, r := range st.Registrations {
		if r.Port == st.Holder {
			return r.Key, true
		}
	}
	return 0, false
}

// PRUnitAttention is a unit attention the state machine asks the LU to
// establish for every I_T nexus Port covers.
type PRUnitAttention struct {
	Port      PRPort
	ASC, ASCQ byte
}

// Unit attention additional sense codes of SPC-4 5.13.
const (
	ascqReservationsPreempted  byte = 0x03 // 2A/03
	ascqReservationsReleased   byte = 0x04 // 2A/04
	ascqRegistrationsPreempted byte = 0x05 // 2A/05
)

// PROutRequest is one PERSISTENT RESERVE OUT command, decoded, with what
// the state machine needs to know of its surroundings.
type PROutRequest struct {
	Nexus  *Nexus
	CDB    PersistentReserveOut
	Params *PROutParams
	// TargetPort resolves a relative target port identifier of REGISTER AND
	// MOVE to the target port name; nil knows only the issuing port.
	TargetPort func(rtpi uint16) (string, bool)
	// MaxRegistrations caps the registration count (0: default).
	MaxRegistrations int
}

// PROutResult is the outcome of a successful PERSISTENT RESERVE OUT.
type PROutResult struct {
	State *PRState
	UAs   []PRUnitAttention
	// Preempted lists the registrations PREEMPT AND ABORT removed: the LU
	// aborts their tasks (SPC-4 5.13.11.2.5).
	Preempted []PRPort
	// Changed is false for commands that left the state as it was (the LU
	// then skips the store write).
	Changed bool
}

// ApplyPROut is the pure persistent reservation state machine:
// (state, request) -> (new state, unit attentions) or a SCSI error
// (*CheckCondition or RESERVATION CONFLICT). st is not modified.
func ApplyPROut(st *PRState, req *PROutRequest) (*PROutResult, error) {
	ns := st.Clone()
	m := &prMachine{st: ns, req: req, n: req.Nexus, p: req.Params}
	var err error
	switch req.CDB.ServiceAction {
	case prOutRegister, prOutRegisterIgnore:
		err = m.register()
	case prOutReserve:
		err = m.reserve()
	case prOutRelease:
		err = m.release()
	case prOutClear:
		err = m.clear()
	case prOutPreempt, prOutPreemptAndAbort:
		err = m.preempt()
	case prOutRegisterAndMove:
		err = m.registerAndMove()
	default:
		// SPC-4 6.16.2: service actions not supported (REPLACE LOST
		// RESERVATION, reserved codes) are INVALID FIELD IN CDB.
		err = invalidCDB(1, 4)
	}
	if err != nil {
		return nil, err
	}
	return &PROutResult{State: ns, UAs: m.uas, Preempted: m.preempted, Changed: m.changed}, nil
}

type prMachine struct {
	st        *PRState
	req       *PROutRequest
	n         *Nexus
	p         *PROutParams
	uas       []PRUnitAttention
	preempted []PRPort
	changed   bool
}

func (m *prMachine) ua(p PRPort, ascq byte) {
	m.uas = append(m.uas, PRUnitAttention{Port: p, ASC: 0x2A, ASCQ: ascq})
}

// checkKey enforces the common rule of RESERVE, RELEASE, CLEAR, PREEMPT and
// REGISTER AND MOVE: SPC-4 5.13.11.1 / 6.16.2 "If the I_T nexus is not
// registered ... or the RESERVATION KEY field does not match the
// registered key, the device server shall terminate the command with
// RESERVATION CONFLICT status".
func (m *prMachine) checkKey() (int, error) {
	i := m.st.regIndex(m.n)
	if i < 0 || m.st.Registrations[i].Key != m.p.Key {
		return -1, errReservationConflict
	}
	return i, nil
}

// checkTypeScope validates the CDB's SCOPE and TYPE for actions that
// establish a reservation.
func (m *prMachine) checkTypeScope() error {
	// SPC-4 6.16.3.2: only LU_SCOPE (0h) is defined; "If the SCOPE field
	// contains a value other than LU_SCOPE ... INVALID FIELD IN CDB".
	if m.req.CDB.Scope != prScopeLU {
		return invalidCDB(2, 7)
	}
	// SPC-4 6.16.3.3: a TYPE the device server does not support is
	// INVALID FIELD IN CDB.
	if !validPRType(m.req.CDB.Type) {
		return invalidCDB(2, 3)
	}
	return nil
}

func (m *prMachine) setAPTPL() {
	if m.st.APTPL != m.p.APTPL {
		m.st.APTPL = m.p.APTPL
	}
}

// removeReg drops registration i; if it was the (or the last all
// registrants) holder the reservation goes with it (SPC-4 5.13.11.2.1).
// It reports whether the reservation was released.
func (m *prMachine) removeReg(i int) bool {
	port := m.st.Registrations[i].Port
	m.st.Registrations = slices.Delete(m.st.Registrations, i, i+1)
	if !m.st.Reserved {
		return false
	}
	if prAllRegistrants(m.st.Type) {
		// SPC-4 5.13.11.2.1: an all registrants reservation is released
		// only when the last registration goes.
		if len(m.st.Registrations) == 0 {
			m.clearReservation()
			return true
		}
		return false
	}
	if port == m.st.Holder {
		m.clearReservation()
		return true
	}
	return false
}

func (m *prMachine) clearReservation() {
	m.st.Reserved = false
	m.st.Type = 0
	m.st.Scope = 0
	m.st.Holder = PRPort{}
}

// register handles REGISTER and REGISTER AND IGNORE EXISTING KEY (SPC-4
// 5.13.7, 6.16.2 table 212).
func (m *prMachine) register() error {
	ignore := m.req.CDB.ServiceAction == prOutRegisterIgnore
	i := m.st.regIndex(m.n)
	if i < 0 {
		// SPC-4 5.13.7 table 48, unregistered nexus: "RESERVATION KEY field
		// not zero: RESERVATION CONFLICT" (REGISTER only; REGISTER AND
		// IGNORE EXISTING KEY ignores the field).
		if !ignore && m.p.Key != 0 {
			return errReservationConflict
		}
		// SPC-4 5.13.7 table 48: SERVICE ACTION RESERVATION KEY zero on an
		// unregistered nexus: "Do nothing except return GOOD status".
		if m.p.SAKey == 0 {
			return nil
		}
		ports := []PRRegistration{m.regFor(m.n, m.p.AllTgPt)}
		if m.p.SpecIPT {
			for _, tid := range m.p.TransportIDs {
				if m.p.AllTgPt {
					ports = append(ports, PRRegistration{Port: PRPort{Initiator: tid.Name, ISID: tid.ISID, AllTgPt: true}})
				} else {
					ports = append(ports, PRRegistration{Port: PRPort{Initiator: tid.Name, ISID: tid.ISID, TargetPort: m.n.TargetPort}, RelativeTargetPort: m.n.RelativeTargetPort})
				}
				// SPC-4 6.16.3.4: "If ... any I_T nexus specified by a
				// TransportID is already registered, the device server
				// shall terminate the command with CHECK CONDITION status,
				// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST" (also
				// for duplicates inside the list itself).
				np := ports[len(ports)-1].Port
				for _, r := range m.st.Registrations {
					if r.Port.overlaps(np) {
						return invalidParam(tid.Offset, -1)
					}
				}
				for _, q := range ports[:len(ports)-1] {
					if q.Port == np {
						return invalidParam(tid.Offset, -1)
					}
				}
			}
		}
		// SPC-4 5.13.7: "If the device server does not have enough
		// resources to complete the registration, ... INSUFFICIENT
		// REGISTRATION RESOURCES".
		if len(m.st.Registrations)+len(ports) > m.maxRegs() {
			return newCC(SenseIllegalRequest, 0x55, 0x04)
		}
		for _, r := range ports {
			r.Key = m.p.SAKey
			m.st.Registrations = append(m.st.Registrations, r)
		}
		m.setAPTPL()
		m.st.Generation++
		m.changed = true
		return nil
	}
	// Registered nexus.
	if !ignore && m.st.Registrations[i].Key != m.p.Key {
		// SPC-4 5.13.7 table 49: "RESERVATION KEY field does not match the
		// registered key: RESERVATION CONFLICT".
		return errReservationConflict
	}
	if m.p.SpecIPT {
		// SPC-4 6.16.3.4: "If the SPEC_I_PT bit is set to one and the I_T
		// nexus is already registered, ... INVALID FIELD IN PARAMETER
		// LIST".
		return invalidParam(20, 3)
	}
	if m.p.SAKey == 0 {
		// SPC-4 5.13.11.2.1: unregistering; a holder's reservation is
		// released; for registrants only types the other registrants get
		// RESERVATIONS RELEASED (SPC-4 5.13.11.2.2 d).
		typ := m.st.Type
		released := m.removeReg(i)
		if released && (typ == PRTypeWriteExclusiveRO || typ == PRTypeExclusiveAccessRO) {
			for _, r := range m.st.Registrations {
				m.ua(r.Port, ascqReservationsReleased)
			}
		}
	} else {
		m.st.Registrations[i].Key = m.p.SAKey
	}
	m.setAPTPL()
	// SPC-4 6.16.2: the generation is incremented by REGISTER and REGISTER
	// AND IGNORE EXISTING KEY that complete with GOOD.
	m.st.Generation++
	m.changed = true
	return nil
}

func (m *prMachine) maxRegs() int {
	if m.req.MaxRegistrations > 0 {
		return m.req.MaxRegistrations
	}
	return prMaxRegistrationsDefault
}

func (m *prMachine) regFor(n *Nexus, allTgPt bool) PRRegistration {
	p := PRPortOf(n)
	if allTgPt {
		p.TargetPort = ""
		p.AllTgPt = true
	}
	return PRRegistration{Port: p, RelativeTargetPort: n.RelativeTargetPort}
}

// reserve handles RESERVE (SPC-4 5.13.9).
func (m *prMachine) reserve() error {
	i, err := m.checkKey()
	if err != nil {
		return err
	}
	if err := m.checkTypeScope(); err != nil {
		return err
	}
	if m.st.Reserved {
		// SPC-4 5.13.9: "If the I_T nexus ... is the persistent
		// reservation holder and the TYPE and SCOPE are the same as the
		// existing ... return GOOD"; otherwise, whether held by this or
		// another nexus: RESERVATION CONFLICT.
		if m.st.IsHolder(m.n) && m.st.Type == m.req.CDB.Type && m.st.Scope == m.req.CDB.Scope {
			return nil
		}
		return errReservationConflict
	}
	m.st.Reserved = true
	m.st.Type = m.req.CDB.Type
	m.st.Scope = m.req.CDB.Scope
	m.st.Holder = m.st.Registrations[i].Port
	m.changed = true
	return nil
}

// release handles RELEASE (SPC-4 5.13.11.2.2).
func (m *prMachine) release() error {
	if _, err := m.checkKey(); err != nil {
		return err
	}
	// SPC-4 5.13.11.2.2: no reservation, or a nexus that is not a holder:
	// "the device server shall ... return GOOD status" and do nothing.
	if !m.st.Reserved || !m.st.IsHolder(m.n) {
		return nil
	}
	// SPC-4 5.13.11.2.2: "If the SCOPE and TYPE fields do not match the
	// scope and type of the persistent reservation being released, ...
	// ILLEGAL REQUEST, INVALID RELEASE OF PERSISTENT RESERVATION".
	if m.req.CDB.Scope != m.st.Scope || m.req.CDB.Type != m.st.Type {
		return newCC(SenseIllegalRequest, 0x26, 0x04)
	}
	typ := m.st.Type
	m.clearReservation()
	// SPC-4 5.13.11.2.2: for types other than Write Exclusive and Exclusive
	// Access, every other registered nexus gets RESERVATIONS RELEASED.
	if typ != PRTypeWriteExclusive && typ != PRTypeExclusiveAccess {
		for _, r := range m.st.Registrations {
			if !r.Port.Covers(m.n) {
				m.ua(r.Port, ascqReservationsReleased)
			}
		}
	}
	m.changed = true
	return nil
}

// clear handles CLEAR (SPC-4 5.13.11.2.6).
func (m *prMachine) clear() error {
	if _, err := m.checkKey(); err != nil {
		return err
	}
	// SPC-4 5.13.11.2.6: release the reservation, remove every
	// registration, and establish RESERVATIONS PREEMPTED for every
	// registered nexus other than the one CLEAR came through.
	for _, r := range m.st.Registrations {
		if !r.Port.Covers(m.n) {
			m.ua(r.Port, ascqReservationsPreempted)
		}
	}
	m.st.Registrations = nil
	m.clearReservation()
	m.st.Generation++
	m.changed = true
	return nil
}

// removeKeyed removes every registration with key k except the issuer's
// own, establishing REGISTRATIONS PREEMPTED for each. It reports how many
// registrations had the key (including the issuer's).
func (m *prMachine) removeKeyed(k uint64, all bool) int {
	found := 0
	kept := m.st.Registrations[:0:0]
	for _, r := range m.st.Registrations {
		match := all || r.Key == k
		if match {
			found++
		}
		if match && !r.Port.Covers(m.n) {
			m.ua(r.Port, ascqRegistrationsPreempted)
			m.preempted = append(m.preempted, r.Port)
			continue
		}
		kept = append(kept, r)
	}
	m.st.Registrations = kept
	return found
}

// preempt handles PREEMPT and PREEMPT AND ABORT (SPC-4 5.13.11.4).
func (m *prMachine) preempt() error {
	i, err := m.checkKey()
	if err != nil {
		return err
	}
	me := m.st.Registrations[i].Port
	sak := m.p.SAKey
	if !m.st.Reserved || (prAllRegistrants(m.st.Type) && sak != 0) {
		// SPC-4 5.13.11.4.3 (no reservation, or all registrants with a
		// non-zero key): remove the registrations with SERVICE ACTION
		// RESERVATION KEY. "If the SERVICE ACTION RESERVATION KEY field is
		// zero, the device server shall terminate the command with ...
		// INVALID FIELD IN PARAMETER LIST" (no reservation).
		if sak == 0 {
			return invalidParam(8, -1)
		}
		// "If no registrations ... match ... RESERVATION CONFLICT".
		if !slices.ContainsFunc(m.st.Registrations, func(r PRRegistration) bool { return r.Key == sak }) {
			return errReservationConflict
		}
		wasAR := m.st.Reserved
		m.removeKeyed(sak, false)
		if wasAR && len(m.st.Registrations) == 0 {
			m.clearReservation()
		}
		m.st.Generation++
		m.changed = true
		return nil
	}
	if err := m.checkTypeScope(); err != nil {
		return err
	}
	if prAllRegistrants(m.st.Type) {
		// SPC-4 5.13.11.4.4 (all registrants, key zero): remove every other
		// registration, release, and create the new reservation for the
		// issuer.
		m.removeKeyed(0, true)
		m.establishPreempted(me)
		return nil
	}
	hk, _ := m.st.holderKey()
	if sak != hk {
		// SPC-4 5.13.11.4.3: a key that is not the holder's only preempts
		// registrations; zero is INVALID FIELD IN PARAMETER LIST.
		if sak == 0 {
			return invalidParam(8, -1)
		}
		if !slices.ContainsFunc(m.st.Registrations, func(r PRRegistration) bool { return r.Key == sak }) {
			return errReservationConflict
		}
		m.removeKeyed(sak, false)
		m.st.Generation++
		m.changed = true
		return nil
	}
	// SPC-4 5.13.11.4.3 b): the key is the holder's: remove the
	// registrations with it (not the issuer's), release the reservation and
	// establish the new one for the issuer. If the type or scope changed,
	// RESERVATIONS RELEASED for the other nexuses still registered.
	m.removeKeyed(sak, false)
	m.establishPreempted(me)
	return nil
}

func (m *prMachine) establishPreempted(me PRPort) {
	changedTS := m.st.Type != m.req.CDB.Type || m.st.Scope != m.req.CDB.Scope
	m.st.Reserved = true
	m.st.Type = m.req.CDB.Type
	m.st.Scope = m.req.CDB.Scope
	m.st.Holder = me
	if changedTS {
		for _, r := range m.st.Registrations {
			if r.Port != me {
				m.ua(r.Port, ascqReservationsReleased)
			}
		}
	}
	m.st.Generation++
	m.changed = true
}

// registerAndMove handles REGISTER AND MOVE (SPC-4 5.13.8).
func (m *prMachine) registerAndMove() error {
	i, err := m.checkKey()
	if err != nil {
		return err
	}
	// SPC-4 5.13.8: "If ... the I_T nexus ... is not the reservation holder
	// ... or the reservation is an all registrants type ... RESERVATION
	// CONFLICT". No reservation at all is the same case.
	if !m.st.Reserved || prAllRegistrants(m.st.Type) || !m.st.IsHolder(m.n) {
		return errReservationConflict
	}
	// SPC-4 5.13.8: "If the SERVICE ACTION RESERVATION KEY field is zero,
	// ... INVALID FIELD IN PARAMETER LIST".
	if m.p.SAKey == 0 {
		return invalidParam(8, -1)
	}
	if len(m.p.TransportIDs) != 1 {
		return invalidParam(24, -1)
	}
	tid := m.p.TransportIDs[0]
	tp := ""
	if m.p.RelativeTargetPort == m.n.RelativeTargetPort {
		tp = m.n.TargetPort
	} else if m.req.TargetPort != nil {
		tp, _ = m.req.TargetPort(m.p.RelativeTargetPort)
	}
	// SPC-4 5.13.8: an unknown relative target port is INVALID FIELD IN
	// PARAMETER LIST.
	if tp == "" {
		return invalidParam(18, -1)
	}
	dest := PRPort{Initiator: tid.Name, ISID: tid.ISID, TargetPort: tp}
	// SPC-4 5.13.8: "If the TransportID ... specifies the I_T nexus through
	// which the command was received, ... INVALID FIELD IN PARAMETER LIST".
	if dest.overlaps(PRPortOf(m.n)) {
		return invalidParam(tid.Offset, -1)
	}
	typ, scope := m.st.Type, m.st.Scope
	j := -1
	for k, r := range m.st.Registrations {
		if r.Port.overlaps(dest) {
			j = k
			break
		}
	}
	if j < 0 {
		if len(m.st.Registrations) >= m.maxRegs() {
			return newCC(SenseIllegalRequest, 0x55, 0x04)
		}
		m.st.Registrations = append(m.st.Registrations, PRRegistration{Key: m.p.SAKey, Port: dest, RelativeTargetPort: m.p.RelativeTargetPort})
		j = len(m.st.Registrations) - 1
	} else {
		m.st.Registrations[j].Key = m.p.SAKey
	}
	m.st.Holder = m.st.Registrations[j].Port
	m.st.Type, m.st.Scope = typ, scope
	if m.p.Unreg {
		// SPC-4 5.13.8: UNREG=1 unregisters the issuing nexus; the
		// reservation has already moved, so it is not released.
		m.st.Registrations = slices.Delete(m.st.Registrations, i, i+1)
	}
	m.setAPTPL()
	m.st.Generation++
	m.changed = true
	return nil
}
