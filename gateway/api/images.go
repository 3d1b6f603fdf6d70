package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/gateway/ha"
)

// Image names an RBD image.
type Image struct {
	Pool      string `json:"pool"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"image"`
}

func (i Image) String() string {
	if i.Namespace != "" {
		return i.Pool + "/" + i.Namespace + "/" + i.Name
	}
	return i.Pool + "/" + i.Name
}

// ImageInfo is what the API shows of an image.
type ImageInfo struct {
	Size int64 `json:"size"`
	// Parent is "pool/image@snap" for a clone not yet flattened.
	Parent     string   `json:"parent,omitempty"`
	Features   []string `json:"features,omitempty"`
	ObjectSize uint64   `json:"object_size,omitempty"`
	UsedBytes  int64    `json:"used_bytes"`
	// Watchers counts the clients that have the image open (gateways).
	Watchers int `json:"watchers"`
}

// SnapshotInfo is one snapshot of an image.
type SnapshotInfo struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	Protected bool   `json:"protected"`
}

// TrashEntry is one image in a pool's trash.
type TrashEntry struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	DeferredUntil time.Time `json:"deferred_until"`
}

// SnapshotOp is what to do with a snapshot.
type SnapshotOp string

const (
	SnapCreate    SnapshotOp = "create"
	SnapRemove    SnapshotOp = "delete"
	SnapRollback  SnapshotOp = "rollback"
	SnapProtect   SnapshotOp = "protect"
	SnapUnprotect SnapshotOp = "unprotect"
)

// ImageService manages RBD images. The librbd one (rbdimages.go, build tag
// rbd) wraps *rbd.Cluster; errors wrap ErrNotFound, ErrExists, ErrBusy or
// ErrUnsupported where they mean that, so the API answers 404/409/501.
// Methods may be called concurrently.
type ImageService interface {
	CreateImage(ctx context.Context, img Image, size int64) error
	ImageInfo(ctx context.Context, img Image) (ImageInfo, error)
	// ResizeImage refuses to shrink unless allowShrink.
	ResizeImage(ctx context.Context, img Image, size int64, allowShrink bool) error
	RemoveImage(ctx context.Context, img Image) error
	CloneImage(ctx context.Context, parent Image, snap string, child Image) error
	FlattenImage(ctx context.Context, img Image) error
	Snapshot(ctx context.Context, img Image, snap string, op SnapshotOp) error
	ListSnapshots(ctx context.Context, img Image) ([]SnapshotInfo, error)
	// TrashMove moves an image to its pool's trash, kept at least delay.
	TrashMove(ctx context.Context, img Image, delay time.Duration) (id string, err error)
	TrashList(ctx context.Context, pool, namespace string) ([]TrashEntry, error)
	TrashRestore(ctx context.Context, pool, namespace, id, name string) error
	TrashPurge(ctx context.Context, pool, namespace, id string, force bool) error
}

// ClusterInfo is the Ceph cluster as /cluster shows it.
type ClusterInfo struct {
	Health string   `json:"health"`
	Pools  []string `json:"pools"`
}

// ClusterStatus is an optional ImageService capability: the cluster's
// health and pools (found by type assertion).
type ClusterStatus interface {
	ClusterStatus(ctx context.Context) (ClusterInfo, error)
}

// imageOpTimeout bounds one image operation: a dead cluster must give the
// client an error, not a hung request (design.md: librados waits 300 s).
const imageOpTimeout = 60 * time.Second

func (a *API) images() (ImageService, error) {
	if a.opts.Images == nil {
		return nil, fmt.Errorf("image operations: this gateway has no Ceph connection: %w", ErrUnsupported)
	}
	return a.opts.Images, nil
}

// imagesFor returns the image service and a context bounding one
// request's image operations.
func (a *API) imagesFor(r *http.Request) (ImageService, context.Context, context.CancelFunc, error) {
	s, err := a.images()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), imageOpTimeout)
	return s, ctx, cancel, nil
}

func (a *API) imageRoutes() {
	a.mux.HandleFunc("GET "+prefix+"/images/{pool}/{image}", func(w http.ResponseWriter, r *http.Request) {
		a.imageCall(w, r, http.StatusOK, func(ctx context.Context, s ImageService) (any, error) {
			return s.ImageInfo(ctx, Image{Pool: r.PathValue("pool"), Name: r.PathValue("image")})
		})
	})
	a.mux.HandleFunc("GET "+prefix+"/trash/{pool}", func(w http.ResponseWriter, r *http.Request) {
		a.imageCall(w, r, http.StatusOK, func(ctx context.Context, s ImageService) (any, error) {
			l, err := s.TrashList(ctx, r.PathValue("pool"), r.URL.Query().Get("namespace"))
			return nonNil(l), err
		})
	})
	a.mux.HandleFunc("POST "+prefix+"/trash/{pool}/{id}/restore", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Name      string `json:"name,omitempty"`
			Namespace string `json:"namespace,omitempty"`
		}
		if err := decode(r, &req); err != nil {
			writeError(w, err)
			return
		}
		a.imageCall(w, r, http.StatusOK, func(ctx context.Context, s ImageService) (any, error) {
			return nil, s.TrashRestore(ctx, r.PathValue("pool"), req.Namespace, r.PathValue("id"), req.Name)
		})
	})
	a.mux.HandleFunc("DELETE "+prefix+"/trash/{pool}/{id}", func(w http.ResponseWriter, r *http.Request) {
		force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
		a.imageCall(w, r, http.StatusOK, func(ctx context.Context, s ImageService) (any, error) {
			return nil, s.TrashPurge(ctx, r.PathValue("pool"), r.URL.Query().Get("namespace"), r.PathValue("id"), force)
		})
	})
	a.mux.HandleFunc("GET "+prefix+"/cluster", a.cluster)
}

// imageCall runs one image operation with a deadline and answers with its
// result ({} for none).
func (a *API) imageCall(w http.ResponseWriter, r *http.Request, status int, op func(context.Context, ImageService) (any, error)) {
	s, ctx, cancel, err := a.imagesFor(r)
	if err != nil {
		writeError(w, err)
		return
	}
	defer cancel()
	v, err := op(ctx, s)
	if err != nil {
		a.log.Info("image operation failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, err)
		return
	}
	if v == nil {
		v = map[string]any{}
	}
	writeJSON(w, status, v)
}

// cluster shows the Ceph cluster (when there is one) and the gateways.
func (a *API) cluster(w http.ResponseWriter, r *http.Request) {
	c, epoch, err := a.opts.Store.Get(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	gws := a.gatewayStates(r.Context(), &c)
	out := map[string]any{"epoch": epoch, "gateways": gws}
	if es, ok := a.opts.Store.(*config.EtcdStore); ok && len(c.Gateways) > 0 {
		// Several gateways: their leases say who is up, the ownership
		// records which gateway serves each disk.
		st, err := ha.ReadState(r.Context(), es.Client(), config.StatePrefix(es.Prefix()))
		if err != nil {
			out["owners_error"] = err.Error()
		} else {
			out["owners"] = st.Owners
			for i := range gws {
				if slices.Contains(st.Live, gws[i].Name) {
					gws[i].State = "up"
				} else {
					gws[i].State = "down: no lease (" + gws[i].State + ")"
				}
			}
		}
	}
	ceph := ClusterInfo{Health: "no Ceph connection on this gateway", Pools: []string{}}
	if a.opts.Images != nil {
		ceph.Health = "connected (this build does not report health)"
	}
	if cs, ok := a.opts.Images.(ClusterStatus); ok {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		ceph, err = cs.ClusterStatus(ctx)
		if err != nil {
			ceph = ClusterInfo{Health: "unknown: " + err.Error(), Pools: []string{}}
		}
	}
	out["ceph"] = ceph
	writeJSON(w, http.StatusOK, out)
}

// rbdImage is the RBD image behind a disk, if it has one.
func rbdImage(d *config.Disk) (Image, bool) {
	b, err := config.ParseBackend(d.Backend)
	// ParseBackend may refuse rbd in builds without librbd yet still parse
	// it: the kind is what counts here.
	if b.Kind != config.BackendRBD {
		_ = err
		return Image{}, false
	}
	return Image{Pool: b.Pool, Namespace: b.Namespace, Name: b.Image}, true
}

// errNoImage answers image operations on a file-backed disk.
var errNoImage = errors.New("the disk is file-backed: snapshots, clones, flatten and trash need an RBD image")
