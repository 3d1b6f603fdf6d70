package scsi

// ReportOpcodes is REPORT SUPPORTED OPERATION CODES, MAINTENANCE IN 0Ch
// (SPC-4 6.35).
type ReportOpcodes struct {
	RCTD   bool
	Option byte
	Opcode byte
	SA     uint16
	Alloc  uint32
}

func decodeReportOpcodes(cdb []byte) (ReportOpcodes, error) {
	c := ReportOpcodes{RCTD: cdb[2]&0x80 != 0, Option: cdb[2] & 0x07, Opcode: cdb[3], SA: be16(cdb[4:]), Alloc: be32(cdb[6:])}
	// SPC-4 6.35.1 table 153: reporting options 100b-111b are reserved.
	if c.Option > 3 {
		return ReportOpcodes{}, invalidCDB(2, 2)
	}
	return c, nil
}

func timeoutsDescriptor(e *opEntry) []byte {
	// SPC-4 6.35.4: DESCRIPTOR LENGTH 000Ah, then nominal and recommended
	// command timeouts in seconds (0: not specified).
	d := make([]byte, 12)
	put16(d, 0x0A)
	put32(d[4:], e.Nominal)
	put32(d[8:], e.Recommended)
	return d
}

func execReportOpcodes(r *request, c ReportOpcodes) error {
	t := r.lu.table
	var b []byte
	switch c.Option {
	case 0:
		// All commands (SPC-4 6.35.2).
		b = make([]byte, 4)
		for _, e := range t.entries() {
			if !r.lu.offers(e) {
				continue
			}
			d := make([]byte, 8)
			d[0] = e.Opcode
			put16(d[2:], e.SA)
			if e.HasSA {
				d[5] |= 0x01 // SERVACTV
			}
			if c.RCTD {
				d[5] |= 0x02 // CTDP
			}
			put16(d[6:], uint16(len(e.Usage)))
			b = append(b, d...)
			if c.RCTD {
				b = append(b, timeoutsDescriptor(e)...)
			}
		}
		put32(b, uint32(len(b)-4))
	default:
		var e *opEntry
		_, hasSA := t.sa[c.Opcode]
		switch c.Option {
		case 1:
			// SPC-4 6.35.1: "If the REQUESTED OPERATION CODE field specifies
			// an operation code that has service actions, then the command
			// shall be terminated with ... INVALID FIELD IN CDB."
			if hasSA {
				return invalidCDB(3, -1)
			}
			e = t.ops[c.Opcode]
		case 2:
			// "... specifies an operation code that does not have service
			// actions ... INVALID FIELD IN CDB."
			if !hasSA {
				return invalidCDB(3, -1)
			}
			e = t.sa[c.Opcode][c.SA]
		case 3:
			if hasSA {
				e = t.sa[c.Opcode][c.SA]
			} else {
				e = t.ops[c.Opcode]
			}
		}
		if e != nil && !r.lu.offers(e) {
			e = nil
		}
		// One command format (SPC-4 6.35.3): SUPPORT 001b (not supported)
		// or 011b (supported as the standard says).
		b = make([]byte, 4)
		if e == nil {
			b[1] = 0x01
			break
		}
		b[1] = 0x03
		if c.RCTD {
			b[1] |= 0x80 // CTDP
		}
		put16(b[2:], uint16(len(e.Usage)))
		b = append(b, e.Usage...)
		if c.RCTD {
			b = append(b, timeoutsDescriptor(e)...)
		}
	}
	r.dataIn(b, int(c.Alloc))
	return nil
}

// ReportTMF is REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS, MAINTENANCE IN
// 0Dh (SPC-4 6.36).
type ReportTMF struct {
	RepD  bool
	Alloc uint32
}

func decodeReportTMF(cdb []byte) (ReportTMF, error) {
	return ReportTMF{RepD: cdb[2]&0x80 != 0, Alloc: be32(cdb[6:])}, nil
}

func execReportTMF(r *request, c ReportTMF) error {
	// ATS, ATSS, CTSS, LURS, TRS: ABORT TASK, ABORT TASK SET, CLEAR TASK
	// SET, LOGICAL UNIT RESET, TARGET RESET (the functions the iSCSI
	// transport implements).
	b := make([]byte, 4)
	if c.RepD {
		b = make([]byte, 16)
		b[3] = 0x0C // ADDITIONAL DATA LENGTH
	}
	b[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x02
	r.dataIn(b, int(c.Alloc))
	return nil
}
