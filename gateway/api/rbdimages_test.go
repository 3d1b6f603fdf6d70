//go:build rbd

package api

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/rbdlun/rbd"
)

// TestImagesOnCeph runs the disk and image resources against a live Ceph
// cluster (RBDGW_CEPH_CONF, e.g. ceph/micro-cluster.sh).
func TestImagesOnCeph(t *testing.T) {
	conf := os.Getenv("RBDGW_CEPH_CONF")
	if conf == "" {
		t.Skip("RBDGW_CEPH_CONF is not set: no Ceph cluster (bash ceph/micro-cluster.sh start DIR)")
	}
	cl, err := rbd.Connect(rbd.ClusterConfig{ConfPath: conf})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	store := config.NewMemStore(config.Config{})
	c := start(t, store, Options{Images: RBDImages{Cluster: cl}}).client(t)
	img := fmt.Sprintf("api-%06x", rand.Uint32()&0xffffff)
	d := "/disks/rbd/" + img
	t.Cleanup(func() {
		for _, name := range []string{img, img + "-clone", img + "1", img + "2"} {
			cl.RemoveImage(t.Context(), rbd.ImageSpec{Pool: "rbd", Image: name})
		}
	})

	c.must(201, "POST", "/disks", map[string]any{"pool": "rbd", "image": img, "size": "16M"})
	c.must(409, "POST", "/disks", map[string]any{"pool": "rbd", "image": img, "size": "16M"})
	info := c.must(200, "GET", d, nil)
	if info["image"].(map[string]any)["size"] != float64(16<<20) {
		t.Fatalf("info: %v", info)
	}
	c.must(200, "PATCH", d, map[string]any{"size": "32M"})
	c.must(400, "PATCH", d, map[string]any{"size": "8M"}) // shrink without allow_shrink
	if got := c.must(200, "GET", "/images/rbd/"+img, nil); got["size"] != float64(32<<20) {
		t.Fatalf("after resize: %v", got)
	}
	c.must(201, "POST", d+"/snapshots", map[string]any{"name": "s1"})
	c.must(409, "POST", d+"/snapshots", map[string]any{"name": "s1"})
	c.must(200, "POST", d+"/snapshots/s1/protect", nil)
	c.must(409, "DELETE", d+"/snapshots/s1", nil) // protected
	c.must(201, "POST", "/disks", map[string]any{"pool": "rbd", "image": img + "-clone", "clone": "rbd/" + img + "@s1"})
	clone := c.must(200, "GET", d+"-clone", nil)
	if !strings.Contains(fmt.Sprint(clone["image"]), "@s1") || clone["disk"].(map[string]any)["size"] != "32M" {
		t.Fatalf("clone: %v", clone)
	}
	c.must(409, "POST", d+"/snapshots/s1/unprotect", nil) // a clone depends on it
	c.must(200, "POST", d+"-clone/flatten", nil)
	c.must(200, "POST", d+"/snapshots/s1/unprotect", nil)
	c.must(200, "POST", d+"/snapshots/s1/rollback", nil)
	if code, _ := c.do("GET", d+"/snapshots", nil); code != 200 {
		t.Fatalf("snapshots: %d", code)
	}
	c.must(200, "DELETE", d+"/snapshots/s1", nil)
	c.must(404, "DELETE", d+"/snapshots/s1", nil)

	// Trash: the disk leaves the configuration, the image the pool.
	moved := c.must(200, "POST", d+"-clone/trash", map[string]any{})
	id, _ := moved["id"].(string)
	if id == "" {
		t.Fatalf("trash move: %v", moved)
	}
	c.must(404, "GET", d+"-clone", nil)
	c.must(200, "POST", "/trash/rbd/"+id+"/restore", map[string]any{"name": img + "-clone"})
	if got := c.must(200, "GET", "/images/rbd/"+img+"-clone", nil); got["size"] != float64(32<<20) {
		t.Fatalf("restored: %v", got)
	}
	c.must(404, "POST", "/trash/rbd/"+id+"/restore", map[string]any{})

	// count= makes several; a refused configuration write removes the
	// images it created.
	c.must(201, "POST", "/disks", map[string]any{"pool": "rbd", "image": img, "count": 2, "size": "4M"})
	c.must(200, "DELETE", d+"1", nil)
	c.must(404, "GET", "/images/rbd/"+img+"1", nil)
	c.must(400, "POST", "/disks", map[string]any{"pool": "rbd", "image": img + "x", "size": "4M", "wwn": "nothex"})
	c.must(404, "GET", "/images/rbd/"+img+"x", nil)
	c.must(200, "DELETE", d+"2", nil)
	c.must(200, "DELETE", d, nil)
	c.must(404, "GET", "/images/rbd/"+img, nil)

	// The store fails the write after the image exists: it is removed.
	f := start(t, failingUpdates{store}, Options{Images: RBDImages{Cluster: cl}}).client(t)
	f.must(503, "POST", "/disks", map[string]any{"pool": "rbd", "image": img + "y", "size": "4M"})
	c.must(404, "GET", "/images/rbd/"+img+"y", nil)
}

// failingUpdates is a store that has lost quorum for writes only.
type failingUpdates struct{ config.Store }

func (failingUpdates) Update(context.Context, func(*config.Config) error) (int64, error) {
	return 0, fmt.Errorf("injected: %w", config.ErrUnavailable)
}
