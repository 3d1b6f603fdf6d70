package scsi

import (
	"encoding/binary"
	"fmt"
)

// Sense keys (SPC-4 4.5.6, table 27).
const (
	SenseNoSense        = 0x0
	SenseRecoveredError = 0x1
	SenseNotReady       = 0x2
	SenseMediumError    = 0x3
	SenseHardwareError  = 0x4
	SenseIllegalRequest = 0x5
	SenseUnitAttention  = 0x6
	SenseDataProtect    = 0x7
	SenseBlankCheck     = 0x8
	SenseCopyAborted    = 0xA
	SenseAbortedCommand = 0xB
	SenseMiscompare     = 0xE
)

// CheckCondition is a command outcome of CHECK CONDITION status with sense
// data (SPC-4 4.5). Exec and decode functions return it as an error; the
// device server turns it into the Response.
type CheckCondition struct {
	Key       byte
	ASC, ASCQ byte
	// Field, when FieldValid, is the byte offset of the offending field in
	// the CDB (CD true) or in the parameter list (CD false); Bit, when >= 0,
	// the bit within that byte (SPC-4 4.5.2.4.2, table 30).
	FieldValid bool
	CD         bool
	Field      uint16
	Bit        int8
	// Info, when InfoValid, goes in the INFORMATION field (e.g. the offset of
	// a miscompare, SBC-3 5.2).
	InfoValid bool
	Info      uint64
	// Deferred marks deferred sense (response code 71h/73h).
	Deferred bool
	// Progress, when ProgressValid, is the progress indication sense key
	// specific field (SPC-4 4.5.2.4.4): the fraction done of a long
	// operation, in 65536ths. It is used instead of a field pointer.
	ProgressValid bool
	Progress      uint16
}

func (c *CheckCondition) Error() string {
	s := fmt.Sprintf("scsi: check condition key=%#x asc/ascq=%02x/%02x", c.Key, c.ASC, c.ASCQ)
	if c.FieldValid {
		s += fmt.Sprintf(" field=%d bit=%d cd=%v", c.Field, c.Bit, c.CD)
	}
	return s
}

// newCC builds a plain check condition.
func newCC(key, asc, ascq byte) *CheckCondition {
	return &CheckCondition{Key: key, ASC: asc, ASCQ: ascq, Bit: -1}
}

// invalidCDB is ILLEGAL REQUEST, INVALID FIELD IN CDB (24/00) pointing at
// byte off (bit bit, or -1 for the whole byte) of the CDB.
func invalidCDB(off int, bit int) *CheckCondition {
	return &CheckCondition{Key: SenseIllegalRequest, ASC: 0x24, FieldValid: true, CD: true, Field: uint16(off), Bit: int8(bit)}
}

// invalidParam is ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (26/00)
// pointing at byte off (bit bit, or -1) of the parameter data.
func invalidParam(off int, bit int) *CheckCondition {
	return &CheckCondition{Key: SenseIllegalRequest, ASC: 0x26, FieldValid: true, Field: uint16(off), Bit: int8(bit)}
}

// Common conditions. Each call returns a fresh value so callers may adjust it.
func errInvalidOpcode() *CheckCondition {
	// SPC-4 4.5.6 table 28: 20/00 INVALID COMMAND OPERATION CODE. The field
	// pointer names the operation code (or service action) byte.
	c := invalidCDB(0, -1)
	c.ASC = 0x20
	return c
}
func errLBAOutOfRange() *CheckCondition   { return newCC(SenseIllegalRequest, 0x21, 0x00) }
func errParamListLength() *CheckCondition { return newCC(SenseIllegalRequest, 0x1A, 0x00) }
func errLUNotSupported() *CheckCondition  { return newCC(SenseIllegalRequest, 0x25, 0x00) }
func errWriteProtected() *CheckCondition  { return newCC(SenseDataProtect, 0x27, 0x00) }
func errReadError() *CheckCondition       { return newCC(SenseMediumError, 0x11, 0x00) }
func errWriteError() *CheckCondition      { return newCC(SenseMediumError, 0x0C, 0x00) }
func errSavingNotSupported() *CheckCondition {
	c := invalidCDB(2, 7)
	c.ASC = 0x39
	return c
}

// StatusError is a command outcome other than GOOD or CHECK CONDITION that
// carries no sense data (RESERVATION CONFLICT, BUSY, TASK SET FULL).
type StatusError struct{ Status byte }

func (e *StatusError) Error() string { return fmt.Sprintf("scsi: status %#02x", e.Status) }

var (
	errReservationConflict = &StatusError{Status: StatusReservationConflict}
	errBusy                = &StatusError{Status: StatusBusy}
)

// sks encodes the 3-byte sense-key specific field for a field pointer
// (SPC-4 4.5.2.4.2).
func (c *CheckCondition) sks() [3]byte {
	var b [3]byte
	if c.ProgressValid {
		b[0] = 0x80 // SKSV
		binary.BigEndian.PutUint16(b[1:], c.Progress)
		return b
	}
	if !c.FieldValid {
		return b
	}
	b[0] = 0x80 // SKSV
	if c.CD {
		b[0] |= 0x40
	}
	if c.Bit >= 0 {
		b[0] |= 0x08 | byte(c.Bit&7) // BPV + bit pointer
	}
	binary.BigEndian.PutUint16(b[1:], c.Field)
	return b
}

// Sense renders the sense data: fixed format (SPC-4 4.5.3) or, with desc,
// descriptor format (SPC-4 4.5.2) as the control mode page's D_SENSE asks.
func (c *CheckCondition) Sense(desc bool) []byte {
	if desc {
		b := make([]byte, 8, 8+12+8)
		b[0] = 0x72
		if c.Deferred {
			b[0] = 0x73
		}
		b[1] = c.Key & 0x0F
		b[2] = c.ASC
		b[3] = c.ASCQ
		if c.InfoValid {
			// Information sense data descriptor (SPC-4 4.5.2.2).
			d := make([]byte, 12)
			d[0], d[1], d[2] = 0x00, 0x0A, 0x80
			binary.BigEndian.PutUint64(d[4:], c.Info)
			b = append(b, d...)
		}
		if c.FieldValid || c.ProgressValid {
			// Sense key specific sense data descriptor (SPC-4 4.5.2.3).
			s := c.sks()
			b = append(b, 0x02, 0x06, 0, 0, s[0], s[1], s[2], 0)
		}
		b[7] = byte(len(b) - 8)
		return b
	}
	b := make([]byte, 18)
	b[0] = 0x70
	if c.Deferred {
		b[0] = 0x71
	}
	b[2] = c.Key & 0x0F
	if c.InfoValid {
		b[0] |= 0x80 // VALID: INFORMATION is meaningful
		binary.BigEndian.PutUint32(b[3:], uint32(c.Info))
	}
	b[7] = 10 // additional sense length
	b[12] = c.ASC
	b[13] = c.ASCQ
	s := c.sks()
	copy(b[15:], s[:])
	return b
}

// noSense is the REQUEST SENSE answer when nothing is pending.
func noSense(desc bool) []byte {
	return (&CheckCondition{Key: SenseNoSense, Bit: -1}).Sense(desc)
}
