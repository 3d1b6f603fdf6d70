package scsi

// ReadCapacity10 is READ CAPACITY(10) (SBC-3 5.15).
type ReadCapacity10 struct {
	LBA uint32
	PMI bool
}

func decodeReadCapacity10(cdb []byte) (ReadCapacity10, error) {
	c := ReadCapacity10{LBA: be32(cdb[2:]), PMI: cdb[8]&0x01 != 0}
	// SBC-3 5.15.1: "If the PMI bit is set to zero and the LOGICAL BLOCK
	// ADDRESS field is not set to zero, the device server shall terminate the
	// command ... INVALID FIELD IN CDB."
	if !c.PMI && c.LBA != 0 {
		return ReadCapacity10{}, invalidCDB(2, -1)
	}
	return c, nil
}

func execReadCapacity10(r *request, _ ReadCapacity10) error {
	lu := r.lu
	blocks := lu.capacity()
	b := make([]byte, 8)
	// SBC-3 5.15.2: "If the number of logical blocks exceeds the maximum
	// value that is able to be specified in the RETURNED LOGICAL BLOCK
	// ADDRESS field, the device server shall set [it] to FFFF_FFFFh".
	last := uint64(0)
	if blocks > 0 {
		last = blocks - 1
	}
	if last > 0xFFFFFFFF {
		put32(b, 0xFFFFFFFF)
	} else {
		put32(b, uint32(last))
	}
	put32(b[4:], uint32(lu.bs))
	r.dataIn(b, len(b))
	return nil
}

// ReadCapacity16 is READ CAPACITY(16), SERVICE ACTION IN(16) 10h (SBC-3 5.16).
type ReadCapacity16 struct {
	LBA   uint64
	PMI   bool
	Alloc uint32
}

func decodeReadCapacity16(cdb []byte) (ReadCapacity16, error) {
	c := ReadCapacity16{LBA: be64(cdb[2:]), Alloc: be32(cdb[10:]), PMI: cdb[14]&0x01 != 0}
	// SBC-3 5.16.1: same PMI/LBA rule as READ CAPACITY(10).
	if !c.PMI && c.LBA != 0 {
		return ReadCapacity16{}, invalidCDB(2, -1)
	}
	return c, nil
}

func execReadCapacity16(r *request, c ReadCapacity16) error {
	lu := r.lu
	blocks := lu.capacity()
	b := make([]byte, 32)
	if blocks > 0 {
		put64(b, blocks-1)
	}
	put32(b[8:], uint32(lu.bs))
	// SBC-3 5.16.2: "The LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT field
	// is defined in table 63" (2^n logical blocks per physical block);
	// LOWEST ALIGNED LOGICAL BLOCK ADDRESS stays 0.
	b[13] = lu.physBlockExponent() & 0x0F
	// SBC-3 5.16.2: LBPME reports logical block provisioning management
	// (UNMAP support); LBPRZ that unmapped blocks read as zeros.
	if lu.thin() {
		b[14] |= 0x80
		if lu.unmapReadsZero() {
			b[14] |= 0x40
		}
	}
	r.dataIn(b, int(c.Alloc))
	return nil
}

// physicalBlockBytes is the physical block size reported for every LU:
// file images and RBD objects are written in 4 KiB pages, so smaller
// writes cost a read-modify-write underneath.
const physicalBlockBytes = 4096

// physBlockExponent is the LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT of
// READ CAPACITY(16): 3 for 512-byte logical blocks, 0 for 4096.
func (lu *LogicalUnit) physBlockExponent() byte {
	var e byte
	for n := lu.bs; n < physicalBlockBytes; n <<= 1 {
		e++
	}
	return e
}
