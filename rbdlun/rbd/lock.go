//go:build rbd

package rbd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rbd"
)

// BlocklistExpire is how long BreakLock blocklists the old owner: long
// enough for it to notice and reconnect with a new rados client.
const BlocklistExpire = 600 * time.Second

// ErrLockBusy means another client holds the exclusive lock.
var ErrLockBusy = errors.New("rbd: exclusive lock held by another client")

// AcquireExclusiveLock takes the image's exclusive lock in managed mode
// (RBD_LOCK_MODE_EXCLUSIVE): librbd then refuses to hand it to other
// clients on request, so only an explicit BreakLock moves it. It fails
// with ErrLockBusy (wrapped) while another client holds it.
func (b *Backend) AcquireExclusiveLock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.fenced.Load() {
		return errFenced("acquire lock")
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.open {
		return fmt.Errorf("rbd: acquire lock: %s is not open", b.spec)
	}
	err := b.img.LockAcquire(rbd.LockModeExclusive)
	switch e := errno(err); {
	case err == nil:
		b.lostMu.Lock()
		select {
		case <-b.lockLost:
			b.lockLost = make(chan struct{})
		default:
		}
		b.lostMu.Unlock()
		b.holdLock.Store(true)
		return nil
	case e == syscall.EROFS || e == syscall.EBUSY:
		return fmt.Errorf("rbd: acquire lock on %s: %w (%w)", b.spec, ErrLockBusy, err)
	default:
		return b.mapErr("acquire lock", e)
	}
}

// ReleaseExclusiveLock gives the lock up (a graceful ownership move).
func (b *Backend) ReleaseExclusiveLock(ctx context.Context) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	b.holdLock.Store(false)
	if !b.open || b.fenced.Load() {
		return nil
	}
	if err := b.img.LockRelease(); err != nil {
		return b.mapErr("release lock", errno(err))
	}
	return nil
}

// LockOwners lists the clients holding the exclusive lock, in the form
// BreakLock takes.
func (b *Backend) LockOwners() ([]string, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.open {
		return nil, fmt.Errorf("rbd: lock owners: %s is not open", b.spec)
	}
	owners, err := b.img.LockGetOwners()
	if err != nil {
		if errno(err) == syscall.ENOENT {
			return nil, nil
		}
		return nil, fmt.Errorf("rbd: lock owners of %s: %w", b.spec, err)
	}
	var out []string
	for _, o := range owners {
		out = append(out, o.Owner)
	}
	return out, nil
}

// lockerAddr finds the rados address of owner among the header lockers.
func (b *Backend) lockerAddr(owner string) (string, error) {
	_, lockers, err := b.img.ListLockers()
	if err != nil {
		return "", fmt.Errorf("rbd: lockers of %s: %w", b.spec, err)
	}
	for _, l := range lockers {
		if l.Client == owner || l.Addr == owner {
			return l.Addr, nil
		}
	}
	// librbd 16 names exclusive-lock owners by their address already.
	if strings.Contains(owner, ":") && strings.Contains(owner, "/") {
		return owner, nil
	}
	return "", fmt.Errorf("rbd: %s: no locker named %q", b.spec, owner)
}

// BreakLock takes the exclusive lock away from owner (one of LockOwners).
// With blocklist the owner's rados client is first fenced by the mons for
// BlocklistExpire, so none of its writes can land after this returns (its
// next I/O fails with ESHUTDOWN). Without blocklist only the lock moves
// (our connections turn librbd's rbd_blocklist_on_break_lock off): use it
// only for an owner known to be gone or quiesced.
func (b *Backend) BreakLock(ctx context.Context, owner string, blocklist bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.open {
		return fmt.Errorf("rbd: break lock: %s is not open", b.spec)
	}
	if blocklist {
		addr, err := b.lockerAddr(owner)
		if err != nil {
			return err
		}
		if err := b.cluster.Blocklist(ctx, addr, BlocklistExpire); err != nil {
			return err
		}
		// Our next ops then carry an osdmap epoch that includes the
		// blocklist, so no OSD applies an op of the old owner after ours.
		if err := b.rc.conn.WaitForLatestOSDMap(); err != nil {
			return fmt.Errorf("rbd: break lock of %s: wait for osdmap: %w", b.spec, err)
		}
	}
	if err := b.img.LockBreak(rbd.LockModeExclusive, owner); err != nil && errno(err) != syscall.ENOENT {
		return fmt.Errorf("rbd: break lock of %s held by %s: %w", b.spec, owner, err)
	}
	return nil
}

// IsLockOwner reports whether this client holds the exclusive lock. A
// fenced client never does.
func (b *Backend) IsLockOwner() (bool, error) {
	if b.fenced.Load() {
		return false, nil
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.open {
		return false, nil
	}
	ok, err := b.img.LockIsExclusiveOwner()
	if err != nil {
		if e := errno(err); e == syscall.ESHUTDOWN {
			b.fenced.Store(true)
			return false, nil
		}
		return false, fmt.Errorf("rbd: lock owner check on %s: %w", b.spec, err)
	}
	return ok, nil
}

// LockLost returns a channel closed when the exclusive lock this backend
// acquired is found gone (broken by another client, or this client
// fenced), checked every SizeRefresh without any I/O. A later successful
// AcquireExclusiveLock arms a new channel.
func (b *Backend) LockLost() <-chan struct{} {
	b.lostMu.Lock()
	defer b.lostMu.Unlock()
	return b.lockLost
}

// checkLock closes lockLost when a lock we mean to hold is gone.
func (b *Backend) checkLock() {
	if !b.holdLock.Load() {
		return
	}
	if ok, err := b.IsLockOwner(); ok || err != nil {
		return
	}
	b.holdLock.Store(false)
	b.lostMu.Lock()
	select {
	case <-b.lockLost:
	default:
		close(b.lockLost)
	}
	b.lostMu.Unlock()
}

// Fenced reports whether this client was found blocklisted.
func (b *Backend) Fenced() bool { return b.fenced.Load() }

// Reconnect reopens the image on a fresh rados client: after being fenced
// (blocklisted) the old client can never write again. It waits for
// in-flight I/O, does not take the lock (call AcquireExclusiveLock), and
// replaces the cluster's shared connection if it is the fenced one, so
// other backends that reconnect share the new client.
func (b *Backend) Reconnect(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.holdLock.Store(false)
	b.closeImage()
	old := b.rc
	b.rc = nil
	var rc *radosConn
	var err error
	if old != nil {
		rc, err = b.cluster.renew(old)
	} else {
		rc, err = b.cluster.acquire(b.opts.WriteCache)
	}
	if err != nil {
		return err
	}
	if err := b.openOn(ctx, rc); err != nil {
		b.cluster.release(rc)
		return err
	}
	b.fenced.Store(false)
	return nil
}

// Close implements scsi.Backend: stops the size watcher, closes the image
// (releasing the lock if held) and drops the connection reference.
func (b *Backend) Close() error {
	var err error
	b.closeOnce.Do(func() {
		close(b.stop)
		b.wg.Wait()
		b.mu.Lock()
		defer b.mu.Unlock()
		err = b.closeImage()
		if b.rc != nil {
			b.cluster.release(b.rc)
			b.rc = nil
		}
	})
	return err
}
