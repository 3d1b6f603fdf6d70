package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rbdgw/rbdgw/config"
)

// Disks are addressed as /disks/{pool}/{image}: a disk's name is
// "pool/image", as in ceph-iscsi. A disk whose name has no "/" (a file
// disk from a YAML file) is /disks/_/{name}.
const noPool = "_"

func diskName(r *http.Request) string {
	if p := r.PathValue("pool"); p != noPool {
		return p + "/" + r.PathValue("image")
	}
	return r.PathValue("image")
}

func diskIndex(c *config.Config, name string) (int, error) {
	for i := range c.Disks {
		if c.Disks[i].Name == name {
			return i, nil
		}
	}
	return 0, notFound("no disk %s", name)
}

// diskUsers lists the targets mapping a disk, as "iqn (LUN n)".
func diskUsers(c *config.Config, name string) []string {
	var users []string
	for _, t := range c.Targets {
		for _, m := range t.LUNs {
			if m.Disk == name {
				users = append(users, fmt.Sprintf("%s (LUN %d)", t.IQN, m.LUNID))
			}
		}
	}
	return users
}

const diskPath = "/disks/{pool}/{image}"

func (a *API) diskRoutes() {
	a.view("GET /disks", func(_ *http.Request, c *config.Config, _ int64) (any, error) {
		return nonNil(c.Disks), nil
	})
	a.mux.HandleFunc("POST "+prefix+"/disks", a.createDisks)
	a.mux.HandleFunc("GET "+prefix+diskPath, a.diskInfo)
	a.mux.HandleFunc("PATCH "+prefix+diskPath, a.resizeDisk)
	a.change("PATCH "+diskPath+"/controls", http.StatusOK, func(r *http.Request) (mutation, error) {
		patch, err := decodePatch(r)
		if err != nil {
			return nil, err
		}
		return onDisk(r, func(d *config.Disk) (any, error) {
			if err := applyPatch(&d.Controls, patch, "controls"); err != nil {
				return nil, err
			}
			return d.Controls, nil
		}), nil
	})
	// PUT .../failback {"failback": "preferred", "preferred_gateway": "gw-a"}
	// sets where the disk's LU should live in a cluster; the gateways apply
	// it live.
	a.change("PUT "+diskPath+"/failback", http.StatusOK, func(r *http.Request) (mutation, error) {
		var req struct {
			Failback         string `json:"failback"`
			PreferredGateway string `json:"preferred_gateway"`
		}
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return onDisk(r, func(d *config.Disk) (any, error) {
			d.Failback, d.PreferredGateway = req.Failback, req.PreferredGateway
			return *d, nil
		}), nil
	})
	a.mux.HandleFunc("DELETE "+prefix+diskPath, func(w http.ResponseWriter, r *http.Request) {
		keep, _ := strconv.ParseBool(r.URL.Query().Get("keep_image"))
		a.removeDisk(w, r, func(ctx context.Context, s ImageService, img Image) (any, error) {
			if keep {
				return nil, nil
			}
			return nil, retryBusy(ctx, func() error { return s.RemoveImage(ctx, img) })
		})
	})
	a.mux.HandleFunc("POST "+prefix+diskPath+"/trash", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Delay string `json:"delay,omitempty"`
		}
		if err := decode(r, &req); err != nil {
			writeError(w, err)
			return
		}
		var delay time.Duration
		if req.Delay != "" {
			var err error
			if delay, err = time.ParseDuration(req.Delay); err != nil || delay < 0 {
				writeError(w, badRequest("delay", "delay %q: want a duration such as 0s or 24h", req.Delay))
				return
			}
		}
		a.removeDisk(w, r, func(ctx context.Context, s ImageService, img Image) (any, error) {
			var id string
			err := retryBusy(ctx, func() (err error) { id, err = s.TrashMove(ctx, img, delay); return err })
			return map[string]string{"id": id}, err
		})
	})
	a.mux.HandleFunc("GET "+prefix+diskPath+"/snapshots", func(w http.ResponseWriter, r *http.Request) {
		a.diskImageCall(w, r, http.StatusOK, func(ctx context.Context, s ImageService, img Image) (any, error) {
			l, err := s.ListSnapshots(ctx, img)
			return nonNil(l), err
		})
	})
	a.mux.HandleFunc("POST "+prefix+diskPath+"/snapshots", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Name string `json:"name"`
		}
		if err := decode(r, &req); err != nil {
			writeError(w, err)
			return
		}
		if req.Name == "" || strings.ContainsAny(req.Name, "/@ \t\n") {
			writeError(w, badRequest("name", "snapshot name %q: want a non-empty name without '/', '@' or spaces", req.Name))
			return
		}
		a.snapshotOp(w, r, req.Name, SnapCreate)
	})
	a.mux.HandleFunc("DELETE "+prefix+diskPath+"/snapshots/{snap}", func(w http.ResponseWriter, r *http.Request) {
		a.snapshotOp(w, r, r.PathValue("snap"), SnapRemove)
	})
	a.mux.HandleFunc("POST "+prefix+diskPath+"/snapshots/{snap}/{op}", func(w http.ResponseWriter, r *http.Request) {
		op := SnapshotOp(r.PathValue("op"))
		switch op {
		case SnapRollback, SnapProtect, SnapUnprotect:
		default:
			writeError(w, notFound("no snapshot action %q: want rollback, protect or unprotect", op))
			return
		}
		a.snapshotOp(w, r, r.PathValue("snap"), op)
	})
	a.mux.HandleFunc("POST "+prefix+diskPath+"/flatten", func(w http.ResponseWriter, r *http.Request) {
		a.diskImageCall(w, r, http.StatusOK, func(ctx context.Context, s ImageService, img Image) (any, error) {
			return nil, s.FlattenImage(ctx, img)
		})
	})
}

func (a *API) snapshotOp(w http.ResponseWriter, r *http.Request, snap string, op SnapshotOp) {
	status := http.StatusOK
	if op == SnapCreate {
		status = http.StatusCreated
	}
	a.diskImageCall(w, r, status, func(ctx context.Context, s ImageService, img Image) (any, error) {
		return map[string]string{"snapshot": snap, "done": string(op)}, s.Snapshot(ctx, img, snap, op)
	})
}

// diskImageCall runs an image operation on the RBD image of a configured
// disk.
func (a *API) diskImageCall(w http.ResponseWriter, r *http.Request, status int, op func(context.Context, ImageService, Image) (any, error)) {
	c, i, ok := a.currentDisk(w, r)
	if !ok {
		return
	}
	img, ok := rbdImage(&c.Disks[i])
	if !ok {
		writeError(w, &Error{Status: http.StatusBadRequest, Msg: c.Disks[i].Name + ": " + errNoImage.Error()})
		return
	}
	a.imageCall(w, r, status, func(ctx context.Context, s ImageService) (any, error) { return op(ctx, s, img) })
}

// currentDisk reads the configuration and finds the {pool}/{image} disk
// in it, answering the request itself when it cannot.
func (a *API) currentDisk(w http.ResponseWriter, r *http.Request) (config.Config, int, bool) {
	c, _, err := a.opts.Store.Get(r.Context())
	if err == nil {
		var i int
		if i, err = diskIndex(&c, diskName(r)); err == nil {
			return c, i, true
		}
	}
	writeError(w, err)
	return c, 0, false
}

// diskInfo shows a disk's configuration, its LUN maps and, for RBD, the
// image and its snapshots.
func (a *API) diskInfo(w http.ResponseWriter, r *http.Request) {
	c, i, ok := a.currentDisk(w, r)
	if !ok {
		return
	}
	d := c.Disks[i]
	out := map[string]any{"disk": d, "mapped_to": nonNil(diskUsers(&c, d.Name))}
	if img, ok := rbdImage(&d); ok && a.opts.Images != nil {
		ctx, cancel := context.WithTimeout(r.Context(), imageOpTimeout)
		defer cancel()
		if info, err := a.opts.Images.ImageInfo(ctx, img); err != nil {
			out["image_error"] = err.Error()
		} else {
			out["image"] = info
		}
		if snaps, err := a.opts.Images.ListSnapshots(ctx, img); err == nil {
			out["snapshots"] = nonNil(snaps)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// createDiskRequest is POST /disks. An RBD disk (the default) is named
// "pool/image"; Backend "file:<path>" makes a file-backed one.
type createDiskRequest struct {
	Pool      string `json:"pool"`
	Image     string `json:"image"`
	Namespace string `json:"namespace,omitempty"`
	// Name overrides the disk name (file disks only).
	Name string      `json:"name,omitempty"`
	Size config.Size `json:"size"`
	// Count > 1 creates images <image>1 .. <image><count>.
	Count int    `json:"count,omitempty"`
	WWN   string `json:"wwn,omitempty"`
	// Clone is "pool/image@snap": the new image is a clone of it.
	Clone      string                     `json:"clone,omitempty"`
	Backend    string                     `json:"backend,omitempty"`
	BlockSize  uint32                     `json:"block_size,omitempty"`
	WriteCache bool                       `json:"write_cache,omitempty"`
	ReadOnly   bool                       `json:"read_only,omitempty"`
	Controls   map[string]json.RawMessage `json:"controls,omitempty"`
}

// maxCount bounds count=: a typo must not create a million images.
const maxCount = 256

// plan turns the request into the disks to add and the images to create.
func (q *createDiskRequest) plan() ([]config.Disk, []Image, error) {
	count := q.Count
	if count == 0 {
		count = 1
	}
	if count < 1 || count > maxCount {
		return nil, nil, badRequest("count", "count %d: want 1..%d", q.Count, maxCount)
	}
	if count > 1 && q.WWN != "" {
		return nil, nil, badRequest("wwn", "a WWN names one disk; it cannot go with count %d", count)
	}
	file := strings.HasPrefix(q.Backend, "file:")
	if q.Backend != "" && !file {
		return nil, nil, badRequest("backend", "backend %q: give pool= and image= for RBD, or file:<path>", q.Backend)
	}
	if file && (count > 1 || q.Clone != "") {
		return nil, nil, badRequest("backend", "count and clone need RBD images")
	}
	if !file && (q.Pool == "" || q.Image == "") {
		return nil, nil, badRequest("pool", "an RBD disk needs pool and image")
	}
	if !file && q.Name != "" {
		return nil, nil, badRequest("name", "an RBD disk is named pool/image; name is for file disks")
	}
	var disks []config.Disk
	var imgs []Image
	for n := 1; n <= count; n++ {
		img := Image{Pool: q.Pool, Namespace: q.Namespace, Name: q.Image}
		if count > 1 {
			img.Name += strconv.Itoa(n)
		}
		name, backend := img.String(), "rbd:"+img.String()
		if file {
			name, backend = q.Name, q.Backend
			if name == "" {
				name = img.String()
			}
		}
		d := config.NewDisk(name, backend, q.Size)
		d.WWN, d.WriteCache, d.ReadOnly = q.WWN, q.WriteCache, q.ReadOnly
		if q.BlockSize != 0 {
			d.BlockSize = q.BlockSize
		}
		if err := applyPatch(&d.Controls, q.Controls, "controls"); err != nil {
			return nil, nil, err
		}
		disks = append(disks, d)
		if !file {
			imgs = append(imgs, img)
		}
	}
	return disks, imgs, nil
}

// addDisks is the mutation that records new disks.
func addDisks(disks []config.Disk) mutation {
	return func(c *config.Config) (any, error) {
		for _, d := range disks {
			if _, ok := c.Disk(d.Name); ok {
				return nil, conflict("disk %s already exists", d.Name)
			}
		}
		c.Disks = append(c.Disks, disks...)
		return disks, nil
	}
}

// createDisks creates the images, then records the disks in one store
// Update. The change is checked against the current configuration first,
// so a refused one creates no image; images created for an update that
// then fails are removed again.
func (a *API) createDisks(w http.ResponseWriter, r *http.Request) {
	var req createDiskRequest
	if err := decode(r, &req); err != nil {
		writeError(w, err)
		return
	}
	disks, imgs, err := req.plan()
	if err != nil {
		writeError(w, err)
		return
	}
	if path, ok := strings.CutPrefix(req.Backend, "file:"); ok {
		// The gateways open file images only inside their image roots;
		// refuse here what they would refuse, before anything is written.
		roots := a.opts.ImageRoots
		if len(roots) == 0 {
			roots = []string{"/nonexistent-image-root"} // relative paths only
		}
		if _, _, err := config.LocateImage(roots, path); err != nil {
			writeError(w, badRequest("backend", "%v", err))
			return
		}
	}
	var parent Image
	var snap string
	if req.Clone != "" {
		if parent, snap, err = parseSnapSpec(req.Clone); err != nil {
			writeError(w, badRequest("clone", "clone %q: %v", req.Clone, err))
			return
		}
	}
	cur, _, err := a.opts.Store.Get(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	if req.Clone != "" && disks[0].Size == 0 {
		// A clone's size is its parent's unless asked for more; take a
		// placeholder for the dry run and the real size once it exists.
		disks[0].Size = config.DefaultBlockSize
	}
	next := cur.Clone()
	if _, err := addDisks(disks)(&next); err != nil {
		writeError(w, err)
		return
	}
	if err := config.PrepareUpdate(cur, &next); err != nil {
		writeError(w, err)
		return
	}
	var created []Image
	undo := func() {
		for _, img := range created {
			if err := a.opts.Images.RemoveImage(context.WithoutCancel(r.Context()), img); err != nil {
				a.log.Error("could not remove an image created for a refused change", "image", img.String(), "err", err)
			}
		}
	}
	if len(imgs) > 0 {
		s, ctx, cancel, err := a.imagesFor(r)
		if err != nil {
			writeError(w, err)
			return
		}
		defer cancel()
		for i, img := range imgs {
			if req.Clone != "" {
				err = a.cloneTo(ctx, s, parent, snap, img, &disks[i])
			} else {
				err = s.CreateImage(ctx, img, int64(disks[i].Size))
			}
			if err != nil {
				undo()
				writeError(w, err)
				return
			}
			created = append(created, img)
		}
	}
	v, epoch, err := a.apply(r.Context(), addDisks(disks))
	if err != nil {
		undo()
		writeError(w, err)
		return
	}
	a.log.Info("disks created", "count", len(disks), "first", disks[0].Name, "epoch", epoch)
	writeJSON(w, http.StatusCreated, v)
}

// cloneTo clones parent@snap to img and sets d's size to the clone's (or
// grows the clone to d's size when that is larger).
func (a *API) cloneTo(ctx context.Context, s ImageService, parent Image, snap string, img Image, d *config.Disk) error {
	if err := s.CloneImage(ctx, parent, snap, img); err != nil {
		return err
	}
	info, err := s.ImageInfo(ctx, img)
	if err == nil && int64(d.Size) > info.Size {
		err = s.ResizeImage(ctx, img, int64(d.Size), false)
		info.Size = int64(d.Size)
	}
	if err != nil {
		s.RemoveImage(context.WithoutCancel(ctx), img)
		return err
	}
	d.Size = config.Size(info.Size)
	return nil
}

// parseSnapSpec parses "pool[/namespace]/image@snap".
func parseSnapSpec(s string) (Image, string, error) {
	spec, snap, ok := strings.Cut(s, "@")
	if !ok || snap == "" {
		return Image{}, "", errors.New("want pool/image@snapshot")
	}
	parts := strings.Split(spec, "/")
	switch {
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return Image{Pool: parts[0], Name: parts[1]}, snap, nil
	case len(parts) == 3 && parts[0] != "" && parts[1] != "" && parts[2] != "":
		return Image{Pool: parts[0], Namespace: parts[1], Name: parts[2]}, snap, nil
	}
	return Image{}, "", errors.New("want pool/image@snapshot")
}

// onDisk is a mutation of the disk the request names (404 when there is
// none); change returns what the answer carries.
func onDisk(r *http.Request, change func(d *config.Disk) (any, error)) mutation {
	name := diskName(r)
	return func(c *config.Config) (any, error) {
		i, err := diskIndex(c, name)
		if err != nil {
			return nil, err
		}
		return change(&c.Disks[i])
	}
}

// resizeDisk is PATCH /disks/{pool}/{image} {"size": "20G"}: the image
// first (so the recorded size never exceeds the real one), then the
// configuration.
func (a *API) resizeDisk(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Size        config.Size `json:"size"`
		AllowShrink bool        `json:"allow_shrink,omitempty"`
	}
	if err := decode(r, &req); err != nil {
		writeError(w, err)
		return
	}
	name := diskName(r)
	cur, i, ok := a.currentDisk(w, r)
	if !ok {
		return
	}
	d := cur.Disks[i]
	if req.Size <= 0 {
		writeError(w, badRequest("size", "size %d: want a positive size such as 20G", req.Size))
		return
	}
	img, isRBD := rbdImage(&d)
	if req.Size < d.Size && (!isRBD || !req.AllowShrink) {
		writeError(w, badRequest("size", "%s: shrinking from %s to %s discards data; RBD disks only, with allow_shrink", name, d.Size, req.Size))
		return
	}
	next := cur.Clone()
	next.Disks[i].Size = req.Size
	if err := config.PrepareUpdate(cur, &next); err != nil {
		writeError(w, err)
		return
	}
	if isRBD {
		s, ctx, cancel, err := a.imagesFor(r)
		if err != nil {
			writeError(w, err)
			return
		}
		defer cancel()
		if err := s.ResizeImage(ctx, img, int64(req.Size), req.AllowShrink); err != nil {
			writeError(w, err)
			return
		}
	}
	v, _, err := a.apply(r.Context(), func(c *config.Config) (any, error) {
		i, err := diskIndex(c, name)
		if err != nil {
			return nil, err
		}
		c.Disks[i].Size = req.Size
		return c.Disks[i], nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// removeDisk takes a disk out of the configuration (refused while a
// target maps it), then runs the image step (delete, trash) for RBD disks.
// The configuration goes first: gateways close the image when they see
// the change, and only a closed image can be removed.
func (a *API) removeDisk(w http.ResponseWriter, r *http.Request, then func(context.Context, ImageService, Image) (any, error)) {
	name := diskName(r)
	var removed config.Disk
	_, _, err := a.apply(r.Context(), func(c *config.Config) (any, error) {
		i, err := diskIndex(c, name)
		if err != nil {
			return nil, err
		}
		if users := diskUsers(c, name); len(users) > 0 {
			return nil, conflict("disk %s is mapped to %s; remove it from the target first", name, strings.Join(users, ", "))
		}
		removed = c.Disks[i]
		c.Disks = slices.Delete(c.Disks, i, i+1)
		return nil, nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	img, isRBD := rbdImage(&removed)
	if !isRBD || a.opts.Images == nil {
		writeJSON(w, http.StatusOK, map[string]any{"removed": name})
		return
	}
	a.imageCall(w, r, http.StatusOK, func(ctx context.Context, s ImageService) (any, error) {
		v, err := then(ctx, s, img)
		if err != nil {
			return nil, fmt.Errorf("disk %s removed from the configuration, but the image step failed: %w", name, err)
		}
		return v, nil
	})
}

// retryBusy repeats op while the image is still open somewhere: gateways
// close it within moments of seeing the configuration change.
func retryBusy(ctx context.Context, op func() error) error {
	for {
		err := op()
		if !errors.Is(err, ErrBusy) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}
