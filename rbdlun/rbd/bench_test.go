//go:build rbd

package rbd

import (
	"context"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// Compare with librbd's own tool on the same cluster:
//
//	rbd bench --io-type write --io-size 4096 --io-threads 32 --io-pattern rand rbd/IMAGE

const benchImageSize = 256 << 20

// benchImage returns a fully written image, so reads reach the OSD and
// writes do not pay for object creation.
func benchImage(b *testing.B) *Backend {
	cl := connect(b)
	be, _ := newImage(b, cl, benchImageSize)
	ctx := context.Background()
	buf := random(4 << 20)
	for off := int64(0); off < benchImageSize; off += int64(len(buf)) {
		if err := be.WriteAt(ctx, buf, off, false); err != nil {
			b.Fatal(err)
		}
	}
	return be
}

// qd runs b.N 4 KiB ops at random aligned offsets from depth goroutines.
func qd(b *testing.B, depth int, op func(p []byte, off int64) error) {
	var n atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(4096)
	b.ResetTimer()
	for w := 0; w < depth; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := random(4096)
			for n.Add(1) <= int64(b.N) {
				off := mrand.Int64N(benchImageSize/4096) * 4096
				if err := op(p, off); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "IOPS")
}

func BenchmarkRBDWrite4KQD32(b *testing.B) {
	be := benchImage(b)
	ctx := context.Background()
	qd(b, 32, func(p []byte, off int64) error { return be.WriteAt(ctx, p, off, false) })
}

func BenchmarkRBDRead4KQD32(b *testing.B) {
	be := benchImage(b)
	ctx := context.Background()
	qd(b, 32, func(p []byte, off int64) error { return be.ReadAt(ctx, p, off) })
}

// The Blocking variants use go-ceph's synchronous rbd_write2/rbd_read2 from
// 32 goroutines (a bounded pool of blocking calls, one OS thread each) for
// comparison with the aio path.
func BenchmarkRBDWrite4KQD32Blocking(b *testing.B) {
	be := benchImage(b)
	qd(b, 32, func(p []byte, off int64) error { _, err := be.img.WriteAt(p, off); return err })
}

func BenchmarkRBDRead4KQD32Blocking(b *testing.B) {
	be := benchImage(b)
	qd(b, 32, func(p []byte, off int64) error { _, err := be.img.ReadAt(p, off); return err })
}

func BenchmarkRBDWrite4KQD1(b *testing.B) {
	be := benchImage(b)
	ctx := context.Background()
	qd(b, 1, func(p []byte, off int64) error { return be.WriteAt(ctx, p, off, false) })
}
