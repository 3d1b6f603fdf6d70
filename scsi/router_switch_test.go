package scsi_test

import (
	"context"
	"testing"

	"github.com/rbdgw/rbdgw/scsi"
)

// A nexus switched to a router with another LUN map is told on its next
// command; a switch to the same map says nothing.
func TestSwitchLUNsReportsAChangedMap(t *testing.T) {
	lu0, _ := newMemLU(t, 64)
	lu1, _ := newMemLU(t, 64)
	one := scsi.NewRouter(map[uint64]*scsi.LogicalUnit{0: lu0})
	same := scsi.NewRouter(map[uint64]*scsi.LogicalUnit{0: lu0})
	two := scsi.NewRouter(map[uint64]*scsi.LogicalUnit{0: lu0, 1: lu1})
	tur := func(rt scsi.Router) scsi.Response {
		return rt.Execute(context.Background(), &scsi.Command{Nexus: iA, CDB: make([]byte, 6)})
	}
	for tur(one).Status != scsi.StatusGood { // the power-on unit attention
	}
	scsi.SwitchLUNs(one, same, iA)
	want(t, tur(same), "GOOD")
	scsi.SwitchLUNs(same, two, iA)
	want(t, tur(two), "6/3F/0E")
	want(t, tur(two), "GOOD")
}
