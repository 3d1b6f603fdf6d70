package rbdlun

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/rbdgw/rbdgw/scsi"
)

// Stall describes an operation that has been in flight longer than the
// threshold.
type Stall struct {
	Op       Op
	Off      int64
	Length   int64
	Duration time.Duration
}

// stallSlots bounds how many concurrent operations are watched. Beyond it
// operations run untracked rather than block or allocate; at the default
// cmdsn_depth of 128 per session a few sessions fit.
const stallSlots = 1024

type stallSlot struct {
	start  atomic.Int64 // monotonic nanoseconds since the detector started; 0 = free
	op     atomic.Uint32
	off    atomic.Int64
	length atomic.Int64
}

// WithStallDetection wraps b and calls onStall, once per operation, for
// every operation in flight longer than threshold. One ticker goroutine
// scans the in-flight slots (every threshold/4): no timer per call, so the
// hot path costs two atomic stores. onStall runs on the ticker goroutine
// and must not block. Close stops the ticker.
func WithStallDetection(b scsi.Backend, threshold time.Duration, onStall func(Stall)) scsi.Backend {
	d := &stallDetector{threshold: threshold, onStall: onStall, epoch: time.Now(), stop: make(chan struct{})}
	d.slots = make([]stallSlot, stallSlots)
	d.wg.Add(1)
	go d.watch()
	return wrap(b, d)
}

type stallDetector struct {
	threshold time.Duration
	onStall   func(Stall)
	epoch     time.Time
	slots     []stallSlot
	next      atomic.Uint32

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

func (d *stallDetector) now() int64 {
	// +1 so that a start at the epoch itself is not mistaken for "free".
	return int64(time.Since(d.epoch)) + 1
}

func (d *stallDetector) begin(op Op, off, length int64) (int, error) {
	now := d.now()
	first := int(d.next.Add(1)) % len(d.slots)
	for i := 0; i < len(d.slots); i++ {
		idx := (first + i) % len(d.slots)
		s := &d.slots[idx]
		if s.start.Load() == 0 {
			// Fill the description before claiming the slot, so the
			// ticker never reports a half-written one.
			if s.start.CompareAndSwap(0, -1) {
				s.op.Store(uint32(op))
				s.off.Store(off)
				s.length.Store(length)
				s.start.Store(now)
				return idx, nil
			}
		}
	}
	return -1, nil
}

func (d *stallDetector) end(tok int, err error) error {
	if tok >= 0 {
		d.slots[tok].start.Store(0)
	}
	return err
}

func (d *stallDetector) close() {
	d.stopOnce.Do(func() { close(d.stop) })
	d.wg.Wait()
}

func (d *stallDetector) watch() {
	defer d.wg.Done()
	every := max(d.threshold/4, time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	// reported remembers which (slot, start) was already reported, so a
	// long stall is reported once, and a new operation in the same slot
	// is reported afresh.
	reported := make(map[int]int64)
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		now := d.now()
		for i := range d.slots {
			s := &d.slots[i]
			start := s.start.Load()
			if start <= 0 {
				delete(reported, i)
				continue
			}
			age := time.Duration(now - start)
			if age < d.threshold || reported[i] == start {
				continue
			}
			reported[i] = start
			d.onStall(Stall{Op: Op(s.op.Load()), Off: s.off.Load(), Length: s.length.Load(), Duration: age})
		}
	}
}
