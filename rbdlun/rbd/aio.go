//go:build rbd

package rbd

// The asynchronous librbd calls that go-ceph does not wrap (rbd_aio_*,
// compare-and-write, write-zeroes). Each request submits one aio call and
// parks its goroutine on a channel; the completion callback (aio.c) runs on
// a librbd thread and wakes it. Many requests per image are therefore in
// flight at once without one OS thread each, as a pool of blocking
// rbd_read/rbd_write calls would need.
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
	"runtime"
	"runtime/cgo"
	"sync"
	"unsafe"
)

// aioReq is one in-flight request. It is pooled: the channel and the
// mismatch slot are reused.
type aioReq struct {
	done     chan int64
	mismatch C.uint64_t // compare-and-write: first differing byte, written by librbd
	pin      runtime.Pinner
}

var aioPool = sync.Pool{New: func() any { return &aioReq{done: make(chan int64, 1)} }}

//export rbdgwAioDone
func rbdgwAioDone(h C.uintptr_t, r C.int64_t) {
	req := cgo.Handle(h).Value().(*aioReq)
	req.done <- int64(r)
}

// aio runs one asynchronous librbd call. submit issues it with the
// completion c and returns librbd's immediate result; the return value is
// the completion's (bytes transferred or a negative errno). pins are the Go
// buffers librbd will touch until completion.
func aio(submit func(req *aioReq, c C.rbd_completion_t) C.int, mismatch *uint64, pins ...[]byte) int64 {
	req := aioPool.Get().(*aioReq)
	for _, p := range pins {
		if len(p) > 0 {
			req.pin.Pin(&p[0])
		}
	}
	req.pin.Pin(req)
	h := cgo.NewHandle(req)
	var c C.rbd_completion_t
	var r int64
	if rc := C.rbdgw_aio_completion(C.uintptr_t(h), &c); rc < 0 {
		r = int64(rc)
	} else if rc := submit(req, c); rc < 0 {
		// Not queued: the callback will not run.
		C.rbd_aio_release(c)
		r = int64(rc)
	} else {
		r = <-req.done
	}
	if mismatch != nil {
		*mismatch = uint64(req.mismatch)
	}
	h.Delete()
	req.pin.Unpin()
	aioPool.Put(req)
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
		req.mismatch = 0
		return C.int(C.rbd_aio_compare_and_write(img, C.uint64_t(off), C.size_t(len(data)), cbuf(cmp), cbuf(data), c, &req.mismatch, 0))
	}, &mismatch, cmp, data)
	return r, mismatch
}
