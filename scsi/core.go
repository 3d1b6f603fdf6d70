package scsi

// registerCore fills the opcode table with the SPC-4/SBC-3 commands of the
// core device server. Usage bitmaps follow SPC-4 6.35.3; the last byte
// (CONTROL) advertises NACA and the vendor bits we look at (0x07: NACA,
// obsolete FLAG/LINK bits that must be zero).
func registerCore(t *opcodeTable) {
	const media = opMedia
	rw10 := func(op, b1 byte) []byte { return []byte{op, b1, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x07} }
	rw12 := func(op, b1 byte) []byte {
		return []byte{op, b1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x07}
	}
	rw16 := func(op, b1 byte) []byte {
		return []byte{op, b1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x07}
	}

	t.add(define("TEST UNIT READY", usage(0x00, 0, 0, 0, 0, 0x07), opResvAllowed, decodeTUR, execTUR))
	t.add(define("REQUEST SENSE", usage(0x03, 0x01, 0, 0, 0xFF, 0x07), opNoUA|opResvAllowed|aluaAnyState, decodeRequestSense, execRequestSense))
	t.add(define("INQUIRY", usage(0x12, 0x01, 0xFF, 0xFF, 0xFF, 0x07), opNoUA|opResvAllowed|aluaAnyState, decodeInquiry, execInquiry))
	t.add(define("REPORT LUNS", usage(0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07), opNoUA|opResvAllowed|aluaAnyState, decodeReportLUNs, execReportLUNs))

	t.add(define("READ(6)", usage(0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0x07), media|opResvRead, decodeRead6, execRead))
	t.add(define("READ(10)", rw10(0x28, 0xFA), media|opResvRead, decodeRead, execRead))
	t.add(define("READ(12)", rw12(0xA8, 0xFA), media|opResvRead, decodeRead, execRead))
	t.add(define("READ(16)", rw16(0x88, 0xFA), media|opResvRead, decodeRead, execRead))
	t.add(define("WRITE(6)", usage(0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0x07), media|opWrite, decodeWrite6, execWrite))
	t.add(define("WRITE(10)", rw10(0x2A, 0xFA), media|opWrite, decodeWrite, execWrite))
	t.add(define("WRITE(12)", rw12(0xAA, 0xFA), media|opWrite, decodeWrite, execWrite))
	t.add(define("WRITE(16)", rw16(0x8A, 0xFA), media|opWrite, decodeWrite, execWrite))
	t.add(define("WRITE AND VERIFY(10)", rw10(0x2E, 0xF2), media|opWrite, decodeWriteVerify, execWrite))
	t.add(define("WRITE AND VERIFY(12)", rw12(0xAE, 0xF2), media|opWrite, decodeWriteVerify, execWrite))
	t.add(define("WRITE AND VERIFY(16)", rw16(0x8E, 0xF2), media|opWrite, decodeWriteVerify, execWrite))
	t.add(define("VERIFY(10)", rw10(0x2F, 0xF6), media|opResvRead, decodeVerify, execVerify))
	t.add(define("VERIFY(12)", rw12(0xAF, 0xF6), media|opResvRead, decodeVerify, execVerify))
	t.add(define("VERIFY(16)", rw16(0x8F, 0xF6), media|opResvRead, decodeVerify, execVerify))
	t.add(define("SYNCHRONIZE CACHE(10)", rw10(0x35, 0x02), media, decodeSyncCache, execSyncCache))
	t.add(define("SYNCHRONIZE CACHE(16)", rw16(0x91, 0x02), media, decodeSyncCache, execSyncCache))
	t.add(define("PRE-FETCH(10)", rw10(0x34, 0x02), media|opResvRead, decodePreFetch, execPreFetch))
	t.add(define("PRE-FETCH(16)", rw16(0x90, 0x02), media|opResvRead, decodePreFetch, execPreFetch))

	t.add(define("READ CAPACITY(10)", usage(0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0x07), media|opResvAllowed|opAnyGateway, decodeReadCapacity10, execReadCapacity10))
	t.add(define("READ CAPACITY(16)", rw16(0x9E, 0x10), media|opResvAllowed|opAnyGateway, decodeReadCapacity16, execReadCapacity16).withSA(0x10))

	t.add(define("MODE SENSE(6)", usage(0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0x07), opResvRead|opALUAStandby, decodeModeSense6, execModeSense))
	t.add(define("MODE SENSE(10)", usage(0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0x07), opResvRead|opALUAStandby, decodeModeSense10, execModeSense))
	t.add(define("MODE SELECT(6)", usage(0x15, 0x11, 0, 0, 0xFF, 0x07), opALUAStandby, decodeModeSelect6, execModeSelect))
	t.add(define("MODE SELECT(10)", usage(0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x07), opALUAStandby, decodeModeSelect10, execModeSelect))

	t.add(define("START STOP UNIT", usage(0x1B, 0x01, 0, 0x0F, 0xF7, 0x07), 0, decodeStartStop, execStartStop))
	t.add(define("PREVENT ALLOW MEDIUM REMOVAL", usage(0x1E, 0, 0, 0, 0x03, 0x07), opResvAllowed, decodePreventAllow, execPreventAllow))

	t.add(define("REPORT SUPPORTED OPERATION CODES", usage(0xA3, 0x0C, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07), opResvAllowed|opALUAStandby, decodeReportOpcodes, execReportOpcodes).withSA(0x0C))
	t.add(define("REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS", usage(0xA3, 0x0D, 0x80, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07), opResvAllowed|opALUAStandby, decodeReportTMF, execReportTMF).withSA(0x0D))
}

// withSA marks e as a service action of its opcode.
func (e *opEntry) withSA(sa uint16) *opEntry {
	e.SA = sa
	e.HasSA = true
	return e
}

// TestUnitReady is TEST UNIT READY (SPC-4 6.47).
type TestUnitReady struct{}

func decodeTUR(cdb []byte) (TestUnitReady, error) { return TestUnitReady{}, nil }

// execTUR: SPC-4 6.47 "If the logical unit is able to accept an appropriate
// medium-access command without returning CHECK CONDITION status, this
// command shall return a GOOD status". Unit attentions and access states
// were checked before exec; the backend may still say it is not ready.
func execTUR(r *request, _ TestUnitReady) error {
	if nr, ok := r.lu.be.(interface{ Ready() error }); ok {
		if err := nr.Ready(); err != nil {
			return mediaError(err, false)
		}
	}
	return nil
}

// RequestSense is REQUEST SENSE (SPC-4 6.39).
type RequestSense struct {
	Desc  bool
	Alloc uint8
}

func decodeRequestSense(cdb []byte) (RequestSense, error) {
	return RequestSense{Desc: cdb[1]&0x01 != 0, Alloc: cdb[4]}, nil
}

// execRequestSense returns and clears the highest priority pending unit
// attention of the nexus (SAM-5 5.14: "the unit attention condition shall
// be reported ... in response to REQUEST SENSE ... and cleared"), or NO
// SENSE. SPC-4 6.39: DESC selects the format regardless of D_SENSE.
func execRequestSense(r *request, c RequestSense) error {
	lu := r.lu
	lu.mu.Lock()
	ua, ok := lu.nexusLocked(r.nexus).takeUA()
	lu.mu.Unlock()
	var b []byte
	if ok {
		b = newCC(SenseUnitAttention, ua.asc, ua.ascq).Sense(c.Desc)
	} else if cc := lu.sanitizeSense(); cc != nil {
		// SBC-3 4.11.2: during a sanitize REQUEST SENSE returns NOT READY,
		// SANITIZE IN PROGRESS with the progress indication.
		b = cc.Sense(c.Desc)
	} else {
		b = noSense(c.Desc)
	}
	r.dataIn(b, int(c.Alloc))
	return nil
}

// StartStop is START STOP UNIT (SBC-3 5.25).
type StartStop struct {
	Immed, NoFlush, LoEj, Start bool
	PowerCondition              byte
}

func decodeStartStop(cdb []byte) (StartStop, error) {
	return StartStop{
		Immed:          cdb[1]&0x01 != 0,
		PowerCondition: cdb[4] >> 4,
		NoFlush:        cdb[4]&0x04 != 0,
		LoEj:           cdb[4]&0x02 != 0,
		Start:          cdb[4]&0x01 != 0,
	}, nil
}

func execStartStop(r *request, c StartStop) error {
	// SBC-3 5.25: LOEJ asks to load or eject the medium. Our medium is not
	// removable (INQUIRY RMB=0), so there is nothing to eject: INVALID FIELD
	// IN CDB, which is what libiscsi's StartStopUnit.Simple expects of a
	// non-removable LU.
	if c.LoEj {
		return invalidCDB(4, 1)
	}
	// SBC-3 table 48: power conditions other than START_VALID (0) and the
	// standby/idle family are reserved.
	switch c.PowerCondition {
	case 0x0, 0x1, 0x2, 0x3, 0x7, 0xA, 0xB:
	default:
		return invalidCDB(4, 7)
	}
	// A virtual disk has no spindle: stopping is accepted, and the unit stays
	// able to serve media access (as LIO does), because initiators send STOP
	// at shutdown and other sessions keep using the LU. Without NO_FLUSH a
	// stop makes cached data durable first.
	if !c.Start && !c.NoFlush && c.PowerCondition == 0 {
		if err := r.lu.be.Flush(r.ctx); err != nil {
			return mediaError(err, true)
		}
	}
	return nil
}

// PreventAllow is PREVENT ALLOW MEDIUM REMOVAL (SBC-3 5.3 / SPC-4 6.13).
type PreventAllow struct{ Prevent byte }

func decodePreventAllow(cdb []byte) (PreventAllow, error) {
	return PreventAllow{Prevent: cdb[4] & 0x03}, nil
}

func execPreventAllow(r *request, c PreventAllow) error {
	// SBC-3 5.3 table 16: PREVENT 10b and 11b are obsolete/media-changer
	// values a disk does not support: INVALID FIELD IN CDB. 00b and 01b are
	// accepted; with a non-removable medium there is nothing to lock.
	if c.Prevent > 1 {
		return invalidCDB(4, 1)
	}
	return nil
}
