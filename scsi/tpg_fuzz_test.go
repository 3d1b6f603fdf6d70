package scsi_test

import (
	"encoding/binary"
	"testing"

	"github.com/rbdgw/rbdgw/alua"
	"github.com/rbdgw/rbdgw/scsi"
)

// FuzzSetTPG sends arbitrary SET TARGET PORT GROUPS parameter lists and
// lengths to an explicit-ALUA LU: it never panics, answers GOOD or ILLEGAL
// REQUEST, applies only lists it accepted, and always leaves every group
// in a supported, non-transitioning state.
func FuzzSetTPG(f *testing.F) {
	f.Add(uint32(8), stpgParams([2]uint16{20, 0}))
	f.Add(uint32(12), stpgParams([2]uint16{20, 0}, [2]uint16{10, 2}))
	f.Add(uint32(6), stpgParams([2]uint16{20, 0}))
	f.Add(uint32(0xFFFFFFFF), []byte{0, 0, 0, 0})
	f.Add(uint32(8), stpgParams([2]uint16{20, 0xF}))
	f.Fuzz(func(t *testing.T, plen uint32, data []byte) {
		d := gatewayGroups(t)
		applied := 0
		d.SetExplicit(func(req alua.ExplicitRequest) error {
			applied++
			return d.ApplyExplicit(req)
		})
		e := newEnv(t, func(c *scsi.LUConfig) { c.ALUA = d })
		cdb := stpgCDB(0)
		binary.BigEndian.PutUint32(cdb[6:], plen)
		r, _ := e.do(nexusA, cdb, data, 0)
		switch r.Status {
		case scsi.StatusGood:
		case scsi.StatusCheckCondition:
			if k, _, _ := senseOf(r.Sense); k != scsi.SenseIllegalRequest {
				t.Fatalf("sense key %x", k)
			}
			if applied != 0 {
				t.Fatal("a refused list reached the gateway")
			}
		default:
			t.Fatalf("status %#x", r.Status)
		}
		for _, g := range d.Groups() {
			if g.State == alua.Transitioning || !g.SupportedOrDefault().Has(g.State) {
				t.Fatalf("group %d left in %v", g.ID, g.State)
			}
		}
	})
}
