package tests

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

// rbdSpec says which Ceph cluster and image names back a server's LUNs
// (serverSpec.RBD): disk "disk0" is image <pool>/<prefix>-disk0.
type rbdSpec struct {
	conf, pool, prefix string
}

// cfgCeph is the configuration's ceph: section.
type cfgCeph struct {
	Conf string `json:"conf"`
}

// newRBDSpec names fresh images on the cluster of RBDGW_CEPH_CONF, or
// skips the test when it is unset. The images are removed when the test
// ends, after the servers it started have stopped (cleanups run last
// registered first, and this one is registered before any server).
func newRBDSpec(t *testing.T) *rbdSpec {
	t.Helper()
	conf := os.Getenv("RBDGW_CEPH_CONF")
	if conf == "" {
		t.Skip("RBDGW_CEPH_CONF is not set: no Ceph cluster for the RBD tests " +
			"(bash ceph/micro-cluster.sh start DIR, then RBDGW_CEPH_CONF=DIR/ceph.conf; make test-rbd does both)")
	}
	needTools(t, "rbd")
	if e2eTarget() != "rbdgw" {
		t.Skip("rbd: LUNs are an rbdgw feature")
	}
	r := &rbdSpec{conf: conf, pool: "rbd", prefix: fmt.Sprintf("e2e-%d-%06x", os.Getpid(), rand.Uint32()&0xffffff)}
	t.Cleanup(func() {
		for _, img := range r.images(t) {
			if out, err := r.cli(time.Minute, "rm", "--no-progress", r.pool+"/"+img); err != nil {
				t.Logf("removing test image %s: %v\n%s", img, err, out)
			}
		}
	})
	return r
}

// image is the pool/image of a disk.
func (r *rbdSpec) image(disk string) string { return r.pool + "/" + r.prefix + "-" + disk }

// ceph is the configuration section for r, nil for file-backed servers.
func (r *rbdSpec) ceph() *cfgCeph {
	if r == nil {
		return nil
	}
	return &cfgCeph{Conf: r.conf}
}

// cli runs the rbd tool against the cluster.
func (r *rbdSpec) cli(timeout time.Duration, args ...string) (string, error) {
	return run(timeout, "rbd", append([]string{"-c", r.conf}, args...)...)
}

// images lists this spec's images in the pool.
func (r *rbdSpec) images(t *testing.T) []string {
	out, err := r.cli(time.Minute, "ls", r.pool)
	if err != nil {
		t.Logf("rbd ls %s: %v\n%s", r.pool, err, out)
		return nil
	}
	var imgs []string
	for _, l := range strings.Fields(out) {
		if strings.HasPrefix(l, r.prefix+"-") {
			imgs = append(imgs, l)
		}
	}
	return imgs
}

// export copies a disk's image into a local file (rbd export).
func (r *rbdSpec) export(t *testing.T, disk, path string) {
	t.Helper()
	if out, err := r.cli(5*time.Minute, "export", "--no-progress", r.image(disk), path); err != nil {
		t.Fatalf("rbd export %s: %v\n%s", r.image(disk), err, out)
	}
}
