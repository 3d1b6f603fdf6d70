package scsi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/scsi/scsitest"
)

func cawCDB(lba uint64, n byte) []byte {
	c := make([]byte, 16)
	c[0] = 0x89
	binary.BigEndian.PutUint64(c[2:], lba)
	c[13] = n
	return c
}

func TestCompareAndWrite(t *testing.T) {
	for _, name := range []string{"native", "fallback"} {
		t.Run(name, func(t *testing.T) {
			mem := scsitest.NewMemBackend(64 * 512)
			var be scsi.Backend = mem
			if name == "fallback" {
				be = plainBackend{mem}
			}
			lu := newLU(t, be, func(c *scsi.LUConfig) { c.MaxTransferBlocks = 128 })
			hello(t, lu, iA)
			old := bytes.Repeat([]byte{0xAA}, 1024)
			want(t, write10(lu, iA, 4, old), "GOOD")
			nw := bytes.Repeat([]byte{0x55}, 1024)
			want(t, do(lu, iA, cawCDB(4, 2), append(append([]byte{}, old...), nw...), 0), "GOOD")
			got, _ := read10(lu, iA, 4, 2)
			if !bytes.Equal(got, nw) {
				t.Fatal("COMPARE AND WRITE did not write")
			}
			// Mismatch at byte 700: MISCOMPARE with INFORMATION = 700.
			cmp := append([]byte{}, nw...)
			cmp[700] ^= 1
			r := do(lu, iA, cawCDB(4, 2), append(cmp, old...), 0)
			want(t, r, "E/1D/00")
			if info := binary.BigEndian.Uint32(r.Sense[3:7]); r.Sense[0]&0x80 == 0 || info != 700 {
				t.Fatalf("INFORMATION %d (valid %v), want 700", info, r.Sense[0]&0x80 != 0)
			}
			got, _ = read10(lu, iA, 4, 2)
			if !bytes.Equal(got, nw) {
				t.Fatal("miscompare wrote data")
			}
			want(t, do(lu, iA, cawCDB(4, 0), nil, 0), "GOOD")
			// 256 blocks wrap to zero in the one-byte field: the data
			// transfer gives it away.
			want(t, do(lu, iA, cawCDB(0, 0), make([]byte, 2*256*512), 0), "5/24/00")
			want(t, do(lu, iA, cawCDB(63, 2), make([]byte, 2048), 0), "5/21/00")
			want(t, do(lu, iA, cawCDB(0, 65), make([]byte, 65*1024), 0), "5/24/00")
			// Data-Out of another size than 2 x NUMBER OF LOGICAL BLOCKS.
			want(t, do(lu, iA, cawCDB(0, 1), make([]byte, 4*512), 0), "5/24/00")
			want(t, do(lu, iA, cawCDB(0, 3), make([]byte, 4*512), 0), "5/24/00")
			c := cawCDB(0, 1)
			c[1] = 0x20 // WRPROTECT
			want(t, do(lu, iA, c, make([]byte, 1024), 0), "5/24/00")
		})
	}
}

// TestCompareAndWriteAtomic increments a counter with COMPARE AND WRITE
// from many goroutines while others write the overlapping second block.
// A lost update (two CAWs passing the same compare) shows as a final
// counter below the number of successful CAWs.
func TestCompareAndWriteAtomic(t *testing.T) {
	mem := scsitest.NewMemBackend(16 * 512)
	// Widen the window between the read and the write of the fallback.
	mem.SetHook(func(ctx context.Context, op scsitest.Op, off, length int64) error {
		if op == scsitest.OpRead && off == 0 {
			time.Sleep(50 * time.Microsecond)
		}
		return nil
	})
	lu := newLU(t, plainBackend{mem}, nil)
	hello(t, lu, iA)
	var ok atomic.Int64
	var wg sync.WaitGroup
	const workers, rounds = 8, 40
	for w := 0; w < workers; w++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				cur, r := read10(lu, iA, 0, 1)
				if r.Status != scsi.StatusGood {
					t.Error(sense(r))
					return
				}
				cur = append([]byte{}, cur...)
				nxt := append([]byte{}, cur...)
				binary.BigEndian.PutUint64(nxt, binary.BigEndian.Uint64(cur)+1)
				r = do(lu, iA, cawCDB(0, 1), append(cur, nxt...), 0)
				switch sense(r) {
				case "GOOD":
					ok.Add(1)
				case "E/1D/00":
				default:
					t.Error(sense(r))
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				if r := write10(lu, iA, 1, bytes.Repeat([]byte{byte(i)}, 512)); r.Status != scsi.StatusGood {
					t.Error(sense(r))
				}
			}
		}()
	}
	wg.Wait()
	final, _ := read10(lu, iA, 0, 1)
	t.Logf("counter %d ok %d", binary.BigEndian.Uint64(final), ok.Load())
	if got := binary.BigEndian.Uint64(final); got != uint64(ok.Load()) || got == 0 {
		t.Fatalf("counter %d, successful CAWs %d", got, ok.Load())
	}
}
