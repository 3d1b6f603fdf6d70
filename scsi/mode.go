package scsi

// Mode page codes (SPC-4 7.5, SBC-3 6.4).
const (
	pageRWErrorRecovery = 0x01
	pageCaching         = 0x08
	pageControl         = 0x0A
	pageInfoExceptions  = 0x1C
	pageAll             = 0x3F
)

// Page control values (SPC-4 6.11 table 99).
const (
	pcCurrent    = 0
	pcChangeable = 1
	pcDefault    = 2
	pcSaved      = 3
)

// modePageOrder is the order of pages in a MODE SENSE of all pages
// (SPC-4 6.11: "in ascending page code order").
var modePageOrder = []byte{pageRWErrorRecovery, pageCaching, pageControl, pageInfoExceptions}

// modePage renders one mode page for page control pc from v; for
// pcChangeable it returns the mask of changeable bits.
func modePage(code byte, pc byte, v modeValues) []byte {
	var b []byte
	switch code {
	case pageRWErrorRecovery:
		// SBC-3 6.4.7: nothing changeable; no retries are ours to count.
		b = make([]byte, 12)
		b[0], b[1] = pageRWErrorRecovery, 0x0A
	case pageCaching:
		// SBC-3 6.4.5: WCE is changeable; RCD=0 (reads may use the cache).
		b = make([]byte, 20)
		b[0], b[1] = pageCaching, 0x12
		if pc == pcChangeable {
			b[2] = 0x04
		} else if v.wce {
			b[2] = 0x04
		}
	case pageControl:
		// SPC-4 7.5.8: TST=001b (the transport aborts per session), QERR=00b, D_SENSE
		// and SWP changeable, TAS=1 (aborted tasks of other nexuses are reported as
		// TASK ABORTED), BUSY TIMEOUT PERIOD unlimited.
		b = make([]byte, 12)
		b[0], b[1] = pageControl, 0x0A
		if pc == pcChangeable {
			b[2] = 0x04
			b[4] = 0x08
			break
		}
		if v.dsense {
			b[2] |= 0x04
		}
		if v.swp {
			b[4] |= 0x08
		}
		b[2] |= 0x20 // TST=001b: a task set per I_T nexus
		b[3] = 0x10  // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
		b[5] = 0x40  // TAS
		put16(b[8:], 0xFFFF)
	case pageInfoExceptions:
		// SPC-4 7.5.11: informational exceptions are not reported
		// (DEXCPT=1, MRIE=0); nothing changeable.
		b = make([]byte, 12)
		b[0], b[1] = pageInfoExceptions, 0x0A
		if pc != pcChangeable {
			b[2] = 0x08
		}
	}
	return b
}

// ModeSense is MODE SENSE(6) or MODE SENSE(10) (SPC-4 6.11, 6.12).
type ModeSense struct {
	Ten     bool
	DBD     bool
	LLBAA   bool
	PC      byte
	Page    byte
	Subpage byte
	Alloc   uint16
}

func decodeModeSense6(cdb []byte) (ModeSense, error) {
	return decodeModeSenseCommon(ModeSense{DBD: cdb[1]&0x08 != 0, PC: cdb[2] >> 6, Page: cdb[2] & 0x3F, Subpage: cdb[3], Alloc: uint16(cdb[4])})
}

func decodeModeSense10(cdb []byte) (ModeSense, error) {
	return decodeModeSenseCommon(ModeSense{Ten: true, LLBAA: cdb[1]&0x10 != 0, DBD: cdb[1]&0x08 != 0, PC: cdb[2] >> 6, Page: cdb[2] & 0x3F, Subpage: cdb[3], Alloc: be16(cdb[7:])})
}

func decodeModeSenseCommon(c ModeSense) (ModeSense, error) {
	// SPC-4 6.11: "If the logical unit does not implement saved values ...
	// the device server shall terminate ... ILLEGAL REQUEST, SAVING
	// PARAMETERS NOT SUPPORTED" for PC=11b.
	if c.PC == pcSaved {
		return ModeSense{}, errSavingNotSupported()
	}
	// SPC-4 6.11: an unsupported page or subpage is INVALID FIELD IN CDB.
	// Subpage FFh with page 3Fh asks for every page and subpage.
	if c.Subpage != 0 && !(c.Page == pageAll && c.Subpage == 0xFF) {
		return ModeSense{}, invalidCDB(3, -1)
	}
	if c.Page != pageAll {
		found := false
		for _, p := range modePageOrder {
			found = found || p == c.Page
		}
		if !found {
			return ModeSense{}, invalidCDB(2, 5)
		}
	}
	return c, nil
}

func execModeSense(r *request, c ModeSense) error {
	lu := r.lu
	lu.mu.Lock()
	v := lu.mode.cur
	if c.PC == pcDefault {
		v = lu.mode.def
	}
	lu.mu.Unlock()

	var pages []byte
	for _, p := range modePageOrder {
		if c.Page == pageAll || c.Page == p {
			pages = append(pages, modePage(p, c.PC, v)...)
		}
	}
	// Block descriptor (SPC-4 7.5.5, SBC-3 6.4.2): the number of blocks and
	// block length, short form unless MODE SENSE(10) asked LLBAA.
	var bd []byte
	if !c.DBD {
		blocks := lu.capacity()
		if c.Ten && c.LLBAA {
			bd = make([]byte, 16)
			put64(bd, blocks)
			put32(bd[12:], uint32(lu.bs))
		} else {
			bd = make([]byte, 8)
			if blocks > 0xFFFFFFFF {
				put32(bd, 0xFFFFFFFF)
			} else {
				put32(bd, uint32(blocks))
			}
			put32(bd[4:], uint32(lu.bs)) // byte 4 is reserved, 5-7 length
			bd[4] = 0
		}
		if c.PC == pcChangeable {
			clear(bd) // nothing in the block descriptor is changeable
		}
	}
	// DEVICE-SPECIFIC PARAMETER (SBC-3 6.4.1): WP for a read-only LU,
	// DPOFUA=1 as we honour DPO and FUA.
	dsp := byte(0x10)
	if lu.cfg.ReadOnly || v.swp {
		dsp |= 0x80
	}
	var b []byte
	if c.Ten {
		b = make([]byte, 8, 8+len(bd)+len(pages))
		b[3] = dsp
		if len(bd) == 16 {
			b[4] = 0x01 // LONGLBA
		}
		put16(b[6:], uint16(len(bd)))
		b = append(append(b, bd...), pages...)
		put16(b, uint16(len(b)-2))
	} else {
		b = make([]byte, 4, 4+len(bd)+len(pages))
		b[2] = dsp
		b[3] = byte(len(bd))
		b = append(append(b, bd...), pages...)
		b[0] = byte(len(b) - 1)
	}
	r.dataIn(b, int(c.Alloc))
	return nil
}

// ModeSelect is MODE SELECT(6) or MODE SELECT(10) (SPC-4 6.9, 6.10).
type ModeSelect struct {
	Ten      bool
	PF, SP   bool
	ParamLen uint16
}

func decodeModeSelect6(cdb []byte) (ModeSelect, error) {
	return decodeModeSelectCommon(ModeSelect{PF: cdb[1]&0x10 != 0, SP: cdb[1]&0x01 != 0, ParamLen: uint16(cdb[4])})
}

func decodeModeSelect10(cdb []byte) (ModeSelect, error) {
	return decodeModeSelectCommon(ModeSelect{Ten: true, PF: cdb[1]&0x10 != 0, SP: cdb[1]&0x01 != 0, ParamLen: be16(cdb[7:])})
}

func decodeModeSelectCommon(c ModeSelect) (ModeSelect, error) {
	// SPC-4 6.9: "If the SP bit is set to one and the logical unit does not
	// implement saved pages, the device server shall terminate the command
	// ... INVALID FIELD IN CDB".
	if c.SP {
		return ModeSelect{}, invalidCDB(1, 0)
	}
	// SPC-4 6.9: PF=0 means vendor-specific page formats, which we have
	// none of; with a parameter list that is INVALID FIELD IN CDB.
	if !c.PF && c.ParamLen > 0 {
		return ModeSelect{}, invalidCDB(1, 4)
	}
	return c, nil
}

func execModeSelect(r *request, c ModeSelect) error {
	lu := r.lu
	r.resp.TransferLength = int(c.ParamLen)
	data := r.cmd.DataOut
	if len(data) > int(c.ParamLen) {
		data = data[:c.ParamLen]
	}
	if len(data) < int(c.ParamLen) {
		// SPC-4 4.5.6: the initiator sent less than it announced.
		return errParamListLength()
	}
	if len(data) == 0 {
		return nil // SPC-4 6.9: a zero length list is not an error
	}
	hdr := 4
	if c.Ten {
		hdr = 8
	}
	if len(data) < hdr {
		return errParamListLength()
	}
	var bdLen int
	if c.Ten {
		bdLen = int(be16(data[6:]))
	} else {
		bdLen = int(data[3])
	}
	if hdr+bdLen > len(data) {
		return errParamListLength()
	}
	// Block descriptors: the block length must be ours; the number of
	// blocks is ignored (SBC-3 6.4.2 lets the device server ignore it for
	// a disk that cannot be reformatted).
	long := c.Ten && data[4]&0x01 != 0
	step := 8
	if long {
		step = 16
	}
	for off := hdr; off+step <= hdr+bdLen; off += step {
		var bl uint32
		if long {
			bl = be32(data[off+12:])
		} else {
			bl = be24(data[off+5:])
		}
		if bl != uint32(lu.bs) {
			// SPC-4 6.9: an unsupported value in the parameter list is
			// INVALID FIELD IN PARAMETER LIST.
			return invalidParam(off+step-3, -1)
		}
	}

	lu.mu.Lock()
	defer lu.mu.Unlock()
	nv := lu.mode.cur
	for off := hdr + bdLen; off < len(data); {
		if off+2 > len(data) {
			return errParamListLength()
		}
		code := data[off] & 0x3F
		// SPC-4 7.5.7: PS is reserved in MODE SELECT; SPF=1 subpages are not
		// supported here.
		if data[off]&0xC0 != 0 {
			return invalidParam(off, 7)
		}
		cur := modePage(code, pcCurrent, nv)
		if cur == nil {
			return invalidParam(off, 5)
		}
		n := int(data[off+1]) + 2
		if n != len(cur) {
			return invalidParam(off+1, -1)
		}
		if off+n > len(data) {
			return errParamListLength()
		}
		mask := modePage(code, pcChangeable, nv)
		page := data[off : off+n]
		// SPC-4 6.9: "If the initiator sends a value for a field that is not
		// changeable ... the device server shall terminate the command ...
		// INVALID FIELD IN PARAMETER LIST" with a pointer to that byte.
		for i := 2; i < n; i++ {
			if (page[i]^cur[i])&^mask[i] != 0 {
				bit := -1
				for j := 7; j >= 0; j-- {
					if (page[i]^cur[i])&^mask[i]&(1<<j) != 0 {
						bit = j
						break
					}
				}
				return invalidParam(off+i, bit)
			}
		}
		switch code {
		case pageCaching:
			nv.wce = page[2]&0x04 != 0
		case pageControl:
			nv.dsense = page[2]&0x04 != 0
			nv.swp = page[4]&0x08 != 0
		}
		off += n
	}
	if nv != lu.mode.cur {
		lu.mode.cur = nv
		// SPC-4 6.9: "If ... mode parameters ... are changed ... the device
		// server shall establish a unit attention condition for the initiator
		// port associated with every I_T nexus except the I_T nexus on which
		// the MODE SELECT command was received, with the additional sense
		// code set to MODE PARAMETERS CHANGED."
		lu.raiseUALocked(r.nexus, 0x2A, 0x01)
	}
	return nil
}
