package scsi

import (
	"time"

	"github.com/rbdgw/rbdgw/alua"
)

// REPORT TARGET PORT GROUPS and SET TARGET PORT GROUPS (SPC-4 6.37, 6.45).

func registerALUA(t *opcodeTable) {
	t.add(define("REPORT TARGET PORT GROUPS", usage(0xA3, 0xEA, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07),
		opResvAllowed|aluaAnyState, decodeReportTPG, execReportTPG).withSA(0x0A))
	// SPC-4 5.16.2.4.4/5: served in Standby and Unavailable, not while
	// Transitioning (5.16.2.6).
	t.add(define("SET TARGET PORT GROUPS", usage(0xA4, 0x0A, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07),
		opALUAStandby|opALUAUnavailable|opExplicitALUA, decodeSetTPG, execSetTPG).withSA(0x0A))
}

// ReportTPG is REPORT TARGET PORT GROUPS, MAINTENANCE IN 0Ah (SPC-4 6.37).
type ReportTPG struct {
	Extended bool // PARAMETER DATA FORMAT 001b: extended header
	Alloc    uint32
}

func decodeReportTPG(cdb []byte) (ReportTPG, error) {
	// SPC-4 6.37 table 165: formats 000b and 001b are defined, the rest
	// reserved: INVALID FIELD IN CDB.
	f := cdb[1] >> 5
	if f > 1 {
		return ReportTPG{}, invalidCDB(1, 7)
	}
	return ReportTPG{Extended: f == 1, Alloc: be32(cdb[6:])}, nil
}

func execReportTPG(r *request, c ReportTPG) error {
	groups := r.lu.portGroups(r.nexus)
	b := make([]byte, 4, 64)
	if c.Extended {
		// SPC-4 6.37 table 166: FORMAT TYPE 001b, then IMPLICIT TRANSITION
		// TIME in seconds.
		b = append(b, 0x10, r.lu.transitionSeconds(), 0, 0)
	}
	for _, g := range groups {
		// SPC-4 6.37 table 167: PREF, ASYMMETRIC ACCESS STATE, the
		// supported states (T_SUP O_SUP LBD_SUP U_SUP S_SUP AN_SUP AO_SUP),
		// TARGET PORT GROUP, STATUS CODE, TARGET PORT COUNT, then one
		// relative target port identifier per port.
		d := make([]byte, 8, 8+4*len(g.RelativePorts))
		d[0] = byte(g.State) & 0x0F
		if g.Preferred {
			d[0] |= 0x80
		}
		d[1] = byte(g.SupportedOrDefault())
		put16(d[2:], g.ID)
		d[5] = byte(g.Status)
		d[7] = byte(len(g.RelativePorts))
		for _, p := range g.RelativePorts {
			d = append(d, 0, 0, byte(p>>8), byte(p))
		}
		b = append(b, d...)
	}
	// RETURN DATA LENGTH: everything after the field itself, extended
	// header included (what Linux's scsi_dh_alua and sg_rtpg expect).
	put32(b, uint32(len(b)-4))
	r.dataIn(b, int(c.Alloc))
	return nil
}

// transitionSeconds is the IMPLICIT TRANSITION TIME: the port groups' own,
// or alua.DefaultTransitionTime, in whole seconds within the one-byte
// field.
func (lu *LogicalUnit) transitionSeconds() byte {
	d := alua.DefaultTransitionTime
	if tt, ok := lu.cfg.ALUA.(alua.TransitionTimer); ok {
		d = tt.TransitionTime()
	}
	s := (d + time.Second - 1) / time.Second
	return byte(min(max(s, 1), 255))
}

// portGroups returns the LU's port groups, or a single Active/Optimized
// group made of the port the command came in on when no ALUA is configured.
func (lu *LogicalUnit) portGroups(n *Nexus) []alua.Group {
	if lu.cfg.ALUA != nil {
		return lu.cfg.ALUA.Groups()
	}
	g := alua.Group{State: alua.ActiveOptimized, Preferred: true}
	if n != nil {
		g.ID = n.TargetPortGroup
		g.RelativePorts = []uint16{n.RelativeTargetPort}
	}
	return []alua.Group{g}
}

// SetTPG is SET TARGET PORT GROUPS, MAINTENANCE OUT 0Ah (SPC-4 6.45).
type SetTPG struct{ ParamLen uint32 }

func decodeSetTPG(cdb []byte) (SetTPG, error) { return SetTPG{ParamLen: be32(cdb[6:])}, nil }

// stpgHeader and stpgDescriptor are the sizes of the parameter list header
// (reserved) and of one set target port group descriptor (SPC-4 6.45
// tables 230, 231).
const (
	stpgHeader     = 4
	stpgDescriptor = 4
	// maxSTPGDescriptors bounds the list: a group id is 16 bits, and a
	// request naming one group twice is refused anyway.
	maxSTPGDescriptors = 1 << 16
)

func execSetTPG(r *request, c SetTPG) error {
	ex, ok := r.lu.cfg.ALUA.(alua.Explicit)
	if !ok || !ex.ExplicitEnabled() {
		return invalidCDB(1, 4) // not offered; lookup already refuses it
	}
	// SPC-4 6.45: "A PARAMETER LIST LENGTH field set to zero specifies that
	// no data shall be transferred. This shall not be considered an error."
	if c.ParamLen == 0 {
		return nil
	}
	// A list that ends inside the header or a descriptor, or that the
	// initiator did not send in full, is PARAMETER LIST LENGTH ERROR.
	n := int64(c.ParamLen)
	if n < stpgHeader || (n-stpgHeader)%stpgDescriptor != 0 ||
		n > stpgHeader+stpgDescriptor*maxSTPGDescriptors || int64(len(r.cmd.DataOut)) < n {
		return errParamListLength()
	}
	groups := r.lu.portGroups(r.nexus)
	seen := map[uint16]bool{}
	var want []alua.StateRequest
	for off := stpgHeader; off < int(n); off += stpgDescriptor {
		d := r.cmd.DataOut[off : off+stpgDescriptor]
		st := alua.AccessState(d[0] & 0x0F)
		id := be16(d[2:])
		g, found := findGroup(groups, id)
		// SPC-4 6.45: a descriptor naming a target port group the logical
		// unit does not have, or one already named, is INVALID FIELD IN
		// PARAMETER LIST.
		if !found || seen[id] {
			return invalidParam(off+2, -1)
		}
		// SPC-4 6.45: "If the ASYMMETRIC ACCESS STATE field ... specifies
		// a state that is not supported (e.g., the transitioning state) ...
		// INVALID FIELD IN PARAMETER LIST" (the field is bits 3-0).
		if st == alua.Transitioning || !g.SupportedOrDefault().Has(st) {
			return invalidParam(off, 3)
		}
		seen[id] = true
		want = append(want, alua.StateRequest{Group: id, State: st})
	}
	var port uint16
	if r.nexus != nil {
		port = r.nexus.RelativeTargetPort
	}
	// The gateway's failover logic decides; the nexus travels as Origin so
	// the unit attention skips it (aluaChanged).
	if err := ex.RequestStates(alua.ExplicitRequest{FromPort: port, Want: want, Origin: r.nexus}); err != nil {
		// SPC-4 6.45: a transition that fails ends in HARDWARE ERROR, SET
		// TARGET PORT GROUPS COMMAND FAILED.
		return newCC(SenseHardwareError, 0x67, 0x0A)
	}
	return nil
}

func findGroup(groups []alua.Group, id uint16) (alua.Group, bool) {
	for _, g := range groups {
		if g.ID == id {
			return g, true
		}
	}
	return alua.Group{}, false
}
