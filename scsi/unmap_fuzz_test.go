package scsi

import (
	"errors"
	"testing"
)

// FuzzUnmapParams: the UNMAP parameter decoder never panics, rejects with
// sense only, and never passes a descriptor outside the capacity.
func FuzzUnmapParams(f *testing.F) {
	f.Add([]byte{0, 22, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 16, 0, 0, 0, 0}, uint64(1024))
	f.Add([]byte{0, 6, 0, 0, 0, 0, 0, 0}, uint64(8))
	f.Add([]byte{0, 22, 0, 17, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0}, uint64(1<<40))
	f.Fuzz(func(t *testing.T, b []byte, capBlocks uint64) {
		ds, err := decodeUnmapParams(b, capBlocks)
		if err != nil {
			var cc *CheckCondition
			if !errors.As(err, &cc) {
				t.Fatalf("returned %T", err)
			}
			return
		}
		if len(ds) > maxUnmapDescriptors {
			t.Fatalf("%d descriptors", len(ds))
		}
		for _, d := range ds {
			if d.LBA > capBlocks || uint64(d.Blocks) > capBlocks-d.LBA {
				t.Fatalf("descriptor %+v beyond capacity %d", d, capBlocks)
			}
		}
	})
}
