//go:build rbd

package rbd

import (
	"context"
	"fmt"
	"strings"
	"syscall"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

// RemoveImage deletes an image for good. It is refused, with the reason
// found by looking at the image (librbd answers EBUSY or ENOTEMPTY for
// several): ErrImageHasChildren when a snapshot has clones,
// ErrImageHasSnapshots, ErrImageBusy while a client (a gateway serving it)
// has it open; ErrImageNotFound when it does not exist (callers wanting
// "missing is fine" test for that).
func (c *Cluster) RemoveImage(ctx context.Context, spec ImageSpec) error {
	if err := checkSpec(spec); err != nil {
		return err
	}
	return c.withNamespace(ctx, spec.Pool, spec.Namespace, func(ioctx *rados.IOContext) error {
		err := rbd.RemoveImage(ioctx, spec.Image)
		switch {
		case err == nil:
			return nil
		case is(err, syscall.ENOENT):
			return imageNotFound(ioctx, spec, err)
		case is(err, syscall.EBUSY), is(err, syscall.ENOTEMPTY), is(err, syscall.EMLINK):
			img, oerr := openImage(ioctx, spec, true)
			if oerr != nil {
				return failed(err, "remove image %s", spec)
			}
			defer img.Close()
			return whyBusy(ioctx, img, spec, "remove", err)
		}
		return failed(err, "remove image %s", spec)
	})
}

// whyBusy explains why librbd refused to op spec (remove, trash purge),
// opened read-only as img, with EBUSY or ENOTEMPTY: clones of its
// snapshots first (they must go or be flattened before anything else),
// then its snapshots, then the clients that have it open.
func whyBusy(ioctx *rados.IOContext, img *rbd.Image, spec ImageSpec, op string, cause error) error {
	snaps, _ := listSnapshots(img, spec)
	var children []ImageSpec
	for _, s := range snaps {
		ch, _ := childrenOf(ioctx, spec, s.Name)
		children = append(children, ch...)
	}
	if len(children) > 0 {
		e := refuse(ErrImageHasChildren, cause, "cannot %s image %s: its snapshots have clones (%s): flatten or remove them first",
			op, spec, specList(children))
		e.Children = children
		return e
	}
	if len(snaps) > 0 {
		names := make([]string, len(snaps))
		for i, s := range snaps {
			names[i] = s.Name
		}
		return refuse(ErrImageHasSnapshots, cause, "cannot %s image %s: it has %d snapshot(s) (%s): remove them first",
			op, spec, len(snaps), strings.Join(names, ", "))
	}
	if w, err := img.ListWatchers(); err == nil && len(w) > 0 {
		return refuse(ErrImageBusy, cause, "cannot %s image %s: %s: stop serving it (remove its LUN from every gateway) first",
			op, spec, watcherText(w))
	}
	return refuse(ErrImageBusy, cause, "cannot %s image %s: librbd reports it busy (%s)", op, spec, errnoText(cause))
}

// watcherText says who has an image open.
func watcherText(w []rbd.ImageWatcher) string {
	addrs := make([]string, len(w))
	for i, x := range w {
		addrs[i] = x.Addr
	}
	return fmt.Sprintf("it is open by %d client(s) (%s)", len(w), strings.Join(addrs, ", "))
}

// childSpecs converts go-ceph's child list.
func childSpecs(children []rbd.ImageSpec) []ImageSpec {
	specs := make([]ImageSpec, len(children))
	for i, ch := range children {
		specs[i] = ImageSpec{Pool: ch.PoolName, Namespace: ch.PoolNamespace, Image: ch.ImageName}
	}
	return specs
}

func specList(specs []ImageSpec) string {
	s := make([]string, len(specs))
	for i, x := range specs {
		s[i] = x.String()
	}
	return strings.Join(s, ", ")
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
	b.size.Store(int64(size))
	return nil
}
