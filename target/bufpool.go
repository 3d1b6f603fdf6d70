package target

import (
	"math/bits"
	"sync"
)

// pbuf is a pooled buffer. The pointer travels with the data so a Put
// allocates nothing.
type pbuf struct {
	b     []byte
	class int8 // size class index, -1 when not pooled
}

const (
	minBufShift = 9  // 512 B
	maxBufShift = 24 // 16 MiB; bigger buffers are allocated and dropped
)

// bufPool holds buffers by power-of-two size class so Data-In and Data-Out
// do not allocate per PDU.
type bufPool struct {
	classes [maxBufShift - minBufShift + 1]sync.Pool
}

func newBufPool() *bufPool { return &bufPool{} }

func classOf(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// get returns a buffer with len(b.b) == n.
func (p *bufPool) get(n int) *pbuf {
	c := classOf(n)
	if c >= len(p.classes) {
		return &pbuf{b: make([]byte, n), class: -1}
	}
	if v := p.classes[c].Get(); v != nil {
		pb := v.(*pbuf)
		pb.b = pb.b[:n]
		return pb
	}
	return &pbuf{b: make([]byte, n, 1<<(c+minBufShift)), class: int8(c)}
}

func (p *bufPool) put(pb *pbuf) {
	if pb == nil || pb.class < 0 {
		return
	}
	p.classes[pb.class].Put(pb)
}
