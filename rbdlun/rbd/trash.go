//go:build rbd

package rbd

// The trash: a deleted image waits there, restorable, at least until its
// deferment ends; TrashPurge removes it for good.

/*
#include <errno.h>
#include <rbd/librbd.h>
*/
import "C"

import (
	"context"
	"slices"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

// TrashEntry is one image in the trash.
type TrashEntry struct {
	// ID is the image id, the key for TrashRestore and TrashPurge.
	ID string
	// Name is the image's name before it was trashed.
	Name string
	// DeletedAt is when it was moved to the trash.
	DeletedAt time.Time
	// DeferredUntil is when it may be purged without force.
	DeferredUntil time.Time
	// Source says who trashed it: "user", "mirroring", "migration" or
	// "removing" (a remove in progress or interrupted).
	Source string
}

var trashSources = map[C.rbd_trash_image_source_t]string{
	C.RBD_TRASH_IMAGE_SOURCE_USER:      "user",
	C.RBD_TRASH_IMAGE_SOURCE_MIRRORING: "mirroring",
	C.RBD_TRASH_IMAGE_SOURCE_MIGRATION: "migration",
	C.RBD_TRASH_IMAGE_SOURCE_REMOVING:  "removing",
}

// TrashMove moves spec to the trash, where it stays restorable and cannot
// be purged without force for delay. It returns the image id. Refused
// with ErrImageBusy while any client has the image open (librbd itself
// refuses only while one holds its lock).
func (c *Cluster) TrashMove(ctx context.Context, spec ImageSpec, delay time.Duration) (string, error) {
	if delay < 0 {
		return "", invalid("negative trash delay %v for %s", delay, spec)
	}
	var id string
	err := c.withImage(ctx, spec, true, func(ioctx *rados.IOContext, img *rbd.Image) error {
		var err error
		if id, err = img.GetId(); err != nil {
			return failed(err, "read the id of %s", spec)
		}
		// librbd refuses only while a client holds the lock; a gateway
		// serving the image without it (a non-owner path) counts too.
		w, err := img.ListWatchers()
		if err != nil {
			return failed(err, "list the watchers of %s", spec)
		}
		if len(w) > 0 {
			return refuse(ErrImageBusy, nil, "cannot move %s to the trash: %s: stop serving it first", spec, watcherText(w))
		}
		err = rbd.GetImage(ioctx, spec.Image).Trash(delay)
		switch {
		case err == nil:
			return nil
		case is(err, syscall.ENOENT):
			return imageNotFound(ioctx, spec, err)
		case is(err, syscall.EBUSY):
			return whyBusy(ioctx, img, spec, "move to the trash", err)
		}
		return failed(err, "move %s to the trash", spec)
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// TrashList lists the trash of pool/namespace, oldest first.
func (c *Cluster) TrashList(ctx context.Context, pool, namespace string) ([]TrashEntry, error) {
	var list []TrashEntry
	err := c.withNamespace(ctx, pool, namespace, func(ioctx *rados.IOContext) error {
		var err error
		if list, err = trashList(ioctx); err != nil {
			return failed(err, "list the trash of %s", poolNS(pool, namespace))
		}
		return nil
	})
	return list, err
}

// trashList reads the trash with rbd_trash_list (go-ceph's list lacks the
// source).
func trashList(ioctx *rados.IOContext) ([]TrashEntry, error) {
	io := C.rados_ioctx_t(ioctx.Pointer())
	n := C.size_t(32)
	for {
		entries := make([]C.rbd_trash_image_info_t, n)
		r := C.rbd_trash_list(io, &entries[0], &n)
		if r == -C.ERANGE {
			continue // n now holds the count needed
		}
		if r < 0 {
			return nil, syscall.Errno(-r)
		}
		list := make([]TrashEntry, 0, int(n))
		for _, e := range entries[:n] {
			list = append(list, TrashEntry{
				ID:            C.GoString(e.id),
				Name:          C.GoString(e.name),
				DeletedAt:     time.Unix(int64(e.deletion_time), 0),
				DeferredUntil: time.Unix(int64(e.deferment_end_time), 0),
				Source:        trashSources[e.source],
			})
		}
		if n > 0 {
			C.rbd_trash_list_cleanup(&entries[0], n)
		}
		slices.SortFunc(list, func(a, b TrashEntry) int { return a.DeletedAt.Compare(b.DeletedAt) })
		return list, nil
	}
}

// trashEntry finds id in the trash of pool/namespace.
func trashEntry(ioctx *rados.IOContext, pool, namespace, id string) (TrashEntry, error) {
	list, err := trashList(ioctx)
	if err != nil {
		return TrashEntry{}, failed(err, "list the trash of %s", poolNS(pool, namespace))
	}
	for _, e := range list {
		if e.ID == id {
			return e, nil
		}
	}
	return TrashEntry{}, refuse(ErrImageNotFound, nil, "no image with id %q in the trash of %s", id, poolNS(pool, namespace))
}

// withTrashEntry runs f on the trash entry id of pool/namespace.
func (c *Cluster) withTrashEntry(ctx context.Context, pool, namespace, id string, f func(ioctx *rados.IOContext, e TrashEntry) error) error {
	if err := checkName("trash id", id); err != nil {
		return err
	}
	return c.withNamespace(ctx, pool, namespace, func(ioctx *rados.IOContext) error {
		e, err := trashEntry(ioctx, pool, namespace, id)
		if err != nil {
			return err
		}
		return f(ioctx, e)
	})
}

// TrashRestore brings image id back from the trash of pool/namespace,
// named newName ("" keeps its old name). ErrImageExists when the name is
// taken.
func (c *Cluster) TrashRestore(ctx context.Context, pool, namespace, id, newName string) error {
	if newName != "" {
		if err := checkName("image", newName); err != nil {
			return err
		}
	}
	return c.withTrashEntry(ctx, pool, namespace, id, func(ioctx *rados.IOContext, e TrashEntry) error {
		name := newName
		if name == "" {
			name = e.Name
		}
		spec := ImageSpec{Pool: pool, Namespace: namespace, Image: name}
		err := rbd.TrashRestore(ioctx, id, name)
		switch {
		case err == nil:
			return nil
		case is(err, syscall.EEXIST):
			return refuse(ErrImageExists, err, "cannot restore %q from the trash as %s: that image exists; restore it under another name", id, spec)
		case is(err, syscall.ENOENT):
			return refuse(ErrImageNotFound, err, "no image with id %q in the trash of %s", id, poolNS(pool, namespace))
		}
		return failed(err, "restore %q from the trash as %s", id, spec)
	})
}

// TrashPurge removes image id from the trash for good. Before its
// deferment ends it is refused with ErrTrashNotExpired unless force.
func (c *Cluster) TrashPurge(ctx context.Context, pool, namespace, id string, force bool) error {
	return c.withTrashEntry(ctx, pool, namespace, id, func(ioctx *rados.IOContext, e TrashEntry) error {
		spec := ImageSpec{Pool: pool, Namespace: namespace, Image: e.Name}
		notExpired := func(cause error) error {
			return refuse(ErrTrashNotExpired, cause, "trash entry %q (%s) is kept until %s: wait, or force the purge",
				id, spec, e.DeferredUntil.UTC().Format(time.RFC3339))
		}
		if !force && time.Now().Before(e.DeferredUntil) {
			return notExpired(nil)
		}
		err := rbd.TrashRemove(ioctx, id, force)
		switch {
		case err == nil:
			return nil
		case is(err, syscall.EPERM):
			return notExpired(err)
		case is(err, syscall.ENOENT):
			return refuse(ErrImageNotFound, err, "no image with id %q in the trash of %s", id, poolNS(pool, namespace))
		case is(err, syscall.EBUSY), is(err, syscall.ENOTEMPTY), is(err, syscall.EMLINK):
			img, oerr := rbd.OpenImageByIdReadOnly(ioctx, id, rbd.NoSnapshot)
			if oerr != nil {
				break
			}
			defer img.Close()
			werr := whyBusy(ioctx, img, spec, "purge", err)
			if e, ok := werr.(*Error); ok && e.Kind != ErrImageBusy {
				e.Msg += " (restore the image to reach them)"
			}
			return werr
		}
		return failed(err, "purge %q (%s) from the trash", id, spec)
	})
}
