package scsi

import (
	"cmp"
	"slices"
)

// Unmap is UNMAP (SBC-3 5.28).
type Unmap struct {
	ParamLen uint16
}

// UnmapDescriptor is one UNMAP block descriptor (SBC-3 5.28.2).
type UnmapDescriptor struct {
	LBA    uint64
	Blocks uint32
}

const (
	unmapHeaderLen     = 8
	unmapDescriptorLen = 16
)

func registerUnmap(t *opcodeTable) {
	t.add(define("UNMAP", usage(0x42, 0x01, 0, 0, 0, 0, 0x3F, 0xFF, 0xFF, 0x07),
		opMedia|opWrite, decodeUnmap, execUnmap))
}

func decodeUnmap(cdb []byte) (Unmap, error) {
	// SBC-3 5.28.1: "If the ANCHOR bit is set to one and the ANC_SUP bit
	// ... is set to zero, ... INVALID FIELD IN CDB". We advertise ANC_SUP=0.
	if cdb[1]&0x01 != 0 {
		return Unmap{}, invalidCDB(1, 0)
	}
	return Unmap{ParamLen: be16(cdb[7:9])}, nil
}

// decodeUnmapParams parses and validates the UNMAP parameter list (SBC-3
// 5.28.2) against the LU capacity in blocks. It is pure; every descriptor
// is checked before anything is unmapped.
func decodeUnmapParams(b []byte, capBlocks uint64) ([]UnmapDescriptor, error) {
	// SBC-3 5.28.1: "A PARAMETER LIST LENGTH set to zero specifies that no
	// data shall be sent. This shall not be considered an error."
	if len(b) == 0 {
		return nil, nil
	}
	// SBC-3 5.28.1: "If the parameter list length is greater than zero and
	// less than 8, ... PARAMETER LIST LENGTH ERROR".
	if len(b) < unmapHeaderLen {
		return nil, errParamListLength()
	}
	dataLen := int(be16(b[0:2]))
	bdLen := int(be16(b[2:4]))
	// SBC-3 5.28.2: UNMAP DATA LENGTH counts the bytes after itself and
	// UNMAP BLOCK DESCRIPTOR DATA LENGTH the descriptor bytes; values
	// running past the parameter list cannot be honoured: PARAMETER LIST
	// LENGTH ERROR.
	if dataLen > len(b)-2 || bdLen > len(b)-unmapHeaderLen {
		return nil, errParamListLength()
	}
	// SBC-3 5.28.2: "If the UNMAP BLOCK DESCRIPTOR DATA LENGTH is not a
	// multiple of 16, then the last UNMAP block descriptor is incomplete
	// and shall be ignored."
	n := bdLen / unmapDescriptorLen
	// SBC-3 5.28.1: "If the number of UNMAP block descriptors exceeds the
	// value of the MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT field ... INVALID
	// FIELD IN PARAMETER LIST".
	if n > maxUnmapDescriptors {
		return nil, invalidParam(2, -1)
	}
	out := make([]UnmapDescriptor, 0, n)
	for i := 0; i < n; i++ {
		p := unmapHeaderLen + i*unmapDescriptorLen
		d := UnmapDescriptor{LBA: be64(b[p : p+8]), Blocks: be32(b[p+8 : p+12])}
		// SBC-3 5.28.1: "If the LOGICAL BLOCK ADDRESS plus the NUMBER OF
		// LOGICAL BLOCKS exceeds the capacity of the medium, ... LOGICAL
		// BLOCK ADDRESS OUT OF RANGE".
		if d.LBA > capBlocks || uint64(d.Blocks) > capBlocks-d.LBA {
			return nil, errLBAOutOfRange()
		}
		// SBC-3 5.28.1: "If the total number of logical blocks specified
		// in the UNMAP block descriptor data exceeds the value indicated
		// in the MAXIMUM UNMAP LBA COUNT field ... INVALID FIELD IN
		// PARAMETER LIST".
		if d.Blocks > maxUnmapLBACount {
			return nil, invalidParam(p+8, -1)
		}
		out = append(out, d)
	}
	var total uint64
	for _, d := range out {
		total += uint64(d.Blocks)
	}
	if total > maxUnmapLBACount {
		return nil, invalidParam(2, -1)
	}
	return out, nil
}

func execUnmap(r *request, c Unmap) error {
	lu := r.lu
	data := r.cmd.DataOut
	if len(data) > int(c.ParamLen) {
		data = data[:c.ParamLen]
	}
	if len(data) < int(c.ParamLen) && len(data) < unmapHeaderLen {
		// The initiator announced a list and sent too little of it.
		return errParamListLength()
	}
	descs, err := decodeUnmapParams(data, lu.capacity())
	if err != nil {
		return err
	}
	for _, d := range coalesceUnmap(descs) {
		off, n := int64(d.LBA)*lu.bs, int64(d.Blocks)*lu.bs
		unlock := lu.lockRange(off, n, false)
		err := lu.be.Unmap(r.ctx, off, n)
		unlock()
		if err != nil {
			return mediaError(err, true)
		}
	}
	return nil
}

// coalesceUnmap sorts the descriptors and merges overlapping or touching
// ones, dropping empty ones (the backend never sees zero-length requests,
// design.md). The order of an UNMAP's descriptors carries no meaning, and
// one discard per run instead of per descriptor matters on RBD, where
// each is an OSD round trip: libiscsi's Unmap.Simple sends up to 256
// one-block descriptors in a list, 33,000 in all (30 s there unmerged).
func coalesceUnmap(descs []UnmapDescriptor) []UnmapDescriptor {
	out := make([]UnmapDescriptor, 0, len(descs))
	for _, d := range descs {
		if d.Blocks > 0 {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b UnmapDescriptor) int { return cmp.Compare(a.LBA, b.LBA) })
	n := 0
	for _, d := range out {
		if n > 0 {
			last := &out[n-1]
			end := last.LBA + uint64(last.Blocks)
			if d.LBA <= end {
				// decodeUnmapParams bounds the sum of all descriptors
				// by maxUnmapLBACount, so a merged run fits 32 bits.
				last.Blocks = uint32(max(end, d.LBA+uint64(d.Blocks)) - last.LBA)
				continue
			}
		}
		out[n] = d
		n++
	}
	return out[:n]
}
