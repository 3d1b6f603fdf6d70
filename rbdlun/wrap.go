package rbdlun

import (
	"context"

	"github.com/rbdgw/rbdgw/scsi"
)

// Op names a backend operation, for fault injection and stall reports.
type Op uint8

const (
	OpRead Op = iota + 1
	OpWrite
	OpFlush
	OpUnmap
	OpWriteZeroes
	OpWriteSame
	OpCompareAndWrite
	OpMapped
	OpClose
)

var opNames = [...]string{
	OpRead: "read", OpWrite: "write", OpFlush: "flush", OpUnmap: "unmap",
	OpWriteZeroes: "write_zeroes", OpWriteSame: "write_same",
	OpCompareAndWrite: "compare_and_write", OpMapped: "mapped", OpClose: "close",
}

func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return "unknown"
}

// interceptor is what a wrapper adds around each call: begin runs before
// the inner call (an error skips it), end after it with the call's result
// (and may replace it). A token carries state from begin to end without a
// closure allocation per call.
type interceptor interface {
	begin(op Op, off, length int64) (token int, err error)
	end(token int, err error) error
	close()
}

// Unwrapper is implemented by wrappers; Unwrap returns the inner backend.
type Unwrapper interface {
	Unwrap() scsi.Backend
}

// base implements scsi.Backend around inner through an interceptor. The
// optional interfaces are added by the combination types in
// wrap_combos.go, chosen by wrap to match the inner backend.
type base struct {
	inner scsi.Backend
	ic    interceptor
}

func (b *base) Unwrap() scsi.Backend { return b.inner }

func (b *base) ReadAt(ctx context.Context, p []byte, off int64) error {
	tok, err := b.ic.begin(OpRead, off, int64(len(p)))
	if err != nil {
		return err
	}
	return b.ic.end(tok, b.inner.ReadAt(ctx, p, off))
}

func (b *base) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	tok, err := b.ic.begin(OpWrite, off, int64(len(p)))
	if err != nil {
		return err
	}
	return b.ic.end(tok, b.inner.WriteAt(ctx, p, off, fua))
}

func (b *base) Flush(ctx context.Context) error {
	tok, err := b.ic.begin(OpFlush, 0, 0)
	if err != nil {
		return err
	}
	return b.ic.end(tok, b.inner.Flush(ctx))
}

func (b *base) Unmap(ctx context.Context, off, length int64) error {
	tok, err := b.ic.begin(OpUnmap, off, length)
	if err != nil {
		return err
	}
	return b.ic.end(tok, b.inner.Unmap(ctx, off, length))
}

func (b *base) Size() int64 { return b.inner.Size() }

// Close closes the inner backend, then stops the wrapper's own machinery.
func (b *base) Close() error {
	tok, err := b.ic.begin(OpClose, 0, 0)
	if err != nil {
		b.ic.close()
		return err
	}
	err = b.ic.end(tok, b.inner.Close())
	b.ic.close()
	return err
}

// AtomicWriteUnit forwards the inner answer; absent means 0 (none), so
// always implementing it is equivalent to forwarding the interface.
func (b *base) AtomicWriteUnit() int64 {
	if a, ok := b.inner.(scsi.AtomicWriter); ok {
		return a.AtomicWriteUnit()
	}
	return 0
}

// UnmapReadsZero forwards the inner answer. Always implementing it is
// equivalent to forwarding the interface: absent means false.
func (b *base) UnmapReadsZero() bool {
	z, ok := b.inner.(scsi.ZeroingUnmapper)
	return ok && z.UnmapReadsZero()
}

// Ready forwards the inner backend's readiness (TEST UNIT READY asks
// for it); a backend without Ready is always ready.
func (b *base) Ready() error {
	if r, ok := b.inner.(interface{ Ready() error }); ok {
		return r.Ready()
	}
	return nil
}

// Method sets for the optional interfaces; each is embedded in the
// combination types only when the inner backend has the interface.

type zeroer struct{ b *base }

func (z zeroer) WriteZeroes(ctx context.Context, off, length int64, unmap bool) error {
	tok, err := z.b.ic.begin(OpWriteZeroes, off, length)
	if err != nil {
		return err
	}
	return z.b.ic.end(tok, z.b.inner.(scsi.WriteZeroer).WriteZeroes(ctx, off, length, unmap))
}

type sameWriter struct{ b *base }

func (s sameWriter) WriteSame(ctx context.Context, block []byte, off, length int64) error {
	tok, err := s.b.ic.begin(OpWriteSame, off, length)
	if err != nil {
		return err
	}
	return s.b.ic.end(tok, s.b.inner.(scsi.SameWriter).WriteSame(ctx, block, off, length))
}

type compareWriter struct{ b *base }

func (c compareWriter) CompareAndWrite(ctx context.Context, cmp, data []byte, off int64) error {
	tok, err := c.b.ic.begin(OpCompareAndWrite, off, int64(len(data)))
	if err != nil {
		return err
	}
	return c.b.ic.end(tok, c.b.inner.(scsi.CompareWriter).CompareAndWrite(ctx, cmp, data, off))
}

type mapper struct{ b *base }

func (m mapper) Mapped(ctx context.Context, off, limit int64) (bool, int64, error) {
	tok, err := m.b.ic.begin(OpMapped, off, limit)
	if err != nil {
		return false, 0, err
	}
	mapped, n, err := m.b.inner.(scsi.AllocationMapper).Mapped(ctx, off, limit)
	return mapped, n, m.b.ic.end(tok, err)
}
