//go:build !rbd

package gateway

import (
	"errors"
	"strings"
	"testing"

	"github.com/rbdgw/rbdgw/config"
)

// TestRBDDiskNeedsBuildTag: a build without librbd refuses rbd: disks at
// start with an error naming the disk and the missing build tag.
func TestRBDDiskNeedsBuildTag(t *testing.T) {
	c := testConfig(t)
	c.Disks[1].Backend = "rbd:rbd/img"
	_, err := Start(Config{Config: c})
	if !errors.Is(err, ErrNoRBD) || !strings.Contains(err.Error(), "disk d1") {
		t.Fatalf("start with an rbd disk: %v, want %v naming disk d1", err, ErrNoRBD)
	}
	if _, err := (&Gateway{}).openRBD(&config.Disk{Name: "x"}, config.Backend{Kind: config.BackendRBD}); !errors.Is(err, ErrNoRBD) {
		t.Fatalf("openRBD: %v", err)
	}
}
