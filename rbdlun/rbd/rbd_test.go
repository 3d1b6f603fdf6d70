//go:build rbd

package rbd

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/scsi"
)

// The tests need a running cluster: start one with
//
//	ceph/micro-cluster.sh start /tmp/ceph
//	RBDGW_CEPH_CONF=/tmp/ceph/ceph.conf go test -race -tags rbd,pacific ./rbdlun/rbd

const testPool = "rbd"

func cephConf(tb testing.TB) string {
	tb.Helper()
	conf := os.Getenv("RBDGW_CEPH_CONF")
	if conf == "" {
		tb.Skip("RBDGW_CEPH_CONF is not set: no Ceph cluster to test against (start one with ceph/micro-cluster.sh start DIR)")
	}
	return conf
}

func connect(tb testing.TB) *Cluster {
	tb.Helper()
	cl, err := Connect(ClusterConfig{ConfPath: cephConf(tb), OSDOpTimeout: 20 * time.Second, MonOpTimeout: 20 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cl.Close() })
	return cl
}

// newImage creates a fresh image of size bytes, removed after the test.
func newImage(tb testing.TB, cl *Cluster, size int64) (*Backend, ImageSpec) {
	tb.Helper()
	return newImageOpts(tb, cl, Options{CreateSize: size})
}

func newImageOpts(tb testing.TB, cl *Cluster, opts Options) (*Backend, ImageSpec) {
	tb.Helper()
	spec := ImageSpec{Pool: testPool, Image: fmt.Sprintf("rbdgw-test-%d-%08x", time.Now().UnixNano()%1e6, mrand.Uint32())}
	ctx := context.Background()
	b, err := cl.Open(ctx, spec, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		b.Close()
		if err := cl.RemoveImage(ctx, spec); err != nil {
			tb.Log(err)
		}
	})
	return b, spec
}

func random(n int) []byte {
	p := make([]byte, n)
	rand.Read(p)
	return p
}

func mustRead(t *testing.T, b *Backend, off int64, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	if err := b.ReadAt(context.Background(), p, off); err != nil {
		t.Fatalf("read %d@%d: %v", n, off, err)
	}
	return p
}

func TestReadWriteFlush(t *testing.T) {
	cl := connect(t)
	b, _ := newImage(t, cl, 64<<20)
	ctx := context.Background()
	if got := b.Size(); got != 64<<20 {
		t.Fatalf("Size = %d", got)
	}
	// Unwritten blocks read as zeros.
	if p := mustRead(t, b, 0, 4096); !bytes.Equal(p, make([]byte, 4096)) {
		t.Fatal("fresh image not zero")
	}
	// 1 MiB across the first object boundary (4 MiB objects).
	data := random(1 << 20)
	off := int64(4<<20 - 512<<10)
	if err := b.WriteAt(ctx, data, off, false); err != nil {
		t.Fatal(err)
	}
	if p := mustRead(t, b, off, len(data)); !bytes.Equal(p, data) {
		t.Fatal("read back differs")
	}
	fua := random(8192)
	if err := b.WriteAt(ctx, fua, 12<<20, true); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if p := mustRead(t, b, 12<<20, len(fua)); !bytes.Equal(p, fua) {
		t.Fatal("FUA write differs")
	}
	// Zero-length requests never reach librbd (it asserts).
	if err := b.ReadAt(ctx, nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteAt(ctx, []byte{}, 0, true); err != nil {
		t.Fatal(err)
	}
	if err := b.Unmap(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	// Past the end: a plain error, not a crash.
	if err := b.ReadAt(ctx, make([]byte, 4096), 64<<20); err == nil {
		t.Fatal("read past the end succeeded")
	}
}

func TestDiscardAndWriteZeroes(t *testing.T) {
	cl := connect(t)
	b, _ := newImage(t, cl, 16<<20)
	ctx := context.Background()
	if !b.UnmapReadsZero() {
		t.Fatal("UnmapReadsZero false")
	}
	data := random(256 << 10)
	if err := b.WriteAt(ctx, data, 0, false); err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 4096)
	check := func(what string, zoff int64) {
		t.Helper()
		p := mustRead(t, b, 0, len(data))
		want := append([]byte(nil), data...)
		copy(want[zoff:zoff+4096], zero)
		copy(data, want)
		if !bytes.Equal(p, want) {
			t.Fatalf("%s: contents wrong", what)
		}
	}
	// A small discard inside an object must zero, not be skipped.
	if err := b.Unmap(ctx, 8192, 4096); err != nil {
		t.Fatal(err)
	}
	check("discard", 8192)
	if err := b.WriteZeroes(ctx, 65536, 4096, true); err != nil {
		t.Fatal(err)
	}
	check("write zeroes unmap", 65536)
	if err := b.WriteZeroes(ctx, 131072, 4096, false); err != nil {
		t.Fatal(err)
	}
	check("write zeroes thick", 131072)
}

func TestWriteSame(t *testing.T) {
	cl := connect(t)
	b, _ := newImage(t, cl, 16<<20)
	ctx := context.Background()
	block := random(512)
	off, length := int64(3<<20), int64(2<<20) // crosses an object boundary
	if err := b.WriteSame(ctx, block, off, length); err != nil {
		t.Fatal(err)
	}
	p := mustRead(t, b, off, int(length))
	for i := 0; i < len(p); i += len(block) {
		if !bytes.Equal(p[i:i+len(block)], block) {
			t.Fatalf("block at %d differs", i)
		}
	}
	if err := b.WriteSame(ctx, block, off, 1000); err == nil {
		t.Fatal("length not a multiple of the block accepted")
	}
	// An all-zero pattern (librbd may turn it into a discard) reads zero.
	if err := b.WriteSame(ctx, make([]byte, 512), off, 64<<10); err != nil {
		t.Fatal(err)
	}
	if p := mustRead(t, b, off, 64<<10); !bytes.Equal(p, make([]byte, 64<<10)) {
		t.Fatal("zero write same not zero")
	}
}

func TestCompareAndWrite(t *testing.T) {
	cl := connect(t)
	b, _ := newImage(t, cl, 16<<20)
	ctx := context.Background()
	// One sector goes to librbd's atomic compare-and-write; longer or
	// sector-crossing requests are compared here.
	for _, tc := range []struct{ off, n, diff int64 }{
		{0, 512, 100}, {5<<20 + 512, 512, 511}, {0, 4096, 1000}, {5<<20 + 4096, 8192, 5000}, {256, 512, 300},
	} {
		off := tc.off
		a, c := random(int(tc.n)), random(int(tc.n))
		if err := b.WriteAt(ctx, a, off, false); err != nil {
			t.Fatal(err)
		}
		if err := b.CompareAndWrite(ctx, a, c, off); err != nil {
			t.Fatalf("off %d: match: %v", off, err)
		}
		if p := mustRead(t, b, off, int(tc.n)); !bytes.Equal(p, c) {
			t.Fatalf("off %d: data not written on match", off)
		}
		// Now the image holds c; compare with c except from tc.diff on.
		cmp := append([]byte(nil), c...)
		cmp[tc.diff] ^= 0xff
		cmp[tc.n-1] ^= 0x0f
		err := b.CompareAndWrite(ctx, cmp, a, off)
		var mis *scsi.MiscompareError
		if !errors.As(err, &mis) {
			t.Fatalf("off %d: miscompare: got %v", off, err)
		}
		if mis.Offset != tc.diff {
			t.Fatalf("off %d: miscompare offset %d, want %d", off, mis.Offset, tc.diff)
		}
		if p := mustRead(t, b, off, int(tc.n)); !bytes.Equal(p, c) {
			t.Fatalf("off %d: data written despite miscompare", off)
		}
	}
	// Compare against never-written blocks (zeros).
	z := make([]byte, 512)
	if err := b.CompareAndWrite(ctx, z, random(512), 10<<20); err != nil {
		t.Fatalf("compare with unwritten: %v", err)
	}
}

func TestMapped(t *testing.T) {
	cl := connect(t)
	b, _ := newImage(t, cl, 64<<20)
	ctx := context.Background()
	mapped, n, err := b.Mapped(ctx, 0, 64<<20)
	if err != nil || mapped || n != 64<<20 {
		t.Fatalf("fresh image: mapped %v length %d err %v", mapped, n, err)
	}
	if err := b.WriteAt(ctx, random(8192), 8<<20, false); err != nil {
		t.Fatal(err)
	}
	mapped, n, err = b.Mapped(ctx, 0, 64<<20)
	if err != nil || mapped || n != 8<<20 {
		t.Fatalf("before data: mapped %v length %d err %v, want unmapped 8 MiB", mapped, n, err)
	}
	mapped, n, err = b.Mapped(ctx, 8<<20, 64<<20-8<<20)
	if err != nil || !mapped || n < 8192 || n > 4<<20 {
		t.Fatalf("at data: mapped %v length %d err %v", mapped, n, err)
	}
	t.Logf("mapped run at 8 MiB: %d bytes", n)
	mapped, n, err = b.Mapped(ctx, 8<<20, 4096)
	if err != nil || !mapped || n != 4096 {
		t.Fatalf("limit: mapped %v length %d err %v", mapped, n, err)
	}
	// A whole-object discard deallocates.
	if err := b.Unmap(ctx, 8<<20, 4<<20); err != nil {
		t.Fatal(err)
	}
	mapped, n, err = b.Mapped(ctx, 8<<20, 4<<20)
	if err != nil || mapped {
		t.Fatalf("after discard: mapped %v length %d err %v", mapped, n, err)
	}
}

func TestSizeChange(t *testing.T) {
	cl := connect(t)
	b, spec := newImage(t, cl, 16<<20)
	ctx := context.Background()
	// Another client grows the image; the backend notices on refresh.
	other, err := cl.Open(ctx, spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Resize(ctx, 32<<20); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.RefreshSize() != 32<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("size still %d after resize", b.Size())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := b.WriteAt(ctx, random(4096), 30<<20, false); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentQD32(t *testing.T) {
	cl := connect(t)
	b, _ := newImage(t, cl, 64<<20)
	ctx := context.Background()
	const workers, perWorker, bs = 32, 64, 4096
	want := make([][]byte, workers*perWorker)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				blk := i*workers + w
				p := random(bs)
				want[blk] = p
				if err := b.WriteAt(ctx, p, int64(blk)*bs*7, false); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for blk, p := range want {
		if got := mustRead(t, b, int64(blk)*bs*7, bs); !bytes.Equal(got, p) {
			t.Fatalf("block %d differs", blk)
		}
	}
}

// TestLockTakeover: a second gateway breaks the first one's lock with
// blocklisting; the first one's next write is NOT READY and lands nowhere.
func TestLockTakeover(t *testing.T) {
	cl1 := connect(t)
	b1, spec := newImage(t, cl1, 16<<20)
	ctx := context.Background()
	if err := b1.AcquireExclusiveLock(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := b1.IsLockOwner(); !ok || err != nil {
		t.Fatalf("owner after acquire: %v %v", ok, err)
	}
	old := random(4096)
	if err := b1.WriteAt(ctx, old, 0, false); err != nil {
		t.Fatal(err)
	}

	cl2 := connect(t) // a second rados client, as another gateway
	b2, err := cl2.Open(ctx, spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if err := b2.AcquireExclusiveLock(ctx); !errors.Is(err, ErrLockBusy) {
		t.Fatalf("second acquire: %v, want ErrLockBusy", err)
	}
	owners, err := b2.LockOwners()
	if err != nil || len(owners) != 1 {
		t.Fatalf("owners %v %v", owners, err)
	}
	t.Logf("owner %q", owners[0])
	start := time.Now()
	if err := b2.BreakLock(ctx, owners[0], true); err != nil {
		t.Fatal(err)
	}
	if err := b2.AcquireExclusiveLock(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("break+blocklist+acquire: %v", time.Since(start))
	fresh := random(4096)
	if err := b2.WriteAt(ctx, fresh, 0, false); err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	err = b1.WriteAt(ctx, random(4096), 0, false)
	var nr *scsi.NotReadyError
	if !errors.As(err, &nr) {
		t.Fatalf("old owner's write: %v, want NotReadyError", err)
	}
	t.Logf("old owner's write failed in %v: %v", time.Since(start), err)
	if err := b1.Flush(ctx); !errors.As(err, &nr) {
		t.Fatalf("old owner's flush: %v", err)
	}
	if ok, _ := b1.IsLockOwner(); ok {
		t.Fatal("old owner still thinks it owns the lock")
	}
	if p := mustRead(t, b2, 0, 4096); !bytes.Equal(p, fresh) {
		t.Fatal("stale data landed")
	}

	// The old owner comes back on a new rados client: it can read, and
	// cannot take the lock while b2 holds it.
	if err := b1.Reconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if p := mustRead(t, b1, 0, 4096); !bytes.Equal(p, fresh) {
		t.Fatal("reconnected reader sees old data")
	}
	if err := b1.AcquireExclusiveLock(ctx); !errors.Is(err, ErrLockBusy) {
		t.Fatalf("reacquire while owned: %v", err)
	}
	// A graceful move: b2 releases, b1 takes over without blocklisting.
	if err := b2.ReleaseExclusiveLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b1.AcquireExclusiveLock(ctx); err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	if err := b1.WriteAt(ctx, old, 0, false); err != nil {
		t.Fatal(err)
	}
}

func TestWriteCacheAndCancel(t *testing.T) {
	cl := connect(t)
	_, spec := newImage(t, cl, 16<<20)
	ctx := context.Background()
	b, err := cl.Open(ctx, spec, Options{WriteCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	data := random(64 << 10)
	if err := b.WriteAt(ctx, data, 4096, true); err != nil {
		t.Fatal(err)
	}
	if p := mustRead(t, b, 4096, len(data)); !bytes.Equal(p, data) {
		t.Fatal("cached write differs")
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.WriteAt(cctx, data, 0, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("write with a cancelled context: %v", err)
	}
}

// TestBlocklistScope: blocklisting fences a whole rados client. On the
// shared connection another image of the same gateway is fenced too and
// recovers with Reconnect; with PrivateConnection it is untouched. The lock
// loser learns of the loss through LockLost without doing I/O.
func TestBlocklistScope(t *testing.T) {
	for _, private := range []bool{false, true} {
		t.Run(fmt.Sprintf("private=%v", private), func(t *testing.T) {
			ctx := context.Background()
			cl1 := connect(t)
			b1, spec := newImageOpts(t, cl1, Options{CreateSize: 16 << 20, PrivateConnection: private, SizeRefresh: 50 * time.Millisecond})
			b3, _ := newImage(t, cl1, 16<<20) // another LUN on the same gateway
			if err := b1.AcquireExclusiveLock(ctx); err != nil {
				t.Fatal(err)
			}
			if err := b3.WriteAt(ctx, random(4096), 0, false); err != nil {
				t.Fatal(err)
			}
			lost := b1.LockLost()

			cl2 := connect(t)
			b2, err := cl2.Open(ctx, spec, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer b2.Close()
			owners, err := b2.LockOwners()
			if err != nil || len(owners) != 1 {
				t.Fatalf("owners %v %v", owners, err)
			}
			if err := b2.BreakLock(ctx, owners[0], true); err != nil {
				t.Fatal(err)
			}
			if err := b2.AcquireExclusiveLock(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case <-lost:
			case <-time.After(5 * time.Second):
				t.Fatal("LockLost not closed 5s after the takeover")
			}
			var nr *scsi.NotReadyError
			err = b3.WriteAt(ctx, random(4096), 0, false)
			if private {
				if err != nil {
					t.Fatalf("other image on its shared client: %v", err)
				}
				return
			}
			if !errors.As(err, &nr) || !errors.Is(err, ErrFenced) {
				t.Fatalf("other image on the fenced shared client: %v, want fenced NotReady", err)
			}
			if err := b3.Reconnect(ctx); err != nil {
				t.Fatal(err)
			}
			if err := b3.WriteAt(ctx, random(4096), 0, false); err != nil {
				t.Fatalf("after reconnect: %v", err)
			}
			// b1 reconnects onto the shared client b3 already renewed.
			if err := b1.Reconnect(ctx); err != nil {
				t.Fatal(err)
			}
			if b1.rc != b3.rc {
				t.Fatal("reconnected backends do not share the renewed client")
			}
		})
	}
}
