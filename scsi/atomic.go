package scsi

// WriteAtomic is WRITE ATOMIC(16) (SBC-4 5.48): either every logical block
// of the command is written or none is, as seen by any other command.
type WriteAtomic struct {
	LBA      uint64
	Boundary uint16
	Blocks   uint16
	DPO, FUA bool
}

// Atomic write limits of the block limits VPD page (SBC-4 6.6.4). The
// device server makes a WRITE ATOMIC atomic against every other command of
// the LU with its exclusive range lock and hands the backend one request;
// across a crash only the backend can make it atomic, so the limits are
// the backend's atomic unit (AtomicWriter): at most one unit, starting at
// a multiple of it, so that the write never straddles two units.
const (
	// maxAtomicTransferBytes bounds MAXIMUM ATOMIC TRANSFER LENGTH.
	maxAtomicTransferBytes = 1 << 20
	atomicGranularity      = 1 // ATOMIC TRANSFER LENGTH GRANULARITY: any length
)

func registerWriteAtomic(t *opcodeTable) {
	t.add(define("WRITE ATOMIC(16)",
		usage(0x9C, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x07),
		opMedia|opWrite|opAtomicWrite, decodeWriteAtomic, execWriteAtomic))
}

func decodeWriteAtomic(cdb []byte) (WriteAtomic, error) {
	// SBC-4 5.48: WRPROTECT as for WRITE(16): a non-zero value without
	// protection information is INVALID FIELD IN CDB.
	if cdb[1]&0xE0 != 0 {
		return WriteAtomic{}, invalidCDB(1, 7)
	}
	c := WriteAtomic{LBA: be64(cdb[2:10]), Boundary: be16(cdb[10:12]), Blocks: be16(cdb[12:14]),
		DPO: cdb[1]&0x10 != 0, FUA: cdb[1]&0x08 != 0}
	// SBC-4 5.48: "If the ATOMIC BOUNDARY field is set to a non-zero value
	// and the MAXIMUM ATOMIC BOUNDARY SIZE field ... is set to zero, then
	// the device server shall terminate the command ... INVALID FIELD IN
	// CDB." We report MAXIMUM ATOMIC BOUNDARY SIZE zero.
	if c.Boundary != 0 {
		return WriteAtomic{}, invalidCDB(10, -1)
	}
	return c, nil
}

// maxAtomicBlocks is MAXIMUM ATOMIC TRANSFER LENGTH in blocks, and also
// the ATOMIC ALIGNMENT: the largest power of two number of blocks within
// the backend's atomic unit, never more than MAXIMUM TRANSFER LENGTH
// (SBC-4 6.6.4). Zero: the backend promises no atomic write, and WRITE
// ATOMIC is not supported.
func (lu *LogicalUnit) maxAtomicBlocks() uint32 {
	a, ok := lu.be.(AtomicWriter)
	if !ok {
		return 0
	}
	unit := min(a.AtomicWriteUnit(), maxAtomicTransferBytes, int64(lu.cfg.MaxTransferBlocks)*lu.bs)
	blocks := unit / lu.bs
	if blocks <= 0 {
		return 0
	}
	// A power of two, so that an aligned write stays inside one unit
	// whatever the unit's own size.
	p := int64(1)
	for p*2 <= blocks {
		p *= 2
	}
	return uint32(p)
}

func execWriteAtomic(r *request, c WriteAtomic) error {
	lu := r.lu
	if err := lu.checkRange(c.LBA, uint64(c.Blocks)); err != nil {
		return err
	}
	// SBC-4 5.48: "If the TRANSFER LENGTH field is greater than the
	// MAXIMUM ATOMIC TRANSFER LENGTH field ... INVALID FIELD IN CDB."
	maxBlocks := lu.maxAtomicBlocks()
	if uint32(c.Blocks) > maxBlocks {
		return invalidCDB(12, -1)
	}
	// SBC-4 5.48: "If the LOGICAL BLOCK ADDRESS field is not a multiple of
	// the ATOMIC ALIGNMENT field ... INVALID FIELD IN CDB", and likewise a
	// TRANSFER LENGTH that is not a multiple of the ATOMIC TRANSFER LENGTH
	// GRANULARITY.
	if c.LBA%uint64(maxBlocks) != 0 {
		return invalidCDB(2, -1)
	}
	if uint32(c.Blocks)%atomicGranularity != 0 {
		return invalidCDB(12, -1)
	}
	n := int64(c.Blocks) * lu.bs
	r.resp.TransferLength = int(n)
	// SBC-4 5.48: "A TRANSFER LENGTH field set to zero specifies that no
	// logical blocks shall be written. This condition shall not be
	// considered an error."
	if n == 0 {
		return nil
	}
	// All or nothing: a Data-Out buffer shorter than the command cannot be
	// written atomically, so nothing is written.
	if int64(len(r.cmd.DataOut)) < n {
		return invalidCDB(12, -1)
	}
	off := int64(c.LBA) * lu.bs
	unlock := lu.lockRange(off, n, true)
	defer unlock()
	fua := c.FUA || !lu.writeCacheEnabled()
	if err := lu.be.WriteAt(r.ctx, r.cmd.DataOut[:n], off, fua); err != nil {
		return mediaError(err, true)
	}
	return nil
}
