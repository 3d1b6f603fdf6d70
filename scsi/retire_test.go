package scsi_test

import (
	"testing"

	"github.com/rbdgw/rbdgw/scsi"
)

// A retired LU answers as a LUN that does not exist, for sessions whose
// router still maps it, and REPORT LUNS leaves it out.
func TestRetiredLUIsNotSupported(t *testing.T) {
	lu0, _ := newMemLU(t, 64)
	lu1, _ := newMemLU(t, 64)
	rt := scsi.NewRouter(map[uint64]*scsi.LogicalUnit{0: lu0, 1: lu1})
	exec := func(lun uint64, cdb []byte, in int) (scsi.Response, []byte) {
		cmd := &scsi.Command{Nexus: iA, LUN: lun << 48, CDB: cdb, Dir: scsi.DirRead, ExpectedLength: uint32(in), DataIn: make([]byte, in)}
		r := rt.Execute(t.Context(), cmd)
		return r, cmd.DataIn[:r.DataLen]
	}
	reportLUNs := func() int {
		r, data := exec(0, []byte{0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, 256)
		if r.Status != scsi.StatusGood {
			t.Fatalf("REPORT LUNS: %s", sense(r))
		}
		return int(data[3]) / 8
	}
	if n := reportLUNs(); n != 2 {
		t.Fatalf("REPORT LUNS lists %d LUNs, want 2", n)
	}
	lu1.Retire()
	if n := reportLUNs(); n != 1 {
		t.Fatalf("REPORT LUNS lists %d LUNs after the retirement, want 1", n)
	}
	r, _ := exec(1, []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 8) // READ CAPACITY(10)
	want(t, r, "5/25/00")
	r, data := exec(1, []byte{0x12, 0, 0, 0, 36, 0}, 36) // INQUIRY
	if r.Status != scsi.StatusGood || data[0] != 0x7F {
		t.Fatalf("INQUIRY of the retired LUN: %s, peripheral byte %#x, want GOOD and 7Fh", sense(r), data[0])
	}
	if r, _ := exec(0, []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 8); r.Status != scsi.StatusGood && sense(r) != "6/29/00" {
		t.Fatalf("LUN 0 after LUN 1's retirement: %s", sense(r))
	}
}
