package gateway

import (
	"context"
	"fmt"

	"github.com/rbdgw/rbdgw/rbdlun"
	"github.com/rbdgw/rbdgw/scsi"
)

// imageOwner is a backend whose image is guarded by a cluster-wide
// exclusive lock (rbd: disks, rbd.go). It serves media commands only while
// it holds the lock.
type imageOwner interface {
	// TakeOwnership takes the lock; with force it breaks another holder's
	// lock and blocklists that holder first.
	TakeOwnership(ctx context.Context, force bool) error
	// Owned reports whether the lock is held and I/O served.
	Owned() bool
}

// TakeOwnership makes this gateway the writer of disk, an rbd: disk: it
// takes the image's exclusive lock, and with force breaks the current
// holder's lock and blocklists that holder, so none of its writes land
// afterwards. A gateway that lost the lock serves NOT READY and never
// retakes it by itself (two gateways would take it from each other in
// turn): the failover logic, which knows whether the holder is alive,
// calls this.
func (g *Gateway) TakeOwnership(ctx context.Context, disk string, force bool) error {
	o, err := g.imageOwner(disk)
	if err != nil {
		return err
	}
	return o.TakeOwnership(ctx, force)
}

// OwnsDisk reports whether this gateway holds the exclusive lock of disk,
// an rbd: disk, and serves it.
func (g *Gateway) OwnsDisk(disk string) (bool, error) {
	o, err := g.imageOwner(disk)
	if err != nil {
		return false, err
	}
	return o.Owned(), nil
}

func (g *Gateway) imageOwner(disk string) (imageOwner, error) {
	g.mu.Lock()
	lu, ok := g.lus[disk]
	g.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("gateway: no disk %q", disk)
	}
	o, ok := findBackend[imageOwner](lu.Backend())
	if !ok {
		return nil, fmt.Errorf("gateway: disk %q has no exclusive lock (not an rbd: disk)", disk)
	}
	return o, nil
}

// findBackend looks through b and the wrappers around it (stall
// detection, test fault injection) for a backend implementing T.
func findBackend[T any](b scsi.Backend) (T, bool) {
	for {
		if t, ok := b.(T); ok {
			return t, true
		}
		u, ok := b.(rbdlun.Unwrapper)
		if !ok {
			var zero T
			return zero, false
		}
		b = u.Unwrap()
	}
}
