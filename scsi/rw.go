package scsi

import (
	"bytes"
)

// Read is READ(6), READ(10), READ(12) or READ(16) (SBC-3 5.7-5.10).
type Read struct {
	Op       byte
	LBA      uint64
	Blocks   uint32
	DPO, FUA bool
	// lenField is the CDB offset of TRANSFER LENGTH, for sense pointers.
	lenField int
}

// Write is WRITE(6/10/12/16) and WRITE AND VERIFY(10/12/16) (SBC-3 5.32-5.36).
type Write struct {
	Op       byte
	LBA      uint64
	Blocks   uint32
	DPO, FUA bool
	Verify   bool // WRITE AND VERIFY: BYTCHK is checked by re-reading
	BytChk   bool
	lenField int
}

// Verify is VERIFY(10/12/16) (SBC-3 5.28-5.30).
type Verify struct {
	Op       byte
	LBA      uint64
	Blocks   uint32
	BytChk   byte
	lenField int
}

// decodeRW pulls LBA, transfer length and the protect field out of the
// 10/12/16 byte read/write family, whose layouts share byte 1.
func decodeRWCommon(cdb []byte) (lba uint64, blocks uint32, lenField int) {
	switch len(cdb) {
	case 10:
		return uint64(be32(cdb[2:])), uint32(be16(cdb[7:])), 7
	case 12:
		return uint64(be32(cdb[2:])), be32(cdb[6:]), 6
	default:
		return be64(cdb[2:]), be32(cdb[10:]), 10
	}
}

func decodeRead6(cdb []byte) (Read, error) {
	// SBC-3 5.8: "A TRANSFER LENGTH field set to zero specifies that 256
	// logical blocks shall be read."
	n := uint32(cdb[4])
	if n == 0 {
		n = 256
	}
	return Read{Op: cdb[0], LBA: uint64(be24(cdb[1:]) & 0x1FFFFF), Blocks: n, lenField: 4}, nil
}

func decodeRead(cdb []byte) (Read, error) {
	// SBC-3 5.9 (RDPROTECT): "If the logical unit does not support protection
	// information ... and the RDPROTECT field is not set to 000b, the device
	// server shall terminate the command with ... INVALID FIELD IN CDB."
	if cdb[1]&0xE0 != 0 {
		return Read{}, invalidCDB(1, 7)
	}
	lba, n, lf := decodeRWCommon(cdb)
	return Read{Op: cdb[0], LBA: lba, Blocks: n, DPO: cdb[1]&0x10 != 0, FUA: cdb[1]&0x08 != 0, lenField: lf}, nil
}

func decodeWrite6(cdb []byte) (Write, error) {
	// SBC-3 5.33: transfer length 0 means 256 blocks.
	n := uint32(cdb[4])
	if n == 0 {
		n = 256
	}
	return Write{Op: cdb[0], LBA: uint64(be24(cdb[1:]) & 0x1FFFFF), Blocks: n, lenField: 4}, nil
}

func decodeWrite(cdb []byte) (Write, error) {
	// SBC-3 5.34 (WRPROTECT): non-zero without protection information is
	// INVALID FIELD IN CDB.
	if cdb[1]&0xE0 != 0 {
		return Write{}, invalidCDB(1, 7)
	}
	lba, n, lf := decodeRWCommon(cdb)
	return Write{Op: cdb[0], LBA: lba, Blocks: n, DPO: cdb[1]&0x10 != 0, FUA: cdb[1]&0x08 != 0, lenField: lf}, nil
}

func decodeWriteVerify(cdb []byte) (Write, error) {
	// SBC-3 5.37 (WRPROTECT) as for WRITE.
	if cdb[1]&0xE0 != 0 {
		return Write{}, invalidCDB(1, 7)
	}
	lba, n, lf := decodeRWCommon(cdb)
	// WRITE AND VERIFY has no FUA bit: the verify makes the data durable
	// (SBC-3 5.37: the write is verified on the medium), so FUA is implied.
	return Write{Op: cdb[0], LBA: lba, Blocks: n, DPO: cdb[1]&0x10 != 0, FUA: true, Verify: true, BytChk: cdb[1]&0x02 != 0, lenField: lf}, nil
}

func decodeVerify(cdb []byte) (Verify, error) {
	// SBC-3 5.28 (VRPROTECT): non-zero without protection information is
	// INVALID FIELD IN CDB.
	if cdb[1]&0xE0 != 0 {
		return Verify{}, invalidCDB(1, 7)
	}
	bytchk := (cdb[1] >> 1) & 0x03
	// SBC-4 5.31 table: BYTCHK 10b is reserved; 11b (compare one block
	// against the whole range) is not supported here.
	if bytchk > 1 {
		return Verify{}, invalidCDB(1, 2)
	}
	lba, n, lf := decodeRWCommon(cdb)
	return Verify{Op: cdb[0], LBA: lba, Blocks: n, BytChk: bytchk, lenField: lf}, nil
}

// execRead reads the range into the Data-In buffer.
func execRead(r *request, c Read) error {
	lu := r.lu
	if err := lu.checkRange(c.LBA, uint64(c.Blocks)); err != nil {
		return err
	}
	if err := lu.checkTransfer(uint64(c.Blocks), c.lenField); err != nil {
		return err
	}
	n := int64(c.Blocks) * lu.bs
	r.resp.TransferLength = int(n)
	// SBC-3 5.9: "A TRANSFER LENGTH field set to zero specifies that no
	// logical blocks shall be read. This condition shall not be considered an
	// error." Never hand the backend a zero-length request.
	if n == 0 {
		return nil
	}
	off := int64(c.LBA) * lu.bs
	unlock := lu.lockRange(off, n, false)
	defer unlock()
	if int64(len(r.cmd.DataIn)) >= n {
		if err := lu.be.ReadAt(r.ctx, r.cmd.DataIn[:n], off); err != nil {
			return mediaError(err, false)
		}
		r.resp.DataLen = int(n)
		return nil
	}
	// The initiator expects less than the command reads (residual
	// overflow): read the whole range, as the backend must never see a
	// truncated request, and send what fits.
	buf := make([]byte, n)
	if err := lu.be.ReadAt(r.ctx, buf, off); err != nil {
		return mediaError(err, false)
	}
	r.resp.DataLen = copy(r.cmd.DataIn, buf)
	return nil
}

// execWrite writes the Data-Out buffer.
func execWrite(r *request, c Write) error {
	lu := r.lu
	if err := lu.checkRange(c.LBA, uint64(c.Blocks)); err != nil {
		return err
	}
	if err := lu.checkTransfer(uint64(c.Blocks), c.lenField); err != nil {
		return err
	}
	n := int64(c.Blocks) * lu.bs
	r.resp.TransferLength = int(n)
	// The initiator may have sent less than the CDB asks (iSCSI EDTL below
	// the SCSI transfer length). libiscsi's Write10Residuals expects GOOD,
	// an overflow residual, and only the whole blocks received written.
	have := int64(len(r.cmd.DataOut))
	if have < n {
		n = have - have%lu.bs
	}
	if n == 0 {
		return nil
	}
	off := int64(c.LBA) * lu.bs
	unlock := lu.lockRange(off, n, false)
	defer unlock()
	data := r.cmd.DataOut[:n]
	// SBC-3 4.15 / 5.34 FUA: "the device server shall write the logical
	// blocks to the medium before completing". With WCE=0 every write is
	// durable, so FUA is implied.
	fua := c.FUA || !lu.writeCacheEnabled()
	if err := lu.be.WriteAt(r.ctx, data, off, fua); err != nil {
		return mediaError(err, true)
	}
	if c.Verify && c.BytChk {
		// SBC-3 5.37: with BYTCHK=1 the written data is compared with the
		// medium; a difference is MISCOMPARE DURING VERIFY OPERATION.
		got := make([]byte, n)
		if err := lu.be.ReadAt(r.ctx, got, off); err != nil {
			return mediaError(err, false)
		}
		if i := firstDiff(got, data); i >= 0 {
			return miscompare(i)
		}
	}
	return nil
}

// execVerify checks the range and, with BYTCHK=1, compares the Data-Out
// buffer with the medium.
func execVerify(r *request, c Verify) error {
	lu := r.lu
	if err := lu.checkRange(c.LBA, uint64(c.Blocks)); err != nil {
		return err
	}
	if err := lu.checkTransfer(uint64(c.Blocks), c.lenField); err != nil {
		return err
	}
	n := int64(c.Blocks) * lu.bs
	if c.BytChk == 0 {
		// SBC-3 5.28: BYTCHK=0 asks for a medium verification without data
		// transfer; reading the range is our medium check.
		if n == 0 {
			return nil
		}
		off := int64(c.LBA) * lu.bs
		unlock := lu.lockRange(off, n, false)
		defer unlock()
		buf := make([]byte, n)
		if err := lu.be.ReadAt(r.ctx, buf, off); err != nil {
			return mediaError(err, false)
		}
		return nil
	}
	r.resp.TransferLength = int(n)
	if n == 0 {
		return nil
	}
	data := r.cmd.DataOut
	if int64(len(data)) < n {
		// Fewer bytes than the CDB asks: compare only whole blocks received,
		// as for WRITE.
		n = int64(len(data)) - int64(len(data))%lu.bs
		if n == 0 {
			return nil
		}
	}
	data = data[:n]
	off := int64(c.LBA) * lu.bs
	unlock := lu.lockRange(off, n, false)
	defer unlock()
	got := make([]byte, n)
	if err := lu.be.ReadAt(r.ctx, got, off); err != nil {
		return mediaError(err, false)
	}
	if i := firstDiff(got, data); i >= 0 {
		return miscompare(i)
	}
	return nil
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// miscompare is MISCOMPARE, MISCOMPARE DURING VERIFY OPERATION (1D/00)
// with the offset of the first differing byte in INFORMATION (SBC-3 5.28).
func miscompare(off int) *CheckCondition {
	c := newCC(SenseMiscompare, 0x1D, 0x00)
	c.InfoValid = true
	c.Info = uint64(off)
	return c
}

func (lu *LogicalUnit) writeCacheEnabled() bool {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	return lu.mode.cur.wce
}

// SyncCache is SYNCHRONIZE CACHE(10/16) (SBC-3 5.22, 5.23).
type SyncCache struct {
	LBA    uint64
	Blocks uint32
	Immed  bool
}

func decodeSyncCache(cdb []byte) (SyncCache, error) {
	if len(cdb) == 10 {
		return SyncCache{LBA: uint64(be32(cdb[2:])), Blocks: uint32(be16(cdb[7:])), Immed: cdb[1]&0x02 != 0}, nil
	}
	return SyncCache{LBA: be64(cdb[2:]), Blocks: be32(cdb[10:]), Immed: cdb[1]&0x02 != 0}, nil
}

func execSyncCache(r *request, c SyncCache) error {
	// SBC-3 5.22: a range beyond the capacity is LBA OUT OF RANGE; zero
	// blocks means "to the end of the medium".
	if err := r.lu.checkRange(c.LBA, uint64(c.Blocks)); err != nil {
		return err
	}
	if err := r.lu.be.Flush(r.ctx); err != nil {
		return mediaError(err, true)
	}
	return nil
}

// PreFetch is PRE-FETCH(10/16) (SBC-3 5.4, 5.5).
type PreFetch struct {
	LBA    uint64
	Blocks uint32
	Immed  bool
}

func decodePreFetch(cdb []byte) (PreFetch, error) {
	if len(cdb) == 10 {
		return PreFetch{LBA: uint64(be32(cdb[2:])), Blocks: uint32(be16(cdb[7:])), Immed: cdb[1]&0x02 != 0}, nil
	}
	return PreFetch{LBA: be64(cdb[2:]), Blocks: be32(cdb[10:]), Immed: cdb[1]&0x02 != 0}, nil
}

func execPreFetch(r *request, c PreFetch) error {
	// SBC-3 5.4: LBA + blocks beyond capacity is LBA OUT OF RANGE. We keep
	// no cache of our own, so there is nothing to load; SBC-3 says CONDITION
	// MET is returned only "if the specified logical blocks will fit in the
	// cache", so GOOD is the honest answer.
	return r.lu.checkRange(c.LBA, uint64(c.Blocks))
}
