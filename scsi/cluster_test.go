package scsi_test

import (
	"sync/atomic"
	"testing"

	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/scsi/scsitest"
)

// relay carries reset events of one gateway's LU to the other gateways'
// copies, as the gateway does through etcd.
type relay struct {
	to    []*scsi.LogicalUnit
	calls atomic.Int32
}

func (r *relay) Reset(ascq byte) {
	r.calls.Add(1)
	for _, lu := range r.to {
		lu.ReplayReset(ascq)
	}
}

// An LU reset through one gateway raises 29/03 on the sessions of the
// other gateway too, once, and is not echoed back.
func TestLUResetReachesEveryGateway(t *testing.T) {
	be := scsitest.NewMemBackend(64 * 512)
	r1, r2 := &relay{}, &relay{}
	gw1 := newLU(t, be, func(c *scsi.LUConfig) { c.Name = "rbd/shared"; c.Events = r1 })
	gw2 := newLU(t, scsitest.NewMemBackend(64*512), func(c *scsi.LUConfig) { c.Name = "rbd/shared"; c.Events = r2 })
	r1.to, r2.to = []*scsi.LogicalUnit{gw2}, []*scsi.LogicalUnit{gw1}
	on1, on2 := mkNexus("iqn.2026-01.test:a", 1, 1), mkNexus("iqn.2026-01.test:a", 2, 2)
	hello(t, gw1, on1)
	hello(t, gw2, on2)

	rt := scsi.NewRouter(map[uint64]*scsi.LogicalUnit{0: gw1})
	if res := rt.TaskManagement(on1, scsi.TMFLogicalUnitReset, 0); res != scsi.TMFComplete {
		t.Fatalf("LU reset: %v", res)
	}
	want(t, do(gw1, on1, turCDB, nil, 0), "6/29/03")
	want(t, do(gw2, on2, turCDB, nil, 0), "6/29/03")
	// Replayed, not announced again.
	if r1.calls.Load() != 1 || r2.calls.Load() != 0 {
		t.Fatalf("announced %d times by gateway 1 and %d by gateway 2, want 1 and 0", r1.calls.Load(), r2.calls.Load())
	}
	want(t, do(gw1, on1, turCDB, nil, 0), "GOOD")
	want(t, do(gw2, on2, turCDB, nil, 0), "GOOD")

	// A target reset travels too, as 29/00.
	rt.TaskManagement(on1, scsi.TMFTargetWarmReset, 0)
	want(t, do(gw2, on2, turCDB, nil, 0), "6/29/00")
}
