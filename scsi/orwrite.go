package scsi

// OrWrite is ORWRITE(16) (SBC-3 5.11): the Data-Out buffer is ORed into
// the medium, read-modify-write, atomically with respect to every other
// command of this LU that touches the range.
type OrWrite struct {
	LBA      uint64
	Blocks   uint32
	DPO, FUA bool
}

func registerOrWrite(t *opcodeTable) {
	t.add(define("ORWRITE(16)",
		usage(0x8B, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x07),
		opMedia|opWrite, decodeOrWrite, execOrWrite))
}

func decodeOrWrite(cdb []byte) (OrWrite, error) {
	// SBC-3 5.11: ORPROTECT "If the logical unit does not support protection
	// information ... and the ORPROTECT field is not set to 000b, then the
	// device server shall terminate the command with CHECK CONDITION status
	// with the sense key set to ILLEGAL REQUEST and the additional sense code
	// set to INVALID FIELD IN CDB."
	if cdb[1]&0xE0 != 0 {
		return OrWrite{}, invalidCDB(1, 7)
	}
	return OrWrite{LBA: be64(cdb[2:10]), Blocks: be32(cdb[10:14]), DPO: cdb[1]&0x10 != 0, FUA: cdb[1]&0x08 != 0}, nil
}

// orWriteLenField is the CDB offset of ORWRITE(16)'s TRANSFER LENGTH.
const orWriteLenField = 10

func execOrWrite(r *request, c OrWrite) error {
	lu := r.lu
	// SBC-3 5.11 / 4.5: LBA plus TRANSFER LENGTH beyond the capacity is
	// LOGICAL BLOCK ADDRESS OUT OF RANGE.
	if err := lu.checkRange(c.LBA, uint64(c.Blocks)); err != nil {
		return err
	}
	if err := lu.checkTransfer(uint64(c.Blocks), orWriteLenField); err != nil {
		return err
	}
	n := int64(c.Blocks) * lu.bs
	r.resp.TransferLength = int(n)
	// As for WRITE, only whole blocks the initiator actually sent are
	// applied (a short Data-Out is an overflow residual, not an error).
	if have := int64(len(r.cmd.DataOut)); have < n {
		n = have - have%lu.bs
	}
	// SBC-3 5.11: "A TRANSFER LENGTH field set to zero specifies that no
	// logical blocks shall be transferred. This condition shall not be
	// considered an error."
	if n == 0 {
		return nil
	}
	off := int64(c.LBA) * lu.bs
	// SBC-3 5.11: the read, the OR and the write are one operation; the
	// exclusive range lock keeps every overlapping command of this LU out
	// until the result is on the medium.
	unlock := lu.lockRange(off, n, true)
	defer unlock()
	buf := make([]byte, n)
	if err := lu.be.ReadAt(r.ctx, buf, off); err != nil {
		return mediaError(err, false)
	}
	for i, v := range r.cmd.DataOut[:n] {
		buf[i] |= v
	}
	fua := c.FUA || !lu.writeCacheEnabled()
	if err := lu.be.WriteAt(r.ctx, buf, off, fua); err != nil {
		return mediaError(err, true)
	}
	return nil
}
