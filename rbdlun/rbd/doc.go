// Package rbd is the librbd LUN backend: Ceph RBD images through go-ceph
// (connections, management, exclusive lock) plus a small cgo layer of its
// own for the asynchronous calls go-ceph v0.34 does not wrap (rbd_aio_*,
// compare-and-write, write-zeroes).
//
// It builds only with -tags rbd,pacific (Debian 12 ships Ceph 16
// "pacific"; go-ceph needs the release tag) and needs librbd-dev and
// librados-dev (ceph/install-deps.sh). Without the tags the package is
// empty, so `go build ./...` and `go vet ./...` work on machines without
// librbd.
//
//	cl, err := rbd.Connect(rbd.ClusterConfig{ConfPath: "/etc/ceph/ceph.conf"})
//	b, err := cl.Open(ctx, rbd.ImageSpec{Pool: "rbd", Image: "disk1"}, rbd.Options{})
//	err = b.AcquireExclusiveLock(ctx)
//
// Tests run against a live cluster named by RBDGW_CEPH_CONF (start one
// with ceph/micro-cluster.sh) and skip otherwise.
package rbd
