package scsi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/scsi/scsitest"
)

func cscd(wwn [16]byte) []byte {
	d := make([]byte, 32)
	d[0] = 0xE4
	d[4] = 0x01 // binary code set
	d[5] = 0x03 // NAA, LU association
	d[7] = 16
	copy(d[8:], wwn[:])
	d[30] = 0x02 // DISK BLOCK LENGTH 512
	return d
}

func b2b(src, dst uint16, blocks uint16, slba, dlba uint64) []byte {
	s := make([]byte, 28)
	s[0] = 0x02
	binary.BigEndian.PutUint16(s[2:], 24)
	binary.BigEndian.PutUint16(s[4:], src)
	binary.BigEndian.PutUint16(s[6:], dst)
	binary.BigEndian.PutUint16(s[10:], blocks)
	binary.BigEndian.PutUint64(s[12:], slba)
	binary.BigEndian.PutUint64(s[20:], dlba)
	return s
}

func xcopyList(listID, usage byte, tds [][]byte, segs [][]byte) []byte {
	h := make([]byte, 16)
	h[0] = listID
	h[1] = usage << 3
	var t, s []byte
	for _, d := range tds {
		t = append(t, d...)
	}
	for _, d := range segs {
		s = append(s, d...)
	}
	binary.BigEndian.PutUint16(h[2:], uint16(len(t)))
	binary.BigEndian.PutUint32(h[8:], uint32(len(s)))
	return append(append(h, t...), s...)
}

func xcopyCDB(n int) []byte {
	c := make([]byte, 16)
	c[0] = 0x83
	binary.BigEndian.PutUint32(c[10:], uint32(n))
	return c
}

func TestExtendedCopyBetweenLUs(t *testing.T) {
	memA, memB := scsitest.NewMemBackend(4096*512), scsitest.NewMemBackend(4096*512)
	luA := newLU(t, memA, func(c *scsi.LUConfig) { c.Name = "a" })
	luB := newLU(t, memB, func(c *scsi.LUConfig) { c.Name = "b" })
	rtA := scsi.NewRouter(map[uint64]*scsi.LogicalUnit{0: luA, 1: luB})
	hello(t, luA, iA)
	pat := bytes.Repeat([]byte("xcopy..."), 64*3000) // 3000 blocks: several chunks
	for i := 0; i < 3; i++ {
		want(t, write10(luA, iA, uint32(10+1000*i), pat[i*1000*512:(i+1)*1000*512]), "GOOD")
	}
	wa, wb := luA.Config().WWN, luB.Config().WWN
	p := xcopyList(7, 0, [][]byte{cscd(wa), cscd(wb)}, [][]byte{b2b(0, 1, 3000, 10, 500)})
	want(t, doVia(rtA, 0, iA, xcopyCDB(len(p)), p, 0), "GOOD")
	if !bytes.Equal(memB.Bytes(500*512, int64(len(pat))), pat) {
		t.Fatal("data not copied to LU b")
	}
	// COPY STATUS for list 7: completed, one segment, all bytes.
	rc := make([]byte, 16)
	rc[0], rc[1], rc[2] = 0x84, 0x00, 7
	binary.BigEndian.PutUint32(rc[10:], 64)
	d, r := doIn(luA, iA, rc, nil, 64)
	want(t, r, "GOOD")
	if d[4] != 1 || binary.BigEndian.Uint16(d[5:]) != 1 || binary.BigEndian.Uint32(d[8:]) != uint32(len(pat)) {
		t.Fatalf("copy status % x", d)
	}
	rc[2] = 8
	want(t, do(luA, iA, rc, nil, 64), "5/24/00")
	// OPERATING PARAMETERS lists the block to block and 0xE4 descriptors.
	rc[1] = 0x03
	d, r = doIn(luA, iA, rc, nil, 64)
	want(t, r, "GOOD")
	if d[43] != 2 || d[44] != 0x02 || d[45] != 0xE4 {
		t.Fatalf("operating parameters % x", d)
	}

	// Errors: truncated list, unknown LU, bad descriptor types, LBA out of range.
	want(t, do(luA, iA, xcopyCDB(len(p)-1), p[:len(p)-1], 0), "5/1A/00")
	var unknown [16]byte
	unknown[0] = 0x60
	q := xcopyList(1, 2, [][]byte{cscd(unknown)}, [][]byte{b2b(0, 0, 1, 0, 1)})
	want(t, do(luA, iA, xcopyCDB(len(q)), q, 0), "A/08/04")
	bad := cscd(wa)
	bad[0] = 0xE5
	q = xcopyList(1, 2, [][]byte{bad}, [][]byte{b2b(0, 0, 1, 0, 1)})
	want(t, do(luA, iA, xcopyCDB(len(q)), q, 0), "5/26/07")
	seg := b2b(0, 0, 1, 0, 1)
	seg[0] = 0x01
	q = xcopyList(1, 2, [][]byte{cscd(wa)}, [][]byte{seg})
	want(t, do(luA, iA, xcopyCDB(len(q)), q, 0), "5/26/09")
	q = xcopyList(1, 2, [][]byte{cscd(wa)}, [][]byte{b2b(0, 0, 2, 4095, 0)})
	want(t, do(luA, iA, xcopyCDB(len(q)), q, 0), "A/00/00")
	q = xcopyList(1, 2, [][]byte{cscd(wa)}, [][]byte{b2b(0, 3, 2, 0, 0)})
	want(t, do(luA, iA, xcopyCDB(len(q)), q, 0), "A/0D/02")
	// Limits: too many CSCDs, too many segments, list too long.
	var tds, segs [][]byte
	for i := 0; i < 9; i++ {
		tds = append(tds, cscd(wa))
	}
	q = xcopyList(1, 2, tds, [][]byte{b2b(0, 0, 1, 0, 1)})
	want(t, do(luA, iA, xcopyCDB(len(q)), q, 0), "5/26/06")
	for i := 0; i < 65; i++ {
		segs = append(segs, b2b(0, 0, 1, 0, 1))
	}
	q = xcopyList(1, 2, [][]byte{cscd(wa)}, segs)
	want(t, do(luA, iA, xcopyCDB(len(q)), q, 0), "5/26/08")
	q = xcopyList(1, 2, tds, segs)
	want(t, do(luA, iA, xcopyCDB(len(q)), q, 0), "5/1A/00")
	want(t, do(luA, iA, xcopyCDB(0), nil, 0), "GOOD")
	// A reservation on the destination LU held by someone else blocks the copy.
	hello(t, luB, iB)
	want(t, prOut(luB, iB, 0x06, 0, 0, 0xB), "GOOD")
	want(t, prOut(luB, iB, 0x01, scsi.PRTypeWriteExclusive, 0xB, 0), "GOOD")
	want(t, doVia(rtA, 0, iA, xcopyCDB(len(p)), p, 0), "CONFLICT")
	// Run on the LU alone (as a forwarded command is) it reaches only itself.
	want(t, do(luA, iA, xcopyCDB(len(p)), p, 0), "A/08/04")
}

// doVia runs one command through a Router, addressed to LUN lun.
func doVia(rt scsi.Router, lun uint64, n *scsi.Nexus, cdb, out []byte, in int) scsi.Response {
	cmd := &scsi.Command{Nexus: n, LUN: lun << 48, CDB: cdb, DataOut: out,
		ExpectedLength: uint32(max(len(out), in)), DataIn: make([]byte, in)}
	if len(out) > 0 {
		cmd.Dir = scsi.DirWrite
	}
	if in > 0 {
		cmd.Dir |= scsi.DirRead
	}
	return rt.Execute(context.Background(), cmd)
}

// An initiator names, in EXTENDED COPY, an LU that exists on the gateway
// but is not mapped to it (another tenant's, its designator read from VPD
// page 83h elsewhere): the copy is refused as UNREACHABLE COPY TARGET in
// both directions, exactly as for an LU that does not exist, and neither
// LU's data moves.
func TestExtendedCopyReachesOnlyTheInitiatorsLUs(t *testing.T) {
	memMine, memTheirs := scsitest.NewMemBackend(64*512), scsitest.NewMemBackend(64*512)
	mine := newLU(t, memMine, func(c *scsi.LUConfig) { c.Name = "tenant-a" })
	theirs := newLU(t, memTheirs, func(c *scsi.LUConfig) { c.Name = "tenant-b" })
	rtA := scsi.NewRouter(map[uint64]*scsi.LogicalUnit{0: mine})
	hello(t, mine, iA)
	hello(t, theirs, iB)
	secret := bytes.Repeat([]byte("B-secret"), 64*4)
	mineData := bytes.Repeat([]byte("A-data.."), 64*4)
	want(t, write10(theirs, iB, 0, secret), "GOOD")
	want(t, write10(mine, iA, 0, mineData), "GOOD")

	wMine, wTheirs := mine.Config().WWN, theirs.Config().WWN
	steal := xcopyList(1, 0, [][]byte{cscd(wTheirs), cscd(wMine)}, [][]byte{b2b(0, 1, 4, 0, 8)})
	want(t, doVia(rtA, 0, iA, xcopyCDB(len(steal)), steal, 0), "A/08/04")
	clobber := xcopyList(2, 0, [][]byte{cscd(wMine), cscd(wTheirs)}, [][]byte{b2b(0, 1, 4, 0, 0)})
	want(t, doVia(rtA, 0, iA, xcopyCDB(len(clobber)), clobber, 0), "A/08/04")
	if got := memTheirs.Bytes(0, int64(len(secret))); !bytes.Equal(got, secret) {
		t.Fatal("the other tenant's LU was written")
	}
	if got := memMine.Bytes(8*512, 4*512); !bytes.Equal(got, make([]byte, 4*512)) {
		t.Fatal("the other tenant's data reached the initiator's LU")
	}
	// An initiator given both LUs copies between them.
	hello(t, theirs, iA)
	both := scsi.NewRouter(map[uint64]*scsi.LogicalUnit{0: mine, 7: theirs})
	want(t, doVia(both, 7, iA, xcopyCDB(len(steal)), steal, 0), "GOOD")
	if got := memMine.Bytes(8*512, 4*512); !bytes.Equal(got, secret[:4*512]) {
		t.Fatal("copy between two LUs of one map did not happen")
	}
}
