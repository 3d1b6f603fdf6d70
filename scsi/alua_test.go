package scsi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/alua"
	"github.com/rbdgw/rbdgw/scsi"
)

// Two gateways' port groups as gateway 1 sees them: group 10 (its own
// port 1) owns the LU, group 20 (gateway 2's port 2) is non-optimized.
func gatewayGroups(t *testing.T) *alua.Dynamic {
	t.Helper()
	d, err := alua.NewDynamic([]alua.Group{
		{ID: 10, State: alua.ActiveOptimized, Preferred: true, RelativePorts: []uint16{1}},
		{ID: 20, State: alua.ActiveNonOptimized, RelativePorts: []uint16{2}},
	}, 7*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// nexusOn is initiator name's nexus through relative port rp.
func nexusOn(name string, rp uint16) *scsi.Nexus {
	return &scsi.Nexus{InitiatorPort: name + ",i,0x000000000001", InitiatorName: name,
		TargetPort: "iqn.x:tgt,t,0x000" + string(rune('0'+rp)), RelativeTargetPort: rp, TargetPortGroup: 99}
}

var (
	read10CDB  = []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}
	turCDB     = []byte{0, 0, 0, 0, 0, 0}
	inqCDB     = []byte{0x12, 0, 0, 0, 96, 0}
	rtpgCDB    = []byte{0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}
	rtpgExtCDB = []byte{0xA3, 0x2A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}
	rlunsCDB   = []byte{0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0}
	rsenseCDB  = []byte{0x03, 0, 0, 0, 18, 0}
	msenseCDB  = []byte{0x1A, 0x08, 0x3F, 0, 255, 0}
	rcap10CDB  = []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	prInCDB    = []byte{0x5E, 0, 0, 0, 0, 0, 0, 0x01, 0, 0}
)

func stpgCDB(n int) []byte {
	c := []byte{0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(c[6:], uint32(n))
	return c
}

func stpgParams(descs ...[2]uint16) []byte {
	b := make([]byte, 4)
	for _, d := range descs {
		b = append(b, byte(d[1]), 0, byte(d[0]>>8), byte(d[0]))
	}
	return b
}

func TestInquiryTPGSFollowsExplicitALUA(t *testing.T) {
	d := gatewayGroups(t)
	e := newEnv(t, func(c *scsi.LUConfig) { c.ALUA = d })
	_, b := e.do(nexusA, inqCDB, nil, 96)
	if tpgs := b[5] >> 4 & 3; tpgs != 1 {
		t.Fatalf("TPGS = %02b, want 01b (implicit)", tpgs)
	}
	wantOffered(t, e, false)
	d.SetExplicit(d.ApplyExplicit)
	_, b = e.do(nexusA, inqCDB, nil, 96)
	if tpgs := b[5] >> 4 & 3; tpgs != 3 {
		t.Fatalf("TPGS = %02b, want 11b (implicit and explicit)", tpgs)
	}
	wantOffered(t, e, true)
}

// wantOffered checks REPORT SUPPORTED OPERATION CODES (all commands, and
// the one-command form) and the command itself for STPG.
func wantOffered(t *testing.T, e *env, offered bool) {
	t.Helper()
	r, all := e.do(nexusA, []byte{0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0}, nil, 4096)
	wantGood(t, r)
	listed := false
	for i := 4; i+8 <= len(all); i += 8 {
		if all[i] == 0xA4 && binary.BigEndian.Uint16(all[i+2:]) == 0x0A {
			listed = true
		}
	}
	if listed != offered {
		t.Fatalf("STPG listed = %v, want %v", listed, offered)
	}
	r, one := e.do(nexusA, []byte{0xA3, 0x0C, 0x02, 0xA4, 0, 0x0A, 0, 0, 0, 64, 0, 0}, nil, 64)
	wantGood(t, r)
	if support := one[1] & 7; (support == 3) != offered {
		t.Fatalf("STPG SUPPORT = %03b with offered %v", support, offered)
	}
	r, _ = e.do(nexusA, stpgCDB(0), nil, 0)
	if offered {
		wantGood(t, r)
	} else {
		wantSense(t, r, scsi.SenseIllegalRequest, 0x24, 0)
		wantField(t, r, true, 1, 4)
	}
}

func TestReportTPGDescribesEveryGroup(t *testing.T) {
	d := gatewayGroups(t)
	e := newEnv(t, func(c *scsi.LUConfig) { c.ALUA = d })
	d.SetStates(map[uint16]alua.AccessState{20: alua.Transitioning}, alua.StatusImplicit, nil)
	want := []byte{
		0x80, 0x8F, 0, 10, 0, 0x00, 0, 1, 0, 0, 0, 1, // PREF, AO, T/U/S/AN/AO supported, no status
		0x0F, 0x8F, 0, 20, 0, 0x02, 0, 1, 0, 0, 0, 2, // transitioning, altered implicitly
	}
	r, _ := e.do(nexusA, turCDB, nil, 0)
	wantSense(t, r, scsi.SenseUnitAttention, 0x2A, 0x06)
	r, b := e.do(nexusA, rtpgCDB, nil, 256)
	wantGood(t, r)
	if binary.BigEndian.Uint32(b) != uint32(len(want)) || !bytes.Equal(b[4:], want) {
		t.Fatalf("RTPG length format:\n%x\nwant descriptors\n%x", b, want)
	}
	r, b = e.do(nexusA, rtpgExtCDB, nil, 256)
	wantGood(t, r)
	if binary.BigEndian.Uint32(b) != uint32(4+len(want)) || b[4] != 0x10 || b[5] != 7 || !bytes.Equal(b[8:], want) {
		t.Fatalf("RTPG extended format: %x", b)
	}
	// Truncated to the allocation length, RETURN DATA LENGTH intact.
	r, b = e.do(nexusA, []byte{0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0}, nil, 8)
	wantGood(t, r)
	if len(b) != 8 || binary.BigEndian.Uint32(b) != uint32(len(want)) {
		t.Fatalf("truncated RTPG %x", b)
	}
	// Reserved PARAMETER DATA FORMAT.
	r, _ = e.do(nexusA, []byte{0xA3, 0x4A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, nil, 256)
	wantSense(t, r, scsi.SenseIllegalRequest, 0x24, 0)
}

func TestSetTPGValidatesAndApplies(t *testing.T) {
	d := gatewayGroups(t)
	var asked []alua.ExplicitRequest
	fail := false
	d.SetExplicit(func(req alua.ExplicitRequest) error {
		asked = append(asked, req)
		if fail {
			return errors.New("ownership move refused")
		}
		return d.ApplyExplicit(req)
	})
	e := newEnv(t, func(c *scsi.LUConfig) { c.ALUA = d })
	on2 := nexusOn("iqn.x:other", 2)
	e.do(on2, turCDB, nil, 0) // power-on UA

	for _, tc := range []struct {
		name   string
		param  []byte
		plen   int
		asc    byte
		field  uint16
		bit    int
		key    byte
		noCall bool
	}{
		{name: "truncated descriptor", param: stpgParams([2]uint16{20, 0})[:6], plen: 6, key: 5, asc: 0x1A},
		{name: "short data", param: stpgParams([2]uint16{20, 0})[:4], plen: 8, key: 5, asc: 0x1A},
		{name: "unknown group", param: stpgParams([2]uint16{20, 0}, [2]uint16{77, 1}), key: 5, asc: 0x26, field: 10, bit: -1},
		{name: "group twice", param: stpgParams([2]uint16{20, 0}, [2]uint16{20, 1}), key: 5, asc: 0x26, field: 10, bit: -1},
		{name: "transitioning", param: stpgParams([2]uint16{20, 0xF}), key: 5, asc: 0x26, field: 4, bit: 3},
		{name: "offline unsupported", param: stpgParams([2]uint16{20, 0xE}), key: 5, asc: 0x26, field: 4, bit: 3},
		{name: "reserved state", param: stpgParams([2]uint16{20, 0x5}), key: 5, asc: 0x26, field: 4, bit: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plen := tc.plen
			if plen == 0 {
				plen = len(tc.param)
			}
			r, _ := e.do(nexusA, stpgCDB(plen), tc.param, 0)
			wantSense(t, r, tc.key, tc.asc, 0)
			if tc.asc == 0x26 {
				wantField(t, r, false, tc.field, tc.bit)
			}
		})
	}
	if len(asked) != 0 {
		t.Fatalf("invalid lists reached the gateway: %+v", asked)
	}
	// A valid request: group 20 optimized, group 10 standby.
	r, _ := e.do(nexusA, stpgCDB(12), stpgParams([2]uint16{20, 0}, [2]uint16{10, 2}), 0)
	wantGood(t, r)
	if len(asked) != 1 || asked[0].FromPort != 1 || len(asked[0].Want) != 2 {
		t.Fatalf("gateway asked %+v", asked)
	}
	if d.StateOf(1) != alua.Standby || d.StateOf(2) != alua.ActiveOptimized {
		t.Fatalf("states %v", d.Groups())
	}
	_, b := e.do(nexusA, rtpgCDB, nil, 256)
	if b[4+5] != 0x01 || b[16+5] != 0x01 {
		t.Fatalf("status codes after STPG: %x", b)
	}
	// SPC-4 5.16.2.5: 2A/06 on every other nexus, not the one that asked.
	r, _ = e.do(on2, turCDB, nil, 0)
	wantSense(t, r, scsi.SenseUnitAttention, 0x2A, 0x06)
	r, _ = e.do(nexusB, rsenseCDB, nil, 18)
	wantGood(t, r)
	// nexusA now sits on a standby port: TUR says so, no unit attention.
	r, _ = e.do(nexusA, turCDB, nil, 0)
	wantSense(t, r, scsi.SenseNotReady, 0x04, 0x0B)
	// The gateway refuses: HARDWARE ERROR, SET TARGET PORT GROUPS COMMAND FAILED.
	fail = true
	r, _ = e.do(nexusA, stpgCDB(8), stpgParams([2]uint16{10, 0}), 0)
	wantSense(t, r, scsi.SenseHardwareError, 0x67, 0x0A)
}

// Which commands each state admits (SPC-4 5.16.2.4 and 5.16.2.6).
func TestAccessStatesGateCommands(t *testing.T) {
	d := gatewayGroups(t)
	d.SetExplicit(d.ApplyExplicit)
	e := newEnv(t, func(c *scsi.LUConfig) { c.ALUA = d })
	n := nexusOn("iqn.x:i", 2)
	e.do(n, turCDB, nil, 0)
	for _, tc := range []struct {
		state alua.AccessState
		ascq  byte
		ok    [][]byte // commands served
		no    [][]byte // commands refused with 02/04/ascq
	}{
		{alua.Transitioning, 0x0A, [][]byte{inqCDB, rtpgCDB, rlunsCDB, rsenseCDB}, [][]byte{read10CDB, turCDB, msenseCDB, rcap10CDB, prInCDB, stpgCDB(0)}},
		{alua.Standby, 0x0B, [][]byte{inqCDB, rtpgCDB, rlunsCDB, rsenseCDB, msenseCDB, prInCDB, stpgCDB(0)}, [][]byte{read10CDB, turCDB, rcap10CDB}},
		{alua.Unavailable, 0x0C, [][]byte{inqCDB, rtpgCDB, rlunsCDB, rsenseCDB, stpgCDB(0)}, [][]byte{read10CDB, turCDB, msenseCDB, rcap10CDB, prInCDB}},
		{alua.ActiveNonOptimized, 0, [][]byte{read10CDB, turCDB, msenseCDB, rcap10CDB, prInCDB, inqCDB}, nil},
	} {
		if _, err := d.SetStates(map[uint16]alua.AccessState{20: tc.state}, alua.StatusImplicit, nil); err != nil {
			t.Fatal(err)
		}
		r, _ := e.do(n, rsenseCDB, nil, 18) // takes the 2A/06
		wantGood(t, r)
		for _, cdb := range tc.ok {
			r, _ := e.do(n, cdb, nil, 4096)
			if r.Status != scsi.StatusGood {
				k, a, q := senseOf(r.Sense)
				t.Fatalf("%v: %x refused with %x/%02x/%02x", tc.state, cdb[0], k, a, q)
			}
		}
		for _, cdb := range tc.no {
			r, _ := e.do(n, cdb, nil, 4096)
			if k, a, q := senseOf(r.Sense); r.Status != scsi.StatusCheckCondition || k != scsi.SenseNotReady || a != 0x04 || q != tc.ascq {
				t.Fatalf("%v: %x answered status %#x %x/%02x/%02x, want 2/04/%02x", tc.state, cdb[0], r.Status, k, a, q, tc.ascq)
			}
		}
	}
}

// A non-owner gateway: its port is Active/Non-optimized, but the ownership
// gate answers media commands and PR OUT with TRANSITIONING (and counts
// them as demand); path probes and PR IN still work.
func TestOwnershipGate(t *testing.T) {
	d := gatewayGroups(t)
	var demand int
	var mu sync.Mutex
	d.SetAdmit(func(port uint16) alua.AccessState {
		mu.Lock()
		defer mu.Unlock()
		demand++
		return alua.Transitioning
	})
	e := newEnv(t, func(c *scsi.LUConfig) { c.ALUA = d })
	n := nexusOn("iqn.x:i", 2)
	e.do(n, turCDB, nil, 0)
	r, _ := e.do(n, read10CDB, nil, 512)
	wantSense(t, r, scsi.SenseNotReady, 0x04, 0x0A)
	r, _ = e.do(n, []byte{0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0}, fill(512, 1), 0)
	wantSense(t, r, scsi.SenseNotReady, 0x04, 0x0A)
	r, _ = e.do(n, []byte{0x5F, 0x00, 0, 0, 0, 0, 0, 0, 24, 0}, make([]byte, 24), 0)
	wantSense(t, r, scsi.SenseNotReady, 0x04, 0x0A)
	for _, cdb := range [][]byte{turCDB, rcap10CDB, inqCDB, rtpgCDB, prInCDB, msenseCDB} {
		r, _ := e.do(n, cdb, nil, 4096)
		wantGood(t, r)
	}
	if demand != 3 {
		t.Fatalf("demand counted %d times, want 3 (READ, WRITE, PR OUT)", demand)
	}
	// Once this gateway serves, the gate lets them through.
	d.SetAdmit(func(uint16) alua.AccessState { return alua.ActiveOptimized })
	r, _ = e.do(n, read10CDB, nil, 512)
	wantGood(t, r)
}

func TestImplicitChangeRaisesUnitAttentionEverywhere(t *testing.T) {
	d := gatewayGroups(t)
	e := newEnv(t, func(c *scsi.LUConfig) { c.ALUA = d })
	d.SetStates(map[uint16]alua.AccessState{10: alua.ActiveNonOptimized, 20: alua.ActiveOptimized}, alua.StatusImplicit, nexusA)
	for _, n := range []*scsi.Nexus{nexusA, nexusB} {
		r, _ := e.do(n, turCDB, nil, 0)
		wantSense(t, r, scsi.SenseUnitAttention, 0x2A, 0x06)
		r, _ = e.do(n, turCDB, nil, 0)
		wantGood(t, r)
	}
	// No change, no unit attention.
	d.SetStates(map[uint16]alua.AccessState{20: alua.ActiveOptimized}, alua.StatusImplicit, nil)
	r, _ := e.do(nexusA, turCDB, nil, 0)
	wantGood(t, r)
	// A closed LU no longer listens.
	e.lu.Close()
	d.SetStates(map[uint16]alua.AccessState{20: alua.Standby}, alua.StatusImplicit, nil)
}

// Every gateway reports the same LU identity and its own port and group.
func TestDeviceIDAcrossGateways(t *testing.T) {
	wwn := [16]byte{0x60, 0x01, 0x40, 0x5a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	type ids struct{ naa, t10, rtp, tpg []byte }
	get := func(port uint16) ids {
		e := newEnv(t, func(c *scsi.LUConfig) { c.WWN = wwn; c.ALUA = gatewayGroups(t) })
		n := nexusOn("iqn.x:i", port)
		_, b := e.do(n, []byte{0x12, 1, 0x83, 0, 255, 0}, nil, 255)
		var out ids
		for i := 4; i+4 <= len(b); {
			l := int(b[i+3])
			v := b[i+4 : i+4+l]
			switch b[i+1] & 0x3F {
			case 0x03:
				out.naa = v
			case 0x01:
				out.t10 = v
			case 0x14:
				out.rtp = v
			case 0x15:
				out.tpg = v
			}
			i += 4 + l
		}
		return out
	}
	g1, g2 := get(1), get(2)
	if !bytes.Equal(g1.naa, wwn[:]) || !bytes.Equal(g1.naa, g2.naa) || !bytes.Equal(g1.t10, g2.t10) {
		t.Fatalf("LU identity differs: %x/%q vs %x/%q", g1.naa, g1.t10, g2.naa, g2.t10)
	}
	if binary.BigEndian.Uint16(g1.rtp[2:]) != 1 || binary.BigEndian.Uint16(g2.rtp[2:]) != 2 {
		t.Fatalf("relative target ports %x %x", g1.rtp, g2.rtp)
	}
	// The group comes from the port groups (10 and 20), not the transport's 99.
	if binary.BigEndian.Uint16(g1.tpg[2:]) != 10 || binary.BigEndian.Uint16(g2.tpg[2:]) != 20 {
		t.Fatalf("target port groups %x %x", g1.tpg, g2.tpg)
	}
}

// State changes race commands on many nexuses; -race checks the LU reads
// the states safely and raises its unit attentions under its lock.
func TestALUAStateChangesUnderLoad(t *testing.T) {
	d := gatewayGroups(t)
	e := newEnv(t, func(c *scsi.LUConfig) { c.ALUA = d })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		n := nexusOn("iqn.x:load"+string(rune('a'+i)), uint16(1+i%2))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				cmd := &scsi.Command{Nexus: n, CDB: read10CDB, Dir: scsi.DirRead, DataIn: make([]byte, 512), ExpectedLength: 512}
				r := e.rt.Execute(context.Background(), cmd)
				k, a, q := senseOf(r.Sense)
				ok := r.Status == scsi.StatusGood || k == scsi.SenseUnitAttention || (k == scsi.SenseNotReady && a == 0x04 && (q == 0x0A || q == 0x0B))
				if !ok {
					t.Errorf("unexpected status %#x %x/%02x/%02x", r.Status, k, a, q)
					return
				}
			}
		}()
	}
	states := []alua.AccessState{alua.ActiveOptimized, alua.Transitioning, alua.Standby, alua.ActiveNonOptimized}
	for i := 0; ctx.Err() == nil; i++ {
		d.SetStates(map[uint16]alua.AccessState{uint16(10 * (1 + i%2)): states[i%len(states)]}, alua.StatusImplicit, nil)
	}
	wg.Wait()
}

// The gate learns whether a command only reads, so a gateway may serve
// reads without owning the LU (alua.OwnerConfig.ReadsAnywhere).
func TestOwnershipGateTellsReadsFromWrites(t *testing.T) {
	d := gatewayGroups(t)
	var seen []alua.Access
	var mu sync.Mutex
	d.SetAdmitAccess(func(_ context.Context, port uint16, a alua.Access) alua.AccessState {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, a)
		if a == alua.AccessRead {
			return alua.ActiveNonOptimized
		}
		return alua.Transitioning
	})
	e := newEnv(t, func(c *scsi.LUConfig) { c.ALUA = d })
	n := nexusOn("iqn.x:i", 2)
	e.do(n, turCDB, nil, 0)
	for _, tc := range []struct {
		name   string
		cdb    []byte
		out    []byte
		in     int
		served bool
	}{
		{"READ(10)", read10CDB, nil, 512, true},
		{"READ(16)", []byte{0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}, nil, 512, true},
		{"VERIFY(10)", []byte{0x2F, 0, 0, 0, 0, 0, 0, 0, 1, 0}, nil, 0, true},
		{"WRITE(10)", []byte{0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0}, fill(512, 1), 0, false},
		{"SYNCHRONIZE CACHE(10)", []byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0, false},
		{"COMPARE AND WRITE", []byte{0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}, fill(1024, 0), 0, false},
		{"PERSISTENT RESERVE OUT", []byte{0x5F, 0x00, 0, 0, 0, 0, 0, 0, 24, 0}, make([]byte, 24), 0, false},
	} {
		seen = nil
		r, _ := e.do(n, tc.cdb, tc.out, tc.in)
		want := alua.AccessWrite
		if tc.served {
			want = alua.AccessRead
			wantGood(t, r)
		} else {
			wantSense(t, r, scsi.SenseNotReady, 0x04, 0x0A)
		}
		if len(seen) != 1 || seen[0] != want {
			t.Fatalf("%s: gate saw %v, want one %v", tc.name, seen, want)
		}
	}
}

// A gate that holds a write while ownership moves gets the command's
// context, so an aborted command does not stay stuck in it.
func TestOwnershipGateSeesCommandContext(t *testing.T) {
	d := gatewayGroups(t)
	d.SetAdmitAccess(func(ctx context.Context, _ uint16, _ alua.Access) alua.AccessState {
		<-ctx.Done() // ownership never arrives
		return alua.Transitioning
	})
	e := newEnv(t, func(c *scsi.LUConfig) { c.ALUA = d })
	n := nexusOn("iqn.x:i", 2)
	e.do(n, turCDB, nil, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan scsi.Response, 1)
	go func() {
		cmd := &scsi.Command{Nexus: n, CDB: []byte{0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0}, Dir: scsi.DirWrite, DataOut: fill(512, 1), ExpectedLength: 512}
		done <- e.rt.Execute(ctx, cmd)
	}()
	select {
	case r := <-done:
		wantSense(t, r, scsi.SenseNotReady, 0x04, 0x0A)
	case <-time.After(5 * time.Second):
		t.Fatal("the command stayed in the gate after its context ended")
	}
}
