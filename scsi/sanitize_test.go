package scsi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/scsi/scsitest"
)

func sanitizeCDB(b1 byte, plen uint16) []byte {
	c := make([]byte, 10)
	c[0], c[1] = 0x48, b1
	binary.BigEndian.PutUint16(c[7:], plen)
	return c
}

func overwriteList(flags byte, pattern []byte) []byte {
	b := []byte{flags, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(len(pattern)))
	return append(b, pattern...)
}

func TestSanitizeDecode(t *testing.T) {
	lu, mem := newMemLU(t, 64)
	hello(t, lu, iA)
	good := overwriteList(0x01, fill(512, 0xAA))
	for _, tc := range []struct {
		name string
		cdb  []byte
		data []byte
	}{
		{"service action 0", sanitizeCDB(0x00, 0), nil},
		{"CRYPTO ERASE unsupported", sanitizeCDB(0x03, 0), nil},
		{"service action 4", sanitizeCDB(0x04, 0), nil},
		{"reserved bit 6", sanitizeCDB(0x40|0x02, 0), nil},
		{"reserved byte 3", func() []byte { c := sanitizeCDB(0x02, 0); c[3] = 3; return c }(), nil},
		{"BLOCK ERASE with a list", sanitizeCDB(0x02, 8), make([]byte, 8)},
		{"EXIT FAILURE MODE with a list", sanitizeCDB(0x1F, 8), make([]byte, 8)},
		{"OVERWRITE list of 4", sanitizeCDB(0x01, 4), good[:4]},
		{"OVERWRITE list above block+4", sanitizeCDB(0x01, 517), append(good, 0)},
		{"OVERWRITE COUNT 0", sanitizeCDB(0x01, 516), overwriteList(0, fill(512, 1))},
		{"pattern length 0", sanitizeCDB(0x01, 516), append([]byte{1, 0, 0, 0}, fill(512, 1)...)},
		{"pattern longer than the list", sanitizeCDB(0x01, 8), []byte{1, 0, 0, 8, 1, 2, 3, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want(t, do(lu, iA, tc.cdb, tc.data, 0), "5/24/00")
		})
	}
	if mem.Count(scsitest.OpWrite)+mem.Count(scsitest.OpUnmap) != 0 {
		t.Fatal("a refused SANITIZE touched the medium")
	}
}

func TestSanitizeOverwrite(t *testing.T) {
	lu, mem := newMemLU(t, 64)
	hello(t, lu, iA)
	want(t, write10(lu, iA, 0, fill(64*512, 'a')), "GOOD")
	// A 4-byte pattern repeats across each block.
	want(t, do(lu, iA, sanitizeCDB(0x01, 8), overwriteList(0x01, []byte("rbdg")), 0), "GOOD")
	if !bytes.Equal(mem.Bytes(63*512, 512), bytes.Repeat([]byte("rbdg"), 128)) {
		t.Fatal("OVERWRITE did not write the pattern")
	}
	// Two passes with INVERT: the second pass writes the inverted pattern.
	want(t, do(lu, iA, sanitizeCDB(0x01, 5), overwriteList(0x80|0x02, []byte{0x0F}), 0), "GOOD")
	if !bytes.Equal(mem.Bytes(0, 64*512), fill(64*512, 0xF0)) {
		t.Fatal("OVERWRITE INVERT did not invert on the second pass")
	}
	// Zeros are written as data, not deallocated.
	want(t, do(lu, iA, sanitizeCDB(0x01, 5), overwriteList(0x01, []byte{0}), 0), "GOOD")
	if mem.Count(scsitest.OpUnmap)+mem.Count(scsitest.OpWriteZeroes) != 0 || !bytes.Equal(mem.Bytes(0, 512), make([]byte, 512)) {
		t.Fatal("OVERWRITE with zeros took a deallocating shortcut")
	}
}

func TestSanitizeBlockErase(t *testing.T) {
	lu, mem := newMemLU(t, 64)
	hello(t, lu, iA)
	want(t, write10(lu, iA, 0, fill(64*512, 'a')), "GOOD")
	want(t, do(lu, iA, sanitizeCDB(0x02, 0), nil, 0), "GOOD")
	if !bytes.Equal(mem.Bytes(0, 64*512), make([]byte, 64*512)) || mem.Count(scsitest.OpUnmap) == 0 {
		t.Fatal("BLOCK ERASE did not deallocate the medium")
	}
	// WABEREQ=01b: reads after the erase succeed.
	_, r := read10(lu, iA, 0, 1)
	want(t, r, "GOOD")
	d, r := doIn(lu, iA, []byte{0x12, 1, 0xB1, 0, 64, 0}, nil, 64)
	want(t, r, "GOOD")
	if d[7]>>6 != 1 || d[7]>>4&3 != 0 {
		t.Fatalf("VPD B1 WABEREQ/WACEREQ: %x", d[7])
	}
	// EXIT FAILURE MODE outside the failure mode is a no-op.
	want(t, do(lu, iA, sanitizeCDB(0x1F, 0), nil, 0), "GOOD")
}

// While a sanitize runs every command but INQUIRY, REPORT LUNS and
// REQUEST SENSE ends in NOT READY, SANITIZE IN PROGRESS (SBC-3 4.11.2);
// REQUEST SENSE reports it with a progress indication.
func TestSanitizeInProgress(t *testing.T) {
	lu, mem := newMemLU(t, 64)
	hello(t, lu, iA)
	release := make(chan struct{})
	mem.SetHook(func(ctx context.Context, op scsitest.Op, off, length int64) error {
		if op == scsitest.OpUnmap {
			<-release
		}
		return nil
	})
	// IMMED: status as soon as the command is validated.
	want(t, do(lu, iA, sanitizeCDB(0x80|0x02, 0), nil, 0), "GOOD")
	want(t, do(lu, iA, make([]byte, 6), nil, 0), "2/04/1B")
	_, r := read10(lu, iA, 0, 1)
	want(t, r, "2/04/1B")
	want(t, do(lu, iA, sanitizeCDB(0x02, 0), nil, 0), "2/04/1B")
	_, r = doIn(lu, iA, []byte{0x12, 0, 0, 0, 36, 0}, nil, 36)
	want(t, r, "GOOD")
	d, r := doIn(lu, iA, []byte{0x03, 0, 0, 0, 18, 0}, nil, 18)
	want(t, r, "GOOD")
	if d[2]&0x0F != scsi.SenseNotReady || d[12] != 0x04 || d[13] != 0x1B || d[15]&0x80 == 0 {
		t.Fatalf("REQUEST SENSE during sanitize: %x", d)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for sense(do(lu, iA, make([]byte, 6), nil, 0)) != "GOOD" {
		if time.Now().After(deadline) {
			t.Fatal("sanitize never finished")
		}
		time.Sleep(time.Millisecond)
	}
}

// A sanitize that fails leaves the LU in the sanitize failure mode
// (SBC-3 4.11.3) until a sanitize succeeds, or EXIT FAILURE MODE when the
// failed one had AUSE set.
func TestSanitizeFailureMode(t *testing.T) {
	lu, mem := newMemLU(t, 64)
	hello(t, lu, iA)
	fail := true
	mem.SetHook(func(ctx context.Context, op scsitest.Op, off, length int64) error {
		if fail && op == scsitest.OpUnmap {
			return scsitest.ErrInjected
		}
		return nil
	})
	want(t, do(lu, iA, sanitizeCDB(0x02, 0), nil, 0), "3/31/03")
	_, r := read10(lu, iA, 0, 1)
	want(t, r, "3/31/03")
	want(t, do(lu, iA, sanitizeCDB(0x1F, 0), nil, 0), "5/24/00")
	fail = false
	want(t, do(lu, iA, sanitizeCDB(0x02, 0), nil, 0), "GOOD")
	_, r = read10(lu, iA, 0, 1)
	want(t, r, "GOOD")
	// With AUSE, EXIT FAILURE MODE leaves the failure mode.
	fail = true
	want(t, do(lu, iA, sanitizeCDB(0x20|0x02, 0), nil, 0), "3/31/03")
	want(t, do(lu, iA, sanitizeCDB(0x1F, 0), nil, 0), "GOOD")
	_, r = read10(lu, iA, 0, 1)
	want(t, r, "GOOD")
}

func TestSanitizeConflictsAndProtect(t *testing.T) {
	lu, _ := newMemLU(t, 64)
	hello(t, lu, iA, iB)
	want(t, do(lu, iB, []byte{0x16, 0, 0, 0, 0, 0}, nil, 0), "GOOD")
	want(t, do(lu, iA, sanitizeCDB(0x02, 0), nil, 0), "CONFLICT")
	want(t, do(lu, iB, []byte{0x17, 0, 0, 0, 0, 0}, nil, 0), "GOOD")
	ro := newLU(t, scsitest.NewMemBackend(64*512), func(c *scsi.LUConfig) { c.ReadOnly = true })
	hello(t, ro, iA)
	want(t, do(ro, iA, sanitizeCDB(0x02, 0), nil, 0), "7/27/00")
}
