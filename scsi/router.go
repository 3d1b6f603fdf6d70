package scsi

import (
	"bytes"
	"context"
	"maps"
	"sort"
)

// ReportLUNs is REPORT LUNS (SPC-4 6.33).
type ReportLUNs struct {
	Select byte
	Alloc  uint32
}

func decodeReportLUNs(cdb []byte) (ReportLUNs, error) {
	c := ReportLUNs{Select: cdb[2], Alloc: be32(cdb[6:])}
	// SPC-4 6.33 table 147: SELECT REPORT 00h, 01h, 02h are defined here
	// (10h-12h concern administrative LUs we do not have).
	if c.Select > 2 {
		return ReportLUNs{}, invalidCDB(2, -1)
	}
	// SPC-4 6.33: "If the ALLOCATION LENGTH field is less than 16 ... the
	// device server shall terminate the command ... INVALID FIELD IN CDB".
	// (SPC-4 r37 relaxed this to "may"; libiscsi accepts either.)
	if c.Alloc < 16 {
		return ReportLUNs{}, invalidCDB(6, -1)
	}
	return c, nil
}

func execReportLUNs(r *request, c ReportLUNs) error {
	var luns []uint64
	if r.rt != nil {
		luns = r.rt.lunList()
	} else if r.cmd != nil {
		if n, ok := decodeLUN(r.cmd.LUN); ok {
			luns = []uint64{n}
		}
	}
	// SELECT REPORT 01h lists only well-known LUs; we expose none.
	if c.Select == 1 {
		luns = nil
	}
	b := make([]byte, 8, 8+8*len(luns))
	for _, l := range luns {
		b = append(b, encodeLUN(l)...)
	}
	put32(b, uint32(len(b)-8))
	r.dataIn(b, int(c.Alloc))
	return nil
}

// decodeLUN turns the 8-byte SAM LUN field into a LUN number (SAM-5 4.6):
// peripheral device addressing (00b, bus 0) or flat space addressing (01b),
// single level. Anything else names no LU of ours.
func decodeLUN(v uint64) (uint64, bool) {
	if v&0x0000FFFFFFFFFFFF != 0 {
		return 0, false
	}
	b0, b1 := byte(v>>56), byte(v>>48)
	switch b0 >> 6 {
	case 0:
		if b0&0x3F != 0 {
			return 0, false
		}
		return uint64(b1), true
	case 1:
		return uint64(b0&0x3F)<<8 | uint64(b1), true
	}
	return 0, false
}

// encodeLUN is the REPORT LUNS form of a LUN: peripheral addressing below
// 256, flat space above (SAM-5 4.6.4, 4.6.6).
func encodeLUN(n uint64) []byte {
	b := make([]byte, 8)
	if n < 256 {
		b[1] = byte(n)
	} else {
		b[0] = 0x40 | byte(n>>8)&0x3F
		b[1] = byte(n)
	}
	return b
}

// router is the Router of one initiator: its LUN map.
type router struct {
	luns  map[uint64]*LogicalUnit
	order []uint64
	table *opcodeTable
}

// NewRouter returns a Router exposing luns (LUN number to LU). The map is
// copied; build a new Router when the LUN map changes.
func NewRouter(luns map[uint64]*LogicalUnit) Router {
	rt := &router{luns: map[uint64]*LogicalUnit{}, table: coreTable()}
	for n, lu := range luns {
		if lu == nil || n >= 1<<14 {
			continue
		}
		rt.luns[n] = lu
		rt.order = append(rt.order, n)
	}
	sort.Slice(rt.order, func(i, j int) bool { return rt.order[i] < rt.order[j] })
	return rt
}

// lunList is what REPORT LUNS lists: the router's LUNs but retired ones.
func (rt *router) lunList() []uint64 {
	for i, n := range rt.order {
		if rt.luns[n].Retired() {
			live := append([]uint64(nil), rt.order[:i]...)
			for _, m := range rt.order[i+1:] {
				if !rt.luns[m].Retired() {
					live = append(live, m)
				}
			}
			return live
		}
	}
	return rt.order
}

// reach returns the LU of this map whose NAA designator is d, or nil.
// Only LUs mapped to the initiator are reachable: an LU it was not given
// must be as unknown to its copy commands as to its other commands, or a
// designator read from another tenant's VPD page 83h would open that
// tenant's data to it (the class of CVE-2020-28374 in LIO).
func (rt *router) reach(d []byte) *LogicalUnit {
	for _, lu := range rt.luns {
		if bytes.Equal(d, lu.cfg.WWN[:]) && !lu.Retired() {
			return lu
		}
	}
	return nil
}

func (rt *router) Execute(ctx context.Context, cmd *Command) Response {
	n, ok := decodeLUN(cmd.LUN)
	var lu *LogicalUnit
	if ok {
		lu = rt.luns[n]
	}
	if lu != nil && !lu.Retired() {
		return lu.execute(ctx, cmd, rt)
	}
	return rt.missing(ctx, cmd)
}

// missing answers a command addressed to a LUN that does not exist.
func (rt *router) missing(ctx context.Context, cmd *Command) Response {
	r := &request{ctx: ctx, cmd: cmd, nexus: cmd.Nexus, rt: rt}
	fail := func(err error) Response {
		if cc, ok := err.(*CheckCondition); ok {
			return Response{Status: StatusCheckCondition, Sense: cc.Sense(false)}
		}
		return Response{Status: StatusCheckCondition, Sense: errLUNotSupported().Sense(false)}
	}
	e, c, err := rt.table.decodeCDB(cmd.CDB)
	if err != nil {
		return fail(err)
	}
	switch v := c.(type) {
	case ReportLUNs:
		// SPC-4 6.33: REPORT LUNS works whatever LUN it is sent to.
		_ = e
		if err := execReportLUNs(r, v); err != nil {
			return fail(err)
		}
		return r.resp
	case Inquiry:
		// SPC-4 6.6.2: for a LUN with no logical unit the device server
		// returns PERIPHERAL QUALIFIER 011b and PERIPHERAL DEVICE TYPE 1Fh.
		var b []byte
		if v.EVPD {
			b = []byte{0x7F, v.Page, 0, 0}
		} else {
			b = make([]byte, 36)
			b[0] = 0x7F
			b[2] = 0x06
			b[3] = 0x12
			b[4] = 31
		}
		r.dataIn(b, int(v.Alloc))
		return r.resp
	case RequestSense:
		// SPC-4 6.39: REQUEST SENSE to an unsupported LUN returns sense data
		// LOGICAL UNIT NOT SUPPORTED with GOOD status.
		r.dataIn(errLUNotSupported().Sense(v.Desc), int(v.Alloc))
		return r.resp
	}
	// SPC-4 4.5.6 / SAM-5 5.9.5: any other command to an incorrect LUN is
	// ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED.
	return fail(errLUNotSupported())
}

func (rt *router) TaskManagement(n *Nexus, fn TaskFunction, lun uint64) TMFResult {
	switch fn {
	case TMFLogicalUnitReset:
		num, ok := decodeLUN(lun)
		lu := rt.luns[num]
		if !ok || lu == nil {
			return TMFLUNDoesNotExist
		}
		// SAM-5 6.6: the reset aborts every task of the LU (the transport
		// aborted n's own) and raises BUS DEVICE RESET FUNCTION OCCURRED
		// on every nexus.
		lu.abortOtherNexuses(n)
		lu.reset(0x03)
		lu.announceReset(0x03)
		return TMFComplete
	case TMFTargetWarmReset, TMFTargetColdReset:
		// SAM-5 6.7 (I_T NEXUS RESET / target reset): every LU is reset and
		// reports POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
		for _, lu := range rt.luns {
			lu.abortOtherNexuses(n)
			lu.reset(0x00)
			lu.announceReset(0x00)
		}
		return TMFComplete
	case TMFAbortTask, TMFAbortTaskSet, TMFClearTaskSet:
		// The transport aborts its own tasks; with TST=001b each nexus has its
		// own task set, so nothing else is affected.
		num, ok := decodeLUN(lun)
		if !ok || rt.luns[num] == nil {
			return TMFLUNDoesNotExist
		}
		return TMFComplete
	}
	return TMFNotSupported
}

func (rt *router) NexusLost(n *Nexus) {
	for _, lu := range rt.luns {
		lu.nexusLost(n)
	}
}

// SwitchLUNs is called by a transport when a logged-in nexus n moves from
// router old to router new (the configuration changed its LUN map). When
// the maps differ, every LU of new reports REPORTED LUNS DATA HAS CHANGED
// (3Fh/0Eh, SPC-4 7.6.3 and SAM-5 5.14) to n, so the initiator sends
// REPORT LUNS again and finds LUNs added or removed without logging in
// again. LUs that n no longer reaches forget it.
func SwitchLUNs(old, new Router, n *Nexus) {
	o, ok1 := old.(*router)
	w, ok2 := new.(*router)
	if !ok1 || !ok2 || maps.Equal(o.luns, w.luns) {
		return
	}
	reached := make(map[*LogicalUnit]bool, len(w.luns))
	for _, lu := range w.luns {
		reached[lu] = true
	}
	for _, lu := range o.luns {
		if !reached[lu] {
			lu.nexusLost(n)
		}
	}
	for _, lu := range w.luns {
		lu.raiseUAFor(n, 0x3F, 0x0E)
	}
}
