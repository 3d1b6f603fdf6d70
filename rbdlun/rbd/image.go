//go:build rbd

package rbd

// Image lifecycle: create, inspect, list, resize, copy. Every call takes a
// context, checks it before each step to the cluster, and passes it to the
// long operations (copy, resize) so they stop at the next object once it is
// done; a single librbd request is bounded by the cluster's op timeouts.
// Refusals are *Error values (errors.go); docs/rbd-images.md lists them.

/*
#include <rados/librados.h>
#include <rbd/librbd.h>

// rbdgw_pool_name looks a pool id up on the ioctx's own cluster handle.
static int rbdgw_pool_name(rados_ioctx_t io, int64_t id, char *buf, size_t len) {
	return rados_pool_reverse_lookup(rados_ioctx_get_cluster(io), id, buf, len);
}
*/
import "C"

import (
	"context"
	"errors"
	"math/bits"
	"slices"
	"syscall"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

// CreateOptions shape a new image (CreateImage, CopyImage, CloneImage).
type CreateOptions struct {
	// Features are librbd feature names: layering, striping,
	// exclusive-lock, object-map, fast-diff, deep-flatten, journaling.
	// Empty means DefaultFeatures. A clone always gets layering.
	Features []string
	// DataPool keeps the image's data objects in another pool (an erasure
	// coded one, typically); the header stays in the image's pool.
	DataPool string
	// ObjectSize is the size of the RADOS objects the image is cut into: a
	// power of two from 4 KiB to 32 MiB. 0 means librbd's default (4 MiB;
	// for a clone, the parent's; for a copy, the source's).
	ObjectSize int64
	// StripeUnit and StripeCount set fancy striping (both or neither):
	// StripeUnit bytes go to each of StripeCount objects in turn.
	// StripeUnit must divide the object size. 0 means no striping.
	StripeUnit, StripeCount uint64
}

// Object size bounds librbd accepts (orders 12 to 25).
const (
	minObjectSize = 4 << 10
	maxObjectSize = 32 << 20
)

// options checks o and turns it into librbd image options; the caller
// destroys them. clone adds layering, which a clone cannot do without.
func (o CreateOptions) options(clone bool) (*rbd.ImageOptions, error) {
	features, err := parseFeatures(o.Features)
	if err != nil {
		return nil, err
	}
	if clone {
		features |= rbd.FeatureLayering
	}
	objectSize := int64(4 << 20)
	if o.ObjectSize != 0 {
		if o.ObjectSize < minObjectSize || o.ObjectSize > maxObjectSize || o.ObjectSize&(o.ObjectSize-1) != 0 {
			return nil, invalid("object size %d is not a power of two from 4 KiB to 32 MiB", o.ObjectSize)
		}
		objectSize = o.ObjectSize
	}
	if (o.StripeUnit == 0) != (o.StripeCount == 0) {
		return nil, invalid("stripe unit (%d) and stripe count (%d) go together: set both or neither", o.StripeUnit, o.StripeCount)
	}
	if o.StripeUnit != 0 && (o.StripeUnit > uint64(objectSize) || uint64(objectSize)%o.StripeUnit != 0) {
		return nil, invalid("stripe unit %d does not divide the object size %d", o.StripeUnit, objectSize)
	}
	if o.DataPool != "" {
		if err := checkName("data pool", o.DataPool); err != nil {
			return nil, err
		}
	}
	opts := rbd.NewRbdImageOptions()
	set := []error{opts.SetUint64(rbd.ImageOptionFeatures, features)}
	if o.ObjectSize != 0 {
		set = append(set, opts.SetUint64(rbd.ImageOptionOrder, uint64(bits.TrailingZeros64(uint64(o.ObjectSize)))))
	}
	switch {
	case o.StripeUnit != 0:
		set = append(set, opts.SetUint64(rbd.ImageOptionStripeUnit, o.StripeUnit),
			opts.SetUint64(rbd.ImageOptionStripeCount, o.StripeCount))
	case o.ObjectSize != 0:
		// No striping, said explicitly: a copy would otherwise inherit the
		// source's stripe unit, which a smaller object size cannot hold.
		set = append(set, opts.SetUint64(rbd.ImageOptionStripeUnit, uint64(o.ObjectSize)),
			opts.SetUint64(rbd.ImageOptionStripeCount, 1))
	}
	if o.DataPool != "" {
		set = append(set, opts.SetString(rbd.ImageOptionDataPool, o.DataPool))
	}
	if err := errors.Join(set...); err != nil {
		opts.Destroy()
		return nil, failed(err, "set image options")
	}
	return opts, nil
}

// checkSize refuses sizes a LUN cannot have.
func checkSize(spec ImageSpec, size int64) error {
	if size <= 0 || size%512 != 0 {
		return invalid("size %d of %s must be a positive multiple of 512 bytes (a LUN's block size)", size, spec)
	}
	return nil
}

// onPool runs f on an I/O context in pool/namespace over the cluster's
// shared connection. That connection is the one the gateway's backends
// use, so another gateway breaking one of their locks blocklists it; when
// f finds it so (ESHUTDOWN), onPool replaces it, as a backend's Reconnect
// would, and runs f once more.
func (c *Cluster) onPool(ctx context.Context, pool, namespace string, f func(ioctx *rados.IOContext) error) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		rc, err := c.acquire(false)
		if err != nil {
			return err
		}
		ioctx, err := rc.conn.OpenIOContext(pool)
		if err != nil {
			c.release(rc)
			if is(err, syscall.ENOENT) {
				return refuse(ErrPoolNotFound, err, "pool %q does not exist", pool)
			}
			return failed(err, "open pool %q", pool)
		}
		ioctx.SetNamespace(namespace)
		err = f(ioctx)
		ioctx.Destroy()
		if attempt > 0 || !is(err, syscall.ESHUTDOWN) {
			c.release(rc)
			return err
		}
		fresh, rerr := c.renew(rc) // drops our reference to rc
		if rerr != nil {
			return err
		}
		c.release(fresh)
	}
}

// namespaceExists asks the pool's default namespace, where librbd keeps
// the list of namespaces.
func namespaceExists(ioctx *rados.IOContext, namespace string) (bool, error) {
	if namespace == "" {
		return true, nil
	}
	cur, _ := ioctx.GetNamespace()
	ioctx.SetNamespace("")
	defer ioctx.SetNamespace(cur)
	return rbd.NamespaceExists(ioctx, namespace)
}

// requireNamespace refuses a namespace that does not exist (librbd would
// answer ENOENT about the image or return an empty list).
func requireNamespace(ioctx *rados.IOContext, pool, namespace string) error {
	ok, err := namespaceExists(ioctx, namespace)
	if err != nil {
		return failed(err, "look up namespace %s/%s", pool, namespace)
	}
	if !ok {
		return refuse(ErrNamespaceNotFound, nil, "namespace %s/%s does not exist: create it first", pool, namespace)
	}
	return nil
}

// withNamespace runs f on an I/O context in pool/namespace, after
// checking the names and that the namespace exists.
func (c *Cluster) withNamespace(ctx context.Context, pool, namespace string, f func(ioctx *rados.IOContext) error) error {
	if err := checkPoolNamespace(pool, namespace); err != nil {
		return err
	}
	return c.onPool(ctx, pool, namespace, func(ioctx *rados.IOContext) error {
		if err := requireNamespace(ioctx, pool, namespace); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return f(ioctx)
	})
}

// imageNotFound explains an ENOENT about spec: its namespace or itself.
func imageNotFound(ioctx *rados.IOContext, spec ImageSpec, cause error) error {
	if err := requireNamespace(ioctx, spec.Pool, spec.Namespace); err != nil {
		return err
	}
	return refuse(ErrImageNotFound, cause, "image %s does not exist", spec)
}

// openImage opens spec in ioctx. A read-only handle registers no watch, so
// it neither shows up among the image's watchers nor takes its lock.
func openImage(ioctx *rados.IOContext, spec ImageSpec, readOnly bool) (*rbd.Image, error) {
	open := rbd.OpenImage
	if readOnly {
		open = rbd.OpenImageReadOnly
	}
	img, err := open(ioctx, spec.Image, rbd.NoSnapshot)
	if err != nil {
		if is(err, syscall.ENOENT) {
			return nil, imageNotFound(ioctx, spec, err)
		}
		return nil, failed(err, "open image %s", spec)
	}
	return img, nil
}

// withImage runs f on spec, opened for the call.
func (c *Cluster) withImage(ctx context.Context, spec ImageSpec, readOnly bool, f func(ioctx *rados.IOContext, img *rbd.Image) error) error {
	if err := checkSpec(spec); err != nil {
		return err
	}
	return c.onPool(ctx, spec.Pool, spec.Namespace, func(ioctx *rados.IOContext) error {
		img, err := openImage(ioctx, spec, readOnly)
		if err != nil {
			return err
		}
		defer img.Close()
		if err := ctx.Err(); err != nil {
			return err
		}
		return f(ioctx, img)
	})
}

// createErr explains a failed create of spec (CreateImage, CopyImage,
// CloneImage).
func createErr(ioctx *rados.IOContext, spec ImageSpec, err error) error {
	switch {
	case is(err, syscall.EEXIST):
		return refuse(ErrImageExists, err, "image %s already exists", spec)
	case is(err, syscall.ENOENT):
		if nerr := requireNamespace(ioctx, spec.Pool, spec.Namespace); nerr != nil {
			return nerr
		}
	case is(err, syscall.EINVAL), is(err, syscall.ERANGE):
		return refuse(ErrInvalidArgument, err, "librbd refused to create %s with this size, features, object size or striping (%s)", spec, errnoText(err))
	}
	return failed(err, "create image %s", spec)
}

// prepareCreate checks the name of a new image and its options, and that
// its data pool exists (librbd's error would be about the image); the
// caller destroys the options. clone as in CreateOptions.options.
func (c *Cluster) prepareCreate(ctx context.Context, spec ImageSpec, o CreateOptions, clone bool) (*rbd.ImageOptions, error) {
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	opts, err := o.options(clone)
	if err != nil {
		return nil, err
	}
	if o.DataPool != "" {
		if err := c.onPool(ctx, o.DataPool, "", func(*rados.IOContext) error { return nil }); err != nil {
			opts.Destroy()
			return nil, err
		}
	}
	return opts, nil
}

// CreateImage creates an image of size bytes (a positive multiple of 512).
func (c *Cluster) CreateImage(ctx context.Context, spec ImageSpec, size int64, o CreateOptions) error {
	if err := checkSize(spec, size); err != nil {
		return err
	}
	opts, err := c.prepareCreate(ctx, spec, o, false)
	if err != nil {
		return err
	}
	defer opts.Destroy()
	return c.withNamespace(ctx, spec.Pool, spec.Namespace, func(ioctx *rados.IOContext) error {
		if err := rbd.CreateImage(ioctx, spec.Image, uint64(size), opts); err != nil {
			return createErr(ioctx, spec, err)
		}
		return nil
	})
}

// ParentInfo names a clone's parent snapshot.
type ParentInfo struct {
	Spec     ImageSpec
	Snapshot string
	// Overlap is how many bytes of the clone still read through to the
	// parent (shrinks with a shrinking resize, 0 after flatten).
	Overlap int64
	// InTrash is set when the parent image was moved to the trash.
	InTrash bool
}

func (p ParentInfo) String() string { return p.Spec.String() + "@" + p.Snapshot }

// ImageInfo describes an image (`rbd info` and `rbd du` in one).
type ImageInfo struct {
	Spec ImageSpec
	// ID is librbd's image id (the trash and rbd_data.<id> objects use it).
	ID   string
	Size int64
	// ObjectSize is the RADOS object size (1 << order).
	ObjectSize int64
	// StripeUnit and StripeCount are the striping (object size and 1 for
	// an image without fancy striping).
	StripeUnit, StripeCount uint64
	// Features are the enabled feature names.
	Features []string
	// DataPool is the pool holding the data objects, "" when that is the
	// image's own pool.
	DataPool string
	// Parent is set for a clone.
	Parent *ParentInfo
	// Snapshots are the user snapshots, oldest first.
	Snapshots []SnapshotInfo
	// ProvisionedBytes is the size the image may grow to (its size);
	// UsedBytes what its objects hold: the extents diff-iterate reports
	// as existing, in whole objects as `rbd du` counts them (from the
	// object map when fast-diff is on, else object by object, which is slow
	// on big images). A clone's unwritten extents that read through to its
	// parent do not count.
	ProvisionedBytes, UsedBytes int64
	// Watchers is how many clients have the image open read-write (a
	// gateway serving it, a mapped kernel client, a VM).
	Watchers int
	// WatcherAddrs are their rados client addresses.
	WatcherAddrs []string
}

// ImageInfo describes spec.
func (c *Cluster) ImageInfo(ctx context.Context, spec ImageSpec) (ImageInfo, error) {
	info := ImageInfo{Spec: spec}
	err := c.withImage(ctx, spec, true, func(ioctx *rados.IOContext, img *rbd.Image) error {
		var err error
		if info.ID, err = img.GetId(); err != nil {
			return failed(err, "read the id of %s", spec)
		}
		st, err := img.Stat()
		if err != nil {
			return failed(err, "stat %s", spec)
		}
		info.Size, info.ObjectSize, info.ProvisionedBytes = int64(st.Size), int64(st.Obj_size), int64(st.Size)
		if info.StripeUnit, err = img.GetStripeUnit(); err != nil {
			return failed(err, "read the stripe unit of %s", spec)
		}
		if info.StripeCount, err = img.GetStripeCount(); err != nil {
			return failed(err, "read the stripe count of %s", spec)
		}
		bits, err := img.GetFeatures()
		if err != nil {
			return failed(err, "read the features of %s", spec)
		}
		info.Features = featureNames(bits)
		if bits&rbd.FeatureDataPool != 0 {
			if info.DataPool, err = dataPool(ioctx, img); err != nil {
				return failed(err, "read the data pool of %s", spec)
			}
		}
		if info.Parent, err = parentOf(img, spec); err != nil {
			return err
		}
		if info.Snapshots, err = listSnapshots(img, spec); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if info.UsedBytes, err = usedBytes(ctx, img, st.Size); err != nil {
			return failed(err, "measure the space %s uses", spec)
		}
		w, err := img.ListWatchers()
		if err != nil {
			return failed(err, "list the watchers of %s", spec)
		}
		info.Watchers = len(w)
		for _, x := range w {
			info.WatcherAddrs = append(info.WatcherAddrs, x.Addr)
		}
		return nil
	})
	return info, err
}

// dataPool names the pool of img's data objects.
func dataPool(ioctx *rados.IOContext, img *rbd.Image) (string, error) {
	h, err := imageHandle(img)
	if err != nil {
		return "", err
	}
	id := int64(C.rbd_get_data_pool_id(h))
	if id < 0 {
		return "", syscall.Errno(-id)
	}
	if id == ioctx.GetPoolID() {
		return "", nil
	}
	var buf [256]C.char
	if r := C.rbdgw_pool_name(C.rados_ioctx_t(ioctx.Pointer()), C.int64_t(id), &buf[0], C.size_t(len(buf))); r < 0 {
		return "", syscall.Errno(-r)
	}
	return C.GoString(&buf[0]), nil
}

// parentOf returns img's parent, nil for an image that is not a clone.
func parentOf(img *rbd.Image, spec ImageSpec) (*ParentInfo, error) {
	p, err := img.GetParent()
	if is(err, syscall.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, failed(err, "read the parent of %s", spec)
	}
	overlap, err := img.GetOverlap()
	if err != nil {
		return nil, failed(err, "read the parent overlap of %s", spec)
	}
	return &ParentInfo{
		Spec:     ImageSpec{Pool: p.Image.PoolName, Namespace: p.Image.PoolNamespace, Image: p.Image.ImageName},
		Snapshot: p.Snap.SnapName,
		Overlap:  int64(overlap),
		InTrash:  p.Image.Trash,
	}, nil
}

// usedBytes sums the extents of img's head that hold data, object-granular.
func usedBytes(ctx context.Context, img *rbd.Image, size uint64) (int64, error) {
	var used int64
	err := eachExtent(ctx, img, size, rbd.ExcludeParent, rbd.EnableWholeObject, func(_, n uint64) { used += int64(n) })
	return used, err
}

// eachExtent calls fn for each extent of img's head that holds data, as
// diff-iterate reports them; a done ctx stops it with ctx's error.
func eachExtent(ctx context.Context, img *rbd.Image, size uint64, parent rbd.DiffIncludeParent, whole rbd.DiffWholeObject, fn func(off, n uint64)) error {
	err := img.DiffIterate(rbd.DiffIterateConfig{
		Offset:        0,
		Length:        size,
		IncludeParent: parent,
		WholeObject:   whole,
		Callback: func(off, n uint64, exists int, _ interface{}) int {
			if ctx.Err() != nil {
				return -int(syscall.ECANCELED)
			}
			if exists != 0 {
				fn(off, n)
			}
			return 0
		},
	})
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}

// ListImages names the images of pool/namespace, sorted.
func (c *Cluster) ListImages(ctx context.Context, pool, namespace string) ([]string, error) {
	var names []string
	err := c.withNamespace(ctx, pool, namespace, func(ioctx *rados.IOContext) error {
		var err error
		if names, err = rbd.GetImageNames(ioctx); err != nil {
			return failed(err, "list the images of %s", poolNS(pool, namespace))
		}
		slices.Sort(names)
		return nil
	})
	return names, err
}

// checkPoolNamespace refuses a malformed pool or namespace name.
func checkPoolNamespace(pool, namespace string) error {
	if err := checkName("pool", pool); err != nil {
		return err
	}
	if namespace != "" {
		return checkName("namespace", namespace)
	}
	return nil
}

// poolNS prints "pool" or "pool/namespace".
func poolNS(pool, namespace string) string {
	if namespace == "" {
		return pool
	}
	return pool + "/" + namespace
}

// ResizeImage sets spec's size (a positive multiple of 512). Shrinking
// discards the data past the new end, so it is refused with
// ErrShrinkRefused unless allowShrink. A gateway serving the image sees the
// new size within its SizeRefresh; an initiator after a rescan. A done ctx
// stops a shrink at the next object: the size is then unchanged but part of
// the tail may already be discarded.
func (c *Cluster) ResizeImage(ctx context.Context, spec ImageSpec, size int64, allowShrink bool) error {
	if err := checkSize(spec, size); err != nil {
		return err
	}
	return c.withImage(ctx, spec, false, func(_ *rados.IOContext, img *rbd.Image) error {
		cur, err := img.GetSize()
		if err != nil {
			return failed(err, "read the size of %s", spec)
		}
		if size < int64(cur) && !allowShrink {
			return refuse(ErrShrinkRefused, nil,
				"shrinking %s from %d to %d bytes would discard the data past the new end: confirm with allow-shrink", spec, cur, size)
		}
		if err := resizeImage(ctx, img, uint64(size), allowShrink); err != nil {
			return failed(err, "resize %s to %d bytes", spec, size)
		}
		return nil
	})
}
