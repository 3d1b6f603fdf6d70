package scsi_test

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/rbdgw/rbdgw/scsi"
)

// TestConcurrentReadWrite runs many READ and WRITE commands from two nexuses
// at once; each writer owns its own blocks, so every read must see whole
// blocks written by one command (run with -race).
func TestConcurrentReadWrite(t *testing.T) {
	e := newEnv(t, nil)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			n := nexusA
			if w%2 == 1 {
				n = nexusB
			}
			for i := 0; i < 100; i++ {
				lba := uint32(w*64 + i%64)
				cdb := make([]byte, 10)
				cdb[0] = 0x2A
				binary.BigEndian.PutUint32(cdb[2:], lba)
				cdb[8] = 1
				r, _ := e.do(n, cdb, fill(512, byte(i)), 0)
				if r.Status != scsi.StatusGood {
					t.Errorf("write status %#x", r.Status)
					return
				}
				cdb[0] = 0x28
				r, d := e.do(n, cdb, nil, 512)
				if r.Status != scsi.StatusGood || !bytes.Equal(d, fill(512, byte(i))) {
					t.Errorf("read back lba %d: status %#x", lba, r.Status)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if s := e.lu.Stats(); s.WriteOps != 800 || s.ReadOps != 800 || s.WriteBytes != 800*512 || s.ReadBytes != 800*512 {
		t.Fatalf("stats %+v", s)
	}
}
