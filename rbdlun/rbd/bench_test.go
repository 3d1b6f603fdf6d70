//go:build rbd

package rbd

import (
	"context"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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
	qdSized(b, depth, 4096, true, op)
}

// qdSized runs b.N ops of size bytes from depth goroutines, at random
// aligned offsets (scattered) or sequentially (wrapping), and reports
// IOPS and the process's CPU time per op (user+system, librbd's threads
// included): on a shared machine CPU per op is steadier than IOPS, and it
// is what the gateway's throughput is bounded by when the cores are busy.
func qdSized(b *testing.B, depth, size int, scattered bool, op func(p []byte, off int64) error) {
	var n, seq atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(size))
	slots := int64(benchImageSize / size)
	cpu0 := processCPU(b)
	b.ResetTimer()
	for w := 0; w < depth; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := random(size)
			for n.Add(1) <= int64(b.N) {
				slot := seq.Add(1) % slots
				if scattered {
					slot = mrand.Int64N(slots)
				}
				if err := op(p, slot*int64(size)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "IOPS")
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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

func BenchmarkRBDRead4KQD1(b *testing.B) {
	be := benchImage(b)
	ctx := context.Background()
	qd(b, 1, func(p []byte, off int64) error { return be.ReadAt(ctx, p, off) })
}

// 1 MiB sequential at QD16, as bench/compare-rbd.sh's 1m workloads.
func BenchmarkRBDRead1MQD16(b *testing.B) {
	be := benchImage(b)
	ctx := context.Background()
	qdSized(b, 16, 1<<20, false, func(p []byte, off int64) error { return be.ReadAt(ctx, p, off) })
}

func BenchmarkRBDWrite1MQD16(b *testing.B) {
	be := benchImage(b)
	ctx := context.Background()
	qdSized(b, 16, 1<<20, false, func(p []byte, off int64) error { return be.WriteAt(ctx, p, off, false) })
}
