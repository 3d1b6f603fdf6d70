package scsi_test

import (
	"bytes"
	"testing"

	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/scsi/scsitest"
)

func TestWriteSame(t *testing.T) {
	const blocks = 8192 // 4 MiB: more than one fallback chunk
	mem := scsitest.NewMemBackend(blocks * 512)
	lu := newLU(t, plainBackend{mem}, nil)
	hello(t, lu, iA)
	pat := bytes.Repeat([]byte("rbdgw!!!"), 64)
	// Pattern over 3000 blocks through the chunked fallback.
	want(t, do(lu, iA, cdb16(0x93, 0, 100, 3000), pat, 0), "GOOD")
	if !bytes.Equal(mem.Bytes(99*512, 512), make([]byte, 512)) {
		t.Fatal("WRITE SAME wrote before its LBA")
	}
	for _, b := range []int64{100, 1500, 3099} {
		if !bytes.Equal(mem.Bytes(b*512, 512), pat) {
			t.Fatalf("block %d not written", b)
		}
	}
	if !bytes.Equal(mem.Bytes(3100*512, 512), make([]byte, 512)) {
		t.Fatal("WRITE SAME wrote past its range")
	}
	// WRITE SAME(10) with UNMAP and a zero block: zeros read back.
	want(t, do(lu, iA, cdb10(0x41, 0x08, 100, 10), make([]byte, 512), 0), "GOOD")
	if !bytes.Equal(mem.Bytes(100*512, 10*512), make([]byte, 10*512)) {
		t.Fatal("WRITE SAME UNMAP did not zero")
	}
	// UNMAP with a pattern on a backend without LBPRZ: the pattern is
	// written, since deallocated blocks would not read back as it.
	want(t, do(lu, iA, cdb10(0x41, 0x08, 300, 8), bytes.Repeat([]byte{0xFF}, 512), 0), "GOOD")
	if !bytes.Equal(mem.Bytes(307*512, 512), bytes.Repeat([]byte{0xFF}, 512)) {
		t.Fatal("WRITE SAME UNMAP without LBPRZ did not write the pattern")
	}
	// NDOB (16): zeros without Data-Out.
	want(t, do(lu, iA, cdb16(0x93, 0x01, 200, 4), nil, 0), "GOOD")
	if !bytes.Equal(mem.Bytes(200*512, 512), make([]byte, 512)) {
		t.Fatal("NDOB did not zero")
	}
	// A Data-Out buffer that is not exactly one block.
	want(t, do(lu, iA, cdb10(0x41, 0x08, 0, 1), pat[:256], 0), "5/24/00")
	want(t, do(lu, iA, cdb10(0x41, 0x08, 0, 1), append(pat, pat...), 0), "5/24/00")
	// ANCHOR, WRPROTECT, out of range, beyond the maximum length.
	want(t, do(lu, iA, cdb10(0x41, 0x18, 0, 1), pat, 0), "5/24/00")
	want(t, do(lu, iA, cdb16(0x93, 0x20, 0, 1), pat, 0), "5/24/00")
	want(t, do(lu, iA, cdb16(0x93, 0, blocks-1, 2), pat, 0), "5/21/00")
	want(t, do(lu, iA, cdb16(0x93, 0, blocks+1, 0), pat, 0), "5/21/00")
	// Zero blocks with WSNZ=0: to the end of the medium.
	want(t, do(lu, iA, cdb10(0x41, 0, blocks-2, 0), pat, 0), "GOOD")
	if !bytes.Equal(mem.Bytes((blocks-1)*512, 512), pat) {
		t.Fatal("WRITE SAME 0 blocks did not reach the end")
	}
}

func TestWriteSameNative(t *testing.T) {
	mem := scsitest.NewMemBackend(1024 * 512)
	lu := newLU(t, mem, nil)
	hello(t, lu, iA)
	want(t, do(lu, iA, cdb16(0x93, 0x08, 0, 64), make([]byte, 512), 0), "GOOD")
	if mem.Count(scsitest.OpWriteZeroes) != 1 || mem.Count(scsitest.OpWrite) != 0 {
		t.Fatalf("zero block: %d WriteZeroes, %d writes", mem.Count(scsitest.OpWriteZeroes), mem.Count(scsitest.OpWrite))
	}
	want(t, do(lu, iA, cdb16(0x93, 0, 0, 64), bytes.Repeat([]byte{7}, 512), 0), "GOOD")
	if mem.Count(scsitest.OpWriteSame) != 1 {
		t.Fatal("pattern did not use SameWriter")
	}
	// UNMAP with a non-zero block on an LBPRZ backend: the range is
	// deallocated and reads back as zeros (SBC-3 5.42 UNMAP bit; libiscsi
	// WriteSame10.UnmapUntilEnd).
	want(t, do(lu, iA, cdb10(0x41, 0x08, 300, 8), bytes.Repeat([]byte{0xFF}, 512), 0), "GOOD")
	if !bytes.Equal(mem.Bytes(300*512, 8*512), make([]byte, 8*512)) || mem.Count(scsitest.OpWriteSame) != 1 {
		t.Fatal("WRITE SAME UNMAP with a pattern did not deallocate")
	}
	var _ scsi.SameWriter = mem
}

func unmapList(descs ...[2]uint64) []byte {
	b := make([]byte, 8)
	for _, d := range descs {
		e := make([]byte, 16)
		put64(e, d[0])
		put32(e[8:], uint32(d[1]))
		b = append(b, e...)
	}
	put16(b, uint16(len(b)-2))
	put16(b[2:], uint16(len(b)-8))
	return b
}

func TestUnmapAndLBAStatus(t *testing.T) {
	const blocks = 1024
	lu, mem := newMemLU(t, blocks)
	hello(t, lu, iA)
	want(t, write10(lu, iA, 0, bytes.Repeat([]byte{1}, 64*512)), "GOOD")
	p := unmapList([2]uint64{8, 16}, [2]uint64{40, 0})
	want(t, do(lu, iA, cdb10(0x42, 0, 0, uint16(len(p))), p, 0), "GOOD")
	if !bytes.Equal(mem.Bytes(8*512, 16*512), make([]byte, 16*512)) || mem.Bytes(24*512, 1)[0] != 1 {
		t.Fatal("UNMAP range wrong")
	}
	// GET LBA STATUS from LBA 0: mapped 0-7, deallocated 8-23, mapped 24-63.
	c := cdb16(0x9E, 0x12, 0, 0)
	put32(c[10:], 1024)
	d, r := doIn(lu, iA, c, nil, 1024)
	want(t, r, "GOOD")
	type ent struct {
		lba    uint64
		n      uint32
		status byte
	}
	var got []ent
	for o := 8; o+16 <= len(d); o += 16 {
		got = append(got, ent{be64(d[o:]), be32(d[o+8:]), d[o+12]})
	}
	if len(got) < 3 || got[0] != (ent{0, 8, 0}) || got[1] != (ent{8, 16, 1}) || got[2] != (ent{24, 40, 0}) {
		t.Fatalf("LBA status %+v", got)
	}
	c = cdb16(0x9E, 0x12, blocks, 0)
	put32(c[10:], 64)
	want(t, do(lu, iA, c, nil, 64), "5/21/00")

	// Parameter list errors.
	want(t, do(lu, iA, cdb10(0x42, 0, 0, 0), nil, 0), "GOOD")
	want(t, do(lu, iA, cdb10(0x42, 0, 0, 4), make([]byte, 4), 0), "5/1A/00")
	want(t, do(lu, iA, cdb10(0x42, 1, 0, uint16(len(p))), p, 0), "5/24/00") // ANCHOR
	oob := unmapList([2]uint64{blocks - 1, 2})
	want(t, do(lu, iA, cdb10(0x42, 0, 0, uint16(len(oob))), oob, 0), "5/21/00")
	bad := unmapList([2]uint64{0, 1})
	put16(bad[2:], 64) // descriptor length past the list
	want(t, do(lu, iA, cdb10(0x42, 0, 0, uint16(len(bad))), bad, 0), "5/1A/00")
	var many [][2]uint64
	for i := 0; i < 257; i++ {
		many = append(many, [2]uint64{uint64(i), 1})
	}
	ml := unmapList(many...)
	want(t, do(lu, iA, cdb10(0x42, 0, 0, uint16(len(ml))), ml, 0), "5/26/00")
}

func put16(b []byte, v uint16) { b[0], b[1] = byte(v>>8), byte(v) }
func put32(b []byte, v uint32) { put16(b, uint16(v>>16)); put16(b[2:], uint16(v)) }
func put64(b []byte, v uint64) { put32(b, uint32(v>>32)); put32(b[4:], uint32(v)) }
func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
func be64(b []byte) uint64 { return uint64(be32(b))<<32 | uint64(be32(b[4:])) }
