package target

import (
	"sync"
	"sync/atomic"
)

// dataBudget bounds the bytes of data buffers held for commands: one per
// connection (Limits.MaxDataPerSession; a session has one connection) and
// one per Server (Limits.MaxDataPerServer). The serve loop takes bytes
// before it allocates a buffer an initiator asks for; bytes come back
// from the serve loop when a task retires, or from the writer once read
// data is on the wire. A loop that found no room waits on the channel
// wait returns.
type dataBudget struct {
	limit int64
	held  atomic.Int64

	waiting atomic.Bool // someone holds the freed channel
	mu      sync.Mutex
	freed   chan struct{} // closed by give when waiting; guarded by mu
}

func newDataBudget(limit int64) *dataBudget { return &dataBudget{limit: limit} }

// tryTake takes n bytes if they fit under the limit.
func (b *dataBudget) tryTake(n int64) bool {
	for {
		h := b.held.Load()
		if h+n > b.limit {
			return false
		}
		if b.held.CompareAndSwap(h, h+n) {
			return true
		}
	}
}

// give returns n bytes and wakes whoever waits for room.
func (b *dataBudget) give(n int64) {
	if n == 0 {
		return
	}
	b.held.Add(-n)
	if b.waiting.Load() {
		b.mu.Lock()
		if b.freed != nil {
			close(b.freed)
			b.freed = nil
		}
		b.waiting.Store(false)
		b.mu.Unlock()
	}
}

// wait returns a channel closed at the next give. Call it before a
// tryTake that may fail, so a give between the two is not missed.
func (b *dataBudget) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.freed == nil {
		b.freed = make(chan struct{})
	}
	b.waiting.Store(true)
	return b.freed
}

// cost is the memory of a buffer, what bufCost said when it was taken:
// bufPool.get gives a buffer of exactly that capacity.
func (b *pbuf) cost() int64 {
	if b == nil {
		return 0
	}
	return int64(cap(b.b))
}

// bufCost is the memory bufPool.get(n) hands out: its size class, or n
// for buffers too big to pool.
func bufCost(n int) int64 {
	c := classOf(n)
	if c >= maxBufShift-minBufShift+1 {
		return int64(n)
	}
	return 1 << (c + minBufShift)
}
