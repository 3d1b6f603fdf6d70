package rbdlun

import (
	"path/filepath"
	"sync/atomic"
	"testing"
)

// BenchmarkFUAWrite measures durable 4 KiB writes with 32 writers, as an
// initiator at QD32 with write_cache off produces them.
func BenchmarkFUAWrite(b *testing.B) {
	fb, err := OpenFile(filepath.Join(b.TempDir(), "f"), 64<<20, FileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer fb.Close()
	var next atomic.Int64
	b.SetParallelism(16) // x GOMAXPROCS(2) = 32 writers
	b.SetBytes(4096)
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 4096)
		for pb.Next() {
			off := (next.Add(1) % 16384) * 4096
			if err := fb.WriteAt(ctx, buf, off, true); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
