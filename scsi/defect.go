package scsi

// ReadDefectData is READ DEFECT DATA(10) and (12) (SBC-3 5.18, 5.19). A
// virtual disk has no defects: both lists are reported, empty, in the
// requested format.
type ReadDefectData struct {
	Twelve       bool
	PList, GList bool
	Format       byte
	Alloc        uint32
}

func registerReadDefectData(t *opcodeTable) {
	t.add(define("READ DEFECT DATA(10)", usage(0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0x07),
		opMedia|opResvRead, decodeReadDefectData10, execReadDefectData))
	t.add(define("READ DEFECT DATA(12)", usage(0xB7, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07),
		opMedia|opResvRead, decodeReadDefectData12, execReadDefectData))
}

func decodeReadDefectData10(cdb []byte) (ReadDefectData, error) {
	return ReadDefectData{PList: cdb[2]&0x10 != 0, GList: cdb[2]&0x08 != 0, Format: cdb[2] & 0x07,
		Alloc: uint32(be16(cdb[7:9]))}, nil
}

func decodeReadDefectData12(cdb []byte) (ReadDefectData, error) {
	// The ADDRESS DESCRIPTOR INDEX (bytes 2-5) selects where the list
	// starts; an empty list has nothing to skip.
	return ReadDefectData{Twelve: true, PList: cdb[1]&0x10 != 0, GList: cdb[1]&0x08 != 0, Format: cdb[1] & 0x07,
		Alloc: be32(cdb[6:10])}, nil
}

func execReadDefectData(r *request, c ReadDefectData) error {
	// SBC-3 5.18.2: PLISTV and GLISTV say the lists asked for are valid;
	// DEFECT LIST FORMAT echoes the format of the (empty) list; DEFECT LIST
	// LENGTH is zero.
	flags := c.Format
	if c.PList {
		flags |= 0x10
	}
	if c.GList {
		flags |= 0x08
	}
	var b []byte
	if c.Twelve {
		// SBC-3 5.19.2: 8-byte header, DEFECT LIST LENGTH in bytes 4-7.
		b = make([]byte, 8)
	} else {
		b = make([]byte, 4)
	}
	b[1] = flags
	r.dataIn(b, int(c.Alloc))
	return nil
}
