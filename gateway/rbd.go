//go:build rbd

package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/rbdlun/rbd"
	"github.com/rbdgw/rbdgw/scsi"
)

// RBDSupport reports whether this binary serves rbd: disks (-tags rbd).
const RBDSupport = true

// cephLink is the gateway's one rbd.Cluster: dialled when the first rbd:
// disk opens (a gateway serving only files never needs Ceph) and closed
// when the last one closes, which is at shutdown, since disks removed by a
// reload stay open until then.
type cephLink struct {
	mu   sync.Mutex
	cl   *rbd.Cluster  // guarded by mu
	refs int           // open rbd disks; guarded by mu
	osd  time.Duration // the OSD op timeout cl was dialled with
}

// Timeouts of the gateway's rados clients that no disk control sets.
const (
	// rbdMonOpTimeout bounds the connect and mon commands (a blocklist):
	// librados' default 300 s would make a start against a dead cluster
	// look like a hang.
	rbdMonOpTimeout = 30 * time.Second
	// rbdOpenTimeout bounds opening one image (create, open, lock, grow).
	rbdOpenTimeout = 2 * time.Minute
	// reconnect backoff after this client was fenced.
	reconnectMin, reconnectMax = time.Second, 30 * time.Second
)

// osdOpTimeout maps the osd_op_timeout control (seconds, 0 = none, as in
// ceph-iscsi) onto rbd.ClusterConfig's (0 = default, negative = none).
func osdOpTimeout(secs uint32) time.Duration {
	if secs == 0 {
		return -1
	}
	return time.Duration(secs) * time.Second
}

// timeoutText renders an OSD op timeout for the log ("none" when
// negative).
func timeoutText(d time.Duration) string {
	if d < 0 {
		return "none"
	}
	return d.String()
}

// longer reports whether timeout a waits longer than b (negative: never
// times out).
func longer(a, b time.Duration) bool {
	if b < 0 {
		return false
	}
	return a < 0 || a > b
}

// cluster returns the connected cluster with one more reference. The
// rados clients of a gateway share one OSD op timeout (librados sets it
// per client, not per image): the longest any rbd: disk of the
// configuration asks for, so no disk's operations are cut shorter than
// its control says; a disk asking for less is told so in the log.
func (g *Gateway) cluster(d *config.Disk) (*rbd.Cluster, error) {
	l := &g.ceph
	l.mu.Lock()
	defer l.mu.Unlock()
	want := osdOpTimeout(d.Controls.OSDOpTimeout)
	if l.cl == nil {
		timeout := want
		for i := range g.cfg.Disks {
			od := &g.cfg.Disks[i]
			if bk, err := config.ParseBackend(od.Backend); err == nil && bk.Kind == config.BackendRBD {
				if t := osdOpTimeout(od.Controls.OSDOpTimeout); longer(t, timeout) {
					timeout = t
				}
			}
		}
		c := g.cfg.Ceph
		cl, err := rbd.Connect(rbd.ClusterConfig{
			ConfPath:     c.Conf,
			Cluster:      c.Cluster,
			User:         c.User,
			Keyring:      c.Keyring,
			OSDOpTimeout: timeout,
			MonOpTimeout: rbdMonOpTimeout,
		})
		if err != nil {
			return nil, err
		}
		l.cl, l.osd = cl, timeout
		g.log.Info("connected to ceph", "conf", c.Conf, "cluster", c.Cluster, "user", c.User, "osd_op_timeout", timeoutText(timeout))
	}
	if want != l.osd {
		g.log.Warn("osd_op_timeout differs from the gateway's rados clients'; the gateway's applies",
			"disk", d.Name, "osd_op_timeout", timeoutText(want), "gateway_osd_op_timeout", timeoutText(l.osd))
	}
	l.refs++
	return l.cl, nil
}

// release drops a disk's reference; the last one closes the cluster.
func (l *cephLink) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refs--
	if l.refs == 0 && l.cl != nil {
		l.cl.Close()
		l.cl = nil
	}
}

// openRBD opens an rbd: disk: creates the image when asked, takes its
// exclusive lock (writable disks), grows it to the configured size, and
// starts watching for the lock's loss.
func (g *Gateway) openRBD(d *config.Disk, bk config.Backend) (scsi.Backend, error) {
	cl, err := g.cluster(d)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), rbdOpenTimeout)
	defer cancel()
	spec := rbd.ImageSpec{Pool: bk.Pool, Namespace: bk.Namespace, Image: bk.Image}
	opts := rbd.Options{
		WriteCache: d.WriteCache,
		// Another gateway that takes this image over blocklists the rados
		// client that held its lock. A client per image confines that to
		// this image; a shared one would fence every disk of this gateway.
		// tcmu-runner's rbd handler also runs a client per image.
		PrivateConnection: true,
	}
	if d.Create {
		opts.CreateSize = int64(d.Size)
	}
	b, err := cl.Open(ctx, spec, opts)
	if err != nil {
		g.ceph.release()
		if !d.Create {
			return nil, fmt.Errorf("%w (the image must exist unless the disk says create: true)", err)
		}
		return nil, err
	}
	rd := &rbdDisk{
		Backend:    b,
		log:        g.log.With("disk", d.Name, "image", spec.String()),
		link:       &g.ceph,
		readOnly:   d.ReadOnly,
		writeCache: d.WriteCache,
		rearm:      make(chan struct{}, 1),
		stop:       make(chan struct{}),
	}
	// In a cluster the LU's ownership driver takes the lock (Acquire) when
	// this gateway becomes the owner.
	rd.ownedByCluster = g.ha != nil
	if err := rd.start(ctx, int64(d.Size)); err != nil {
		rd.Close()
		return nil, err
	}
	return rd, nil
}

// start takes the lock, grows the image and starts the lock watcher.
func (d *rbdDisk) start(ctx context.Context, size int64) error {
	if d.readOnly {
		// A write-protected LU never writes, so it needs no lock and
		// takes none from the gateway that writes the image.
		if size > d.Backend.Size() {
			d.log.Warn("read-only disk is smaller than its configured size; not grown", "size", d.Backend.Size(), "configured", size)
		}
		return nil
	}
	// Writers hand the image over through its exclusive lock: refuse an
	// image without the feature at start, with the command that adds it.
	if err := d.Backend.RequireFeatures(); err != nil {
		return err
	}
	if d.ownedByCluster {
		// Growing needs the lock, which only the LU's owner holds: the
		// image keeps its size until an admin resizes it.
		if size > d.Backend.Size() {
			d.log.Warn("image is smaller than its configured size; in a cluster it is not grown at start", "size", d.Backend.Size(), "configured", size)
		}
		d.wg.Add(1)
		go d.watchLock()
		return nil
	}
	if err := d.TakeOwnership(ctx, true); err != nil {
		return err
	}
	switch cur := d.Backend.Size(); {
	case size > cur:
		if err := d.Backend.Resize(ctx, size); err != nil {
			return err
		}
		d.log.Info("image grown to the configured size", "from", cur, "to", size)
	case size < cur:
		d.log.Info("image is larger than the configured size; serving the image's size", "size", cur, "configured", size)
	}
	d.wg.Add(1)
	go d.watchLock()
	return nil
}

// rbdDisk is an rbd: disk as the gateway serves it: the librbd backend
// plus the ownership rule. A writable disk serves I/O only while this
// gateway holds the image's exclusive lock; once the lock is found lost
// (another gateway broke it, or this client was blocklisted) every media
// command answers NOT READY, ASYMMETRIC ACCESS STATE TRANSITION (02/04/0A)
// so initiators retry, on another path if they have one, until
// TakeOwnership succeeds again. Reads are refused too: another gateway may
// be writing the image, and this one would return stale data.
type rbdDisk struct {
	*rbd.Backend
	log        *slog.Logger
	link       *cephLink
	readOnly   bool
	writeCache bool // librbd's cache is on (Options.WriteCache)
	// ownedByCluster: a gateway/ha driver decides when this gateway owns
	// the image (Acquire/Release); the disk takes no lock at start.
	ownedByCluster bool

	// ownMu serialises TakeOwnership with the watcher's reaction to a loss.
	ownMu sync.Mutex
	// owned: this gateway holds the lock and serves I/O. Set by
	// TakeOwnership, cleared by the watcher; read on every I/O.
	owned atomic.Bool
	// rearm tells the watcher that TakeOwnership acquired the lock again
	// after a loss (sent by TakeOwnership, buffered 1).
	rearm chan struct{}

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// errNotOwner answers media commands while another client holds the lock.
var errNotOwner = errors.New("rbd: this gateway does not hold the image's exclusive lock")

// gate refuses I/O unless the lock is held (read-only disks never hold it).
func (d *rbdDisk) gate() error {
	if d.readOnly || (d.owned.Load() && !d.Backend.Fenced()) {
		return nil
	}
	// SPC-4 5.16.2.6: NOT READY, ASYMMETRIC ACCESS STATE TRANSITION while
	// the LU's ownership is (or may be) moving between gateways.
	return &scsi.NotReadyError{ASC: 0x04, ASCQ: 0x0A, Err: errNotOwner}
}

// Ready lets TEST UNIT READY report the lock's loss. In a cluster a
// non-owner is ready: its port group's ALUA state tells the initiator where
// to send I/O, and path checkers (dm-multipath's tur) must not fail the
// healthy paths of the gateways that do not own the LU.
func (d *rbdDisk) Ready() error {
	if d.ownedByCluster {
		return nil
	}
	return d.gate()
}

// Owned reports whether this gateway holds the image's lock and serves it.
func (d *rbdDisk) Owned() bool { return !d.readOnly && d.gate() == nil }

func (d *rbdDisk) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := d.gate(); err != nil {
		return err
	}
	return d.Backend.ReadAt(ctx, p, off)
}

func (d *rbdDisk) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if err := d.gate(); err != nil {
		return err
	}
	return d.Backend.WriteAt(ctx, p, off, fua)
}

// Flush without the lock: with librbd's cache off every acknowledged write
// is already on the OSDs, so there is nothing to lose and the flush
// succeeds (a shutdown after a takeover stays clean); with the cache on,
// cached writes are lost with the lock, and the flush says so.
func (d *rbdDisk) Flush(ctx context.Context) error {
	if err := d.gate(); err != nil {
		if !d.writeCache {
			return nil
		}
		return err
	}
	return d.Backend.Flush(ctx)
}

func (d *rbdDisk) Unmap(ctx context.Context, off, length int64) error {
	if err := d.gate(); err != nil {
		return err
	}
	return d.Backend.Unmap(ctx, off, length)
}

func (d *rbdDisk) WriteZeroes(ctx context.Context, off, length int64, unmap bool) error {
	if err := d.gate(); err != nil {
		return err
	}
	return d.Backend.WriteZeroes(ctx, off, length, unmap)
}

func (d *rbdDisk) WriteSame(ctx context.Context, block []byte, off, length int64) error {
	if err := d.gate(); err != nil {
		return err
	}
	return d.Backend.WriteSame(ctx, block, off, length)
}

func (d *rbdDisk) CompareAndWrite(ctx context.Context, cmp, data []byte, off int64) error {
	if err := d.gate(); err != nil {
		return err
	}
	return d.Backend.CompareAndWrite(ctx, cmp, data, off)
}

func (d *rbdDisk) Mapped(ctx context.Context, off, limit int64) (bool, int64, error) {
	if err := d.gate(); err != nil {
		return false, 0, err
	}
	return d.Backend.Mapped(ctx, off, limit)
}

// Grow resizes the image to size bytes when that is larger (Reload).
func (d *rbdDisk) Grow(size int64) error {
	if d.readOnly {
		return errors.New("a read-only rbd disk is not grown")
	}
	if size <= d.Backend.Size() {
		return nil
	}
	if err := d.gate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), rbdOpenTimeout)
	defer cancel()
	return d.Backend.Resize(ctx, size)
}

// TakeOwnership makes this gateway the image's writer: it takes the
// exclusive lock and, when force is set and another client holds it,
// breaks that lock and blocklists the holder first (logged at WARN with
// its address), so none of the old holder's writes can land afterwards.
// A client fenced since the last ownership is first replaced by a new one.
// On success media commands are served again.
//
// The gateway calls it with force when a disk opens: until the failover
// logic decides ownership, the newest gateway wins. It is never called on
// a loss (the two gateways would take the lock from each other in turn);
// the failover logic calls it through Gateway.TakeOwnership.
func (d *rbdDisk) TakeOwnership(ctx context.Context, force bool) error {
	if d.readOnly {
		return errors.New("a read-only rbd disk takes no lock")
	}
	d.ownMu.Lock()
	defer d.ownMu.Unlock()
	if d.owned.Load() && !d.Backend.Fenced() {
		if ok, err := d.Backend.IsLockOwner(); ok && err == nil {
			return nil
		}
	}
	if d.Backend.Fenced() {
		if err := d.Backend.Reconnect(ctx); err != nil {
			return err
		}
	}
	var err error
	if force {
		// Fence first: a holder we take over from is blocklisted and its
		// lock broken before we ask for the lock. Asking first would have
		// librbd request the lock from the holder, and a dead holder's
		// watch stays registered at the OSD until it times out (measured:
		// 24 s before the acquire gave up).
		err = d.fenceHolders(ctx)
	}
	if err == nil {
		err = d.Backend.AcquireExclusiveLock(ctx)
	}
	// The holder may change between listing and breaking (a third
	// gateway); a few rounds settle it.
	for round := 0; force && errors.Is(err, rbd.ErrLockBusy) && round < 3; round++ {
		if err = d.fenceHolders(ctx); err == nil {
			err = d.Backend.AcquireExclusiveLock(ctx)
		}
	}
	if err != nil {
		return fmt.Errorf("take the exclusive lock of %s: %w", d.Backend.Spec(), err)
	}
	if !d.owned.Swap(true) {
		select {
		case d.rearm <- struct{}{}:
		default:
		}
	}
	d.log.Info("exclusive lock held; serving the image")
	return nil
}

// fenceHolders blocklists every other holder of the image's exclusive
// lock and breaks its lock.
func (d *rbdDisk) fenceHolders(ctx context.Context) error {
	if ok, err := d.Backend.IsLockOwner(); ok && err == nil {
		return nil // ours already: never fence ourselves
	}
	owners, err := d.Backend.LockOwners()
	if err != nil {
		return err
	}
	for _, o := range owners {
		d.log.Warn("taking the image over: blocklisting the holder of its exclusive lock and breaking the lock (newest gateway wins)",
			"old_owner", o)
		if err := d.Backend.BreakLock(ctx, o, true); err != nil {
			return err
		}
	}
	return nil
}

// Acquire, Release and Fences make an rbd: disk the image lock of the
// failover driver (gateway/ha.ImageLock).

// Acquire is TakeOwnership: with fence the holder is blocklisted.
func (d *rbdDisk) Acquire(ctx context.Context, fence bool) error { return d.TakeOwnership(ctx, fence) }

// Release hands the image over gracefully: I/O stops (NOT READY), cached
// writes are flushed, and the lock is given up so the next owner takes it
// without blocklisting this client.
func (d *rbdDisk) Release(ctx context.Context) error {
	d.ownMu.Lock()
	defer d.ownMu.Unlock()
	d.owned.Store(false)
	if err := d.Backend.Flush(ctx); err != nil {
		return err
	}
	if err := d.Backend.ReleaseExclusiveLock(ctx); err != nil {
		return err
	}
	d.log.Info("exclusive lock released; the image is served elsewhere")
	return nil
}

// Fences: a takeover blocklists the old holder, so none of its writes can
// land afterwards whatever it does.
func (d *rbdDisk) Fences() bool { return true }

// watchLock reacts to the loss of the lock: I/O stops (NOT READY), and a
// blocklisted client is replaced by a fresh one so the disk is ready for
// TakeOwnership, which it does not call itself.
func (d *rbdDisk) watchLock() {
	defer d.wg.Done()
	for {
		lost := d.Backend.LockLost()
		select {
		case <-d.stop:
			return
		case <-lost:
		}
		if !d.lockLost(lost) {
			continue
		}
		// Wait until TakeOwnership has re-armed the backend's LockLost
		// channel; a token left from an earlier acquisition (the first,
		// or one after a Release) finds the lost channel still current.
		for d.Backend.LockLost() == lost {
			select {
			case <-d.stop:
				return
			case <-d.rearm:
			}
		}
	}
}

// lockLost handles the loss signalled by lost. It reports false when
// TakeOwnership has taken the lock again since (the backend re-armed its
// LockLost channel): the disk is owned and nothing is to be done.
func (d *rbdDisk) lockLost(lost <-chan struct{}) bool {
	d.ownMu.Lock()
	if d.Backend.LockLost() != lost {
		d.ownMu.Unlock()
		return false
	}
	d.owned.Store(false)
	d.ownMu.Unlock()
	fenced := d.Backend.Fenced()
	d.log.Warn("exclusive lock lost: media commands answer NOT READY until ownership is taken again", "fenced", fenced)
	if !fenced {
		return true
	}
	for wait := reconnectMin; ; wait = min(2*wait, reconnectMax) {
		d.ownMu.Lock()
		var err error
		if d.Backend.Fenced() { // TakeOwnership may have reconnected already
			ctx, cancel := context.WithTimeout(context.Background(), rbdOpenTimeout)
			err = d.Backend.Reconnect(ctx)
			cancel()
		}
		d.ownMu.Unlock()
		if err == nil {
			owners, _ := d.Backend.LockOwners()
			d.log.Info("reconnected with a new rados client after being blocklisted; the lock is not retaken", "owners", owners)
			return true
		}
		d.log.Warn("reconnect after being blocklisted failed; retrying", "err", err, "retry_in", wait)
		select {
		case <-d.stop:
			return true
		case <-time.After(wait):
		}
	}
}

// Close stops the watcher, closes the image (releasing the lock if held)
// and drops the disk's reference to the cluster.
func (d *rbdDisk) Close() error {
	d.closeOnce.Do(func() {
		close(d.stop)
		d.wg.Wait()
		d.closeErr = d.Backend.Close()
		d.link.release()
	})
	return d.closeErr
}
