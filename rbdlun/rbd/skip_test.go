//go:build !rbd

package rbd

import "testing"

func TestRBDNeedsBuildTags(t *testing.T) {
	t.Skip("rbdlun/rbd is built only with -tags rbd,pacific (librbd-dev, librados-dev); " +
		"run: RBDGW_CEPH_CONF=DIR/ceph.conf go test -tags rbd,pacific ./rbdlun/rbd")
}
