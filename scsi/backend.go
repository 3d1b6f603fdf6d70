package scsi

import "context"

// Backend is the storage behind one logical unit: a flat array of bytes
// addressed in logical blocks by the device server.
//
// Concurrency contract: every method may be called from many goroutines at
// once. The device server never issues two overlapping writes that must be
// ordered (COMPARE AND WRITE is serialised against overlapping commands by
// the device server, not the backend). Offsets and lengths are always whole
// logical blocks, inside Size(), and length is never zero: librbd asserts on
// zero-length requests, so the device server filters them out before the
// backend sees them.
type Backend interface {
	// ReadAt fills p from byte offset off. A short read is an error.
	ReadAt(ctx context.Context, p []byte, off int64) error
	// WriteAt writes p at byte offset off. With fua the data must be on
	// stable storage before WriteAt returns.
	WriteAt(ctx context.Context, p []byte, off int64, fua bool) error
	// Flush makes every completed write durable.
	Flush(ctx context.Context) error
	// Unmap deallocates [off, off+length); later reads of the range return
	// zeros (the LU advertises LBPRZ=1 only if the backend says so through
	// ZeroingUnmapper).
	Unmap(ctx context.Context, off, length int64) error
	// Size is the current size in bytes. It may change at run time (image
	// resize); the device server notices and raises CAPACITY DATA HAS CHANGED.
	Size() int64
	// Close releases the backend. No call is in flight when Close is called.
	Close() error
}

// WriteZeroer is implemented by backends that can zero a range without
// transferring zero buffers (fallocate ZERO_RANGE, rbd_write_zeroes). WRITE
// SAME with an all-zero block uses it; unmap says whether the range may be
// deallocated as well.
type WriteZeroer interface {
	WriteZeroes(ctx context.Context, off, length int64, unmap bool) error
}

// SameWriter is implemented by backends that replicate one block over a
// range natively (rbd_writesame). Without it the device server writes the
// pattern itself in bounded chunks.
type SameWriter interface {
	WriteSame(ctx context.Context, block []byte, off, length int64) error
}

// CompareWriter is implemented by backends with an atomic compare-and-write
// of their own (rbd_aio_compare_and_write), needed when several gateways
// may write the same image. Without it the device server compares and
// writes under its own range lock, which is atomic within one process.
// On mismatch it returns a *MiscompareError with the offset of the first
// differing byte relative to off.
type CompareWriter interface {
	CompareAndWrite(ctx context.Context, cmp, data []byte, off int64) error
}

// MiscompareError reports the first byte that differed in COMPARE AND WRITE.
type MiscompareError struct{ Offset int64 }

func (e *MiscompareError) Error() string { return "scsi: miscompare" }

// AllocationMapper is implemented by backends that know which ranges are
// allocated (SEEK_DATA/SEEK_HOLE, rbd_diff_iterate); GET LBA STATUS uses it.
// Mapped reports whether off is allocated and how many bytes from off share
// that state (at least one block, at most limit).
type AllocationMapper interface {
	Mapped(ctx context.Context, off, limit int64) (mapped bool, length int64, err error)
}

// ZeroingUnmapper is implemented by backends whose unmapped ranges read back
// as zeros; the LU then reports LBPRZ=1.
type ZeroingUnmapper interface {
	UnmapReadsZero() bool
}

// AtomicWriter is implemented by backends that know how large a write
// reaches the medium whole or not at all, even across a crash of the
// gateway or the storage: one WriteAt of at most AtomicWriteUnit bytes
// starting at a multiple of it. WRITE ATOMIC is offered only for such
// writes (0: no guarantee, no WRITE ATOMIC).
type AtomicWriter interface {
	AtomicWriteUnit() int64
}

// NotReadyError is returned by a backend that cannot serve I/O right now but
// expects to later (exclusive lock lost or in transition, cluster
// unreachable). The device server answers NOT READY with the given
// additional sense instead of a medium error, so initiators retry.
type NotReadyError struct {
	ASC, ASCQ byte
	Err       error
}

func (e *NotReadyError) Error() string { return "scsi: backend not ready: " + e.Err.Error() }
func (e *NotReadyError) Unwrap() error { return e.Err }
