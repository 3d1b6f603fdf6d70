package scsi

import "sync"

// rangeLock serialises overlapping commands when one of them needs the
// range to itself: READ and WRITE hold ranges shared, COMPARE AND WRITE
// exclusive, so a compare-and-write is atomic against every overlapping
// command of this LU. Non-overlapping ranges never wait for each other.
//
// A waiting exclusive request blocks later overlapping shared requests so a
// stream of reads cannot starve it.
type rangeLock struct {
	mu   sync.Mutex
	cond *sync.Cond
	held []heldRange
	seq  uint64
}

type heldRange struct {
	id        uint64
	off, end  int64
	exclusive bool
	waiting   bool // an exclusive request not yet granted
}

func overlaps(a, b heldRange) bool { return a.off < b.end && b.off < a.end }

// lockRange locks [off, off+length) in bytes and returns the unlock func.
func (lu *LogicalUnit) lockRange(off, length int64, exclusive bool) (unlock func()) {
	return lu.rl.lock(off, length, exclusive)
}

func (l *rangeLock) lock(off, length int64, exclusive bool) func() {
	l.mu.Lock()
	if l.cond == nil {
		l.cond = sync.NewCond(&l.mu)
	}
	l.seq++
	me := heldRange{id: l.seq, off: off, end: off + length, exclusive: exclusive, waiting: true}
	if exclusive {
		// Announce ourselves so new overlapping shared requests queue behind.
		l.held = append(l.held, me)
	}
	for l.conflict(me) {
		l.cond.Wait()
	}
	me.waiting = false
	if exclusive {
		for i := range l.held {
			if l.held[i].id == me.id {
				l.held[i].waiting = false
			}
		}
	} else {
		l.held = append(l.held, me)
	}
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		for i := range l.held {
			if l.held[i].id == me.id {
				l.held[i] = l.held[len(l.held)-1]
				l.held = l.held[:len(l.held)-1]
				break
			}
		}
		l.cond.Broadcast()
		l.mu.Unlock()
	}
}

// conflict reports whether me must wait: any overlapping granted range
// when me is exclusive; any overlapping exclusive range (granted, or
// waiting and older than me) when me is shared.
func (l *rangeLock) conflict(me heldRange) bool {
	for _, h := range l.held {
		if h.id == me.id || !overlaps(h, me) {
			continue
		}
		if me.exclusive {
			if !h.waiting || (h.exclusive && h.id < me.id) {
				return true
			}
			continue
		}
		if h.exclusive {
			return true
		}
	}
	return false
}
