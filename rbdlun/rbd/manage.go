//go:build rbd

package rbd

import (
	"context"
	"errors"
	"fmt"

	"github.com/ceph/go-ceph/rbd"
)

// RemoveImage deletes an image (it must not be open anywhere). A missing
// image is not an error.
func (c *Cluster) RemoveImage(ctx context.Context, spec ImageSpec) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rc, err := c.acquire(false)
	if err != nil {
		return err
	}
	defer c.release(rc)
	ioctx, err := rc.conn.OpenIOContext(spec.Pool)
	if err != nil {
		return fmt.Errorf("rbd: open pool %q: %w", spec.Pool, err)
	}
	defer ioctx.Destroy()
	ioctx.SetNamespace(spec.Namespace)
	if err := rbd.RemoveImage(ioctx, spec.Image); err != nil && !errors.Is(err, rbd.ErrNotFound) {
		return fmt.Errorf("rbd: remove %s: %w", spec, err)
	}
	return nil
}

// Resize changes the image size (shrinking discards the tail) and updates
// Size at once.
func (b *Backend) Resize(ctx context.Context, size int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if size <= 0 {
		return fmt.Errorf("rbd: resize %s to %d bytes", b.spec, size)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.open {
		return fmt.Errorf("rbd: resize: %s is not open", b.spec)
	}
	if err := b.img.Resize(uint64(size)); err != nil {
		return b.mapErr("resize", errno(err))
	}
	b.size.Store(size)
	return nil
}
