//go:build rbd

package rbd

/*
#include <rbd/librbd.h>
*/
import "C"

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/rbdgw/rbdgw/scsi"
)

// ImageSpec names an image.
type ImageSpec struct {
	Pool, Namespace, Image string
}

func (s ImageSpec) String() string {
	if s.Namespace != "" {
		return s.Pool + "/" + s.Namespace + "/" + s.Image
	}
	return s.Pool + "/" + s.Image
}

// Options tune one opened image.
type Options struct {
	// WriteCache turns librbd's write-back cache on for this image (a
	// connection of its own with rbd_cache=true). Off by default: then an
	// acknowledged write is on the OSDs and survives a gateway crash.
	WriteCache bool
	// CreateSize creates the image with this many bytes (default features
	// from the conf, exclusive-lock included) when it does not exist.
	CreateSize int64
	// PrivateConnection gives the image a rados client of its own instead
	// of the cluster's shared one. Blocklisting fences a whole client, so
	// with the shared one another gateway that breaks this image's lock
	// with blocklisting fences every image this gateway serves on it (each
	// then needs Reconnect); a private client confines that to this image,
	// at the cost of a client's threads and sockets per image.
	PrivateConnection bool
	// SizeRefresh is how often the cached size is re-read from librbd so a
	// resize by another client is noticed; default 1s.
	SizeRefresh time.Duration
}

// Backend is an open RBD image serving one LUN. It implements scsi.Backend
// and the optional scsi.WriteZeroer, scsi.SameWriter, scsi.CompareWriter,
// scsi.AllocationMapper and scsi.ZeroingUnmapper.
//
// Concurrency: every I/O method may be called from many goroutines; each
// becomes one librbd aio request, so N concurrent callers keep N requests
// in flight at the OSDs. A context cannot cancel a request already handed
// to librbd (the OSD op timeout bounds it). Reconnect waits for in-flight
// I/O to finish.
//
// Fencing: once a request fails with ESHUTDOWN (this client was
// blocklisted, normally because another gateway broke its exclusive
// lock), the backend is fenced: every I/O returns *scsi.NotReadyError
// without reaching librbd until Reconnect.
type Backend struct {
	cluster *Cluster
	spec    ImageSpec
	opts    Options

	// mu guards the connection and image below: I/O holds it shared,
	// Reconnect and Close exclusively.
	mu    sync.RWMutex
	rc    *radosConn
	ioctx *rados.IOContext
	img   *rbd.Image
	h     C.rbd_image_t
	open  bool

	size   atomic.Int64
	fenced atomic.Bool
	// stripeUnit is the image's stripe unit (its object size without
	// fancy striping): the bytes one RADOS object holds contiguously.
	stripeUnit atomic.Int64

	// holdLock is set while this backend means to hold the exclusive lock
	// (AcquireExclusiveLock succeeded, no release since); the size watcher
	// then also checks ownership and closes lockLost when it is gone.
	holdLock atomic.Bool
	lostMu   sync.Mutex
	lockLost chan struct{} // guarded by lostMu; replaced on acquire

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ scsi.Backend          = (*Backend)(nil)
	_ scsi.WriteZeroer      = (*Backend)(nil)
	_ scsi.SameWriter       = (*Backend)(nil)
	_ scsi.CompareWriter    = (*Backend)(nil)
	_ scsi.AllocationMapper = (*Backend)(nil)
	_ scsi.ZeroingUnmapper  = (*Backend)(nil)
)

// imageField is the offset of go-ceph's rbd_image_t inside rbd.Image, so
// our aio calls use the very handle go-ceph's management and lock calls
// use (a second handle in this process would be a second exclusive-lock
// client and fight the first). Checked once; go.mod pins go-ceph.
var imageField = func() uintptr {
	f, ok := reflect.TypeOf(rbd.Image{}).FieldByName("image")
	if !ok || f.Type.Size() != unsafe.Sizeof(uintptr(0)) {
		return 0
	}
	return f.Offset
}()

func imageHandle(img *rbd.Image) (C.rbd_image_t, error) {
	if imageField == 0 {
		return nil, errors.New("rbd: go-ceph's rbd.Image has no image handle field; go-ceph version unsupported")
	}
	h := *(*C.rbd_image_t)(unsafe.Add(unsafe.Pointer(img), imageField))
	if h == nil {
		return nil, errors.New("rbd: image handle is nil")
	}
	return h, nil
}

// Open opens (and with opts.CreateSize creates) an image. ctx is checked
// before each step; a step itself is bounded by the cluster's timeouts.
func (c *Cluster) Open(ctx context.Context, spec ImageSpec, opts Options) (*Backend, error) {
	if spec.Pool == "" || spec.Image == "" {
		return nil, fmt.Errorf("rbd: image spec %q needs a pool and an image", spec)
	}
	if opts.CreateSize < 0 {
		return nil, fmt.Errorf("rbd: negative CreateSize %d for %s", opts.CreateSize, spec)
	}
	if opts.SizeRefresh <= 0 {
		opts.SizeRefresh = time.Second
	}
	b := &Backend{cluster: c, spec: spec, opts: opts, stop: make(chan struct{}), lockLost: make(chan struct{})}
	var rc *radosConn
	var err error
	if opts.PrivateConnection {
		rc, err = c.dialPrivate(opts.WriteCache)
	} else {
		rc, err = c.acquire(opts.WriteCache)
	}
	if err != nil {
		return nil, err
	}
	if err := b.openOn(ctx, rc); err != nil {
		c.release(rc)
		return nil, err
	}
	b.wg.Add(1)
	go b.watchSize()
	return b, nil
}

// openOn opens the image on rc; b.mu is held or b is not shared yet.
func (b *Backend) openOn(ctx context.Context, rc *radosConn) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ioctx, err := rc.conn.OpenIOContext(b.spec.Pool)
	if err != nil {
		return fmt.Errorf("rbd: open pool %q: %w", b.spec.Pool, err)
	}
	ioctx.SetNamespace(b.spec.Namespace)
	ok := false
	defer func() {
		if !ok {
			ioctx.Destroy()
		}
	}()
	if b.opts.CreateSize > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := rbd.CreateImage(ioctx, b.spec.Image, uint64(b.opts.CreateSize), rbd.NewRbdImageOptions())
		if err != nil && !errors.Is(err, rbd.ErrExist) && errno(err) != syscall.EEXIST {
			return fmt.Errorf("rbd: create %s: %w", b.spec, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	img, err := rbd.OpenImage(ioctx, b.spec.Image, rbd.NoSnapshot)
	if err != nil {
		return fmt.Errorf("rbd: open %s: %w", b.spec, err)
	}
	h, err := imageHandle(img)
	if err != nil {
		img.Close()
		return err
	}
	size, err := img.GetSize()
	if err != nil {
		img.Close()
		return fmt.Errorf("rbd: size of %s: %w", b.spec, err)
	}
	su, err := img.GetStripeUnit()
	if err != nil {
		img.Close()
		return fmt.Errorf("rbd: stripe unit of %s: %w", b.spec, err)
	}
	b.rc, b.ioctx, b.img, b.h, b.open = rc, ioctx, img, h, true
	b.size.Store(int64(size))
	b.stripeUnit.Store(int64(su))
	ok = true
	return nil
}

// closeImage closes the image and its ioctx; b.mu is held.
func (b *Backend) closeImage() error {
	if !b.open {
		return nil
	}
	b.open = false
	err := b.img.Close()
	b.ioctx.Destroy()
	b.img, b.ioctx, b.h = nil, nil, nil
	if err != nil && !b.fenced.Load() {
		return fmt.Errorf("rbd: close %s: %w", b.spec, err)
	}
	return nil
}

// Spec is the image this backend serves.
func (b *Backend) Spec() ImageSpec { return b.spec }

func (b *Backend) watchSize() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.SizeRefresh)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.RefreshSize()
			b.checkLock()
		}
	}
}

// RefreshSize re-reads the image size from librbd (in memory; librbd
// refreshes its header when another client resizes) and returns it.
func (b *Backend) RefreshSize() int64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.open && !b.fenced.Load() {
		var size C.uint64_t
		if C.rbd_get_size(b.h, &size) == 0 {
			b.size.Store(int64(size))
		}
	}
	return b.size.Load()
}

// Size is the cached image size (refreshed every SizeRefresh).
func (b *Backend) Size() int64 { return b.size.Load() }

// AtomicWriteUnit implements scsi.AtomicWriter: a write inside one
// stripe unit goes to one RADOS object as one operation, which the OSDs
// apply whole or not at all (a write across two objects may land half).
func (b *Backend) AtomicWriteUnit() int64 { return b.stripeUnit.Load() }

// UnmapReadsZero: discards are never skipped (rbd_skip_partial_discard is
// off on our connections), so unmapped blocks read back as zeros.
func (b *Backend) UnmapReadsZero() bool { return true }

// do runs one I/O against the open image, mapping its result.
func (b *Backend) do(ctx context.Context, op string, f func(h C.rbd_image_t) int64) error {
	if err := ctx.Err(); err != nil {
		return err // not submitted; once submitted a request runs to completion
	}
	if b.fenced.Load() {
		return errFenced(op)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.open {
		return &scsi.NotReadyError{ASC: 0x04, ASCQ: 0x03, Err: fmt.Errorf("rbd: %s: %s is not open", op, b.spec)}
	}
	r := f(b.h)
	if r >= 0 {
		return nil
	}
	return b.mapErr(op, syscall.Errno(-r))
}

func errFenced(op string) error {
	return &scsi.NotReadyError{ASC: 0x04, ASCQ: 0x0a, Err: fmt.Errorf("rbd: %s: %w", op, ErrFenced)}
}

// ErrFenced is wrapped in the NotReadyError of every I/O after this client
// was blocklisted.
var ErrFenced = errors.New("client blocklisted (exclusive lock lost); reconnect needed")

// mapErr turns a librbd errno into the error the device server wants:
// lock lost or not held → NOT READY (the initiator retries, possibly on
// another path); anything else → a plain error (MEDIUM ERROR).
func (b *Backend) mapErr(op string, e syscall.Errno) error {
	err := fmt.Errorf("rbd: %s %s: %w", op, b.spec, e)
	switch e {
	case syscall.ESHUTDOWN: // also EBLOCKLISTED
		b.fenced.Store(true)
		return &scsi.NotReadyError{ASC: 0x04, ASCQ: 0x0a, Err: fmt.Errorf("%w: %w", err, ErrFenced)}
	case syscall.EROFS: // another client holds the exclusive lock
		return &scsi.NotReadyError{ASC: 0x04, ASCQ: 0x0a, Err: err}
	case syscall.ETIMEDOUT: // OSD op timeout: cluster unreachable
		return &scsi.NotReadyError{ASC: 0x04, ASCQ: 0x01, Err: err}
	}
	return err
}

func errno(err error) syscall.Errno {
	var ec interface{ ErrorCode() int }
	if errors.As(err, &ec) {
		c := ec.ErrorCode()
		if c < 0 {
			c = -c
		}
		return syscall.Errno(c)
	}
	return 0
}

// ReadAt implements scsi.Backend.
func (b *Backend) ReadAt(ctx context.Context, p []byte, off int64) error {
	if len(p) == 0 {
		return nil // librbd asserts on zero-length requests
	}
	return b.do(ctx, "read", func(h C.rbd_image_t) int64 {
		r := aioRead(h, p, off)
		if r >= 0 && r != int64(len(p)) {
			return -int64(syscall.EIO)
		}
		return r
	})
}

// WriteAt implements scsi.Backend. With the cache off an acknowledged
// librbd write is already on the OSDs, so FUA needs no flush; with
// WriteCache on, FUA is write then flush.
func (b *Backend) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if len(p) == 0 {
		return nil
	}
	return b.do(ctx, "write", func(h C.rbd_image_t) int64 {
		r := aioWrite(h, p, off)
		if r >= 0 && fua && b.opts.WriteCache {
			r = aioFlush(h)
		}
		return r
	})
}

// Flush implements scsi.Backend.
func (b *Backend) Flush(ctx context.Context) error {
	return b.do(ctx, "flush", aioFlush)
}

// Unmap implements scsi.Backend (rbd discard).
func (b *Backend) Unmap(ctx context.Context, off, length int64) error {
	if length <= 0 {
		return nil
	}
	return b.do(ctx, "discard", func(h C.rbd_image_t) int64 { return aioDiscard(h, off, length) })
}

// WriteZeroes implements scsi.WriteZeroer (rbd_aio_write_zeroes). Without
// unmap the range stays allocated (thick).
func (b *Backend) WriteZeroes(ctx context.Context, off, length int64, unmap bool) error {
	if length <= 0 {
		return nil
	}
	return b.do(ctx, "write zeroes", func(h C.rbd_image_t) int64 { return aioWriteZeroes(h, off, length, !unmap) })
}

// WriteSame implements scsi.SameWriter (rbd_aio_writesame); length is a
// multiple of len(block).
func (b *Backend) WriteSame(ctx context.Context, block []byte, off, length int64) error {
	if length <= 0 || len(block) == 0 {
		return nil
	}
	if length%int64(len(block)) != 0 {
		return fmt.Errorf("rbd: write same: length %d is not a multiple of the block (%d)", length, len(block))
	}
	return b.do(ctx, "write same", func(h C.rbd_image_t) int64 { return aioWriteSame(h, block, off, length) })
}

// cawSector is the span librbd 16 executes as one atomic compare-and-write:
// it refuses (EINVAL) a request longer than 512 bytes or crossing a
// 512-byte boundary.
const cawSector = 512

// CompareAndWrite implements scsi.CompareWriter. A request inside one
// 512-byte sector uses librbd's compare-and-write, executed atomically by
// the OSD (cmpext+write), so it holds across gateways even without the
// exclusive lock. Longer requests, which librbd 16 refuses, are compared
// and written here: atomic against overlapping commands because the device
// server serialises them, and across gateways because only the holder of
// the exclusive lock writes. On mismatch it returns *scsi.MiscompareError
// with the offset of the first differing byte relative to off; librbd 16
// reports that offset wrongly (always 0), so it is found by reading back.
func (b *Backend) CompareAndWrite(ctx context.Context, cmp, data []byte, off int64) error {
	if len(data) == 0 {
		return nil
	}
	if len(cmp) != len(data) {
		return fmt.Errorf("rbd: compare and write: compare buffer %d bytes, data %d", len(cmp), len(data))
	}
	if off/cawSector != (off+int64(len(data))-1)/cawSector {
		return b.compareThenWrite(ctx, cmp, data, off)
	}
	miss := false
	err := b.do(ctx, "compare and write", func(h C.rbd_image_t) int64 {
		r, _ := aioCompareAndWrite(h, cmp, data, off)
		if r == -int64(syscall.EILSEQ) {
			miss = true
			return 0
		}
		return r
	})
	if err != nil || !miss {
		return err
	}
	cur := make([]byte, len(cmp))
	if err := b.ReadAt(ctx, cur, off); err != nil {
		return err
	}
	return &scsi.MiscompareError{Offset: firstDiff(cur, cmp)}
}

// compareThenWrite is the compare-and-write librbd cannot do in one op.
func (b *Backend) compareThenWrite(ctx context.Context, cmp, data []byte, off int64) error {
	cur := make([]byte, len(cmp))
	if err := b.ReadAt(ctx, cur, off); err != nil {
		return err
	}
	if !bytes.Equal(cur, cmp) {
		return &scsi.MiscompareError{Offset: firstDiff(cur, cmp)}
	}
	return b.WriteAt(ctx, data, off, false)
}

// firstDiff is the index of the first byte where a and b differ; 0 when
// they are equal (the data changed between compare and read-back).
func firstDiff(a, b []byte) int64 {
	for i := range a {
		if a[i] != b[i] {
			return int64(i)
		}
	}
	return 0
}
