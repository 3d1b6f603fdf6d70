//go:build rbd

package rbd

import (
	"context"
	"syscall"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

// CloneImage creates child as a copy-on-write clone of parent@snap; child
// may be in another pool or namespace. The snapshot must be protected
// (ErrParentNotProtected otherwise): that keeps it from being removed under
// its clones on every cluster, whichever clone format librbd picks. A
// clone into another namespace is a format 2 clone (format 1 cannot cross
// namespaces). o shapes the child; layering is always added, and
// ObjectSize 0 takes the parent's.
func (c *Cluster) CloneImage(ctx context.Context, parent ImageSpec, snap string, child ImageSpec, o CreateOptions) error {
	opts, err := c.prepareCreate(ctx, child, o, true)
	if err != nil {
		return err
	}
	defer opts.Destroy()
	if parent.Namespace != child.Namespace {
		// Format 1 clones cannot cross namespaces (librbd: EXDEV); format 2
		// can, and needs clients of Ceph 13 (mimic) or newer.
		if err := opts.SetUint64(rbd.ImageOptionCloneFormat, 2); err != nil {
			return failed(err, "set the clone format")
		}
	}
	return c.withSnapshot(ctx, parent, snap, true, func(pio *rados.IOContext, img *rbd.Image) error {
		s, err := snapshotInfo(img, parent, snap)
		if err != nil {
			return err
		}
		if !s.Protected {
			return refuse(ErrParentNotProtected, nil, "snapshot %s@%s is not protected: protect it before cloning", parent, snap)
		}
		return c.withNamespace(ctx, child.Pool, child.Namespace, func(cio *rados.IOContext) error {
			err := rbd.CloneImage(pio, parent.Image, snap, cio, child.Image, opts)
			switch {
			case err == nil:
				return nil
			case is(err, syscall.ENOENT):
				return snapshotNotFound(parent, snap, err)
			case is(err, syscall.EINVAL):
				if s, serr := snapshotInfo(img, parent, snap); serr == nil && !s.Protected {
					return refuse(ErrParentNotProtected, err, "snapshot %s@%s is not protected: protect it before cloning", parent, snap)
				}
			}
			return createErr(cio, child, err)
		})
	})
}

// ListChildren lists the clones of parent@snap, wherever they are (clones
// in the trash included: they too keep the snapshot in use).
func (c *Cluster) ListChildren(ctx context.Context, parent ImageSpec, snap string) ([]ImageSpec, error) {
	var children []ImageSpec
	err := c.withSnapshot(ctx, parent, snap, true, func(ioctx *rados.IOContext, img *rbd.Image) error {
		if _, err := snapshotInfo(img, parent, snap); err != nil {
			return err
		}
		var err error
		children, err = childrenOf(ioctx, parent, snap)
		return err
	})
	return children, err
}

// childrenOf lists the clones of spec@snap through a handle opened at the
// snapshot (librbd lists the children of the handle's snapshot).
func childrenOf(ioctx *rados.IOContext, spec ImageSpec, snap string) ([]ImageSpec, error) {
	img, err := rbd.OpenImageReadOnly(ioctx, spec.Image, snap)
	if err != nil {
		if is(err, syscall.ENOENT) {
			return nil, snapshotNotFound(spec, snap, err)
		}
		return nil, failed(err, "open %s@%s", spec, snap)
	}
	defer img.Close()
	children, err := img.ListChildrenAttributes()
	if err != nil {
		return nil, failed(err, "list the clones of %s@%s", spec, snap)
	}
	return childSpecs(children), nil
}

// snapshotHasChildren returns the ErrImageHasChildren refusal to op
// spec@snap when it has clones, nil when it has none.
func snapshotHasChildren(ioctx *rados.IOContext, spec ImageSpec, snap, op string, cause error) error {
	children, err := childrenOf(ioctx, spec, snap)
	if err != nil || len(children) == 0 {
		return nil
	}
	e := refuse(ErrImageHasChildren, cause, "cannot %s snapshot %s@%s: it has clones (%s): flatten or remove them first",
		op, spec, snap, specList(children))
	e.Children = children
	return e
}

// FlattenImage copies into a clone all the data it still reads from its
// parent and detaches it, so the parent snapshot can go. progress (may be
// nil) is called with growing numbers of objects done out of total, from
// librbd's threads, one call at a time. A done ctx stops the flatten at the
// next object (the clone stays a clone, partly copied). A flatten runs
// while a gateway serves the image: librbd asks the lock owner to do it.
func (c *Cluster) FlattenImage(ctx context.Context, spec ImageSpec, progress func(done, total uint64)) error {
	return c.withImage(ctx, spec, false, func(_ *rados.IOContext, img *rbd.Image) error {
		p, err := parentOf(img, spec)
		if err != nil {
			return err
		}
		if p == nil {
			return invalid("image %s is not a clone: nothing to flatten", spec)
		}
		err = flattenImage(ctx, img, progress)
		switch {
		case err == nil:
			return nil
		case is(err, syscall.EINVAL):
			return invalid("image %s is not a clone: nothing to flatten", spec)
		case is(err, syscall.EROFS):
			return refuse(ErrImageBusy, err, "cannot flatten %s: another client holds its lock and refused the request", spec)
		}
		return failed(err, "flatten %s", spec)
	})
}
