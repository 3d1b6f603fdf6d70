package scsi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/scsi/scsitest"
)

func TestOrWrite(t *testing.T) {
	lu, mem := newMemLU(t, 1024)
	hello(t, lu, iA)
	want(t, write10(lu, iA, 10, fill(2*512, 0x0F)), "GOOD")
	want(t, do(lu, iA, cdb16(0x8B, 0, 10, 2), fill(2*512, 0xA0), 0), "GOOD")
	if !bytes.Equal(mem.Bytes(10*512, 2*512), fill(2*512, 0xAF)) {
		t.Fatal("ORWRITE did not OR the data into the medium")
	}
	// FUA and DPO are accepted; zero blocks is not an error.
	want(t, do(lu, iA, cdb16(0x8B, 0x18, 10, 1), fill(512, 0x50), 0), "GOOD")
	want(t, do(lu, iA, cdb16(0x8B, 0, 10, 0), nil, 0), "GOOD")
	// ORPROTECT without protection information, beyond the end.
	want(t, do(lu, iA, cdb16(0x8B, 0x20, 10, 1), fill(512, 1), 0), "5/24/00")
	want(t, do(lu, iA, cdb16(0x8B, 0, 1023, 2), fill(1024, 1), 0), "5/21/00")
	want(t, do(lu, iA, cdb16(0x8B, 0, 1<<40, 1), fill(512, 1), 0), "5/21/00")
}

// Concurrent ORWRITEs of distinct bits to one block must all land: each
// read-OR-write excludes the others (SBC-3 5.11).
func TestOrWriteAtomic(t *testing.T) {
	lu, mem := newMemLU(t, 64)
	hello(t, lu, iA)
	var wg sync.WaitGroup
	for bit := 0; bit < 8; bit++ {
		wg.Add(1)
		go func(bit int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if r := do(lu, iA, cdb16(0x8B, 0, 5, 1), fill(512, 1<<bit), 0); r.Status != scsi.StatusGood {
					t.Errorf("ORWRITE: %s", sense(r))
				}
			}
		}(bit)
	}
	wg.Wait()
	if !bytes.Equal(mem.Bytes(5*512, 512), fill(512, 0xFF)) {
		t.Fatal("an ORWRITE was lost")
	}
}

func writeAtomicCDB(b1 byte, lba uint64, boundary, n uint16) []byte {
	c := make([]byte, 16)
	c[0], c[1] = 0x9C, b1
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint16(c[10:], boundary)
	binary.BigEndian.PutUint16(c[12:], n)
	return c
}

func TestWriteAtomic(t *testing.T) {
	lu, mem := newMemLU(t, 4096)
	hello(t, lu, iA)
	want(t, do(lu, iA, writeAtomicCDB(0x08, 2048, 0, 4), fill(4*512, 0xA6), 0), "GOOD")
	if !bytes.Equal(mem.Bytes(2048*512, 4*512), fill(4*512, 0xA6)) {
		t.Fatal("WRITE ATOMIC did not write")
	}
	// Not at a multiple of the ATOMIC ALIGNMENT: it could straddle two of
	// the backend's atomic units.
	want(t, do(lu, iA, writeAtomicCDB(0, 100, 0, 4), fill(4*512, 0xA6), 0), "5/24/00")
	want(t, do(lu, iA, writeAtomicCDB(0, 0, 0, 0), nil, 0), "GOOD")
	// WRPROTECT, an atomic boundary, beyond the end, above the maximum
	// atomic transfer length, a short Data-Out buffer.
	want(t, do(lu, iA, writeAtomicCDB(0x20, 0, 0, 1), fill(512, 1), 0), "5/24/00")
	want(t, do(lu, iA, writeAtomicCDB(0, 0, 1, 1), fill(512, 1), 0), "5/24/00")
	want(t, do(lu, iA, writeAtomicCDB(0, 4095, 0, 2), fill(1024, 1), 0), "5/21/00")
	want(t, do(lu, iA, writeAtomicCDB(0, 0, 0, 2049), fill(2049*512, 1), 0), "5/24/00")
	want(t, do(lu, iA, writeAtomicCDB(0, 0, 0, 2), fill(512, 1), 0), "5/24/00")
	if !bytes.Equal(mem.Bytes(0, 512), make([]byte, 512)) {
		t.Fatal("a refused WRITE ATOMIC wrote")
	}
	// Block limits VPD: MAXIMUM ATOMIC TRANSFER LENGTH (1 MiB) and the
	// same alignment, granularity 1, no more than MAXIMUM TRANSFER LENGTH.
	d, r := doIn(lu, iA, []byte{0x12, 1, 0xB0, 0, 255, 0}, nil, 255)
	want(t, r, "GOOD")
	maxXfer, maxAtomic := binary.BigEndian.Uint32(d[8:]), binary.BigEndian.Uint32(d[44:])
	if maxAtomic != 2048 || maxAtomic > maxXfer || binary.BigEndian.Uint32(d[48:]) != 2048 || binary.BigEndian.Uint32(d[52:]) != 1 {
		t.Fatalf("VPD B0 atomic fields: %x", d[44:64])
	}
}

func TestReadDefectData(t *testing.T) {
	lu, _ := newMemLU(t, 64)
	hello(t, lu, iA)
	// (10): PLIST+GLIST in long block format: both valid, empty.
	d, r := doIn(lu, iA, []byte{0x37, 0, 0x18 | 0x03, 0, 0, 0, 0, 0, 32, 0}, nil, 32)
	want(t, r, "GOOD")
	if !bytes.Equal(d, []byte{0, 0x1B, 0, 0}) {
		t.Fatalf("READ DEFECT DATA(10): %x", d)
	}
	// (12): 8-byte header, GLIST only, format 101b.
	d, r = doIn(lu, iA, []byte{0xB7, 0x08 | 0x05, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, nil, 32)
	want(t, r, "GOOD")
	if !bytes.Equal(d, []byte{0, 0x0D, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("READ DEFECT DATA(12): %x", d)
	}
	// Allocation length truncates.
	d, _ = doIn(lu, iA, []byte{0x37, 0, 0x10, 0, 0, 0, 0, 0, 2, 0}, nil, 32)
	if len(d) != 2 {
		t.Fatalf("allocation length 2 returned %d bytes", len(d))
	}
}

func TestReadCapacity16PhysicalBlock(t *testing.T) {
	for _, tc := range []struct {
		bs  uint32
		exp byte
	}{{512, 3}, {4096, 0}} {
		e := newEnv(t, func(c *scsi.LUConfig) { c.BlockSize = tc.bs })
		e.do(nexusA, make([]byte, 6), nil, 0)
		r, d := e.do(nexusA, []byte{0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, nil, 32)
		wantGood(t, r)
		if d[13]&0x0F != tc.exp || d[14]&0x3F != 0 || d[15] != 0 {
			t.Fatalf("block size %d: LBPPBE/LALBA %x, want exponent %d", tc.bs, d[12:16], tc.exp)
		}
	}
}

// A backend that promises no atomic write gets no WRITE ATOMIC: the
// command is an unsupported operation code and VPD B0h says zero.
func TestWriteAtomicNeedsAnAtomicBackend(t *testing.T) {
	lu := newLU(t, noAtomic{scsitest.NewMemBackend(64 * 512)}, nil)
	hello(t, lu, iA)
	want(t, do(lu, iA, writeAtomicCDB(0, 0, 0, 1), fill(512, 1), 0), "5/20/00")
	d, r := doIn(lu, iA, []byte{0x12, 1, 0xB0, 0, 255, 0}, nil, 255)
	want(t, r, "GOOD")
	if binary.BigEndian.Uint32(d[44:]) != 0 {
		t.Fatalf("MAXIMUM ATOMIC TRANSFER LENGTH %d without an atomic backend", binary.BigEndian.Uint32(d[44:]))
	}
}

// noAtomic hides every optional capability of its backend.
type noAtomic struct{ scsi.Backend }

// A panic in the device server is answered INTERNAL TARGET FAILURE, and
// is counted and logged with its stack rather than lost.
func TestPanicIsLoggedAndCounted(t *testing.T) {
	var logged bytes.Buffer
	be := panicking{scsitest.NewMemBackend(64 * 512)}
	lu := newLU(t, be, func(c *scsi.LUConfig) { c.Logger = slog.New(slog.NewTextHandler(&logged, nil)) })
	hello(t, lu, iA)
	want(t, write10(lu, iA, 0, fill(512, 1)), "4/44/00")
	if got := lu.Stats().Panics; got != 1 {
		t.Fatalf("Panics = %d, want 1", got)
	}
	if s := logged.String(); !strings.Contains(s, "INTERNAL TARGET FAILURE") || !strings.Contains(s, "bug in a backend") || !strings.Contains(s, "orwrite_test.go") {
		t.Fatalf("panic not logged with its stack: %s", s)
	}
	want(t, do(lu, iA, make([]byte, 6), nil, 0), "GOOD") // the LU still serves
}

type panicking struct{ scsi.Backend }

func (panicking) WriteAt(context.Context, []byte, int64, bool) error { panic("bug in a backend") }
