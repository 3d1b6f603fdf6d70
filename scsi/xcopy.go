package scsi

import (
	"bytes"
	"sync"
)

// EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18 / SPC-3
// 6.3, 6.17): block-to-block copies between LUs named by NAA designators,
// among the LUs mapped to the issuing initiator.

// ExtendedCopy is EXTENDED COPY(LID1): 83h service action 00h.
type ExtendedCopy struct{ ParamLen uint32 }

// ReceiveCopyResults is RECEIVE COPY RESULTS (84h) with service action 00h
// (COPY STATUS) or 03h (OPERATING PARAMETERS).
type ReceiveCopyResults struct {
	ServiceAction byte
	ListID        byte
	AllocLen      uint32
}

// XCopyParams is the decoded EXTENDED COPY(LID1) parameter list.
type XCopyParams struct {
	ListID      byte
	ListIDUsage byte
	Targets     [][]byte // NAA designators of the CSCD descriptors
	Segments    []XCopySegment
}

// XCopySegment is a block to block segment descriptor (type 02h, SPC-4
// 6.4.5.5).
type XCopySegment struct {
	Src, Dst       uint16 // CSCD descriptor indexes
	Blocks         uint16
	SrcLBA, DstLBA uint64
	// Offset in the parameter list, for field pointers.
	Offset int
}

const (
	xcopyHeaderLen       = 16
	xcopyCSCDLen         = 32
	xcopyB2BLen          = 28
	xcopyMaxTargets      = 8
	xcopyMaxSegments     = 64
	xcopyMaxSegmentBytes = 64 << 20 // MAXIMUM SEGMENT LENGTH
	xcopyChunk           = 1 << 20
	xcopyMaxHeldResults  = 32
	xcopyMaxDescListLen  = xcopyMaxTargets*xcopyCSCDLen + xcopyMaxSegments*xcopyB2BLen
	rcrCopyStatus        = 0x00
	rcrOperatingParams   = 0x03
	cscdIdentification   = 0xE4
	segBlockToBlock      = 0x02
	listIDUsageHold      = 0x0
	listIDUsageDiscard   = 0x2
	listIDUsageNoListID  = 0x3
)

func registerXCopy(t *opcodeTable) {
	t.add(define("EXTENDED COPY(LID1)", usage(0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07),
		opMedia|opWrite, decodeExtendedCopy, execExtendedCopy).withSA(0))
	for _, sa := range []byte{rcrCopyStatus, rcrOperatingParams} {
		t.add(define("RECEIVE COPY RESULTS", usage(0x84, sa, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07),
			opResvRead, decodeReceiveCopyResults, execReceiveCopyResults).withSA(uint16(sa)))
	}
}

func decodeExtendedCopy(cdb []byte) (ExtendedCopy, error) {
	return ExtendedCopy{ParamLen: be32(cdb[10:14])}, nil
}

func decodeReceiveCopyResults(cdb []byte) (ReceiveCopyResults, error) {
	return ReceiveCopyResults{ServiceAction: cdb[1] & 0x1F, ListID: cdb[2], AllocLen: be32(cdb[10:14])}, nil
}

// decodeXCopyParams parses an EXTENDED COPY(LID1) parameter list (SPC-4
// 6.4.3). It is pure.
func decodeXCopyParams(b []byte) (*XCopyParams, error) {
	if len(b) < xcopyHeaderLen {
		return nil, errParamListLength()
	}
	p := &XCopyParams{ListID: b[0], ListIDUsage: (b[1] >> 3) & 0x3}
	// SPC-4 6.4.3.2 table 110: LIST ID USAGE 01b is reserved.
	if p.ListIDUsage == 0x1 {
		return nil, invalidParam(1, 4)
	}
	tdl := int(be16(b[2:4]))
	sdl := int(be32(b[8:12]))
	inl := int(be32(b[12:16]))
	// SPC-4 6.4.3.1: "If the descriptor list length exceeds the MAXIMUM
	// DESCRIPTOR LIST LENGTH ... PARAMETER LIST LENGTH ERROR".
	if tdl+sdl > xcopyMaxDescListLen {
		return nil, errParamListLength()
	}
	// SPC-4 6.4.3.1: "If the number of CSCD descriptors exceeds the
	// allowed number, ... TOO MANY TARGET DESCRIPTORS" (26/06); likewise
	// TOO MANY SEGMENT DESCRIPTORS (26/08).
	if tdl/xcopyCSCDLen > xcopyMaxTargets {
		return nil, newCC(SenseIllegalRequest, 0x26, 0x06)
	}
	if sdl > xcopyMaxSegments*xcopyB2BLen {
		return nil, newCC(SenseIllegalRequest, 0x26, 0x08)
	}
	// SPC-4 6.4.3.1: "If the parameter list length causes truncation of
	// the parameter list, ... PARAMETER LIST LENGTH ERROR".
	if xcopyHeaderLen+tdl+sdl+inl > len(b) {
		return nil, errParamListLength()
	}
	// SPC-4 6.4.3.1: the CSCD DESCRIPTOR LIST LENGTH is a multiple of the
	// 32-byte descriptor size.
	if tdl%xcopyCSCDLen != 0 {
		return nil, invalidParam(2, -1)
	}
	// Inline data only serves segment types we do not implement.
	if inl != 0 {
		return nil, invalidParam(12, -1)
	}
	for off := xcopyHeaderLen; off < xcopyHeaderLen+tdl; off += xcopyCSCDLen {
		d := b[off : off+xcopyCSCDLen]
		// SPC-4 6.4.3.1: "If the device server does not support a CSCD
		// descriptor type code, ... UNSUPPORTED TARGET DESCRIPTOR TYPE
		// CODE" (26/07).
		if d[0] != cscdIdentification {
			return nil, newCC(SenseIllegalRequest, 0x26, 0x07)
		}
		// SPC-4 6.4.5.2: only block devices (PERIPHERAL DEVICE TYPE 00h).
		if d[1]&0x1F != 0 {
			return nil, newCC(SenseIllegalRequest, 0x26, 0x07)
		}
		// Designation descriptor: only NAA (type 3) LU (association 0)
		// designators name our LUs.
		dlen := int(d[7])
		if d[5]&0x0F != 0x3 || d[5]&0x30 != 0 || dlen == 0 || dlen > 20 {
			return nil, invalidParam(off+4, -1)
		}
		p.Targets = append(p.Targets, bytes.Clone(d[8:8+dlen]))
	}
	segs := b[xcopyHeaderLen+tdl : xcopyHeaderLen+tdl+sdl]
	for off := 0; off < len(segs); {
		if len(segs)-off < 4 {
			return nil, errParamListLength()
		}
		po := xcopyHeaderLen + tdl + off
		// SPC-4 6.4.3.1: "UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE" (26/09).
		if segs[off] != segBlockToBlock {
			return nil, newCC(SenseIllegalRequest, 0x26, 0x09)
		}
		// SPC-4 6.4.5.5: DESCRIPTOR LENGTH is 0018h for block to block.
		if be16(segs[off+2:off+4]) != xcopyB2BLen-4 {
			return nil, invalidParam(po+2, -1)
		}
		if len(segs)-off < xcopyB2BLen {
			return nil, errParamListLength()
		}
		s := segs[off : off+xcopyB2BLen]
		// DC=1 counts destination blocks; CAT asks for residue handling.
		// Neither changes a same-block-size copy, but DC with mixed block
		// sizes would; we only copy between equal block sizes.
		seg := XCopySegment{Src: be16(s[4:6]), Dst: be16(s[6:8]), Blocks: be16(s[10:12]),
			SrcLBA: be64(s[12:20]), DstLBA: be64(s[20:28]), Offset: po}
		// SPC-4 6.4.5.1: a CSCD DESCRIPTOR ID that names no descriptor of
		// the list names a copy target the copy manager cannot reach:
		// COPY ABORTED, COPY TARGET DEVICE NOT REACHABLE (0D/02), as
		// libiscsi's ExtendedCopy.ValidateSegDescr expects.
		if int(seg.Src) >= len(p.Targets) || int(seg.Dst) >= len(p.Targets) {
			return nil, newCC(SenseCopyAborted, 0x0D, 0x02)
		}
		p.Segments = append(p.Segments, seg)
		off += xcopyB2BLen
	}
	return p, nil
}

// xcopyResults holds the outcome of EXTENDED COPY commands whose LIST ID
// USAGE asked for it (SPC-4 6.18.3).
type xcopyResults struct {
	mu   sync.Mutex
	held []xcopyResult
}

type xcopyResult struct {
	nexus    string
	listID   byte
	status   byte // COPY MANAGER STATUS: 1 completed OK, 2 with errors
	segments uint16
	bytes    uint64
}

func (x *xcopyResults) record(res xcopyResult) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range x.held {
		if x.held[i].nexus == res.nexus && x.held[i].listID == res.listID {
			x.held = append(x.held[:i], x.held[i+1:]...)
			break
		}
	}
	if len(x.held) >= xcopyMaxHeldResults {
		x.held = x.held[1:]
	}
	x.held = append(x.held, res)
}

// resolveCSCD finds the LU of an NAA designator among those the issuing
// initiator reaches: this LU, or another LU of its LUN map.
func (r *request) resolveCSCD(d []byte) *LogicalUnit {
	if bytes.Equal(d, r.lu.cfg.WWN[:]) {
		return r.lu
	}
	if r.rt == nil {
		return nil
	}
	return r.rt.reach(d)
}

func execExtendedCopy(r *request, c ExtendedCopy) error {
	lu := r.lu
	// SPC-4 6.4.1: "A PARAMETER LIST LENGTH field set to zero specifies
	// that no data shall be transferred. This shall not be considered an
	// error."
	if c.ParamLen == 0 {
		return nil
	}
	data := r.cmd.DataOut
	if uint32(len(data)) > c.ParamLen {
		data = data[:c.ParamLen]
	}
	p, err := decodeXCopyParams(data)
	if err != nil {
		return err
	}
	luns := make([]*LogicalUnit, len(p.Targets))
	for i, d := range p.Targets {
		// SPC-4 6.4.3.1: a CSCD the copy manager cannot reach: COPY
		// ABORTED, UNREACHABLE COPY TARGET (08/04). An LU not mapped to
		// the initiator is unreachable, exactly as one that does not exist.
		if luns[i] = r.resolveCSCD(d); luns[i] == nil {
			return newCC(SenseCopyAborted, 0x08, 0x04)
		}
	}
	// The receiving LU passed the reservation check for its own command;
	// the other copy targets are checked as the reads and writes the copy
	// manager performs on the initiator's behalf (SPC-4 5.13.1).
	for _, s := range p.Segments {
		if luns[s.Src] != lu && luns[s.Src].accessConflict(r.nexus, false) {
			return errReservationConflict
		}
		if luns[s.Dst] != lu && luns[s.Dst].accessConflict(r.nexus, true) {
			return errReservationConflict
		}
	}
	res := xcopyResult{nexus: nexusKey(r.nexus), listID: p.ListID, status: 1}
	var cerr error
	for _, s := range p.Segments {
		if cerr = copySegment(r, luns[s.Src], luns[s.Dst], s); cerr != nil {
			res.status = 2
			break
		}
		res.segments++
		res.bytes += uint64(s.Blocks) * uint64(luns[s.Src].bs)
	}
	if p.ListIDUsage == listIDUsageHold {
		lu.extras.xcopy.record(res)
	}
	return cerr
}

// copySegment copies one block to block segment in bounded chunks.
func copySegment(r *request, src, dst *LogicalUnit, s XCopySegment) error {
	// SPC-4 6.4.5.5: the copy works in whole blocks of both devices; we
	// only copy between equal block sizes.
	if src.bs != dst.bs {
		return newCC(SenseCopyAborted, 0x26, 0x00)
	}
	if s.Blocks == 0 {
		return nil
	}
	// SPC-4 6.4.3.1 / SBC-3 4.5: an LBA beyond a CSCD's capacity aborts
	// the copy (COPY ABORTED; initiators such as libiscsi accept only
	// NO ADDITIONAL SENSE, 08/04 or 0D/02 with it, so no 21/00 here).
	for _, x := range []struct {
		lu  *LogicalUnit
		lba uint64
	}{{src, s.SrcLBA}, {dst, s.DstLBA}} {
		c := x.lu.capacity()
		if x.lba > c || uint64(s.Blocks) > c-x.lba {
			return newCC(SenseCopyAborted, 0x00, 0x00)
		}
	}
	n := int64(s.Blocks) * src.bs
	so, do := int64(s.SrcLBA)*src.bs, int64(s.DstLBA)*dst.bs
	chunk := min(int64(xcopyChunk), n)
	buf := make([]byte, chunk)
	durable := !dst.writeCacheEnabled()
	for done := int64(0); done < n; {
		k := min(chunk, n-done)
		ul := src.lockRange(so+done, k, false)
		err := src.be.ReadAt(r.ctx, buf[:k], so+done)
		ul()
		if err != nil {
			// SPC-4 6.4.3.1: a failed read of the source: COPY ABORTED.
			return newCC(SenseCopyAborted, 0x11, 0x00)
		}
		ul = dst.lockRange(do+done, k, false)
		err = dst.be.WriteAt(r.ctx, buf[:k], do+done, durable)
		ul()
		if err != nil {
			return newCC(SenseCopyAborted, 0x0C, 0x00)
		}
		done += k
	}
	return nil
}

func execReceiveCopyResults(r *request, c ReceiveCopyResults) error {
	if c.ServiceAction == rcrOperatingParams {
		b := make([]byte, 46)
		put32(b[0:], uint32(len(b)-4)) // AVAILABLE DATA
		b[4] = 0x01                    // SNLID: list IDs of 11b usage need not be unique
		put16(b[8:], xcopyMaxTargets)
		put16(b[10:], xcopyMaxSegments)
		put32(b[12:], xcopyMaxDescListLen)
		put32(b[16:], xcopyMaxSegmentBytes)
		put32(b[20:], 0) // MAXIMUM INLINE DATA LENGTH
		put32(b[24:], 0) // HELD DATA LIMIT
		put32(b[28:], 0) // MAXIMUM STREAM DEVICE TRANSFER SIZE
		put16(b[34:], 1) // TOTAL CONCURRENT COPIES
		b[36] = 1        // MAXIMUM CONCURRENT COPIES
		b[37] = 9        // DATA SEGMENT GRANULARITY: 2^9 bytes
		b[43] = 2        // IMPLEMENTED DESCRIPTOR LIST LENGTH
		b[44], b[45] = segBlockToBlock, cscdIdentification
		r.dataIn(b, int(c.AllocLen))
		return nil
	}
	x := &r.lu.extras.xcopy
	x.mu.Lock()
	var found *xcopyResult
	k := nexusKey(r.nexus)
	for i := range x.held {
		if x.held[i].nexus == k && x.held[i].listID == c.ListID {
			v := x.held[i]
			found = &v
		}
	}
	x.mu.Unlock()
	// SPC-4 6.18.2: "If ... no EXTENDED COPY command with the specified
	// list identifier ... the device server shall terminate the command
	// with ... INVALID FIELD IN CDB".
	if found == nil {
		return invalidCDB(2, -1)
	}
	b := make([]byte, 12)
	put32(b[0:], 8)
	b[4] = found.status
	put16(b[5:], found.segments)
	b[7] = 0x00 // TRANSFER COUNT UNITS: bytes
	if found.bytes > 0xFFFFFFFF {
		b[7] = 0xF2 // mebibytes
		put32(b[8:], uint32(found.bytes>>20))
	} else {
		put32(b[8:], uint32(found.bytes))
	}
	r.dataIn(b, int(c.AllocLen))
	return nil
}
