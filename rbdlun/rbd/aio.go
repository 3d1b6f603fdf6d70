//go:build rbd

package rbd

// The asynchronous librbd calls that go-ceph does not wrap (rbd_aio_*,
// compare-and-write, write-zeroes). Each request submits one aio call and
// parks its goroutine on a channel. librbd's completion callback (aio.c)
// queues the request without entering Go; one goroutine for the process,
// reapLoop, wakes on an eventfd through the netpoller, takes every queued
// completion in one cgo call and wakes their goroutines. Many requests per
// image are therefore in flight at once without one OS thread each, as a
// pool of blocking rbd_read/rbd_write calls would need, and librbd's
// completion thread never waits for the Go scheduler.
//
// A request submitted while no other is in flight (queue depth 1, where
// latency is all there is) waits instead in a blocking cgo call on a futex
// that the callback wakes: one thread wake-up instead of the eventfd's plus
// the reaper's hand-off through a channel, which also wakes an idle Go
// thread to spin. At most one such waiter holds an OS thread at a time.
//
// Buffers: librbd keeps the data pointer until the completion fires, so the
// Go buffers are pinned (runtime.Pinner) for that long, and a request never
// returns before its completion, even when its context is done: librbd
// cannot cancel an aio, and the caller would reuse the buffer.

/*
#cgo LDFLAGS: -lrbd -lrados
#include <errno.h>
#include <stdlib.h>
#include "aio.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// aioReq is one request slot. Slots are reused, never freed: the C state
// and the channel live as long as the process.
type aioReq struct {
	c    *C.struct_rbdgw_aio // C memory: librbd may write it until completion
	done chan int64          // written by reapLoop
	pin  runtime.Pinner
}

// aioSlots hands out request slots. A slot's id indexes byID, which
// reapLoop reads without the lock.
var aioSlots struct {
	mu   sync.Mutex
	free []*aioReq                 // guarded by mu
	byID atomic.Pointer[[]*aioReq] // replaced (copied) under mu when it grows
	once sync.Once
	err  error // set by once: no eventfd, so no request can complete
}

func getReq() (*aioReq, error) {
	s := &aioSlots
	s.once.Do(startReaper)
	if s.err != nil {
		return nil, s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.free); n > 0 {
		req := s.free[n-1]
		s.free = s.free[:n-1]
		return req, nil
	}
	var all []*aioReq
	if p := s.byID.Load(); p != nil {
		all = *p
	}
	c := (*C.struct_rbdgw_aio)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_rbdgw_aio{}))))
	if c == nil {
		return nil, syscall.ENOMEM
	}
	c.id = C.uint32_t(len(all))
	req := &aioReq{c: c, done: make(chan int64, 1)}
	grown := append(all[:len(all):len(all)], req)
	s.byID.Store(&grown)
	return req, nil
}

func putReq(req *aioReq) {
	s := &aioSlots
	s.mu.Lock()
	s.free = append(s.free, req)
	s.mu.Unlock()
}

func startReaper() {
	fd := C.rbdgw_aio_init()
	if fd < 0 {
		aioSlots.err = fmt.Errorf("rbd: eventfd for aio completions: %w", syscall.Errno(-fd))
		return
	}
	// A non-blocking fd: os.NewFile puts it in the netpoller, so the
	// reaper waits without holding an OS thread.
	go reapLoop(os.NewFile(uintptr(fd), "rbdgw-aio-completions"))
}

// inFlight counts the requests between submit and completion, process
// wide; a request that finds none in flight waits directly.
var inFlight atomic.Int32

// reapBatch is how many completions reapLoop takes per cgo call.
const reapBatch = 64

// reapLoop hands completions to their requests' goroutines for the life
// of the process.
func reapLoop(ev *os.File) {
	var ids [reapBatch]C.uint32_t
	var rets [reapBatch]C.int64_t
	var buf [8]byte
	for {
		n := int(C.rbdgw_aio_reap(&ids[0], &rets[0], reapBatch))
		if n == 0 {
			// aio.c bumps the eventfd after a push onto an empty list,
			// and the list is empty now: nothing is missed.
			if _, err := ev.Read(buf[:]); err != nil && err != syscall.EAGAIN {
				panic(fmt.Sprintf("rbd: aio completion eventfd: %v", err))
			}
			continue
		}
		all := *aioSlots.byID.Load()
		for i := range n {
			all[ids[i]].done <- int64(rets[i])
		}
	}
}

// aio runs one asynchronous librbd call. submit issues it with the
// completion c and returns librbd's immediate result; the return value is
// the completion's (bytes transferred or a negative errno). pins are the Go
// buffers librbd will touch until completion. With mismatch set, it
// receives the compare-and-write mismatch offset librbd reported.
func aio(submit func(req *aioReq, c C.rbd_completion_t) C.int, mismatch *uint64, pins ...[]byte) int64 {
	req, err := getReq()
	if err != nil {
		return -int64(syscall.EIO)
	}
	for _, p := range pins {
		if len(p) > 0 {
			req.pin.Pin(&p[0])
		}
	}
	direct := inFlight.Add(1) == 1
	req.c.direct, req.c.done = 0, 0
	if direct {
		req.c.direct = 1
	}
	var c C.rbd_completion_t
	var r int64
	if rc := C.rbdgw_aio_completion(req.c, &c); rc < 0 {
		r = int64(rc)
	} else if rc := submit(req, c); rc < 0 {
		// Not queued: the callback will not run.
		C.rbd_aio_release(c)
		r = int64(rc)
	} else if direct {
		C.rbdgw_aio_wait(req.c)
		r = int64(req.c.ret)
	} else {
		r = <-req.done
	}
	inFlight.Add(-1)
	if mismatch != nil {
		*mismatch = uint64(req.c.mismatch)
	}
	req.pin.Unpin()
	putReq(req)
	return r
}

func cbuf(p []byte) *C.char { return (*C.char)(unsafe.Pointer(&p[0])) }

func aioRead(img C.rbd_image_t, p []byte, off int64) int64 {
	return aio(func(_ *aioReq, c C.rbd_completion_t) C.int {
		return C.rbd_aio_read(img, C.uint64_t(off), C.size_t(len(p)), cbuf(p), c)
	}, nil, p)
}

func aioWrite(img C.rbd_image_t, p []byte, off int64) int64 {
	return aio(func(_ *aioReq, c C.rbd_completion_t) C.int {
		return C.rbd_aio_write(img, C.uint64_t(off), C.size_t(len(p)), cbuf(p), c)
	}, nil, p)
}

func aioDiscard(img C.rbd_image_t, off, length int64) int64 {
	return aio(func(_ *aioReq, c C.rbd_completion_t) C.int {
		return C.rbd_aio_discard(img, C.uint64_t(off), C.uint64_t(length), c)
	}, nil)
}

func aioFlush(img C.rbd_image_t) int64 {
	return aio(func(_ *aioReq, c C.rbd_completion_t) C.int {
		return C.rbd_aio_flush(img, c)
	}, nil)
}

func aioWriteZeroes(img C.rbd_image_t, off, length int64, thick bool) int64 {
	var flags C.int
	if thick {
		flags = C.RBD_WRITE_ZEROES_FLAG_THICK_PROVISION
	}
	return aio(func(_ *aioReq, c C.rbd_completion_t) C.int {
		return C.rbd_aio_write_zeroes(img, C.uint64_t(off), C.size_t(length), c, flags, 0)
	}, nil)
}

func aioWriteSame(img C.rbd_image_t, block []byte, off, length int64) int64 {
	return aio(func(_ *aioReq, c C.rbd_completion_t) C.int {
		return C.rbd_aio_writesame(img, C.uint64_t(off), C.size_t(length), cbuf(block), C.size_t(len(block)), c, 0)
	}, nil, block)
}

// aioCompareAndWrite returns the completion's value (-EILSEQ on mismatch)
// and the mismatch offset librbd reports (unreliable in librbd 16).
func aioCompareAndWrite(img C.rbd_image_t, cmp, data []byte, off int64) (int64, uint64) {
	var mismatch uint64
	r := aio(func(req *aioReq, c C.rbd_completion_t) C.int {
		req.c.mismatch = 0
		return C.int(C.rbd_aio_compare_and_write(img, C.uint64_t(off), C.size_t(len(data)), cbuf(cmp), cbuf(data), c, &req.c.mismatch, 0))
	}, &mismatch, cmp, data)
	return r, mismatch
}
