//go:build rbd

package rbd

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"syscall"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

// CopyImage copies src's current data (not its snapshots; a clone's data
// from its parent included) to a new image dst, shaped by o, in any pool or
// namespace; o.ObjectSize 0 keeps src's. Only the extents src has data in
// are read, and chunks that read back all zeros are not written, so a thin
// image gives a thin copy. The copy is ours rather than librbd's
// rbd_copy, which cannot be stopped: a done ctx stops it at the next chunk.
// A copy that fails or is cancelled part way is removed.
func (c *Cluster) CopyImage(ctx context.Context, src, dst ImageSpec, o CreateOptions) error {
	if err := checkSpec(dst); err != nil {
		return err
	}
	return c.withImage(ctx, src, true, func(_ *rados.IOContext, img *rbd.Image) error {
		st, err := img.Stat()
		if err != nil {
			return failed(err, "stat %s", src)
		}
		if o.ObjectSize == 0 {
			o.ObjectSize = int64(st.Obj_size)
		}
		opts, err := c.prepareCreate(ctx, dst, o, false)
		if err != nil {
			return err
		}
		defer opts.Destroy()
		return c.withNamespace(ctx, dst.Pool, dst.Namespace, func(dio *rados.IOContext) error {
			if err := rbd.CreateImage(dio, dst.Image, st.Size, opts); err != nil {
				return createErr(dio, dst, err)
			}
			err := copyInto(ctx, img, dio, dst, st.Size)
			if err == nil {
				return nil
			}
			if rerr := rbd.RemoveImage(dio, dst.Image); rerr != nil && !is(rerr, syscall.ENOENT) {
				err = fmt.Errorf("%w (and removing the partial copy %s failed: %v)", err, dst, rerr)
			}
			if ce := contextErr(err); ce != nil {
				return ce
			}
			return failed(err, "copy %s to %s", src, dst)
		})
	})
}

// Copy chunking: one read and one write move at most copyChunk bytes;
// copyWorkers chunks are in flight at once (librbd's own copy keeps
// rbd_concurrent_management_ops, 10, in flight).
const (
	copyChunk   = 4 << 20
	copyWorkers = 4
)

// copyInto copies the extents of src that hold data to the new image dst.
func copyInto(ctx context.Context, src *rbd.Image, dio *rados.IOContext, dst ImageSpec, size uint64) error {
	extents, err := dataExtents(ctx, src, size)
	if err != nil {
		return err
	}
	out, err := rbd.OpenImage(dio, dst.Image, rbd.NoSnapshot)
	if err != nil {
		return err
	}
	defer out.Close()

	var mu sync.Mutex
	var failure error // the first error; guarded by mu
	fail := func(err error) {
		mu.Lock()
		if failure == nil {
			failure = err
		}
		mu.Unlock()
	}
	stopped := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return failure != nil
	}
	work := make(chan [2]uint64)
	var wg sync.WaitGroup
	for range copyWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, copyChunk)
			for e := range work {
				if err := copyChunkAt(src, out, buf[:e[1]], int64(e[0])); err != nil {
					fail(err)
				}
			}
		}()
	}
	for _, e := range extents {
		if err := ctx.Err(); err != nil {
			fail(err)
		}
		if stopped() {
			break
		}
		work <- e
	}
	close(work)
	wg.Wait()
	if failure != nil {
		return failure
	}
	return out.Flush()
}

// copyChunkAt copies len(buf) bytes at off, skipping an all-zero chunk.
func copyChunkAt(src, dst *rbd.Image, buf []byte, off int64) error {
	if _, err := src.ReadAt(buf, off); err != nil {
		return err
	}
	if isZero(buf) {
		return nil
	}
	_, err := dst.WriteAt(buf, off)
	return err
}

var zeroPage [4096]byte

func isZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeroPage))
		if !bytes.Equal(p[:n], zeroPage[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

// dataExtents lists, in copyChunk pieces, the extents of img that hold data
// (its parent's included).
func dataExtents(ctx context.Context, img *rbd.Image, size uint64) ([][2]uint64, error) {
	var extents [][2]uint64
	err := eachExtent(ctx, img, size, rbd.IncludeParent, rbd.DisableWholeObject, func(off, n uint64) {
		for n > 0 {
			l := min(n, copyChunk)
			extents = append(extents, [2]uint64{off, l})
			off, n = off+l, n-l
		}
	})
	return extents, err
}
