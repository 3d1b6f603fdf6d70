package scsi

import "encoding/binary"

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func be24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
func be64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func put16(b []byte, v uint16) { binary.BigEndian.PutUint16(b, v) }
func put32(b []byte, v uint32) { binary.BigEndian.PutUint32(b, v) }
func put64(b []byte, v uint64) { binary.BigEndian.PutUint64(b, v) }

// padASCII copies s into a fixed-width, space-padded ASCII field (SPC-4
// 4.4.1: ASCII data fields are left-aligned and padded with spaces).
func padASCII(dst []byte, s string) {
	for i := range dst {
		dst[i] = ' '
	}
	copy(dst, s)
}

// checkRange enforces the media range of a command: SBC-3 4.5 "If the
// logical block address plus the transfer length exceeds the capacity of
// the medium, the device server shall terminate the command with CHECK
// CONDITION status with the sense key set to ILLEGAL REQUEST and the
// additional sense code set to LOGICAL BLOCK ADDRESS OUT OF RANGE".
func (lu *LogicalUnit) checkRange(lba uint64, blocks uint64) error {
	capBlocks := lu.capacity()
	if lba > capBlocks || blocks > capBlocks-lba {
		return errLBAOutOfRange()
	}
	return nil
}

// checkTransfer enforces the MAXIMUM TRANSFER LENGTH of the block limits
// VPD page (SBC-3 6.5.3: "If a device server receives a request for a
// transfer length exceeding this value, ... INVALID FIELD IN CDB").
// lenField is the CDB offset of the TRANSFER LENGTH field.
func (lu *LogicalUnit) checkTransfer(blocks uint64, lenField int) error {
	if blocks > uint64(lu.cfg.MaxTransferBlocks) {
		return invalidCDB(lenField, -1)
	}
	return nil
}
