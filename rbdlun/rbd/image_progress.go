//go:build rbd

package rbd

// The long image operations (flatten, resize, rollback) through librbd's
// *_with_progress calls, which go-ceph v0.34 does not wrap (or wraps
// without a way to stop them). The progress callback is what makes them
// honour a context: once ctx is done it returns -ECANCELED and librbd
// stops at the next object, so a flatten of a large clone can be abandoned.
// (librbd's copy ignores that answer, so CopyImage copies by itself:
// image_copy.go.)

/*
#cgo LDFLAGS: -lrbd -lrados
#include <errno.h>
#include <stdlib.h>
#include "image_progress.h"
*/
import "C"

import (
	"context"
	"runtime/cgo"
	"sync"
	"syscall"
	"unsafe"

	"github.com/ceph/go-ceph/rbd"
)

// progressCall is one running operation's callback state. librbd may call
// back from its own threads; mu keeps the caller's function from running
// twice at once and the numbers it sees from going backwards.
type progressCall struct {
	ctx context.Context
	fn  func(done, total uint64)

	mu          sync.Mutex
	last, total uint64
}

//export rbdgwProgress
func rbdgwProgress(h C.uintptr_t, done, total C.uint64_t) C.int {
	p := cgo.Handle(h).Value().(*progressCall)
	if p.ctx.Err() != nil {
		return -C.ECANCELED
	}
	if p.fn != nil {
		p.mu.Lock()
		if uint64(done) >= p.last {
			p.last, p.total = uint64(done), uint64(total)
			p.fn(p.last, p.total)
		}
		p.mu.Unlock()
	}
	return 0
}

// withProgress runs call, giving it the handle librbd passes back to
// rbdgwProgress. It returns ctx's error when the operation stopped because
// ctx was done, else librbd's errno (syscall.Errno) or nil.
func withProgress(ctx context.Context, fn func(done, total uint64), call func(h C.uintptr_t) C.int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := &progressCall{ctx: ctx, fn: fn}
	h := cgo.NewHandle(p)
	defer h.Delete()
	r := call(C.uintptr_t(h))
	if r >= 0 {
		// librbd reports the object it starts on, never the end: the
		// caller gets done == total once.
		p.mu.Lock()
		if fn != nil && p.last < p.total {
			fn(p.total, p.total)
		}
		p.mu.Unlock()
		return nil
	}
	if ctx.Err() != nil && r == -C.ECANCELED {
		return ctx.Err()
	}
	return syscall.Errno(-r)
}

func flattenImage(ctx context.Context, img *rbd.Image, fn func(done, total uint64)) error {
	h, err := imageHandle(img)
	if err != nil {
		return err
	}
	return withProgress(ctx, fn, func(p C.uintptr_t) C.int { return C.rbdgw_flatten(h, p) })
}

func resizeImage(ctx context.Context, img *rbd.Image, size uint64, allowShrink bool) error {
	h, err := imageHandle(img)
	if err != nil {
		return err
	}
	shrink := C.int(0)
	if allowShrink {
		shrink = 1
	}
	return withProgress(ctx, nil, func(p C.uintptr_t) C.int { return C.rbdgw_resize(h, C.uint64_t(size), shrink, p) })
}

func rollbackImage(ctx context.Context, img *rbd.Image, snap string) error {
	h, err := imageHandle(img)
	if err != nil {
		return err
	}
	cs := C.CString(snap)
	defer C.free(unsafe.Pointer(cs))
	return withProgress(ctx, nil, func(p C.uintptr_t) C.int { return C.rbdgw_rollback(h, cs, p) })
}
