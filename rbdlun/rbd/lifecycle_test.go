//go:build rbd

package rbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

// The lifecycle tests run every image management call and every refusal
// against the live cluster (RBDGW_CEPH_CONF, see rbd_test.go). Names are
// unique per run; each test removes what it made.

const lcPool2 = "rbdgw-lifecycle2" // a second rbd pool, created once, kept

func lcName(prefix string) string {
	return fmt.Sprintf("lc-%s-%d-%08x", prefix, time.Now().UnixNano()%1e6, mrand.Uint32())
}

// lcImage creates an image and removes it (with its snapshots) after the
// test; cleanups run last-registered first, so register parents first.
func lcImage(t *testing.T, cl *Cluster, spec ImageSpec, size int64, o CreateOptions) ImageSpec {
	t.Helper()
	if err := cl.CreateImage(context.Background(), spec, size, o); err != nil {
		t.Fatalf("create %s: %v", spec, err)
	}
	t.Cleanup(func() { lcDestroy(t, cl, spec) })
	return spec
}

// lcDestroy removes spec whatever state a failed test left it in.
func lcDestroy(t *testing.T, cl *Cluster, spec ImageSpec) {
	ctx := context.Background()
	snaps, err := cl.ListSnapshots(ctx, spec)
	if errors.Is(err, ErrImageNotFound) || errors.Is(err, ErrNamespaceNotFound) {
		return
	}
	for _, s := range snaps {
		cl.UnprotectSnapshot(ctx, spec, s.Name)
		cl.RemoveSnapshot(ctx, spec, s.Name)
	}
	if err := cl.RemoveImage(ctx, spec); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// wantErr fails unless err is of kind; it logs the admin's message.
func wantErr(t *testing.T, what string, err, kind error) *Error {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: got %v, want %v", what, err, kind)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: %T is not an *Error", what, err)
	}
	t.Logf("%s: %v", what, err)
	return e
}

// lcNamespace creates a namespace in testPool, removed after the test.
func lcNamespace(t *testing.T, cl *Cluster) string {
	t.Helper()
	ns := lcName("ns")
	must(t, "create namespace", cl.CreateNamespace(context.Background(), testPool, ns))
	t.Cleanup(func() { cl.RemoveNamespace(context.Background(), testPool, ns) })
	return ns
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// lcOpen opens spec as a gateway would and closes it after the test.
func lcOpen(t *testing.T, cl *Cluster, spec ImageSpec) *Backend {
	t.Helper()
	b, err := cl.Open(context.Background(), spec, Options{})
	if err != nil {
		t.Fatalf("open %s: %v", spec, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func lcWrite(t *testing.T, b *Backend, p []byte, off int64) {
	t.Helper()
	if err := b.WriteAt(context.Background(), p, off, true); err != nil {
		t.Fatalf("write %d@%d: %v", len(p), off, err)
	}
}

// lcEnsurePool2 creates the second rbd pool once (8 PGs, size 1).
func lcEnsurePool2(t *testing.T, cl *Cluster) {
	t.Helper()
	ctx := context.Background()
	cmd := fmt.Sprintf(`{"prefix":"osd pool create","pool":%q,"pg_num":8,"pgp_num":8}`, lcPool2)
	must(t, "create pool", cl.monCommand(ctx, []byte(cmd)))
	cmd = fmt.Sprintf(`{"prefix":"osd pool set","pool":%q,"var":"size","val":"1","yes_i_really_mean_it":true}`, lcPool2)
	if err := cl.monCommand(ctx, []byte(cmd)); err != nil {
		t.Log(err) // already size 1 by the cluster's default
	}
	must(t, "rbd pool init", cl.onPool(ctx, lcPool2, "", func(ioctx *rados.IOContext) error {
		if _, err := rbd.GetImageNames(ioctx); err == nil {
			return nil // initialised before
		}
		return rbd.PoolInit(ioctx, true)
	}))
}

func TestLifecycleImage(t *testing.T) {
	cl := connect(t)
	ctx := context.Background()
	spec := ImageSpec{Pool: testPool, Image: lcName("img")}
	lcImage(t, cl, spec, 16<<20, CreateOptions{ObjectSize: 1 << 20})

	info, err := cl.ImageInfo(ctx, spec)
	must(t, "info", err)
	if info.Size != 16<<20 || info.ObjectSize != 1<<20 || info.ID == "" || info.Parent != nil || info.Watchers != 0 ||
		!slices.Equal(info.Features, DefaultFeatures) || info.UsedBytes != 0 || info.ProvisionedBytes != 16<<20 ||
		len(info.Snapshots) != 0 || info.DataPool != "" || info.StripeUnit != 1<<20 || info.StripeCount != 1 {
		t.Fatalf("info of a new image: %+v", info)
	}
	wantErr(t, "create twice", cl.CreateImage(ctx, spec, 16<<20, CreateOptions{}), ErrImageExists)
	names, err := cl.ListImages(ctx, testPool, "")
	must(t, "list", err)
	if !slices.Contains(names, spec.Image) || !slices.IsSorted(names) {
		t.Fatalf("list %v lacks %s or is unsorted", names, spec.Image)
	}

	// Provisioned vs used: two 4 KiB writes in two 1 MiB objects use two
	// objects' worth, counted as rbd du does.
	b := lcOpen(t, cl, spec)
	lcWrite(t, b, random(4096), 0)
	lcWrite(t, b, random(4096), 5<<20+8192)
	info, err = cl.ImageInfo(ctx, spec)
	must(t, "info", err)
	if info.UsedBytes != 2<<20 || info.ProvisionedBytes != 16<<20 {
		t.Fatalf("used %d provisioned %d, want %d %d", info.UsedBytes, info.ProvisionedBytes, 2<<20, 16<<20)
	}
	if info.Watchers != 1 || len(info.WatcherAddrs) != 1 {
		t.Fatalf("watchers %d %v with one backend open", info.Watchers, info.WatcherAddrs)
	}
	wantErr(t, "remove while served", cl.RemoveImage(ctx, spec), ErrImageBusy)

	// Resize: grow, refused shrink, confirmed shrink; the backend sees it.
	must(t, "grow", cl.ResizeImage(ctx, spec, 32<<20, false))
	if got := b.RefreshSize(); got != 32<<20 {
		t.Fatalf("backend size after grow %d", got)
	}
	e := wantErr(t, "shrink", cl.ResizeImage(ctx, spec, 8<<20, false), ErrShrinkRefused)
	if !strings.Contains(e.Error(), "allow-shrink") {
		t.Fatalf("shrink refusal does not say how to confirm: %v", e)
	}
	must(t, "confirmed shrink", cl.ResizeImage(ctx, spec, 8<<20, true))
	if info, err = cl.ImageInfo(ctx, spec); err != nil || info.Size != 8<<20 {
		t.Fatalf("size after shrink %d %v", info.Size, err)
	}
	b.Close()
	must(t, "remove", cl.RemoveImage(ctx, spec))
	wantErr(t, "remove again", cl.RemoveImage(ctx, spec), ErrImageNotFound)
	wantErr(t, "info of removed", func() error { _, err := cl.ImageInfo(ctx, spec); return err }(), ErrImageNotFound)

	// Striping and a feature subset.
	striped := lcImage(t, cl, ImageSpec{Pool: testPool, Image: lcName("striped")}, 8<<20,
		CreateOptions{Features: []string{"layering", "exclusive-lock"}, StripeUnit: 64 << 10, StripeCount: 4})
	info, err = cl.ImageInfo(ctx, striped)
	must(t, "striped info", err)
	if info.StripeUnit != 64<<10 || info.StripeCount != 4 || !slices.Contains(info.Features, "striping") ||
		slices.Contains(info.Features, "object-map") {
		t.Fatalf("striped info %+v", info)
	}
}

func TestLifecycleBadInput(t *testing.T) {
	cl := connect(t)
	ctx := context.Background()
	ok := ImageSpec{Pool: testPool, Image: lcName("bad")}
	for _, c := range []struct {
		what string
		err  error
		kind error
	}{
		{"zero size", cl.CreateImage(ctx, ok, 0, CreateOptions{}), ErrInvalidArgument},
		{"odd size", cl.CreateImage(ctx, ok, 1000, CreateOptions{}), ErrInvalidArgument},
		{"absurd size", cl.CreateImage(ctx, ok, 1<<62, CreateOptions{}), ErrInvalidArgument},
		{"unknown feature", cl.CreateImage(ctx, ok, 1<<20, CreateOptions{Features: []string{"layering", "bogus"}}), ErrInvalidArgument},
		{"librbd-only feature", cl.CreateImage(ctx, ok, 1<<20, CreateOptions{Features: []string{"data-pool"}}), ErrInvalidArgument},
		{"fast-diff alone", cl.CreateImage(ctx, ok, 1<<20, CreateOptions{Features: []string{"exclusive-lock", "fast-diff"}}), ErrInvalidArgument},
		{"object size 3000", cl.CreateImage(ctx, ok, 1<<20, CreateOptions{ObjectSize: 3000}), ErrInvalidArgument},
		{"object size 64M", cl.CreateImage(ctx, ok, 1<<20, CreateOptions{ObjectSize: 64 << 20}), ErrInvalidArgument},
		{"stripe unit alone", cl.CreateImage(ctx, ok, 1<<20, CreateOptions{StripeUnit: 65536}), ErrInvalidArgument},
		{"stripe unit not dividing", cl.CreateImage(ctx, ok, 1<<20, CreateOptions{StripeUnit: 3 << 20, StripeCount: 2}), ErrInvalidArgument},
		{"slash in name", cl.CreateImage(ctx, ImageSpec{Pool: testPool, Image: "a/b"}, 1<<20, CreateOptions{}), ErrInvalidArgument},
		{"no pool", cl.CreateImage(ctx, ImageSpec{Image: "x"}, 1<<20, CreateOptions{}), ErrInvalidArgument},
		{"missing pool", cl.CreateImage(ctx, ImageSpec{Pool: "rbdgw-no-such-pool", Image: "x"}, 1<<20, CreateOptions{}), ErrPoolNotFound},
		{"missing data pool", cl.CreateImage(ctx, ok, 1<<20, CreateOptions{DataPool: "rbdgw-no-such-pool"}), ErrPoolNotFound},
		{"missing namespace", cl.CreateImage(ctx, ImageSpec{Pool: testPool, Namespace: "rbdgw-no-such-ns", Image: "x"}, 1<<20, CreateOptions{}), ErrNamespaceNotFound},
		{"resize missing", cl.ResizeImage(ctx, ok, 1<<20, false), ErrImageNotFound},
		{"resize to 0", cl.ResizeImage(ctx, ok, 0, true), ErrInvalidArgument},
		{"snapshot with @", cl.CreateSnapshot(ctx, ok, "a@b"), ErrInvalidArgument},
		{"empty snapshot name", cl.RemoveSnapshot(ctx, ok, ""), ErrInvalidArgument},
		{"snapshot of missing", cl.CreateSnapshot(ctx, ok, "s1"), ErrImageNotFound},
		{"flatten missing", cl.FlattenImage(ctx, ok, nil), ErrImageNotFound},
		{"negative trash delay", func() error { _, err := cl.TrashMove(ctx, ok, -time.Second); return err }(), ErrInvalidArgument},
		{"list in missing pool", func() error { _, err := cl.ListImages(ctx, "rbdgw-no-such-pool", ""); return err }(), ErrPoolNotFound},
		{"list in missing namespace", func() error { _, err := cl.ListImages(ctx, testPool, "rbdgw-no-such-ns"); return err }(), ErrNamespaceNotFound},
		{"trash list of missing namespace", func() error { _, err := cl.TrashList(ctx, testPool, "rbdgw-no-such-ns"); return err }(), ErrNamespaceNotFound},
		{"empty namespace name", cl.CreateNamespace(ctx, testPool, ""), ErrInvalidArgument},
		{"remove missing namespace", cl.RemoveNamespace(ctx, testPool, "rbdgw-no-such-ns"), ErrNamespaceNotFound},
		{"purge unknown id", cl.TrashPurge(ctx, testPool, "", "nosuchid", true), ErrImageNotFound},
		{"restore unknown id", cl.TrashRestore(ctx, testPool, "", "nosuchid", ""), ErrImageNotFound},
	} {
		wantErr(t, c.what, c.err, c.kind)
	}
	names, err := cl.ListImages(ctx, testPool, "")
	must(t, "list", err)
	if slices.Contains(names, ok.Image) {
		t.Fatalf("a refused create left %s behind", ok.Image)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := cl.CreateImage(done, ok, 1<<20, CreateOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("create with a done context: %v", err)
	}
}

func TestLifecycleSnapshots(t *testing.T) {
	cl := connect(t)
	ctx := context.Background()
	spec := lcImage(t, cl, ImageSpec{Pool: testPool, Image: lcName("snap")}, 8<<20, CreateOptions{})
	a, bdata := random(8192), random(8192)

	// A snapshot taken while a gateway serves the image and holds its lock.
	b := lcOpen(t, cl, spec)
	must(t, "lock", b.AcquireExclusiveLock(ctx))
	lcWrite(t, b, a, 4096)
	must(t, "snapshot while served", cl.CreateSnapshot(ctx, spec, "s1"))
	wantErr(t, "snapshot twice", cl.CreateSnapshot(ctx, spec, "s1"), ErrSnapshotExists)
	must(t, "another snapshot while served", cl.CreateSnapshot(ctx, spec, "tmp"))
	must(t, "remove a snapshot while served", cl.RemoveSnapshot(ctx, spec, "tmp"))
	must(t, "grow while served", cl.ResizeImage(ctx, spec, 8<<20+1<<20, false))
	must(t, "shrink back while served", cl.ResizeImage(ctx, spec, 8<<20, true))
	if owner, err := b.IsLockOwner(); err != nil || !owner {
		t.Fatalf("the gateway lost its lock to management calls: %v %v", owner, err)
	}
	lcWrite(t, b, bdata, 4096)
	wantErr(t, "rollback while served", cl.RollbackSnapshot(ctx, spec, "s1"), ErrImageBusy)
	b.Close()

	must(t, "rollback", cl.RollbackSnapshot(ctx, spec, "s1"))
	wantErr(t, "rollback to missing", cl.RollbackSnapshot(ctx, spec, "nope"), ErrSnapshotNotFound)
	b = lcOpen(t, cl, spec)
	if got := mustRead(t, b, 4096, 8192); !bytes.Equal(got, a) {
		t.Fatal("rollback did not restore the snapshot's data")
	}
	b.Close()

	snaps, err := cl.ListSnapshots(ctx, spec)
	must(t, "list", err)
	if len(snaps) != 1 || snaps[0].Name != "s1" || snaps[0].Protected || snaps[0].Size != 8<<20 || snaps[0].ID == 0 {
		t.Fatalf("snapshots %+v", snaps)
	}
	must(t, "protect", cl.ProtectSnapshot(ctx, spec, "s1"))
	must(t, "protect again", cl.ProtectSnapshot(ctx, spec, "s1"))
	if snaps, _ = cl.ListSnapshots(ctx, spec); !snaps[0].Protected {
		t.Fatalf("not protected: %+v", snaps)
	}
	e := wantErr(t, "remove protected", cl.RemoveSnapshot(ctx, spec, "s1"), ErrSnapshotProtected)
	if want := fmt.Sprintf("snapshot %s@s1 is protected: unprotect it first", spec); !strings.Contains(e.Error(), want) {
		t.Fatalf("message %q lacks %q", e, want)
	}
	must(t, "second snapshot", cl.CreateSnapshot(ctx, spec, "s2"))
	e = wantErr(t, "remove image with snapshots", cl.RemoveImage(ctx, spec), ErrImageHasSnapshots)
	if !strings.Contains(e.Error(), "s1, s2") {
		t.Fatalf("message %q does not name the snapshots", e)
	}
	info, err := cl.ImageInfo(ctx, spec)
	must(t, "info", err)
	if len(info.Snapshots) != 2 || !info.Snapshots[0].Protected || info.Snapshots[1].Protected {
		t.Fatalf("info snapshots %+v", info.Snapshots)
	}
	must(t, "unprotect", cl.UnprotectSnapshot(ctx, spec, "s1"))
	must(t, "unprotect again", cl.UnprotectSnapshot(ctx, spec, "s1"))
	must(t, "remove s1", cl.RemoveSnapshot(ctx, spec, "s1"))
	must(t, "remove s2", cl.RemoveSnapshot(ctx, spec, "s2"))
	wantErr(t, "remove missing", cl.RemoveSnapshot(ctx, spec, "s1"), ErrSnapshotNotFound)
	wantErr(t, "protect missing", cl.ProtectSnapshot(ctx, spec, "s1"), ErrSnapshotNotFound)
	must(t, "remove image", cl.RemoveImage(ctx, spec))
}

func TestLifecycleClones(t *testing.T) {
	cl := connect(t)
	ctx := context.Background()
	lcEnsurePool2(t, cl)
	ns := lcNamespace(t, cl)

	parent := lcImage(t, cl, ImageSpec{Pool: testPool, Image: lcName("parent")}, 8<<20, CreateOptions{ObjectSize: 1 << 20})
	data := random(8 << 20)
	b := lcOpen(t, cl, parent)
	lcWrite(t, b, data, 0)
	b.Close()
	must(t, "snapshot", cl.CreateSnapshot(ctx, parent, "gold"))

	children := []ImageSpec{
		{Pool: testPool, Image: lcName("child")},
		{Pool: testPool, Namespace: ns, Image: lcName("child-ns")},
		{Pool: lcPool2, Image: lcName("child-pool2")},
	}
	e := wantErr(t, "clone unprotected", cl.CloneImage(ctx, parent, "gold", children[0], CreateOptions{}), ErrParentNotProtected)
	if !strings.Contains(e.Error(), "protect it") {
		t.Fatalf("message %q does not say to protect", e)
	}
	wantErr(t, "clone missing snapshot", cl.CloneImage(ctx, parent, "nope", children[0], CreateOptions{}), ErrSnapshotNotFound)
	must(t, "protect", cl.ProtectSnapshot(ctx, parent, "gold"))
	wantErr(t, "clone into missing namespace", cl.CloneImage(ctx, parent, "gold",
		ImageSpec{Pool: testPool, Namespace: "rbdgw-no-such-ns", Image: "x"}, CreateOptions{}), ErrNamespaceNotFound)
	for _, ch := range children {
		must(t, "clone "+ch.String(), cl.CloneImage(ctx, parent, "gold", ch, CreateOptions{}))
		t.Cleanup(func() { lcDestroy(t, cl, ch) })
	}
	wantErr(t, "clone onto existing", cl.CloneImage(ctx, parent, "gold", children[0], CreateOptions{}), ErrImageExists)

	got, err := cl.ListChildren(ctx, parent, "gold")
	must(t, "list children", err)
	sortSpecs(got)
	want := slices.Clone(children)
	sortSpecs(want)
	if !slices.Equal(got, want) {
		t.Fatalf("children %v, want %v", got, want)
	}
	info, err := cl.ImageInfo(ctx, children[2])
	must(t, "child info", err)
	if info.Parent == nil || info.Parent.Spec != parent || info.Parent.Snapshot != "gold" || info.Parent.Overlap != 8<<20 ||
		info.ObjectSize != 1<<20 || info.UsedBytes != 0 {
		t.Fatalf("clone info %+v parent %+v", info, info.Parent)
	}

	e = wantErr(t, "unprotect with clones", cl.UnprotectSnapshot(ctx, parent, "gold"), ErrImageHasChildren)
	if len(e.Children) != 3 || !strings.Contains(e.Error(), children[2].String()) {
		t.Fatalf("refusal does not list the clones: %v %v", e, e.Children)
	}
	wantErr(t, "remove protected parent snapshot", cl.RemoveSnapshot(ctx, parent, "gold"), ErrSnapshotProtected)
	e = wantErr(t, "remove parent", cl.RemoveImage(ctx, parent), ErrImageHasChildren)
	if len(e.Children) != 3 {
		t.Fatalf("remove refusal lists %v", e.Children)
	}

	// Flatten: a cancelled one leaves the clone a clone; a full one reports
	// growing progress and detaches the clone, which keeps the data.
	cctx, cancel := context.WithCancel(ctx)
	err = cl.FlattenImage(cctx, children[1], func(done, total uint64) { cancel() })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled flatten: %v", err)
	}
	if info, _ := cl.ImageInfo(ctx, children[1]); info.Parent == nil {
		t.Fatal("a cancelled flatten detached the clone")
	}
	var mu sync.Mutex
	var calls [][2]uint64
	must(t, "flatten", cl.FlattenImage(ctx, children[2], func(done, total uint64) {
		mu.Lock()
		calls = append(calls, [2]uint64{done, total})
		mu.Unlock()
	}))
	t.Logf("flatten progress: %v", calls)
	if len(calls) < 2 || calls[len(calls)-1][0] != calls[len(calls)-1][1] {
		t.Fatalf("flatten progress %v: want several calls ending at total", calls)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i][0] < calls[i-1][0] || calls[i][1] != calls[0][1] {
			t.Fatalf("flatten progress not growing: %v", calls)
		}
	}
	info, err = cl.ImageInfo(ctx, children[2])
	must(t, "flattened info", err)
	if info.Parent != nil || info.UsedBytes != 8<<20 {
		t.Fatalf("after flatten parent %+v used %d", info.Parent, info.UsedBytes)
	}
	fb := lcOpen(t, cl, children[2])
	if !bytes.Equal(mustRead(t, fb, 0, 8<<20), data) {
		t.Fatal("flattened clone lost the parent's data")
	}
	fb.Close()
	wantErr(t, "flatten a non-clone", cl.FlattenImage(ctx, children[2], nil), ErrInvalidArgument)

	// A flatten while a gateway serves the clone and holds its lock: librbd
	// hands it to the lock owner, and the served data stays the same.
	sb := lcOpen(t, cl, children[0])
	must(t, "lock", sb.AcquireExclusiveLock(ctx))
	must(t, "flatten while served", cl.FlattenImage(ctx, children[0], nil))
	if info, err := cl.ImageInfo(ctx, children[0]); err != nil || info.Parent != nil {
		t.Fatalf("flattened while served: parent %+v %v", info.Parent, err)
	}
	if !bytes.Equal(mustRead(t, sb, 0, 8<<20), data) {
		t.Fatal("data changed under the gateway during flatten")
	}
	sb.Close()

	// With the clones gone the snapshot and the parent can go.
	for _, ch := range children[:2] {
		must(t, "remove clone", cl.RemoveImage(ctx, ch))
	}
	if got, err := cl.ListChildren(ctx, parent, "gold"); err != nil || len(got) != 0 {
		t.Fatalf("children after removal %v %v", got, err)
	}
	must(t, "unprotect", cl.UnprotectSnapshot(ctx, parent, "gold"))
	must(t, "remove snapshot", cl.RemoveSnapshot(ctx, parent, "gold"))
	must(t, "remove parent", cl.RemoveImage(ctx, parent))
	must(t, "remove namespace", cl.RemoveNamespace(ctx, testPool, ns))
}

func sortSpecs(s []ImageSpec) {
	slices.SortFunc(s, func(a, b ImageSpec) int { return strings.Compare(a.String(), b.String()) })
}

// countdownCtx turns done after left calls of Err: a way to cancel an
// operation between two of its progress steps.
type countdownCtx struct {
	context.Context
	mu   sync.Mutex
	left int
}

func (c *countdownCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.left <= 0 {
		return context.Canceled
	}
	c.left--
	return nil
}

func TestLifecycleCopy(t *testing.T) {
	cl := connect(t)
	ctx := context.Background()
	ns := lcNamespace(t, cl)
	src := lcImage(t, cl, ImageSpec{Pool: testPool, Image: lcName("src")}, 8<<20, CreateOptions{ObjectSize: 1 << 20})
	// Data in four objects, and zeros written into a fifth: the copy
	// reads five extents and writes four.
	data := random(64 << 10)
	b := lcOpen(t, cl, src)
	for off := int64(0); off < 8<<20; off += 2 << 20 {
		lcWrite(t, b, data, off)
	}
	lcWrite(t, b, make([]byte, 64<<10), 1<<20)
	b.Close()

	dst := ImageSpec{Pool: testPool, Namespace: ns, Image: lcName("dst")}
	must(t, "copy", cl.CopyImage(ctx, src, dst, CreateOptions{}))
	t.Cleanup(func() { lcDestroy(t, cl, dst) })
	info, err := cl.ImageInfo(ctx, dst)
	must(t, "info", err)
	if info.Size != 8<<20 || info.ObjectSize != 1<<20 || info.UsedBytes != 4<<20 {
		t.Fatalf("copy info %+v (want thin: four 1 MiB objects used)", info)
	}
	db := lcOpen(t, cl, dst)
	sb := lcOpen(t, cl, src)
	if !bytes.Equal(mustRead(t, db, 0, 8<<20), mustRead(t, sb, 0, 8<<20)) {
		t.Fatal("copy has other data")
	}
	sb.Close()
	db.Close()
	wantErr(t, "copy onto existing", cl.CopyImage(ctx, src, dst, CreateOptions{}), ErrImageExists)

	// A copy cancelled part way (the context turns done during the
	// progress calls) returns the context's error and leaves no image.
	count := &countdownCtx{Context: ctx, left: 1 << 30}
	probe := ImageSpec{Pool: testPool, Image: lcName("probe")}
	t.Cleanup(func() { lcDestroy(t, cl, probe) })
	must(t, "counted copy", cl.CopyImage(count, src, probe, CreateOptions{ObjectSize: 1 << 20}))
	must(t, "remove counted copy", cl.RemoveImage(ctx, probe))
	calls := 1<<30 - count.left
	t.Logf("a copy checks its context %d times; cancelling at check %d", calls, calls-3)
	half := ImageSpec{Pool: testPool, Image: lcName("half")}
	t.Cleanup(func() { lcDestroy(t, cl, half) }) // should the refusal fail
	err = cl.CopyImage(&countdownCtx{Context: ctx, left: calls - 3}, src, half, CreateOptions{ObjectSize: 1 << 20})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("copy cancelled after %d of %d context checks: %v", calls-3, calls, err)
	}
	_, err = cl.ImageInfo(ctx, half)
	wantErr(t, "cancelled copy left behind", err, ErrImageNotFound)
	wantErr(t, "copy missing", cl.CopyImage(ctx, ImageSpec{Pool: testPool, Image: lcName("none")}, dst, CreateOptions{}), ErrImageNotFound)
	must(t, "remove copy", cl.RemoveImage(ctx, dst))
	must(t, "remove namespace", cl.RemoveNamespace(ctx, testPool, ns))
}

func TestLifecycleTrash(t *testing.T) {
	cl := connect(t)
	ctx := context.Background()
	spec := lcImage(t, cl, ImageSpec{Pool: testPool, Image: lcName("trash")}, 4<<20, CreateOptions{})
	t.Cleanup(func() { // entries a failed test left in the trash
		list, _ := cl.TrashList(ctx, testPool, "")
		for _, e := range list {
			if strings.HasPrefix(e.Name, spec.Image) {
				cl.TrashPurge(ctx, testPool, "", e.ID, true)
			}
		}
	})
	b := lcOpen(t, cl, spec)
	_, err := cl.TrashMove(ctx, spec, time.Hour)
	wantErr(t, "trash while served", err, ErrImageBusy)
	b.Close()

	info, err := cl.ImageInfo(ctx, spec)
	must(t, "info", err)
	before := time.Now()
	id, err := cl.TrashMove(ctx, spec, time.Hour)
	must(t, "trash", err)
	if id != info.ID {
		t.Fatalf("trash id %q, image id %q", id, info.ID)
	}
	if names, _ := cl.ListImages(ctx, testPool, ""); slices.Contains(names, spec.Image) {
		t.Fatal("trashed image still listed")
	}
	list, err := cl.TrashList(ctx, testPool, "")
	must(t, "trash list", err)
	i := slices.IndexFunc(list, func(e TrashEntry) bool { return e.ID == id })
	if i < 0 {
		t.Fatalf("trash list %+v lacks %s", list, id)
	}
	if e := list[i]; e.Name != spec.Image || e.Source != "user" || e.DeferredUntil.Before(before.Add(time.Hour-2*time.Second)) {
		t.Fatalf("trash entry %+v", e)
	}
	e := wantErr(t, "purge unexpired", cl.TrashPurge(ctx, testPool, "", id, false), ErrTrashNotExpired)
	if !strings.Contains(e.Error(), "until "+list[i].DeferredUntil.UTC().Format(time.RFC3339)) {
		t.Fatalf("message %q does not say until when", e)
	}

	// Restore under a new name, while the old name is taken again.
	lcImage(t, cl, spec, 4<<20, CreateOptions{})
	wantErr(t, "restore onto taken name", cl.TrashRestore(ctx, testPool, "", id, ""), ErrImageExists)
	renamed := ImageSpec{Pool: testPool, Image: spec.Image + "-restored"}
	must(t, "restore", cl.TrashRestore(ctx, testPool, "", id, renamed.Image))
	t.Cleanup(func() { lcDestroy(t, cl, renamed) })
	if info2, err := cl.ImageInfo(ctx, renamed); err != nil || info2.ID != id {
		t.Fatalf("restored image %+v %v", info2, err)
	}

	// Expired entries purge without force; unexpired ones with it.
	id, err = cl.TrashMove(ctx, renamed, 0)
	must(t, "trash again", err)
	must(t, "purge expired", cl.TrashPurge(ctx, testPool, "", id, false))
	id, err = cl.TrashMove(ctx, spec, time.Hour)
	must(t, "trash third", err)
	must(t, "forced purge", cl.TrashPurge(ctx, testPool, "", id, true))
	if list, _ := cl.TrashList(ctx, testPool, ""); slices.ContainsFunc(list, func(e TrashEntry) bool { return e.ID == id }) {
		t.Fatal("purged entry still listed")
	}
}

func TestLifecycleNamespaces(t *testing.T) {
	cl := connect(t)
	ctx := context.Background()
	ns := lcNamespace(t, cl)
	wantErr(t, "create twice", cl.CreateNamespace(ctx, testPool, ns), ErrNamespaceExists)
	list, err := cl.ListNamespaces(ctx, testPool)
	must(t, "list", err)
	if !slices.Contains(list, ns) {
		t.Fatalf("namespaces %v lack %s", list, ns)
	}
	spec := lcImage(t, cl, ImageSpec{Pool: testPool, Namespace: ns, Image: lcName("img")}, 4<<20, CreateOptions{})
	if names, err := cl.ListImages(ctx, testPool, ns); err != nil || !slices.Equal(names, []string{spec.Image}) {
		t.Fatalf("images in %s: %v %v", ns, names, err)
	}
	e := wantErr(t, "remove with an image", cl.RemoveNamespace(ctx, testPool, ns), ErrNamespaceNotEmpty)
	if !strings.Contains(e.Error(), spec.Image) {
		t.Fatalf("message %q does not name the image", e)
	}
	id, err := cl.TrashMove(ctx, spec, time.Hour)
	must(t, "trash", err)
	e = wantErr(t, "remove with a trash entry", cl.RemoveNamespace(ctx, testPool, ns), ErrNamespaceNotEmpty)
	if !strings.Contains(e.Error(), "1 trash entries") {
		t.Fatalf("message %q does not mention the trash", e)
	}
	must(t, "purge", cl.TrashPurge(ctx, testPool, ns, id, true))
	must(t, "remove", cl.RemoveNamespace(ctx, testPool, ns))
	wantErr(t, "remove again", cl.RemoveNamespace(ctx, testPool, ns), ErrNamespaceNotFound)
	_, err = cl.ListImages(ctx, testPool, ns)
	wantErr(t, "list removed", err, ErrNamespaceNotFound)
}

func TestLifecycleRequireFeatures(t *testing.T) {
	cl := connect(t)
	plain := lcImage(t, cl, ImageSpec{Pool: testPool, Image: lcName("nolock")}, 4<<20, CreateOptions{Features: []string{"layering"}})
	e := wantErr(t, "no exclusive-lock", lcOpen(t, cl, plain).RequireFeatures(), ErrFeatureMissing)
	if want := "rbd feature enable " + plain.String() + " exclusive-lock"; !strings.Contains(e.Error(), want) {
		t.Fatalf("message %q lacks %q", e, want)
	}
	full := lcImage(t, cl, ImageSpec{Pool: testPool, Image: lcName("lock")}, 4<<20, CreateOptions{})
	must(t, "default features", lcOpen(t, cl, full).RequireFeatures())
}

// TestLifecycleConcurrent: management calls from many goroutines share the
// cluster's connection; racing creates of one name give exactly one image.
func TestLifecycleConcurrent(t *testing.T) {
	cl := connect(t)
	ctx := context.Background()
	shared := ImageSpec{Pool: testPool, Image: lcName("race")}
	t.Cleanup(func() { lcDestroy(t, cl, shared) })
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	raced := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raced[i] = cl.CreateImage(ctx, shared, 1<<20, CreateOptions{})
			spec := ImageSpec{Pool: testPool, Image: lcName(fmt.Sprintf("conc%d", i))}
			errs[i] = errors.Join(
				cl.CreateImage(ctx, spec, 4<<20, CreateOptions{}),
				func() error { _, err := cl.ImageInfo(ctx, spec); return err }(),
				cl.ResizeImage(ctx, spec, 8<<20, false),
				func() error { _, err := cl.ListImages(ctx, testPool, ""); return err }(),
				cl.RemoveImage(ctx, spec),
			)
		}()
	}
	wg.Wait()
	created := 0
	for i := range n {
		must(t, fmt.Sprintf("goroutine %d", i), errs[i])
		switch {
		case raced[i] == nil:
			created++
		case !errors.Is(raced[i], ErrImageExists):
			t.Fatalf("racing create: %v", raced[i])
		}
	}
	if created != 1 {
		t.Fatalf("%d racing creates of one name succeeded", created)
	}
}

func TestLifecycleDataPool(t *testing.T) {
	cl := connect(t)
	ctx := context.Background()
	lcEnsurePool2(t, cl)
	spec := lcImage(t, cl, ImageSpec{Pool: testPool, Image: lcName("datapool")}, 4<<20, CreateOptions{DataPool: lcPool2})
	b := lcOpen(t, cl, spec)
	lcWrite(t, b, random(4096), 0)
	b.Close()
	info, err := cl.ImageInfo(ctx, spec)
	must(t, "info", err)
	if info.DataPool != lcPool2 || !slices.Contains(info.Features, "data-pool") || info.UsedBytes != 4<<20 {
		t.Fatalf("data pool info %+v", info)
	}
}

// TestLifecycleTrashedWithSnapshots: an image may go to the trash with its
// snapshots, but not be purged before they are gone.
func TestLifecycleTrashedWithSnapshots(t *testing.T) {
	cl := connect(t)
	ctx := context.Background()
	spec := lcImage(t, cl, ImageSpec{Pool: testPool, Image: lcName("trashsnap")}, 4<<20, CreateOptions{})
	must(t, "snapshot", cl.CreateSnapshot(ctx, spec, "keep"))
	id, err := cl.TrashMove(ctx, spec, 0)
	must(t, "trash with a snapshot", err)
	wantErr(t, "purge with a snapshot", cl.TrashPurge(ctx, testPool, "", id, true), ErrImageHasSnapshots)
	must(t, "restore", cl.TrashRestore(ctx, testPool, "", id, ""))
}

// TestLifecycleAfterFence: when another gateway breaks a lock held on this
// gateway's shared connection and blocklists it, management calls replace
// the connection and go on working.
func TestLifecycleAfterFence(t *testing.T) {
	ctx := context.Background()
	cl := connect(t)
	other := lcImage(t, cl, ImageSpec{Pool: testPool, Image: lcName("bystander")}, 4<<20, CreateOptions{})
	spec := lcImage(t, cl, ImageSpec{Pool: testPool, Image: lcName("fenced")}, 4<<20, CreateOptions{})
	b := lcOpen(t, cl, spec)
	must(t, "lock", b.AcquireExclusiveLock(ctx))

	cl2 := connect(t)
	b2, err := cl2.Open(ctx, spec, Options{})
	must(t, "open on the other gateway", err)
	defer b2.Close()
	owners, err := b2.LockOwners()
	if err != nil || len(owners) != 1 {
		t.Fatalf("owners %v %v", owners, err)
	}
	must(t, "break lock with blocklisting", b2.BreakLock(ctx, owners[0], true))
	if err := b.WriteAt(ctx, random(4096), 0, false); !errors.Is(err, ErrFenced) {
		t.Fatalf("the shared connection is not fenced: %v", err)
	}

	must(t, "snapshot after fence", cl.CreateSnapshot(ctx, other, "s1"))
	info, err := cl.ImageInfo(ctx, other)
	must(t, "info after fence", err)
	if len(info.Snapshots) != 1 {
		t.Fatalf("snapshots %+v", info.Snapshots)
	}
}
