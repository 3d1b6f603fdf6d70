package scsi

import "github.com/rbdgw/rbdgw/alua"

// The LU side of asymmetric logical unit access (SPC-4 5.16): which
// commands each access state admits, the ownership gate, the unit
// attention after a state change, and what INQUIRY says about it. The
// port groups themselves (and who decides their states) live in alua/.

// aluaAnyState: commands every access state serves (SPC-4 5.16.2.4.5 and
// 5.16.2.6: INQUIRY, REPORT LUNS, REPORT TARGET PORT GROUPS, REQUEST
// SENSE), so an initiator can always find a better path.
const aluaAnyState = opALUAStandby | opALUAUnavailable | opALUATransitioning

// initALUA subscribes to state changes of the LU's port groups.
func (lu *LogicalUnit) initALUA() {
	if n, ok := lu.cfg.ALUA.(alua.Notifier); ok {
		lu.aluaCancel = n.Subscribe(lu.aluaChanged)
	}
}

func (lu *LogicalUnit) closeALUA() {
	if lu.aluaCancel != nil {
		lu.aluaCancel()
	}
}

// aluaChanged raises ASYMMETRIC ACCESS STATE CHANGED (2A/06). SPC-4
// 5.16.2.5: after an implicit transition on every I_T nexus; after SET
// TARGET PORT GROUPS on every I_T nexus "other than the I_T nexus on which
// the SET TARGET PORT GROUPS command was received".
func (lu *LogicalUnit) aluaChanged(c alua.Change) {
	var except *Nexus
	if c.Status == alua.StatusExplicit {
		except, _ = c.Origin.(*Nexus)
	}
	lu.raiseUA(except, 0x2A, 0x06)
}

// explicitALUA reports whether the LU accepts SET TARGET PORT GROUPS.
func (lu *LogicalUnit) explicitALUA() bool {
	x, ok := lu.cfg.ALUA.(alua.Explicit)
	return ok && x.ExplicitEnabled()
}

// tpgsBits is the TPGS field of standard INQUIRY data, in place (SPC-4
// 6.6.2 table 146): 01b implicit ALUA only, 11b implicit and explicit.
// Implicit is always claimed: gateways move ownership by themselves.
func (lu *LogicalUnit) tpgsBits() byte {
	if lu.explicitALUA() {
		return 0x30
	}
	return 0x10
}

// offers reports whether the LU offers command e: explicit-only commands
// exist only with explicit ALUA (REPORT SUPPORTED OPERATION CODES lists
// what is offered).
func (lu *LogicalUnit) offers(e *opEntry) bool {
	return (e.Flags&opExplicitALUA == 0 || lu.explicitALUA()) &&
		(e.Flags&opAtomicWrite == 0 || lu.maxAtomicBlocks() > 0)
}

// lookup is the table lookup narrowed to what the LU offers.
func (lu *LogicalUnit) lookup(cdb []byte) (*opEntry, error) {
	e, err := lu.table.lookup(cdb)
	if e != nil && !lu.offers(e) {
		if !e.HasSA {
			// SPC-4 4.2.5.1: an operation code the LU does not support.
			return nil, errInvalidOpcode()
		}
		// SPC-4 4.2.5.1: as an unsupported service action.
		return nil, invalidCDB(1, 4)
	}
	return e, err
}

// ownerGated reports whether a command is executed only by the LU's owner
// gateway: media access except what any gateway can answer, and the
// commands marked opOwner.
func ownerGated(f opFlags) bool {
	return f&opMedia != 0 && f&opAnyGateway == 0 || f&opOwner != 0
}

// mediaAccess tells reads (allowed under Write Exclusive reservations,
// opResvRead, and writing nothing) from everything else an owner-gated
// command may do.
func mediaAccess(f opFlags) alua.Access {
	if f&opResvRead != 0 && f&(opWrite|opOwner) == 0 {
		return alua.AccessRead
	}
	return alua.AccessWrite
}

// aluaCheck enforces the access state of the port the command came in on
// (SPC-4 5.16.2.4); for owner-gated commands on an active port the port
// groups may narrow it (alua.Admitter: at a non-owner the command is
// demand for the LU and answered Transitioning).
func (lu *LogicalUnit) aluaCheck(r *request) error {
	pg := lu.cfg.ALUA
	if pg == nil || r.nexus == nil {
		return nil
	}
	st := lu.admission(r)
	if st == alua.Transitioning && lu.cfg.Forwarder != nil && !IsForwarded(r.ctx) && ownerGated(r.entry.Flags) {
		return lu.forward(r)
	}
	return aluaRefusal(st, r.entry.Flags)
}

// admission is the state the command is processed under: its port's
// group state, narrowed for owner-gated commands on an active port by the
// port groups' admission (alua.Admitter: at a non-owner the command is
// demand for the LU and answered Transitioning).
func (lu *LogicalUnit) admission(r *request) alua.AccessState {
	pg := lu.cfg.ALUA
	port := r.nexus.RelativeTargetPort
	st := pg.StateOf(port)
	if st.Active() && ownerGated(r.entry.Flags) {
		switch a := pg.(type) {
		case alua.AccessAdmitter:
			st = a.AdmitAccess(r.ctx, port, mediaAccess(r.entry.Flags))
		case alua.Admitter:
			st = a.Admit(port)
		}
	}
	return st
}

// aluaRefusal is the answer of a port in state st to a command with flags
// f, or nil when the command may run.
func aluaRefusal(st alua.AccessState, f opFlags) error {
	switch st {
	case alua.ActiveOptimized, alua.ActiveNonOptimized:
		return nil
	case alua.Transitioning:
		if f&opALUATransitioning != 0 {
			return nil
		}
		return errMoving()
	case alua.Standby:
		if f&opALUAStandby != 0 {
			return nil
		}
		// SPC-4 5.16.2.4.4: NOT READY, LOGICAL UNIT NOT ACCESSIBLE, TARGET
		// PORT IN STANDBY STATE.
		return newCC(SenseNotReady, 0x04, 0x0B)
	case alua.Offline:
		if f&opALUAUnavailable != 0 {
			return nil
		}
		// SPC-4 5.16.2.4.6: NOT READY, LOGICAL UNIT NOT READY, OFFLINE.
		return newCC(SenseNotReady, 0x04, 0x12)
	default:
		if f&opALUAUnavailable != 0 {
			return nil
		}
		// SPC-4 5.16.2.4.5: NOT READY, LOGICAL UNIT NOT ACCESSIBLE, TARGET
		// PORT IN UNAVAILABLE STATE.
		return newCC(SenseNotReady, 0x04, 0x0C)
	}
}

// targetPortGroupOf is the target port group of the port n uses: the group
// holding it when port groups are configured, else the transport's value.
func (lu *LogicalUnit) targetPortGroupOf(n *Nexus) uint16 {
	if lu.cfg.ALUA != nil {
		for _, g := range lu.cfg.ALUA.Groups() {
			if g.HasPort(n.RelativeTargetPort) {
				return g.ID
			}
		}
	}
	return n.TargetPortGroup
}

// errMoving is SPC-4 5.16.2.6's answer while the LU's access state is in
// transition: NOT READY, LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS
// STATE TRANSITION; the initiator retries.
func errMoving() error { return newCC(SenseNotReady, 0x04, 0x0A) }
