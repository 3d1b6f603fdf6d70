package scsi

// WriteSame is WRITE SAME(10) and WRITE SAME(16) (SBC-3 5.41, 5.42).
type WriteSame struct {
	LBA    uint64
	Blocks uint32
	Unmap  bool
	NDOB   bool // (16) no Data-Out buffer: the block is all zeros
	FUA    bool
	// lenField is the CDB offset of NUMBER OF LOGICAL BLOCKS.
	lenField int
}

// writeSameChunk bounds the buffer used when the backend cannot replicate
// a block itself.
const writeSameChunk = 1 << 20

func registerWriteSame(t *opcodeTable) {
	t.add(define("WRITE SAME(10)", usage(0x41, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x07),
		opMedia|opWrite, decodeWriteSame10, execWriteSame))
	t.add(define("WRITE SAME(16)", usage(0x93, 0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x07),
		opMedia|opWrite, decodeWriteSame16, execWriteSame))
}

// checkWriteSameByte1 validates the flags byte common to both CDBs.
func checkWriteSameByte1(b byte) error {
	// SBC-3 5.41: no protection information here: "If the WRPROTECT field
	// is set to a non-zero value ... INVALID FIELD IN CDB".
	if b&0xE0 != 0 {
		return invalidCDB(1, 7)
	}
	// SBC-3 5.41: "If the ANCHOR bit is set to one and the ANC_SUP bit in
	// the Logical Block Provisioning VPD page is set to zero, ... INVALID
	// FIELD IN CDB". We advertise ANC_SUP=0.
	if b&0x10 != 0 {
		return invalidCDB(1, 4)
	}
	// SBC-3 5.41: PBDATA and LBDATA (bits 2, 1) request protection or LBA
	// stamping we do not support: INVALID FIELD IN CDB.
	if b&0x04 != 0 {
		return invalidCDB(1, 2)
	}
	if b&0x02 != 0 {
		return invalidCDB(1, 1)
	}
	return nil
}

func decodeWriteSame10(cdb []byte) (WriteSame, error) {
	c := WriteSame{LBA: uint64(be32(cdb[2:6])), Blocks: uint32(be16(cdb[7:9])), Unmap: cdb[1]&0x08 != 0, lenField: 7}
	return c, checkWriteSameByte1(cdb[1])
}

func decodeWriteSame16(cdb []byte) (WriteSame, error) {
	c := WriteSame{LBA: be64(cdb[2:10]), Blocks: be32(cdb[10:14]), Unmap: cdb[1]&0x08 != 0, NDOB: cdb[1]&0x01 != 0, lenField: 10}
	return c, checkWriteSameByte1(cdb[1])
}

func execWriteSame(r *request, c WriteSame) error {
	lu := r.lu
	capBlocks := lu.capacity()
	if c.LBA > capBlocks {
		return errLBAOutOfRange()
	}
	blocks := uint64(c.Blocks)
	if blocks == 0 {
		// SBC-3 5.41 with WSNZ=0 in the Block Limits VPD page: "A NUMBER OF
		// LOGICAL BLOCKS field set to zero requests that the device server
		// write all of the logical blocks starting with the one specified
		// in the LOGICAL BLOCK ADDRESS field to the last logical block".
		blocks = capBlocks - c.LBA
	}
	if err := lu.checkRange(c.LBA, blocks); err != nil {
		return err
	}
	// SBC-3 6.5.3: "If the NUMBER OF LOGICAL BLOCKS field ... exceeds the
	// MAXIMUM WRITE SAME LENGTH ... INVALID FIELD IN CDB".
	if blocks > maxWriteSameBlocks {
		return invalidCDB(c.lenField, -1)
	}
	var block []byte
	if c.NDOB {
		block = make([]byte, lu.bs)
	} else {
		r.resp.TransferLength = int(lu.bs)
		// SBC-3 5.41: the Data-Out buffer is exactly one logical block. A
		// transfer of another size (libiscsi WriteSame*.InvalidDataOutSize)
		// cannot be interpreted: INVALID FIELD IN CDB.
		if int64(len(r.cmd.DataOut)) != lu.bs || int64(r.cmd.ExpectedLength) != lu.bs {
			return invalidCDB(c.lenField, -1)
		}
		block = r.cmd.DataOut[:lu.bs]
	}
	if blocks == 0 {
		return nil
	}
	off, n := int64(c.LBA)*lu.bs, int64(blocks)*lu.bs
	unlock := lu.lockRange(off, n, false)
	defer unlock()
	// SBC-3 5.42/5.43 (UNMAP): "If the UNMAP bit is set to one ... the
	// device server shall perform the actions described in 4.7.3.4" (the
	// unmap operation) for the specified LBAs. With LBPRZ=1 a deallocated
	// block reads back as zeros whatever the Data-Out buffer held, which is
	// what libiscsi's WriteSame*.Unmap and UnmapUntilEnd check: deallocate
	// as for an all-zero block.
	if c.Unmap && lu.unmapReadsZero() && !allZero(block) {
		block = make([]byte, lu.bs)
	}
	if err := lu.writeSame(r, block, off, n, c.Unmap && lu.thin(), c.FUA); err != nil {
		return mediaError(err, true)
	}
	return nil
}

// writeSame replicates block over [off, off+n) with the cheapest backend
// operation that gives the same result.
func (lu *LogicalUnit) writeSame(r *request, block []byte, off, n int64, unmap, fua bool) error {
	ctx := r.ctx
	if allZero(block) {
		if wz, ok := lu.be.(WriteZeroer); ok {
			return lu.syncIf(r, fua, wz.WriteZeroes(ctx, off, n, unmap))
		}
		// SBC-3 4.7.3.4: a deallocated block may only stand for the data if
		// it reads back as zeros (LBPRZ).
		if zu, ok := lu.be.(ZeroingUnmapper); unmap && ok && zu.UnmapReadsZero() {
			return lu.syncIf(r, fua, lu.be.Unmap(ctx, off, n))
		}
	} else if sw, ok := lu.be.(SameWriter); ok {
		return lu.syncIf(r, fua, sw.WriteSame(ctx, block, off, n))
	}
	chunk := int64(writeSameChunk) - int64(writeSameChunk)%lu.bs
	if chunk < lu.bs {
		chunk = lu.bs
	}
	if chunk > n {
		chunk = n
	}
	buf := make([]byte, chunk)
	for i := int64(0); i < chunk; i += int64(len(block)) {
		copy(buf[i:], block)
	}
	durable := fua || !lu.writeCacheEnabled()
	for done := int64(0); done < n; {
		k := min(chunk, n-done)
		if err := lu.be.WriteAt(ctx, buf[:k], off+done, durable); err != nil {
			return err
		}
		done += k
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// syncIf makes a native zero/same/unmap durable when the write must be
// (FUA or WCE=0), since those calls carry no FUA flag.
func (lu *LogicalUnit) syncIf(r *request, fua bool, err error) error {
	if err != nil {
		return err
	}
	if fua || !lu.writeCacheEnabled() {
		return lu.be.Flush(r.ctx)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, v := range b {
		if v != 0 {
			return false
		}
	}
	return true
}
