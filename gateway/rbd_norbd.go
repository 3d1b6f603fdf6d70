//go:build !rbd

package gateway

import (
	"errors"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/scsi"
)

// RBDSupport reports whether this binary serves rbd: disks (-tags rbd).
const RBDSupport = false

// cephLink holds nothing in a build without librbd.
type cephLink struct{}

// ErrNoRBD is why a build without -tags rbd refuses rbd: disks.
var ErrNoRBD = errors.New("this rbdgw was built without RBD support (-tags rbd)")

// openRBD refuses: librbd is linked only with -tags rbd (rbd.go), so that
// target, scsi, config and gateway build and test without it.
func (g *Gateway) openRBD(d *config.Disk, bk config.Backend) (scsi.Backend, error) {
	return nil, ErrNoRBD
}
