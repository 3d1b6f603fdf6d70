//go:build rbd

package rbd

import (
	"context"
	"syscall"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

// SnapshotInfo describes one snapshot.
type SnapshotInfo struct {
	ID   uint64
	Name string
	// Size is the image size when the snapshot was taken.
	Size int64
	// Protected snapshots can be cloned and cannot be removed.
	Protected bool
}

// listSnapshots lists img's user snapshots (not the ones librbd keeps in
// its trash or mirror namespaces), oldest first.
func listSnapshots(img *rbd.Image, spec ImageSpec) ([]SnapshotInfo, error) {
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		return nil, failed(err, "list the snapshots of %s", spec)
	}
	list := []SnapshotInfo{}
	for _, s := range snaps {
		ns, err := img.GetSnapNamespaceType(s.Id)
		if err != nil {
			return nil, failed(err, "read the namespace of snapshot %s@%s", spec, s.Name)
		}
		if ns != rbd.SnapNamespaceTypeUser {
			continue
		}
		prot, err := img.GetSnapshot(s.Name).IsProtected()
		if err != nil {
			return nil, failed(err, "read the protection of snapshot %s@%s", spec, s.Name)
		}
		list = append(list, SnapshotInfo{ID: s.Id, Name: s.Name, Size: int64(s.Size), Protected: prot})
	}
	return list, nil
}

// snapshotNotFound is the refusal for a snapshot spec lacks.
func snapshotNotFound(spec ImageSpec, snap string, cause error) error {
	return refuse(ErrSnapshotNotFound, cause, "snapshot %s@%s does not exist", spec, snap)
}

// withSnapshot runs f on spec opened for a snapshot operation, after
// checking the snapshot name.
func (c *Cluster) withSnapshot(ctx context.Context, spec ImageSpec, snap string, readOnly bool, f func(ioctx *rados.IOContext, img *rbd.Image) error) error {
	if err := checkName("snapshot", snap); err != nil {
		return err
	}
	return c.withImage(ctx, spec, readOnly, f)
}

// snapshotInfo finds snap among img's snapshots.
func snapshotInfo(img *rbd.Image, spec ImageSpec, snap string) (SnapshotInfo, error) {
	snaps, err := listSnapshots(img, spec)
	if err != nil {
		return SnapshotInfo{}, err
	}
	for _, s := range snaps {
		if s.Name == snap {
			return s, nil
		}
	}
	return SnapshotInfo{}, snapshotNotFound(spec, snap, nil)
}

// ListSnapshots lists spec's snapshots, oldest first.
func (c *Cluster) ListSnapshots(ctx context.Context, spec ImageSpec) ([]SnapshotInfo, error) {
	var snaps []SnapshotInfo
	err := c.withImage(ctx, spec, true, func(_ *rados.IOContext, img *rbd.Image) error {
		var err error
		snaps, err = listSnapshots(img, spec)
		return err
	})
	return snaps, err
}

// CreateSnapshot takes a crash-consistent snapshot of spec. It works while
// a gateway serves the image: librbd asks the lock owner to take it.
func (c *Cluster) CreateSnapshot(ctx context.Context, spec ImageSpec, snap string) error {
	return c.withSnapshot(ctx, spec, snap, false, func(_ *rados.IOContext, img *rbd.Image) error {
		_, err := img.CreateSnapshot(snap)
		switch {
		case err == nil:
			return nil
		case is(err, syscall.EEXIST):
			return refuse(ErrSnapshotExists, err, "snapshot %s@%s already exists", spec, snap)
		case is(err, syscall.EDQUOT):
			return refuse(ErrInvalidArgument, err, "image %s has reached its snapshot limit", spec)
		}
		return failed(err, "create snapshot %s@%s", spec, snap)
	})
}

// RemoveSnapshot deletes a snapshot. A protected one is refused with
// ErrSnapshotProtected, one with clones with ErrImageHasChildren.
func (c *Cluster) RemoveSnapshot(ctx context.Context, spec ImageSpec, snap string) error {
	return c.withSnapshot(ctx, spec, snap, false, func(ioctx *rados.IOContext, img *rbd.Image) error {
		s, err := snapshotInfo(img, spec, snap)
		if err != nil {
			return err
		}
		if s.Protected {
			return refuse(ErrSnapshotProtected, nil, "snapshot %s@%s is protected: unprotect it first", spec, snap)
		}
		return snapshotErr(ioctx, img, spec, snap, "remove", img.GetSnapshot(snap).Remove())
	})
}

// snapshotErr explains librbd's answer to op (remove, unprotect) on
// spec@snap. EBUSY means protected (meanwhile) or, for either, clones that
// still use the snapshot.
func snapshotErr(ioctx *rados.IOContext, img *rbd.Image, spec ImageSpec, snap, op string, err error) error {
	switch {
	case err == nil:
		return nil
	case is(err, syscall.ENOENT):
		return snapshotNotFound(spec, snap, err)
	case is(err, syscall.EBUSY):
		if s, serr := snapshotInfo(img, spec, snap); op == "remove" && serr == nil && s.Protected {
			return refuse(ErrSnapshotProtected, err, "snapshot %s@%s is protected: unprotect it first", spec, snap)
		}
		if cerr := snapshotHasChildren(ioctx, spec, snap, op, err); cerr != nil {
			return cerr
		}
	}
	return failed(err, "%s snapshot %s@%s", op, spec, snap)
}

// RollbackSnapshot sets spec's data back to the snapshot. It is refused
// with ErrImageBusy while any client has the image open: rolling back under
// a running initiator would change its disk beneath its file system. A
// done ctx stops it at the next object and leaves the image partly rolled
// back: run it again to finish.
func (c *Cluster) RollbackSnapshot(ctx context.Context, spec ImageSpec, snap string) error {
	// First look with a read-only handle, which is no watcher itself.
	err := c.withSnapshot(ctx, spec, snap, true, func(_ *rados.IOContext, img *rbd.Image) error {
		if _, err := snapshotInfo(img, spec, snap); err != nil {
			return err
		}
		w, err := img.ListWatchers()
		if err != nil {
			return failed(err, "list the watchers of %s", spec)
		}
		if len(w) > 0 {
			return refuse(ErrImageBusy, nil, "cannot roll %s back to %s: %s: stop serving it first", spec, snap, watcherText(w))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.withImage(ctx, spec, false, func(_ *rados.IOContext, img *rbd.Image) error {
		err := rollbackImage(ctx, img, snap)
		switch {
		case err == nil:
			return nil
		case is(err, syscall.ENOENT):
			return snapshotNotFound(spec, snap, err)
		case is(err, syscall.EBUSY), is(err, syscall.EROFS):
			return refuse(ErrImageBusy, err, "cannot roll %s back to %s: another client holds its lock", spec, snap)
		}
		return failed(err, "roll %s back to %s", spec, snap)
	})
}

// ProtectSnapshot protects a snapshot so it can be cloned and not removed.
// Protecting a protected snapshot does nothing.
func (c *Cluster) ProtectSnapshot(ctx context.Context, spec ImageSpec, snap string) error {
	return c.withSnapshot(ctx, spec, snap, false, func(_ *rados.IOContext, img *rbd.Image) error {
		s, err := snapshotInfo(img, spec, snap)
		if err != nil || s.Protected {
			return err
		}
		err = img.GetSnapshot(snap).Protect()
		switch {
		case err == nil, is(err, syscall.EBUSY): // EBUSY: protected meanwhile
			return nil
		case is(err, syscall.ENOENT):
			return snapshotNotFound(spec, snap, err)
		case is(err, syscall.ENOSYS), is(err, syscall.EINVAL):
			return refuse(ErrInvalidArgument, err,
				"cannot protect %s@%s: image %s lacks the layering feature (`rbd feature enable` cannot add it; copy the image)", spec, snap, spec)
		}
		return failed(err, "protect snapshot %s@%s", spec, snap)
	})
}

// UnprotectSnapshot lifts the protection. It is refused with
// ErrImageHasChildren (listing them) while clones of the snapshot exist.
// Unprotecting an unprotected snapshot does nothing.
func (c *Cluster) UnprotectSnapshot(ctx context.Context, spec ImageSpec, snap string) error {
	return c.withSnapshot(ctx, spec, snap, false, func(ioctx *rados.IOContext, img *rbd.Image) error {
		s, err := snapshotInfo(img, spec, snap)
		if err != nil || !s.Protected {
			return err
		}
		return snapshotErr(ioctx, img, spec, snap, "unprotect", img.GetSnapshot(snap).Unprotect())
	})
}
