// Package scsitest holds test doubles for the scsi package and its users:
// a crash-capable in-memory Backend implementing every optional backend
// interface, with per-operation fault and delay injection.
//
// It is for tests only and keeps the whole image in RAM.
package scsitest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/rbdgw/rbdgw/scsi"
)

// Op names a backend operation for injection hooks and counters.
type Op string

const (
	OpRead            Op = "read"
	OpWrite           Op = "write"
	OpFlush           Op = "flush"
	OpUnmap           Op = "unmap"
	OpWriteZeroes     Op = "writezeroes"
	OpWriteSame       Op = "writesame"
	OpCompareAndWrite Op = "compareandwrite"
	OpMapped          Op = "mapped"
)

// Hook is called before every operation with its range (length 0 for
// Flush). It may sleep to inject delay or return an error, which the
// operation then returns without touching the data.
type Hook func(ctx context.Context, op Op, off, length int64) error

// ErrInjected is a convenient error for hooks to return.
var ErrInjected = errors.New("scsitest: injected error")

// ErrContract is returned (and counted) when the device server breaks the
// Backend contract: zero length, unaligned or out-of-range requests.
var ErrContract = errors.New("scsitest: backend contract violated")

// MemBackend is an in-memory scsi.Backend. Writes land in a volatile view
// that reads see; Flush, and WriteAt with fua, make them durable. CrashClone
// returns what a crash would leave: only durable data.
//
// All methods are safe for concurrent use.
type MemBackend struct {
	// AllocUnit is the allocation granularity of AllocationMapper and
	// Unmap (default 4096). Set before use.
	AllocUnit int64
	// Align is the alignment every offset and length must have (default
	// 512); misaligned requests fail with ErrContract.
	Align int64

	mu        sync.RWMutex
	data      []byte // what reads see
	durable   []byte // what survives CrashClone
	allocated []bool // per AllocUnit
	closed    bool

	hook       atomic.Pointer[Hook]
	counts     sync.Map // Op -> *atomic.Int64
	violations atomic.Int64
}

var (
	_ scsi.Backend          = (*MemBackend)(nil)
	_ scsi.WriteZeroer      = (*MemBackend)(nil)
	_ scsi.SameWriter       = (*MemBackend)(nil)
	_ scsi.CompareWriter    = (*MemBackend)(nil)
	_ scsi.AllocationMapper = (*MemBackend)(nil)
	_ scsi.ZeroingUnmapper  = (*MemBackend)(nil)
)

// NewMemBackend returns a zero-filled, fully unallocated backend of size
// bytes.
func NewMemBackend(size int64) *MemBackend {
	m := &MemBackend{AllocUnit: 4096, Align: 512}
	m.data = make([]byte, size)
	m.durable = make([]byte, size)
	m.allocated = make([]bool, (size+m.AllocUnit-1)/m.AllocUnit)
	return m
}

// SetHook installs h (nil removes it).
func (m *MemBackend) SetHook(h Hook) {
	if h == nil {
		m.hook.Store(nil)
		return
	}
	m.hook.Store(&h)
}

// Count reports how many times op was called.
func (m *MemBackend) Count(op Op) int64 {
	v, ok := m.counts.Load(op)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

// Violations reports how many calls broke the Backend contract.
func (m *MemBackend) Violations() int64 { return m.violations.Load() }

func (m *MemBackend) begin(ctx context.Context, op Op, off, length int64, ranged bool) error {
	v, _ := m.counts.LoadOrStore(op, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	if ranged {
		m.mu.RLock()
		size := int64(len(m.data))
		m.mu.RUnlock()
		if length <= 0 || off < 0 || off+length > size || off%m.Align != 0 || length%m.Align != 0 {
			m.violations.Add(1)
			return fmt.Errorf("%w: %s off=%d len=%d size=%d", ErrContract, op, off, length, size)
		}
	}
	if h := m.hook.Load(); h != nil {
		if err := (*h)(ctx, op, off, length); err != nil {
			return err
		}
	}
	m.mu.RLock()
	closed := m.closed
	m.mu.RUnlock()
	if closed {
		return errors.New("scsitest: backend closed")
	}
	return ctx.Err()
}

func (m *MemBackend) markAllocated(off, length int64, v bool) {
	u := m.AllocUnit
	for i := off / u; i*u < off+length && i < int64(len(m.allocated)); i++ {
		// Deallocate only units wholly inside the range.
		if !v && (i*u < off || (i+1)*u > off+length) {
			continue
		}
		m.allocated[i] = v
	}
}

// ReadAt implements scsi.Backend.
func (m *MemBackend) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := m.begin(ctx, OpRead, off, int64(len(p)), true); err != nil {
		return err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	copy(p, m.data[off:])
	return nil
}

// WriteAt implements scsi.Backend.
func (m *MemBackend) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if err := m.begin(ctx, OpWrite, off, int64(len(p)), true); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(m.data[off:], p)
	if fua {
		copy(m.durable[off:], p)
	}
	m.markAllocated(off, int64(len(p)), true)
	return nil
}

// Flush implements scsi.Backend.
func (m *MemBackend) Flush(ctx context.Context) error {
	if err := m.begin(ctx, OpFlush, 0, 0, false); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(m.durable, m.data)
	return nil
}

// Unmap implements scsi.Backend: the range reads back as zeros.
func (m *MemBackend) Unmap(ctx context.Context, off, length int64) error {
	if err := m.begin(ctx, OpUnmap, off, length, true); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.data[off : off+length])
	m.markAllocated(off, length, false)
	return nil
}

// UnmapReadsZero implements scsi.ZeroingUnmapper.
func (m *MemBackend) UnmapReadsZero() bool { return true }

// AtomicWriteUnit implements scsi.AtomicWriter: a WriteAt copies under
// one lock, and a crash (CrashClone) keeps a FUA write whole or drops it.
func (m *MemBackend) AtomicWriteUnit() int64 { return 1 << 30 }

// WriteZeroes implements scsi.WriteZeroer.
func (m *MemBackend) WriteZeroes(ctx context.Context, off, length int64, unmap bool) error {
	if err := m.begin(ctx, OpWriteZeroes, off, length, true); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.data[off : off+length])
	m.markAllocated(off, length, !unmap)
	return nil
}

// WriteSame implements scsi.SameWriter.
func (m *MemBackend) WriteSame(ctx context.Context, block []byte, off, length int64) error {
	if err := m.begin(ctx, OpWriteSame, off, length, true); err != nil {
		return err
	}
	if len(block) == 0 || length%int64(len(block)) != 0 {
		m.violations.Add(1)
		return ErrContract
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for o := off; o < off+length; o += int64(len(block)) {
		copy(m.data[o:], block)
	}
	m.markAllocated(off, length, true)
	return nil
}

// CompareAndWrite implements scsi.CompareWriter, atomically.
func (m *MemBackend) CompareAndWrite(ctx context.Context, cmp, data []byte, off int64) error {
	if err := m.begin(ctx, OpCompareAndWrite, off, int64(len(cmp)), true); err != nil {
		return err
	}
	if len(cmp) != len(data) {
		m.violations.Add(1)
		return ErrContract
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range cmp {
		if m.data[off+int64(i)] != cmp[i] {
			return &scsi.MiscompareError{Offset: int64(i)}
		}
	}
	copy(m.data[off:], data)
	m.markAllocated(off, int64(len(data)), true)
	return nil
}

// Mapped implements scsi.AllocationMapper at AllocUnit granularity.
func (m *MemBackend) Mapped(ctx context.Context, off, limit int64) (bool, int64, error) {
	if err := m.begin(ctx, OpMapped, off, m.Align, true); err != nil {
		return false, 0, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	u := m.AllocUnit
	i := off / u
	state := m.allocated[i]
	end := (i + 1) * u
	for j := i + 1; j < int64(len(m.allocated)) && m.allocated[j] == state; j++ {
		end = (j + 1) * u
	}
	if size := int64(len(m.data)); end > size {
		end = size
	}
	n := end - off
	if n > limit {
		n = limit
	}
	return state, n, nil
}

// Size implements scsi.Backend.
func (m *MemBackend) Size() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int64(len(m.data))
}

// Resize changes the size (as an image resize would); new space is zero.
func (m *MemBackend) Resize(size int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	grow := func(b []byte) []byte {
		if int64(len(b)) >= size {
			return b[:size]
		}
		return append(b, make([]byte, size-int64(len(b)))...)
	}
	m.data = grow(m.data)
	m.durable = grow(m.durable)
	n := (size + m.AllocUnit - 1) / m.AllocUnit
	if int64(len(m.allocated)) >= n {
		m.allocated = m.allocated[:n]
	} else {
		m.allocated = append(m.allocated, make([]bool, n-int64(len(m.allocated)))...)
	}
}

// Close implements scsi.Backend; later calls fail.
func (m *MemBackend) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// CrashClone returns a new backend holding only the data that was durable
// (flushed or written with FUA): what a crash at this instant would leave.
func (m *MemBackend) CrashClone() *MemBackend {
	m.mu.RLock()
	defer m.mu.RUnlock()
	c := &MemBackend{AllocUnit: m.AllocUnit, Align: m.Align}
	c.data = append([]byte(nil), m.durable...)
	c.durable = append([]byte(nil), m.durable...)
	c.allocated = append([]bool(nil), m.allocated...)
	return c
}

// Bytes returns a copy of the current contents of [off, off+n).
func (m *MemBackend) Bytes(off, n int64) []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]byte(nil), m.data[off:off+n]...)
}
