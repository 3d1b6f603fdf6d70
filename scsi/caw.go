package scsi

import "errors"

// CompareAndWrite is COMPARE AND WRITE (SBC-3 5.2).
type CompareAndWrite struct {
	LBA    uint64
	Blocks uint8
	FUA    bool
}

func registerCAW(t *opcodeTable) {
	t.add(define("COMPARE AND WRITE",
		usage(0x89, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0x3F, 0x07),
		opMedia|opWrite, decodeCompareAndWrite, execCompareAndWrite))
}

func decodeCompareAndWrite(cdb []byte) (CompareAndWrite, error) {
	c := CompareAndWrite{LBA: be64(cdb[2:10]), Blocks: cdb[13], FUA: cdb[1]&0x08 != 0}
	// SBC-3 5.2 / 4.22.2: without protection information support, "If the
	// WRPROTECT field is set to a non-zero value ... INVALID FIELD IN CDB".
	if cdb[1]&0xE0 != 0 {
		return c, invalidCDB(1, 7)
	}
	return c, nil
}

// execCompareAndWrite compares the first half of the Data-Out buffer with
// the medium and, if equal, writes the second half, atomically with
// respect to every overlapping command of this LU (exclusive range lock)
// and, with a CompareWriter backend, of every gateway.
func execCompareAndWrite(r *request, c CompareAndWrite) error {
	lu := r.lu
	// SBC-3 5.2: "A NUMBER OF LOGICAL BLOCKS field set to zero specifies
	// that no read operations shall be performed, no logical block data
	// shall be transferred ..., and no write operations shall be
	// performed. This condition shall not be considered an error."
	if c.Blocks == 0 {
		// ... but a transfer announced with it cannot belong to this CDB:
		// libiscsi asks for 256 blocks that way (the one-byte field wraps
		// to zero) and expects INVALID FIELD IN CDB.
		if r.cmd.ExpectedLength != 0 || len(r.cmd.DataOut) != 0 {
			return invalidCDB(13, -1)
		}
		return lu.checkRange(c.LBA, 0)
	}
	// SBC-3 5.2: "If the number of logical blocks exceeds the value in the
	// MAXIMUM COMPARE AND WRITE LENGTH field ... INVALID FIELD IN CDB".
	if uint32(c.Blocks) > maxCompareAndWriteBlocks || uint32(c.Blocks)*2 > lu.cfg.MaxTransferBlocks {
		return invalidCDB(13, -1)
	}
	if err := lu.checkRange(c.LBA, uint64(c.Blocks)); err != nil {
		return err
	}
	n := int64(c.Blocks) * lu.bs
	r.resp.TransferLength = int(2 * n)
	// SBC-3 5.2: the Data-Out buffer holds the verify instance then the
	// write instance: 2 x NUMBER OF LOGICAL BLOCKS blocks. Anything short
	// cannot be compared.
	//
	// libiscsi's CompareAndWrite.InvalidDataOutSize: a Data-Out buffer of
	// another size than the CDB implies (the transport's expected length)
	// is refused rather than guessed at.
	if int64(len(r.cmd.DataOut)) != 2*n || int64(r.cmd.ExpectedLength) != 2*n {
		return invalidCDB(13, -1)
	}
	cmp, data := r.cmd.DataOut[:n], r.cmd.DataOut[n:2*n]
	off := int64(c.LBA) * lu.bs
	unlock := lu.lockRange(off, n, true)
	defer unlock()
	if cw, ok := lu.be.(CompareWriter); ok {
		err := cw.CompareAndWrite(r.ctx, cmp, data, off)
		var mc *MiscompareError
		if errors.As(err, &mc) {
			return miscompare(int(mc.Offset))
		}
		if err != nil {
			return mediaError(err, true)
		}
		return nil
	}
	got := make([]byte, n)
	if err := lu.be.ReadAt(r.ctx, got, off); err != nil {
		return mediaError(err, false)
	}
	// SBC-3 5.2: on a mismatch "the device server shall terminate the
	// command with CHECK CONDITION status with the sense key set to
	// MISCOMPARE and the additional sense code set to MISCOMPARE DURING
	// VERIFY OPERATION", INFORMATION = offset of the first differing byte.
	if i := firstDiff(got, cmp); i >= 0 {
		return miscompare(i)
	}
	fua := c.FUA || !lu.writeCacheEnabled()
	if err := lu.be.WriteAt(r.ctx, data, off, fua); err != nil {
		return mediaError(err, true)
	}
	return nil
}
