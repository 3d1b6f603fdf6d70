package target

import (
	"encoding/binary"
	"fmt"
)

// This file is the pure iSCSI PDU codec (RFC 7143 section 11): one struct
// per opcode, byte-in parse functions in an opcode table with a fallback,
// and encoders that write a BHS into a caller's buffer. Nothing here touches
// io or connection state, so it is tested with byte literals and fuzzed
// alone; pdureader.go adds the framing.

const (
	bhsLen    = 48 // RFC 7143 11.2.1: the BHS is 48 bytes long
	digestLen = 4  // CRC32C (RFC 7143 13.1)

	// reservedTag is the all-ones task tag "reserved" value (RFC 7143 11.18.3,
	// 11.19.2): no reply is wanted / no TTT is assigned.
	reservedTag = 0xffffffff
)

// Opcode is an iSCSI PDU opcode (RFC 7143 11.2.1.2).
type Opcode uint8

// Initiator opcodes (RFC 7143 11.2.1.2).
const (
	OpNopOut      Opcode = 0x00
	OpSCSICmd     Opcode = 0x01
	OpTaskMgmtReq Opcode = 0x02
	OpLoginReq    Opcode = 0x03
	OpTextReq     Opcode = 0x04
	OpDataOut     Opcode = 0x05
	OpLogoutReq   Opcode = 0x06
	OpSNACK       Opcode = 0x10
)

// Target opcodes (RFC 7143 11.2.1.2).
const (
	OpNopIn        Opcode = 0x20
	OpSCSIResp     Opcode = 0x21
	OpTaskMgmtResp Opcode = 0x22
	OpLoginResp    Opcode = 0x23
	OpTextResp     Opcode = 0x24
	OpDataIn       Opcode = 0x25
	OpLogoutResp   Opcode = 0x26
	OpR2T          Opcode = 0x31
	OpAsync        Opcode = 0x32
	OpReject       Opcode = 0x3f
)

// Reject reasons (RFC 7143 11.17.1).
const (
	RejectDataDigest      = 0x02
	RejectSNACK           = 0x03
	RejectProtocolError   = 0x04
	RejectNotSupported    = 0x05
	RejectImmediate       = 0x06
	RejectTaskInProgress  = 0x07
	RejectInvalidDataAck  = 0x08
	RejectInvalidField    = 0x09
	RejectLongOp          = 0x0a
	RejectWaitingForLogut = 0x0c
)

// AHS types (RFC 7143 11.2.1.4).
const (
	ahsExtendedCDB  = 0x01
	ahsBidiReadLen  = 0x02
	maxAHSLenWords  = 255 // TotalAHSLength is one byte of 4-byte words
	maxDataSegLen   = 1<<24 - 1
	bidiAHSSpecific = 5
)

// PDU is one parsed or to-be-encoded iSCSI PDU.
type PDU interface {
	Opcode() Opcode
	// encodeBHS fills h (bhsLen bytes) except TotalAHSLength and
	// DataSegmentLength, which the framer writes.
	encodeBHS(h []byte)
	// DataSegment is the PDU's data segment (unpadded).
	DataSegment() []byte
}

// ahsCarrier is implemented by PDUs with additional header segments.
type ahsCarrier interface{ appendAHS(dst []byte) []byte }

var be = binary.BigEndian

// ParseError reports a PDU that cannot be decoded. The connection answers it
// with a Reject carrying Reason.
type ParseError struct {
	Reason byte
	Msg    string
}

func (e *ParseError) Error() string { return "iscsi: bad PDU: " + e.Msg }

func setOp(h []byte, op Opcode, immediate bool) {
	h[0] = byte(op)
	if immediate {
		h[0] |= 0x40
	}
}

// ---- NOP-Out / NOP-In (RFC 7143 11.18, 11.19) ----

// NopOut is a NOP-Out (RFC 7143 11.18).
type NopOut struct {
	Immediate bool
	LUN       uint64
	ITT, TTT  uint32
	CmdSN     uint32
	ExpStatSN uint32
	Data      []byte
}

func (*NopOut) Opcode() Opcode        { return OpNopOut }
func (p *NopOut) DataSegment() []byte { return p.Data }
func (p *NopOut) encodeBHS(h []byte) {
	setOp(h, OpNopOut, p.Immediate)
	h[1] = 0x80
	be.PutUint64(h[8:], p.LUN)
	be.PutUint32(h[16:], p.ITT)
	be.PutUint32(h[20:], p.TTT)
	be.PutUint32(h[24:], p.CmdSN)
	be.PutUint32(h[28:], p.ExpStatSN)
}

func parseNopOut(h, _, data []byte) (PDU, error) {
	return &NopOut{Immediate: h[0]&0x40 != 0, LUN: be.Uint64(h[8:]), ITT: be.Uint32(h[16:]),
		TTT: be.Uint32(h[20:]), CmdSN: be.Uint32(h[24:]), ExpStatSN: be.Uint32(h[28:]), Data: data}, nil
}

// NopIn is a NOP-In (RFC 7143 11.19).
type NopIn struct {
	LUN                        uint64
	ITT, TTT                   uint32
	StatSN, ExpCmdSN, MaxCmdSN uint32
	Data                       []byte
}

func (*NopIn) Opcode() Opcode        { return OpNopIn }
func (p *NopIn) DataSegment() []byte { return p.Data }
func (p *NopIn) encodeBHS(h []byte) {
	setOp(h, OpNopIn, false)
	h[1] = 0x80
	be.PutUint64(h[8:], p.LUN)
	be.PutUint32(h[16:], p.ITT)
	be.PutUint32(h[20:], p.TTT)
	be.PutUint32(h[24:], p.StatSN)
	be.PutUint32(h[28:], p.ExpCmdSN)
	be.PutUint32(h[32:], p.MaxCmdSN)
}

func parseNopIn(h, _, data []byte) (PDU, error) {
	return &NopIn{LUN: be.Uint64(h[8:]), ITT: be.Uint32(h[16:]), TTT: be.Uint32(h[20:]),
		StatSN: be.Uint32(h[24:]), ExpCmdSN: be.Uint32(h[28:]), MaxCmdSN: be.Uint32(h[32:]), Data: data}, nil
}

// ---- SCSI Command / Response (RFC 7143 11.3, 11.4) ----

// SCSICmd is a SCSI Command (RFC 7143 11.3).
type SCSICmd struct {
	Immediate   bool
	Final       bool
	Read, Write bool
	Attr        uint8
	LUN         uint64
	ITT         uint32
	EDTL        uint32 // Expected Data Transfer Length
	CmdSN       uint32
	ExpStatSN   uint32
	// CDB is the whole CDB: the 16 BHS bytes followed by any extended CDB
	// bytes from an AHS (RFC 7143 11.3.5).
	CDB []byte
	// BidiReadLength is the Expected Bidirectional Read Data Length from
	// the AHS of type 2 (RFC 7143 11.2.1.4), when HasBidiReadLength.
	BidiReadLength    uint32
	HasBidiReadLength bool
	Data              []byte
	cdb               [16]byte // backing store for short CDBs: no allocation
}

func (*SCSICmd) Opcode() Opcode        { return OpSCSICmd }
func (p *SCSICmd) DataSegment() []byte { return p.Data }
func (p *SCSICmd) encodeBHS(h []byte) {
	setOp(h, OpSCSICmd, p.Immediate)
	var f byte
	if p.Final {
		f |= 0x80
	}
	if p.Read {
		f |= 0x40
	}
	if p.Write {
		f |= 0x20
	}
	h[1] = f | p.Attr&0x07
	be.PutUint64(h[8:], p.LUN)
	be.PutUint32(h[16:], p.ITT)
	be.PutUint32(h[20:], p.EDTL)
	be.PutUint32(h[24:], p.CmdSN)
	be.PutUint32(h[28:], p.ExpStatSN)
	copy(h[32:48], p.CDB)
}

func (p *SCSICmd) appendAHS(dst []byte) []byte {
	if len(p.CDB) > 16 {
		ext := p.CDB[16:]
		// RFC 7143 11.2.1.4: AHSLength counts the specific bytes (the
		// reserved byte plus the CDB remainder); the AHS is padded to 4.
		n := len(ext) + 1
		dst = append(dst, byte(n>>8), byte(n), ahsExtendedCDB, 0)
		dst = append(dst, ext...)
		for len(dst)%4 != 0 {
			dst = append(dst, 0)
		}
	}
	if p.HasBidiReadLength {
		dst = append(dst, 0, bidiAHSSpecific, ahsBidiReadLen, 0)
		dst = be.AppendUint32(dst, p.BidiReadLength)
	}
	return dst
}

func parseSCSICmd(h, ahs, data []byte) (PDU, error) {
	p := new(SCSICmd)
	if err := parseSCSICmdInto(p, h, ahs, data); err != nil {
		return nil, err
	}
	return p, nil
}

// parseSCSICmdInto is parseSCSICmd into a caller's struct, which it
// overwrites whole (the reader's hot path reuses a few).
func parseSCSICmdInto(p *SCSICmd, h, ahs, data []byte) error {
	*p = SCSICmd{
		Immediate: h[0]&0x40 != 0,
		Final:     h[1]&0x80 != 0,
		Read:      h[1]&0x40 != 0,
		Write:     h[1]&0x20 != 0,
		Attr:      h[1] & 0x07,
		LUN:       be.Uint64(h[8:]),
		ITT:       be.Uint32(h[16:]),
		EDTL:      be.Uint32(h[20:]),
		CmdSN:     be.Uint32(h[24:]),
		ExpStatSN: be.Uint32(h[28:]),
		Data:      data,
	}
	copy(p.cdb[:], h[32:48])
	p.CDB = p.cdb[:]
	for len(ahs) > 0 {
		// RFC 7143 11.2.1.4: each AHS is AHSLength(2) AHSType(1) and
		// AHS-Specific bytes, padded to a 4-byte boundary.
		if len(ahs) < 4 {
			return &ParseError{RejectInvalidField, "truncated AHS"}
		}
		n := int(be.Uint16(ahs))
		typ := ahs[2]
		if 3+n > len(ahs) {
			return &ParseError{RejectInvalidField, "AHS longer than TotalAHSLength"}
		}
		spec := ahs[3 : 3+n]
		switch typ {
		case ahsExtendedCDB:
			if n < 1 {
				return &ParseError{RejectInvalidField, "empty extended CDB AHS"}
			}
			cdb := make([]byte, 16+n-1)
			copy(cdb, p.cdb[:])
			copy(cdb[16:], spec[1:])
			p.CDB = cdb
		case ahsBidiReadLen:
			// RFC 7143 11.2.1.4: AHSLength is 0x0005 for this AHS.
			if n != bidiAHSSpecific {
				return &ParseError{RejectInvalidField, "bad bidirectional read AHS length"}
			}
			p.BidiReadLength = be.Uint32(spec[1:])
			p.HasBidiReadLength = true
		default:
			return &ParseError{RejectInvalidField, fmt.Sprintf("unknown AHS type %#x", typ)}
		}
		adv := (3 + n + 3) &^ 3
		if adv > len(ahs) {
			adv = len(ahs)
		}
		ahs = ahs[adv:]
	}
	return nil
}

// SCSIResp is a SCSI Response (RFC 7143 11.4).
type SCSIResp struct {
	BidiOverflow, BidiUnderflow bool
	Overflow, Underflow         bool
	Response                    uint8
	Status                      uint8
	ITT                         uint32
	SNACKTag                    uint32
	StatSN, ExpCmdSN, MaxCmdSN  uint32
	ExpDataSN                   uint32
	BidiResidual, Residual      uint32
	Data                        []byte // SenseLength(2) + sense + response data
}

func (*SCSIResp) Opcode() Opcode        { return OpSCSIResp }
func (p *SCSIResp) DataSegment() []byte { return p.Data }
func (p *SCSIResp) encodeBHS(h []byte) {
	setOp(h, OpSCSIResp, false)
	f := byte(0x80)
	if p.BidiOverflow {
		f |= 0x10
	}
	if p.BidiUnderflow {
		f |= 0x08
	}
	if p.Overflow {
		f |= 0x04
	}
	if p.Underflow {
		f |= 0x02
	}
	h[1] = f
	h[2] = p.Response
	h[3] = p.Status
	be.PutUint32(h[16:], p.ITT)
	be.PutUint32(h[20:], p.SNACKTag)
	be.PutUint32(h[24:], p.StatSN)
	be.PutUint32(h[28:], p.ExpCmdSN)
	be.PutUint32(h[32:], p.MaxCmdSN)
	be.PutUint32(h[36:], p.ExpDataSN)
	be.PutUint32(h[40:], p.BidiResidual)
	be.PutUint32(h[44:], p.Residual)
}

func parseSCSIResp(h, _, data []byte) (PDU, error) {
	return &SCSIResp{
		BidiOverflow: h[1]&0x10 != 0, BidiUnderflow: h[1]&0x08 != 0,
		Overflow: h[1]&0x04 != 0, Underflow: h[1]&0x02 != 0,
		Response: h[2], Status: h[3], ITT: be.Uint32(h[16:]), SNACKTag: be.Uint32(h[20:]),
		StatSN: be.Uint32(h[24:]), ExpCmdSN: be.Uint32(h[28:]), MaxCmdSN: be.Uint32(h[32:]),
		ExpDataSN: be.Uint32(h[36:]), BidiResidual: be.Uint32(h[40:]), Residual: be.Uint32(h[44:]),
		Data: data,
	}, nil
}

// ---- Task Management (RFC 7143 11.5, 11.6) ----

// TMF function codes (RFC 7143 11.5.1).
const (
	tmfAbortTask        = 1
	tmfAbortTaskSet     = 2
	tmfClearACA         = 3
	tmfClearTaskSet     = 4
	tmfLogicalUnitReset = 5
	tmfTargetWarmReset  = 6
	tmfTargetColdReset  = 7
	tmfTaskReassign     = 8
)

// TMF responses (RFC 7143 11.6.1).
const (
	tmfRespComplete          = 0
	tmfRespNoTask            = 1
	tmfRespNoLUN             = 2
	tmfRespTaskAllegiant     = 3
	tmfRespNoReassignSupport = 4
	tmfRespNotSupported      = 5
	tmfRespAuthFailed        = 6
	tmfRespRejected          = 255
)

// TaskMgmtReq is a Task Management Function Request (RFC 7143 11.5).
type TaskMgmtReq struct {
	Immediate  bool
	Function   uint8
	LUN        uint64
	ITT        uint32
	RefTaskTag uint32
	CmdSN      uint32
	ExpStatSN  uint32
	RefCmdSN   uint32
	ExpDataSN  uint32
}

func (*TaskMgmtReq) Opcode() Opcode      { return OpTaskMgmtReq }
func (*TaskMgmtReq) DataSegment() []byte { return nil }
func (p *TaskMgmtReq) encodeBHS(h []byte) {
	setOp(h, OpTaskMgmtReq, p.Immediate)
	h[1] = 0x80 | p.Function&0x7f
	be.PutUint64(h[8:], p.LUN)
	be.PutUint32(h[16:], p.ITT)
	be.PutUint32(h[20:], p.RefTaskTag)
	be.PutUint32(h[24:], p.CmdSN)
	be.PutUint32(h[28:], p.ExpStatSN)
	be.PutUint32(h[32:], p.RefCmdSN)
	be.PutUint32(h[36:], p.ExpDataSN)
}

func parseTaskMgmtReq(h, _, data []byte) (PDU, error) {
	return &TaskMgmtReq{Immediate: h[0]&0x40 != 0, Function: h[1] & 0x7f, LUN: be.Uint64(h[8:]),
		ITT: be.Uint32(h[16:]), RefTaskTag: be.Uint32(h[20:]), CmdSN: be.Uint32(h[24:]),
		ExpStatSN: be.Uint32(h[28:]), RefCmdSN: be.Uint32(h[32:]), ExpDataSN: be.Uint32(h[36:])}, nil
}

// TaskMgmtResp is a Task Management Function Response (RFC 7143 11.6).
type TaskMgmtResp struct {
	Response                   uint8
	ITT                        uint32
	StatSN, ExpCmdSN, MaxCmdSN uint32
}

func (*TaskMgmtResp) Opcode() Opcode      { return OpTaskMgmtResp }
func (*TaskMgmtResp) DataSegment() []byte { return nil }
func (p *TaskMgmtResp) encodeBHS(h []byte) {
	setOp(h, OpTaskMgmtResp, false)
	h[1] = 0x80
	h[2] = p.Response
	be.PutUint32(h[16:], p.ITT)
	be.PutUint32(h[24:], p.StatSN)
	be.PutUint32(h[28:], p.ExpCmdSN)
	be.PutUint32(h[32:], p.MaxCmdSN)
}

func parseTaskMgmtResp(h, _, _ []byte) (PDU, error) {
	return &TaskMgmtResp{Response: h[2], ITT: be.Uint32(h[16:]), StatSN: be.Uint32(h[24:]),
		ExpCmdSN: be.Uint32(h[28:]), MaxCmdSN: be.Uint32(h[32:])}, nil
}

// ---- Login (RFC 7143 11.12, 11.13) ----

// LoginReq is a Login Request (RFC 7143 11.12).
type LoginReq struct {
	Transit, Continue      bool
	CSG, NSG               uint8
	VersionMax, VersionMin uint8
	ISID                   [6]byte
	TSIH                   uint16
	ITT                    uint32
	CID                    uint16
	CmdSN                  uint32
	ExpStatSN              uint32
	Data                   []byte
}

func (*LoginReq) Opcode() Opcode        { return OpLoginReq }
func (p *LoginReq) DataSegment() []byte { return p.Data }
func (p *LoginReq) encodeBHS(h []byte) {
	// RFC 7143 11.12: the I bit is always 1 in a Login Request.
	setOp(h, OpLoginReq, true)
	h[1] = stageBits(p.Transit, p.Continue, p.CSG, p.NSG)
	h[2] = p.VersionMax
	h[3] = p.VersionMin
	copy(h[8:14], p.ISID[:])
	be.PutUint16(h[14:], p.TSIH)
	be.PutUint32(h[16:], p.ITT)
	be.PutUint16(h[20:], p.CID)
	be.PutUint32(h[24:], p.CmdSN)
	be.PutUint32(h[28:], p.ExpStatSN)
}

func stageBits(t, c bool, csg, nsg uint8) byte {
	var f byte
	if t {
		f |= 0x80
	}
	if c {
		f |= 0x40
	}
	return f | (csg&3)<<2 | nsg&3
}

func parseLoginReq(h, _, data []byte) (PDU, error) {
	p := &LoginReq{Transit: h[1]&0x80 != 0, Continue: h[1]&0x40 != 0, CSG: (h[1] >> 2) & 3, NSG: h[1] & 3,
		VersionMax: h[2], VersionMin: h[3], TSIH: be.Uint16(h[14:]), ITT: be.Uint32(h[16:]),
		CID: be.Uint16(h[20:]), CmdSN: be.Uint32(h[24:]), ExpStatSN: be.Uint32(h[28:]), Data: data}
	copy(p.ISID[:], h[8:14])
	return p, nil
}

// LoginResp is a Login Response (RFC 7143 11.13).
type LoginResp struct {
	Transit, Continue          bool
	CSG, NSG                   uint8
	VersionMax, VersionActive  uint8
	ISID                       [6]byte
	TSIH                       uint16
	ITT                        uint32
	StatSN, ExpCmdSN, MaxCmdSN uint32
	StatusClass, StatusDetail  uint8
	Data                       []byte
}

func (*LoginResp) Opcode() Opcode        { return OpLoginResp }
func (p *LoginResp) DataSegment() []byte { return p.Data }
func (p *LoginResp) encodeBHS(h []byte) {
	setOp(h, OpLoginResp, false)
	h[1] = stageBits(p.Transit, p.Continue, p.CSG, p.NSG)
	h[2] = p.VersionMax
	h[3] = p.VersionActive
	copy(h[8:14], p.ISID[:])
	be.PutUint16(h[14:], p.TSIH)
	be.PutUint32(h[16:], p.ITT)
	be.PutUint32(h[24:], p.StatSN)
	be.PutUint32(h[28:], p.ExpCmdSN)
	be.PutUint32(h[32:], p.MaxCmdSN)
	h[36] = p.StatusClass
	h[37] = p.StatusDetail
}

func parseLoginResp(h, _, data []byte) (PDU, error) {
	p := &LoginResp{Transit: h[1]&0x80 != 0, Continue: h[1]&0x40 != 0, CSG: (h[1] >> 2) & 3, NSG: h[1] & 3,
		VersionMax: h[2], VersionActive: h[3], TSIH: be.Uint16(h[14:]), ITT: be.Uint32(h[16:]),
		StatSN: be.Uint32(h[24:]), ExpCmdSN: be.Uint32(h[28:]), MaxCmdSN: be.Uint32(h[32:]),
		StatusClass: h[36], StatusDetail: h[37], Data: data}
	copy(p.ISID[:], h[8:14])
	return p, nil
}

// ---- Text (RFC 7143 11.10, 11.11) ----

// TextReq is a Text Request (RFC 7143 11.10).
type TextReq struct {
	Immediate, Final, Continue bool
	LUN                        uint64
	ITT, TTT                   uint32
	CmdSN, ExpStatSN           uint32
	Data                       []byte
}

func (*TextReq) Opcode() Opcode        { return OpTextReq }
func (p *TextReq) DataSegment() []byte { return p.Data }
func (p *TextReq) encodeBHS(h []byte) {
	setOp(h, OpTextReq, p.Immediate)
	h[1] = stageBits(p.Final, p.Continue, 0, 0)
	be.PutUint64(h[8:], p.LUN)
	be.PutUint32(h[16:], p.ITT)
	be.PutUint32(h[20:], p.TTT)
	be.PutUint32(h[24:], p.CmdSN)
	be.PutUint32(h[28:], p.ExpStatSN)
}

func parseTextReq(h, _, data []byte) (PDU, error) {
	return &TextReq{Immediate: h[0]&0x40 != 0, Final: h[1]&0x80 != 0, Continue: h[1]&0x40 != 0,
		LUN: be.Uint64(h[8:]), ITT: be.Uint32(h[16:]), TTT: be.Uint32(h[20:]),
		CmdSN: be.Uint32(h[24:]), ExpStatSN: be.Uint32(h[28:]), Data: data}, nil
}

// TextResp is a Text Response (RFC 7143 11.11).
type TextResp struct {
	Final, Continue            bool
	LUN                        uint64
	ITT, TTT                   uint32
	StatSN, ExpCmdSN, MaxCmdSN uint32
	Data                       []byte
}

func (*TextResp) Opcode() Opcode        { return OpTextResp }
func (p *TextResp) DataSegment() []byte { return p.Data }
func (p *TextResp) encodeBHS(h []byte) {
	setOp(h, OpTextResp, false)
	h[1] = stageBits(p.Final, p.Continue, 0, 0)
	be.PutUint64(h[8:], p.LUN)
	be.PutUint32(h[16:], p.ITT)
	be.PutUint32(h[20:], p.TTT)
	be.PutUint32(h[24:], p.StatSN)
	be.PutUint32(h[28:], p.ExpCmdSN)
	be.PutUint32(h[32:], p.MaxCmdSN)
}

func parseTextResp(h, _, data []byte) (PDU, error) {
	return &TextResp{Final: h[1]&0x80 != 0, Continue: h[1]&0x40 != 0, LUN: be.Uint64(h[8:]),
		ITT: be.Uint32(h[16:]), TTT: be.Uint32(h[20:]), StatSN: be.Uint32(h[24:]),
		ExpCmdSN: be.Uint32(h[28:]), MaxCmdSN: be.Uint32(h[32:]), Data: data}, nil
}

// ---- Data-Out / Data-In (RFC 7143 11.7) ----

// DataOut is a SCSI Data-Out (RFC 7143 11.7).
type DataOut struct {
	Final        bool
	LUN          uint64
	ITT, TTT     uint32
	ExpStatSN    uint32
	DataSN       uint32
	BufferOffset uint32
	Data         []byte
}

func (*DataOut) Opcode() Opcode        { return OpDataOut }
func (p *DataOut) DataSegment() []byte { return p.Data }
func (p *DataOut) encodeBHS(h []byte) {
	setOp(h, OpDataOut, false)
	if p.Final {
		h[1] = 0x80
	}
	be.PutUint64(h[8:], p.LUN)
	be.PutUint32(h[16:], p.ITT)
	be.PutUint32(h[20:], p.TTT)
	be.PutUint32(h[28:], p.ExpStatSN)
	be.PutUint32(h[36:], p.DataSN)
	be.PutUint32(h[40:], p.BufferOffset)
}

func parseDataOut(h, _, data []byte) (PDU, error) {
	p := new(DataOut)
	parseDataOutInto(p, h, data)
	return p, nil
}

// parseDataOutInto is parseDataOut into a caller's struct.
func parseDataOutInto(p *DataOut, h, data []byte) {
	*p = DataOut{Final: h[1]&0x80 != 0, LUN: be.Uint64(h[8:]), ITT: be.Uint32(h[16:]),
		TTT: be.Uint32(h[20:]), ExpStatSN: be.Uint32(h[28:]), DataSN: be.Uint32(h[36:]),
		BufferOffset: be.Uint32(h[40:]), Data: data}
}

// DataIn is a SCSI Data-In (RFC 7143 11.7).
type DataIn struct {
	Final, Ack          bool
	Overflow, Underflow bool
	HasStatus           bool // S bit: status carried in this PDU
	Status              uint8
	LUN                 uint64
	ITT, TTT            uint32
	StatSN              uint32
	ExpCmdSN, MaxCmdSN  uint32
	DataSN              uint32
	BufferOffset        uint32
	Residual            uint32
	Data                []byte
}

func (*DataIn) Opcode() Opcode        { return OpDataIn }
func (p *DataIn) DataSegment() []byte { return p.Data }
func (p *DataIn) encodeBHS(h []byte) {
	setOp(h, OpDataIn, false)
	var f byte
	if p.Final {
		f |= 0x80
	}
	if p.Ack {
		f |= 0x40
	}
	if p.Overflow {
		f |= 0x04
	}
	if p.Underflow {
		f |= 0x02
	}
	if p.HasStatus {
		f |= 0x01
		h[3] = p.Status
		be.PutUint32(h[24:], p.StatSN)
	}
	h[1] = f
	be.PutUint64(h[8:], p.LUN)
	be.PutUint32(h[16:], p.ITT)
	be.PutUint32(h[20:], p.TTT)
	be.PutUint32(h[28:], p.ExpCmdSN)
	be.PutUint32(h[32:], p.MaxCmdSN)
	be.PutUint32(h[36:], p.DataSN)
	be.PutUint32(h[40:], p.BufferOffset)
	be.PutUint32(h[44:], p.Residual)
}

func parseDataIn(h, _, data []byte) (PDU, error) {
	return &DataIn{Final: h[1]&0x80 != 0, Ack: h[1]&0x40 != 0, Overflow: h[1]&0x04 != 0,
		Underflow: h[1]&0x02 != 0, HasStatus: h[1]&0x01 != 0, Status: h[3], LUN: be.Uint64(h[8:]),
		ITT: be.Uint32(h[16:]), TTT: be.Uint32(h[20:]), StatSN: be.Uint32(h[24:]),
		ExpCmdSN: be.Uint32(h[28:]), MaxCmdSN: be.Uint32(h[32:]), DataSN: be.Uint32(h[36:]),
		BufferOffset: be.Uint32(h[40:]), Residual: be.Uint32(h[44:]), Data: data}, nil
}

// ---- R2T (RFC 7143 11.8) ----

// R2T is a Ready To Transfer (RFC 7143 11.8).
type R2T struct {
	LUN                        uint64
	ITT, TTT                   uint32
	StatSN, ExpCmdSN, MaxCmdSN uint32
	R2TSN                      uint32
	BufferOffset               uint32
	DesiredLength              uint32
}

func (*R2T) Opcode() Opcode      { return OpR2T }
func (*R2T) DataSegment() []byte { return nil }
func (p *R2T) encodeBHS(h []byte) {
	setOp(h, OpR2T, false)
	h[1] = 0x80
	be.PutUint64(h[8:], p.LUN)
	be.PutUint32(h[16:], p.ITT)
	be.PutUint32(h[20:], p.TTT)
	be.PutUint32(h[24:], p.StatSN)
	be.PutUint32(h[28:], p.ExpCmdSN)
	be.PutUint32(h[32:], p.MaxCmdSN)
	be.PutUint32(h[36:], p.R2TSN)
	be.PutUint32(h[40:], p.BufferOffset)
	be.PutUint32(h[44:], p.DesiredLength)
}

func parseR2T(h, _, _ []byte) (PDU, error) {
	return &R2T{LUN: be.Uint64(h[8:]), ITT: be.Uint32(h[16:]), TTT: be.Uint32(h[20:]),
		StatSN: be.Uint32(h[24:]), ExpCmdSN: be.Uint32(h[28:]), MaxCmdSN: be.Uint32(h[32:]),
		R2TSN: be.Uint32(h[36:]), BufferOffset: be.Uint32(h[40:]), DesiredLength: be.Uint32(h[44:])}, nil
}

// ---- Asynchronous Message (RFC 7143 11.9) ----

// Async events (RFC 7143 11.9.1).
const (
	asyncSCSIEvent      = 0
	asyncLogoutRequest  = 1
	asyncDropConnection = 2
	asyncDropAll        = 3
	asyncNegotiate      = 4
)

// AsyncMsg is an Asynchronous Message (RFC 7143 11.9).
type AsyncMsg struct {
	LUN                        uint64
	StatSN, ExpCmdSN, MaxCmdSN uint32
	Event, VCode               uint8
	Param1, Param2, Param3     uint16
	Data                       []byte
}

func (*AsyncMsg) Opcode() Opcode        { return OpAsync }
func (p *AsyncMsg) DataSegment() []byte { return p.Data }
func (p *AsyncMsg) encodeBHS(h []byte) {
	setOp(h, OpAsync, false)
	h[1] = 0x80
	be.PutUint64(h[8:], p.LUN)
	// RFC 7143 11.9: the ITT is reserved and set to 0xffffffff.
	be.PutUint32(h[16:], reservedTag)
	be.PutUint32(h[24:], p.StatSN)
	be.PutUint32(h[28:], p.ExpCmdSN)
	be.PutUint32(h[32:], p.MaxCmdSN)
	h[36] = p.Event
	h[37] = p.VCode
	be.PutUint16(h[38:], p.Param1)
	be.PutUint16(h[40:], p.Param2)
	be.PutUint16(h[42:], p.Param3)
}

func parseAsyncMsg(h, _, data []byte) (PDU, error) {
	return &AsyncMsg{LUN: be.Uint64(h[8:]), StatSN: be.Uint32(h[24:]), ExpCmdSN: be.Uint32(h[28:]),
		MaxCmdSN: be.Uint32(h[32:]), Event: h[36], VCode: h[37], Param1: be.Uint16(h[38:]),
		Param2: be.Uint16(h[40:]), Param3: be.Uint16(h[42:]), Data: data}, nil
}

// ---- Logout (RFC 7143 11.14, 11.15) ----

// Logout reasons (RFC 7143 11.14.1) and responses (11.15.1).
const (
	logoutCloseSession    = 0
	logoutCloseConnection = 1
	logoutRemoveForRecov  = 2

	logoutRespOK           = 0
	logoutRespCIDNotFound  = 1
	logoutRespNoRecovery   = 2
	logoutRespCleanupFaild = 3
)

// LogoutReq is a Logout Request (RFC 7143 11.14).
type LogoutReq struct {
	Immediate        bool
	Reason           uint8
	ITT              uint32
	CID              uint16
	CmdSN, ExpStatSN uint32
}

func (*LogoutReq) Opcode() Opcode      { return OpLogoutReq }
func (*LogoutReq) DataSegment() []byte { return nil }
func (p *LogoutReq) encodeBHS(h []byte) {
	setOp(h, OpLogoutReq, p.Immediate)
	h[1] = 0x80 | p.Reason&0x7f
	be.PutUint32(h[16:], p.ITT)
	be.PutUint16(h[20:], p.CID)
	be.PutUint32(h[24:], p.CmdSN)
	be.PutUint32(h[28:], p.ExpStatSN)
}

func parseLogoutReq(h, _, _ []byte) (PDU, error) {
	return &LogoutReq{Immediate: h[0]&0x40 != 0, Reason: h[1] & 0x7f, ITT: be.Uint32(h[16:]),
		CID: be.Uint16(h[20:]), CmdSN: be.Uint32(h[24:]), ExpStatSN: be.Uint32(h[28:])}, nil
}

// LogoutResp is a Logout Response (RFC 7143 11.15).
type LogoutResp struct {
	Response                   uint8
	ITT                        uint32
	StatSN, ExpCmdSN, MaxCmdSN uint32
	Time2Wait, Time2Retain     uint16
}

func (*LogoutResp) Opcode() Opcode      { return OpLogoutResp }
func (*LogoutResp) DataSegment() []byte { return nil }
func (p *LogoutResp) encodeBHS(h []byte) {
	setOp(h, OpLogoutResp, false)
	h[1] = 0x80
	h[2] = p.Response
	be.PutUint32(h[16:], p.ITT)
	be.PutUint32(h[24:], p.StatSN)
	be.PutUint32(h[28:], p.ExpCmdSN)
	be.PutUint32(h[32:], p.MaxCmdSN)
	be.PutUint16(h[40:], p.Time2Wait)
	be.PutUint16(h[42:], p.Time2Retain)
}

func parseLogoutResp(h, _, _ []byte) (PDU, error) {
	return &LogoutResp{Response: h[2], ITT: be.Uint32(h[16:]), StatSN: be.Uint32(h[24:]),
		ExpCmdSN: be.Uint32(h[28:]), MaxCmdSN: be.Uint32(h[32:]), Time2Wait: be.Uint16(h[40:]),
		Time2Retain: be.Uint16(h[42:])}, nil
}

// ---- SNACK (RFC 7143 11.16) ----

// SNACKReq is a SNACK Request (RFC 7143 11.16).
type SNACKReq struct {
	Type              uint8
	LUN               uint64
	ITT, TTT          uint32
	ExpStatSN         uint32
	BegRun, RunLength uint32
}

func (*SNACKReq) Opcode() Opcode      { return OpSNACK }
func (*SNACKReq) DataSegment() []byte { return nil }
func (p *SNACKReq) encodeBHS(h []byte) {
	setOp(h, OpSNACK, false)
	h[1] = 0x80 | p.Type&0x0f
	be.PutUint64(h[8:], p.LUN)
	be.PutUint32(h[16:], p.ITT)
	be.PutUint32(h[20:], p.TTT)
	be.PutUint32(h[28:], p.ExpStatSN)
	be.PutUint32(h[40:], p.BegRun)
	be.PutUint32(h[44:], p.RunLength)
}

func parseSNACK(h, _, _ []byte) (PDU, error) {
	return &SNACKReq{Type: h[1] & 0x0f, LUN: be.Uint64(h[8:]), ITT: be.Uint32(h[16:]),
		TTT: be.Uint32(h[20:]), ExpStatSN: be.Uint32(h[28:]), BegRun: be.Uint32(h[40:]),
		RunLength: be.Uint32(h[44:])}, nil
}

// ---- Reject (RFC 7143 11.17) ----

// Reject is a Reject PDU (RFC 7143 11.17). Data is the complete header of
// the rejected PDU.
type Reject struct {
	Reason                     uint8
	StatSN, ExpCmdSN, MaxCmdSN uint32
	DataSN                     uint32
	Data                       []byte
}

func (*Reject) Opcode() Opcode        { return OpReject }
func (p *Reject) DataSegment() []byte { return p.Data }
func (p *Reject) encodeBHS(h []byte) {
	setOp(h, OpReject, false)
	h[1] = 0x80
	h[2] = p.Reason
	// RFC 7143 11.17: the ITT field is 0xffffffff.
	be.PutUint32(h[16:], reservedTag)
	be.PutUint32(h[24:], p.StatSN)
	be.PutUint32(h[28:], p.ExpCmdSN)
	be.PutUint32(h[32:], p.MaxCmdSN)
	be.PutUint32(h[36:], p.DataSN)
}

func parseReject(h, _, data []byte) (PDU, error) {
	return &Reject{Reason: h[2], StatSN: be.Uint32(h[24:]), ExpCmdSN: be.Uint32(h[28:]),
		MaxCmdSN: be.Uint32(h[32:]), DataSN: be.Uint32(h[36:]), Data: data}, nil
}

// ---- Unknown opcodes ----

// UnknownPDU is any PDU whose opcode has no parser. The connection answers
// it with Reject "command not supported" (RFC 7143 11.17.1).
type UnknownPDU struct {
	Op   Opcode
	BHS  [bhsLen]byte
	Data []byte
}

func (p *UnknownPDU) Opcode() Opcode      { return p.Op }
func (p *UnknownPDU) DataSegment() []byte { return p.Data }
func (p *UnknownPDU) encodeBHS(h []byte)  { copy(h, p.BHS[:]) }

func parseUnknown(h, _, data []byte) (PDU, error) {
	p := &UnknownPDU{Op: Opcode(h[0] & 0x3f), Data: data}
	copy(p.BHS[:], h)
	return p, nil
}

type pduParser func(bhs, ahs, data []byte) (PDU, error)

// pduParsers maps opcodes to their parsers; missing entries fall back to
// parseUnknown.
var pduParsers = [64]pduParser{
	OpNopOut:       parseNopOut,
	OpSCSICmd:      parseSCSICmd,
	OpTaskMgmtReq:  parseTaskMgmtReq,
	OpLoginReq:     parseLoginReq,
	OpTextReq:      parseTextReq,
	OpDataOut:      parseDataOut,
	OpLogoutReq:    parseLogoutReq,
	OpSNACK:        parseSNACK,
	OpNopIn:        parseNopIn,
	OpSCSIResp:     parseSCSIResp,
	OpTaskMgmtResp: parseTaskMgmtResp,
	OpLoginResp:    parseLoginResp,
	OpTextResp:     parseTextResp,
	OpDataIn:       parseDataIn,
	OpLogoutResp:   parseLogoutResp,
	OpR2T:          parseR2T,
	OpAsync:        parseAsyncMsg,
	OpReject:       parseReject,
}

// ParsePDU decodes one PDU from its BHS (48 bytes), AHS and unpadded data
// segment. The returned PDU may alias data.
func ParsePDU(bhs, ahs, data []byte) (PDU, error) {
	if len(bhs) < bhsLen {
		return nil, &ParseError{RejectProtocolError, "short BHS"}
	}
	// RFC 7143 11.2.1.4: only the SCSI Command carries AHS.
	if len(ahs) > 0 && Opcode(bhs[0]&0x3f) != OpSCSICmd {
		return nil, &ParseError{RejectInvalidField, "AHS on a PDU that takes none"}
	}
	f := pduParsers[bhs[0]&0x3f]
	if f == nil {
		f = parseUnknown
	}
	return f(bhs[:bhsLen], ahs, data)
}

// encodeHeader writes p's BHS, AHS and (with hdrDigest) header digest into
// dst, which must hold at least bhsLen+len(AHS)+4 bytes. It returns the
// number of bytes written.
func encodeHeader(dst []byte, p PDU, hdrDigest bool) int {
	h := dst[:bhsLen]
	clear(h)
	p.encodeBHS(h)
	n := bhsLen
	if a, ok := p.(ahsCarrier); ok {
		ahs := a.appendAHS(dst[bhsLen:bhsLen])
		n += len(ahs)
		h[4] = byte(len(ahs) / 4)
	}
	dl := len(p.DataSegment())
	h[5], h[6], h[7] = byte(dl>>16), byte(dl>>8), byte(dl)
	if hdrDigest {
		le.PutUint32(dst[n:], crc32c(dst[:n]))
		n += digestLen
	}
	return n
}

// AppendPDU appends the whole wire form of p (header, digests, data and
// padding) to dst. The hot path uses the writer's vectored form instead.
func AppendPDU(dst []byte, p PDU, hdrDigest, dataDigest bool) []byte {
	var hb [bhsLen + 4*maxAHSLenWords + digestLen]byte
	n := encodeHeader(hb[:], p, hdrDigest)
	dst = append(dst, hb[:n]...)
	data := p.DataSegment()
	if len(data) > 0 {
		dst = append(dst, data...)
		pad := padLen(len(data))
		dst = append(dst, zeroPad[:pad]...)
		if dataDigest {
			dst = le.AppendUint32(dst, crc32cPadded(data, pad))
		}
	}
	return dst
}

var zeroPad [4]byte

func padLen(n int) int { return (4 - n%4) % 4 }
