package scsi

// GetLBAStatus is GET LBA STATUS (SBC-3 5.16): SERVICE ACTION IN(16) 12h.
type GetLBAStatus struct {
	LBA      uint64
	AllocLen uint32
}

const (
	lbaStatusMapped      = 0x0
	lbaStatusDeallocated = 0x1
	// lbaStatusMaxDescriptors bounds the work of one command.
	lbaStatusMaxDescriptors = 256
)

func registerLBAStatus(t *opcodeTable) {
	t.add(define("GET LBA STATUS", usage(0x9E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07),
		opMedia|opResvRead, decodeGetLBAStatus, execGetLBAStatus).withSA(0x12))
}

func decodeGetLBAStatus(cdb []byte) (GetLBAStatus, error) {
	return GetLBAStatus{LBA: be64(cdb[2:10]), AllocLen: be32(cdb[10:14])}, nil
}

func execGetLBAStatus(r *request, c GetLBAStatus) error {
	lu := r.lu
	capBlocks := lu.capacity()
	// SBC-3 5.16.1: "If the specified starting LBA exceeds the capacity of
	// the medium, ... LOGICAL BLOCK ADDRESS OUT OF RANGE".
	if c.LBA >= capBlocks {
		return errLBAOutOfRange()
	}
	// SBC-3 5.16.1: an ALLOCATION LENGTH below the 8-byte header (e.g.
	// zero) is not an error; fewer bytes are simply returned.
	maxDesc := 1
	if c.AllocLen > 24 {
		maxDesc = int((c.AllocLen - 8) / 16)
	}
	maxDesc = min(maxDesc, lbaStatusMaxDescriptors)
	b := make([]byte, 8, 8+16*maxDesc)
	am, _ := lu.be.(AllocationMapper)
	lba := c.LBA
	for d := 0; d < maxDesc && lba < capBlocks; d++ {
		// A descriptor's NUMBER OF LOGICAL BLOCKS is 32 bits.
		limitBlocks := min(capBlocks-lba, 0xFFFFFFFF)
		mapped, blocks := true, limitBlocks
		if am != nil {
			m, length, err := am.Mapped(r.ctx, int64(lba)*lu.bs, int64(limitBlocks)*lu.bs)
			if err != nil {
				return mediaError(err, false)
			}
			mapped = m
			blocks = uint64(length / lu.bs)
			if blocks == 0 {
				blocks = 1
			}
			blocks = min(blocks, limitBlocks)
		}
		desc := make([]byte, 16)
		put64(desc[0:], lba)
		put32(desc[8:], uint32(blocks))
		// SBC-3 5.16.2 table 36: PROVISIONING STATUS 0h mapped, 1h
		// deallocated.
		if !mapped {
			desc[12] = lbaStatusDeallocated
		}
		b = append(b, desc...)
		lba += blocks
	}
	// PARAMETER DATA LENGTH: bytes that follow the field itself.
	put32(b[0:], uint32(len(b)-4))
	r.dataIn(b, int(c.AllocLen))
	return nil
}
