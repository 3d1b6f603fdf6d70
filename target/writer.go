package target

import (
	"net"
	"sync"
)

// outItem is one unit of work for the writer: a single PDU, or a whole
// Data-In sequence that the writer splits into PDUs (so a large read costs
// one queue slot and no per-PDU allocation).
type outItem struct {
	pdu PDU
	seq *dataInSeq
	// buf is returned to the pool once the item is on the wire, and held
	// bytes to the data budgets.
	buf  *pbuf
	held int64
	// digestsOn switches CRC32C on for every later PDU: the final Login
	// Response itself goes out without digests (RFC 7143 13.1).
	digestsOn             bool
	hdrDigest, dataDigest bool
}

// dataInSeq describes the Data-In PDUs of one command (RFC 7143 11.7).
type dataInSeq struct {
	itt                uint32
	lun                uint64
	data               []byte
	maxSeg, maxBurst   int
	expCmdSN, maxCmdSN uint32
	// Status phase collapse (RFC 7143 11.7.2 S bit) on the last PDU.
	withStatus          bool
	status              uint8
	statSN              uint32
	overflow, underflow bool
	residual            uint32
}

// dataInCount is how many Data-In PDUs a sequence of n bytes takes; the
// SCSI Response's ExpDataSN needs it.
func dataInCount(n, maxSeg, maxBurst int) uint32 {
	var cnt uint32
	for off := 0; off < n; {
		seg := min(maxSeg, n-off, maxBurst-off%maxBurst)
		off += seg
		cnt++
	}
	return cnt
}

// writeQueue carries items from the serve loop to the writer. The serve
// loop never blocks on it: it appends under the mutex and a full queue is a
// ConnError (maxQueuedWrites). push does not wake the writer; the loop
// calls kick once per round, so responses finished together share a
// writev.
type writeQueue struct {
	mu       sync.Mutex
	items    []outItem
	closed   bool
	overflow bool
	signal   chan struct{} // cap 1: written by push/close, read by writeLoop
	dead     chan struct{} // closed by writeLoop when a write fails
}

func newWriteQueue() *writeQueue {
	return &writeQueue{signal: make(chan struct{}, 1), dead: make(chan struct{})}
}

func (q *writeQueue) push(it outItem) {
	q.mu.Lock()
	if len(q.items) >= maxQueuedWrites {
		q.overflow = true
	}
	q.items = append(q.items, it)
	q.mu.Unlock()
}

// kick wakes the writer if anything is queued and reports an overflow.
func (q *writeQueue) kick() (overflow bool) {
	q.mu.Lock()
	queued, overflow := len(q.items) > 0, q.overflow
	q.mu.Unlock()
	if queued {
		select {
		case q.signal <- struct{}{}:
		default:
		}
	}
	return overflow
}

func (q *writeQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

const (
	writerMaxVec        = 512
	writerArenaLen      = 64 << 10
	writerLoginArenaLen = 4 << 10 // until full feature phase: Login Responses are small
	hdrRoom             = bhsLen + digestLen
	tailRoom            = 8 // padding + data digest
)

// writer is the state of writeLoop; only that goroutine touches it.
type writer struct {
	nc         net.Conn
	hdrDigest  bool
	dataDigest bool
	arena      []byte
	vec        net.Buffers
	vecBuf     net.Buffers // backing array: WriteTo consumes vec
	din        DataIn      // scratch for Data-In sequences
	failed     bool
}

// writeLoop drains the queue, coalescing everything queued into as few
// writev calls as possible: a flush happens when the queue is empty.
func (c *conn) writeLoop() {
	w := &writer{nc: c.nc, arena: make([]byte, 0, writerLoginArenaLen), vecBuf: make(net.Buffers, 0, writerMaxVec)}
	w.vec = w.vecBuf
	var batch []outItem
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("iscsi writer panic", "panic", r)
			w.fail()
			close(c.wq.dead)
		}
	}()
	deadClosed := false
	for {
		c.wq.mu.Lock()
		batch, c.wq.items = c.wq.items, batch[:0]
		closed := c.wq.closed
		c.wq.mu.Unlock()
		for i := range batch {
			it := &batch[i]
			if !w.failed {
				if it.seq != nil {
					w.emitSeq(it.seq)
				} else {
					w.emit(it.pdu)
				}
				if it.digestsOn {
					w.flush()
					w.hdrDigest, w.dataDigest = it.hdrDigest, it.dataDigest
					w.arena = make([]byte, 0, writerArenaLen) // full feature phase
				}
			}
		}
		w.flush()
		var held int64
		for i := range batch {
			c.pool.put(batch[i].buf)
			held += batch[i].held
			batch[i] = outItem{}
		}
		c.giveData(held) // once per batch: the budgets are shared with the loop
		if w.failed && !deadClosed {
			deadClosed = true
			close(c.wq.dead)
		}
		if closed {
			c.wq.mu.Lock()
			empty := len(c.wq.items) == 0
			c.wq.mu.Unlock()
			if empty {
				return
			}
			continue
		}
		<-c.wq.signal
	}
}

func (w *writer) fail() {
	w.failed = true
	w.nc.Close()
}

func (w *writer) room(n int) {
	if cap(w.arena)-len(w.arena) < n || len(w.vec)+3 > writerMaxVec {
		w.flush()
	}
}

func (w *writer) emit(p PDU) {
	w.room(hdrRoom + tailRoom)
	start := len(w.arena)
	w.arena = w.arena[:start+hdrRoom]
	n := encodeHeader(w.arena[start:], p, w.hdrDigest)
	w.arena = w.arena[:start+n]
	w.vec = append(w.vec, w.arena[start:start+n])
	w.emitData(p.DataSegment())
}

func (w *writer) emitData(data []byte) {
	if len(data) == 0 {
		return
	}
	w.vec = append(w.vec, data)
	pad := padLen(len(data))
	if pad == 0 && !w.dataDigest {
		return
	}
	start := len(w.arena)
	w.arena = append(w.arena, zeroPad[:pad]...)
	if w.dataDigest {
		w.arena = le.AppendUint32(w.arena, crc32cPadded(data, pad))
	}
	w.vec = append(w.vec, w.arena[start:])
}

func (w *writer) emitSeq(s *dataInSeq) {
	n := len(s.data)
	var sn uint32
	for off := 0; off < n; {
		seg := min(s.maxSeg, n-off, s.maxBurst-off%s.maxBurst)
		last := off+seg == n
		d := &w.din
		*d = DataIn{
			LUN: s.lun, ITT: s.itt, TTT: reservedTag, ExpCmdSN: s.expCmdSN, MaxCmdSN: s.maxCmdSN,
			DataSN: sn, BufferOffset: uint32(off), Data: s.data[off : off+seg],
			// RFC 7143 11.7.1: F is set on the last PDU of a sequence; a
			// Data-In sequence ends at a MaxBurstLength boundary.
			Final: last || (off+seg)%s.maxBurst == 0,
		}
		if last && s.withStatus {
			d.HasStatus = true
			d.Status = s.status
			d.StatSN = s.statSN
			d.Overflow, d.Underflow, d.Residual = s.overflow, s.underflow, s.residual
		}
		w.emit(d)
		off += seg
		sn++
	}
}

func (w *writer) flush() {
	if len(w.vec) == 0 {
		return
	}
	if !w.failed {
		if _, err := w.vec.WriteTo(w.nc); err != nil {
			w.fail()
		}
	}
	clear(w.vecBuf[:cap(w.vecBuf)])
	w.vec = w.vecBuf[:0]
	w.arena = w.arena[:0]
}
