//go:build rbd

package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rbdgw/rbdgw/rbdlun/rbd"
)

// RBDImages is the ImageService of a gateway with Ceph: *rbd.Cluster's
// image lifecycle, with its refusals mapped to the API's statuses.
type RBDImages struct {
	Cluster *rbd.Cluster
}

var (
	_ ImageService  = RBDImages{}
	_ ClusterStatus = RBDImages{}
)

// ClusterStatus is the Ceph cluster's health and pools for /cluster.
func (s RBDImages) ClusterStatus(ctx context.Context) (ClusterInfo, error) {
	health, err := s.Cluster.Health(ctx)
	if err != nil {
		return ClusterInfo{}, err
	}
	pools, err := s.Cluster.Pools(ctx)
	if err != nil {
		return ClusterInfo{}, err
	}
	return ClusterInfo{Health: health, Pools: pools}, nil
}

func spec(i Image) rbd.ImageSpec {
	return rbd.ImageSpec{Pool: i.Pool, Namespace: i.Namespace, Image: i.Name}
}

// rbdKinds says which API sentinel each librbd refusal answers with.
var rbdKinds = []struct{ rbd, api error }{
	{rbd.ErrImageNotFound, ErrNotFound},
	{rbd.ErrSnapshotNotFound, ErrNotFound},
	{rbd.ErrPoolNotFound, ErrNotFound},
	{rbd.ErrNamespaceNotFound, ErrNotFound},
	{rbd.ErrImageExists, ErrExists},
	{rbd.ErrSnapshotExists, ErrExists},
	{rbd.ErrSnapshotProtected, ErrBusy},
	{rbd.ErrImageHasSnapshots, ErrBusy},
	{rbd.ErrImageHasChildren, ErrBusy},
	{rbd.ErrImageBusy, ErrBusy},
	{rbd.ErrParentNotProtected, ErrBusy},
	{rbd.ErrTrashNotExpired, ErrBusy},
	{rbd.ErrShrinkRefused, errBadImageArg},
	{rbd.ErrInvalidArgument, errBadImageArg},
}

// errBadImageArg marks a refusal caused by the request's values (400).
var errBadImageArg = errors.New("invalid argument")

// mapErr keeps librbd's sentence (it names the image and what to do) and
// adds the sentinel that picks the status.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	for _, k := range rbdKinds {
		if errors.Is(err, k.rbd) {
			if k.api == errBadImageArg {
				return &Error{Status: 400, Msg: err.Error()}
			}
			return fmt.Errorf("%w [%w]", err, k.api)
		}
	}
	return err
}

func (s RBDImages) CreateImage(ctx context.Context, img Image, size int64) error {
	return mapErr(s.Cluster.CreateImage(ctx, spec(img), size, rbd.CreateOptions{}))
}

func (s RBDImages) ImageInfo(ctx context.Context, img Image) (ImageInfo, error) {
	info, err := s.Cluster.ImageInfo(ctx, spec(img))
	if err != nil {
		return ImageInfo{}, mapErr(err)
	}
	out := ImageInfo{Size: info.Size, ObjectSize: uint64(info.ObjectSize), Features: info.Features,
		UsedBytes: info.UsedBytes, Watchers: info.Watchers}
	if info.Parent != nil {
		out.Parent = info.Parent.String()
	}
	return out, nil
}

func (s RBDImages) ResizeImage(ctx context.Context, img Image, size int64, allowShrink bool) error {
	return mapErr(s.Cluster.ResizeImage(ctx, spec(img), size, allowShrink))
}

func (s RBDImages) RemoveImage(ctx context.Context, img Image) error {
	return mapErr(s.Cluster.RemoveImage(ctx, spec(img)))
}

func (s RBDImages) CloneImage(ctx context.Context, parent Image, snap string, child Image) error {
	return mapErr(s.Cluster.CloneImage(ctx, spec(parent), snap, spec(child), rbd.CreateOptions{}))
}

func (s RBDImages) FlattenImage(ctx context.Context, img Image) error {
	return mapErr(s.Cluster.FlattenImage(ctx, spec(img), nil))
}

func (s RBDImages) Snapshot(ctx context.Context, img Image, snap string, op SnapshotOp) error {
	ops := map[SnapshotOp]func(context.Context, rbd.ImageSpec, string) error{
		SnapCreate:    s.Cluster.CreateSnapshot,
		SnapRemove:    s.Cluster.RemoveSnapshot,
		SnapRollback:  s.Cluster.RollbackSnapshot,
		SnapProtect:   s.Cluster.ProtectSnapshot,
		SnapUnprotect: s.Cluster.UnprotectSnapshot,
	}
	f, ok := ops[op]
	if !ok {
		return fmt.Errorf("snapshot %s: %w", op, ErrUnsupported)
	}
	return mapErr(f(ctx, spec(img), snap))
}

func (s RBDImages) ListSnapshots(ctx context.Context, img Image) ([]SnapshotInfo, error) {
	l, err := s.Cluster.ListSnapshots(ctx, spec(img))
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]SnapshotInfo, len(l))
	for i, sn := range l {
		out[i] = SnapshotInfo{Name: sn.Name, Size: sn.Size, Protected: sn.Protected}
	}
	return out, nil
}

func (s RBDImages) TrashMove(ctx context.Context, img Image, delay time.Duration) (string, error) {
	id, err := s.Cluster.TrashMove(ctx, spec(img), delay)
	return id, mapErr(err)
}

func (s RBDImages) TrashList(ctx context.Context, pool, namespace string) ([]TrashEntry, error) {
	l, err := s.Cluster.TrashList(ctx, pool, namespace)
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]TrashEntry, len(l))
	for i, e := range l {
		out[i] = TrashEntry{ID: e.ID, Name: e.Name, DeferredUntil: e.DeferredUntil}
	}
	return out, nil
}

func (s RBDImages) TrashRestore(ctx context.Context, pool, namespace, id, name string) error {
	return mapErr(s.Cluster.TrashRestore(ctx, pool, namespace, id, name))
}

func (s RBDImages) TrashPurge(ctx context.Context, pool, namespace, id string, force bool) error {
	return mapErr(s.Cluster.TrashPurge(ctx, pool, namespace, id, force))
}
