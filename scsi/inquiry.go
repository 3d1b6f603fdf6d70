package scsi

// Inquiry is INQUIRY (SPC-4 6.6).
type Inquiry struct {
	EVPD  bool
	Page  byte
	Alloc uint16
}

func decodeInquiry(cdb []byte) (Inquiry, error) {
	// SPC-4 6.6.1: CMDDT is obsolete; "If the CMDDT bit is set to one, the
	// device server shall terminate the command ... INVALID FIELD IN CDB"
	// (we do not support command support data).
	if cdb[1]&0x02 != 0 {
		return Inquiry{}, invalidCDB(1, 1)
	}
	c := Inquiry{EVPD: cdb[1]&0x01 != 0, Page: cdb[2], Alloc: be16(cdb[3:])}
	// SPC-4 6.6.1: "If the EVPD bit is set to zero and the PAGE CODE field is
	// not set to zero, the device server shall terminate the command ...
	// INVALID FIELD IN CDB."
	if !c.EVPD && c.Page != 0 {
		return Inquiry{}, invalidCDB(2, -1)
	}
	return c, nil
}

func execInquiry(r *request, c Inquiry) error {
	var b []byte
	if !c.EVPD {
		b = r.lu.standardInquiry()
	} else {
		gen := vpdPages[c.Page]
		if gen == nil {
			// SPC-4 6.6.1: an unsupported VPD page is INVALID FIELD IN CDB.
			return invalidCDB(2, -1)
		}
		b = gen(r)
	}
	r.dataIn(b, int(c.Alloc))
	return nil
}

// standardInquiry builds the standard INQUIRY data (SPC-4 6.6.2).
func (lu *LogicalUnit) standardInquiry() []byte {
	b := make([]byte, 74)
	b[0] = 0x00 // peripheral qualifier 000b, direct access block device
	b[1] = 0x00 // RMB=0: the medium is not removable
	b[2] = 0x06 // VERSION: SPC-4
	b[3] = 0x10 | 0x02
	// HISUP=1 (hierarchical LUNs), RESPONSE DATA FORMAT=2.
	b[4] = byte(len(b) - 5)
	b[5] = lu.tpgsBits() // TPGS: implicit, or implicit and explicit ALUA
	if lu.table.ops[0x83] != nil || lu.table.sa[0x83] != nil {
		b[5] |= 0x08 // 3PC: EXTENDED COPY is supported
	}
	b[6] = 0x10 // MULTIP: the LU is reachable through several gateways
	b[7] = 0x02 // CMDQUE: full task management
	padASCII(b[8:16], lu.cfg.VendorID)
	padASCII(b[16:32], lu.cfg.ProductID)
	padASCII(b[32:36], lu.cfg.ProductRevision)
	// Version descriptors (SPC-4 6.6.2 table 148): SAM-5, SPC-4, SBC-3,
	// iSCSI (no version claimed).
	for i, v := range []uint16{0x00A0, 0x0460, 0x04C0, 0x0960} {
		put16(b[58+2*i:], v)
	}
	return b
}

// vpdPages lists the supported VPD pages in ascending order (SPC-4 7.8.13:
// the supported VPD pages list "shall be in ascending order").
var vpdPageOrder = []byte{0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2}

var vpdPages map[byte]func(r *request) []byte

func init() {
	vpdPages = map[byte]func(r *request) []byte{
		0x00: vpdSupported,
		0x80: vpdSerial,
		0x83: vpdDeviceID,
		0xB0: vpdBlockLimits,
		0xB1: vpdBlockCharacteristics,
		0xB2: vpdProvisioning,
	}
}

func vpdHeader(page byte, body []byte) []byte {
	b := make([]byte, 4, 4+len(body))
	b[1] = page
	put16(b[2:], uint16(len(body)))
	return append(b, body...)
}

// vpdSupported is the Supported VPD Pages page (SPC-4 7.8.13).
func vpdSupported(r *request) []byte { return vpdHeader(0x00, vpdPageOrder) }

// vpdSerial is the Unit Serial Number page (SPC-4 7.8.14).
func vpdSerial(r *request) []byte { return vpdHeader(0x80, []byte(r.lu.cfg.Serial)) }

// vpdDeviceID is the Device Identification page (SPC-4 7.8.6).
func vpdDeviceID(r *request) []byte {
	lu := r.lu
	var body []byte
	desc := func(b0, b1 byte, id []byte) {
		body = append(body, b0, b1, 0, byte(len(id)))
		body = append(body, id...)
	}
	// NAA IEEE Registered Extended designator of the LU (7.8.6.6.5): binary
	// code set, association 00b (logical unit), designator type 3h.
	desc(0x01, 0x03, lu.cfg.WWN[:])
	// T10 vendor ID based designator (7.8.6.4): ASCII, type 1h; vendor id
	// then the unit serial number, identical on every gateway.
	t10 := make([]byte, 8, 8+len(lu.cfg.Serial))
	padASCII(t10, lu.cfg.VendorID)
	desc(0x02, 0x01, append(t10, lu.cfg.Serial...))
	if n := r.nexus; n != nil {
		// Relative target port (7.8.6.7) and target port group (7.8.6.8):
		// PIV=1, association 01b (target port), protocol iSCSI (5h).
		var rp, tpg [4]byte
		put16(rp[2:], n.RelativeTargetPort)
		put16(tpg[2:], lu.targetPortGroupOf(n))
		desc(0x51, 0x94, rp[:])
		desc(0x51, 0x95, tpg[:])
		if n.TargetPort != "" {
			// SCSI name string of the target port (7.8.6.11): UTF-8, type
			// 8h, null terminated and padded to a multiple of four bytes.
			name := []byte(n.TargetPort)
			name = append(name, 0)
			for len(name)%4 != 0 {
				name = append(name, 0)
			}
			if len(name) <= 252 {
				desc(0x53, 0x98, name)
			}
		}
	}
	return vpdHeader(0x83, body)
}

// vpdBlockLimits is the Block Limits page (SBC-3 6.5.3).
func vpdBlockLimits(r *request) []byte {
	lu := r.lu
	b := make([]byte, 0x3C)
	b[1] = maxCompareAndWriteBlocks
	gran := uint16(1)
	if lu.bs < optimalGranularityBytes {
		gran = uint16(optimalGranularityBytes / lu.bs)
	}
	put16(b[2:], gran)
	put32(b[4:], lu.cfg.MaxTransferBlocks)
	put32(b[8:], lu.cfg.MaxTransferBlocks)
	if lu.thin() {
		put32(b[16:], maxUnmapLBACount)
		put32(b[20:], maxUnmapDescriptors)
		put32(b[24:], uint32(gran))
	}
	put64(b[32:], maxWriteSameBlocks)
	// SBC-4 6.6.4: MAXIMUM ATOMIC TRANSFER LENGTH, ATOMIC ALIGNMENT and
	// ATOMIC TRANSFER LENGTH GRANULARITY (page bytes 44-55) describe WRITE
	// ATOMIC(16); atomic boundaries are not supported (bytes 56-63 zero).
	put32(b[40:], lu.maxAtomicBlocks())
	put32(b[44:], lu.maxAtomicBlocks()) // ATOMIC ALIGNMENT
	put32(b[48:], atomicGranularity)
	return vpdHeader(0xB0, b)
}

// vpdBlockCharacteristics is the Block Device Characteristics page (SBC-3
// 6.5.2): MEDIUM ROTATION RATE 1 means non-rotating medium.
func vpdBlockCharacteristics(r *request) []byte {
	b := make([]byte, 0x3C)
	put16(b[0:], 1)
	// SBC-3 6.5.2: WABEREQ=01b: a read after SANITIZE BLOCK ERASE completes
	// with GOOD status (the blocks read as zeros or as deallocated data);
	// WACEREQ=00b: CRYPTO ERASE is not supported.
	b[3] = 0x40
	return vpdHeader(0xB1, b)
}

// vpdProvisioning is the Logical Block Provisioning page (SBC-3 6.5.4).
func vpdProvisioning(r *request) []byte {
	lu := r.lu
	b := make([]byte, 4)
	if lu.thin() {
		b[1] = 0x80 | 0x40 | 0x20 // LBPU, LBPWS, LBPWS10
		b[2] = 0x02               // PROVISIONING TYPE: thin provisioned
	}
	if lu.unmapReadsZero() {
		b[1] |= 0x04 // LBPRZ
	}
	return vpdHeader(0xB2, b)
}

// thin reports whether the LU advertises logical block provisioning
// management (UNMAP and WRITE SAME with UNMAP).
func (lu *LogicalUnit) thin() bool { return lu.cfg.ThinProvisioned }

// unmapReadsZero reports LBPRZ: unmapped blocks read back as zeros.
func (lu *LogicalUnit) unmapReadsZero() bool {
	if !lu.thin() {
		return false
	}
	z, ok := lu.be.(ZeroingUnmapper)
	return ok && z.UnmapReadsZero()
}
