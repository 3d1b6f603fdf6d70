package scsi_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/scsi/scsitest"
)

// conflictMatrix is SPC-4 5.13.1 table 66 for READ and WRITE: may a
// non-holder registered (reg) / unregistered (unreg) nexus read / write?
var conflictMatrix = []struct {
	typ                                byte
	regRead, regWrite, unRead, unWrite bool
}{
	{scsi.PRTypeWriteExclusive, true, false, true, false},
	{scsi.PRTypeExclusiveAccess, false, false, false, false},
	{scsi.PRTypeWriteExclusiveRO, true, true, true, false},
	{scsi.PRTypeExclusiveAccessRO, true, true, false, false},
	{scsi.PRTypeWriteExclusiveAR, true, true, true, false},
	{scsi.PRTypeExclusiveAccessAR, true, true, false, false},
}

func TestPRConflictMatrix(t *testing.T) {
	for _, m := range conflictMatrix {
		lu, _ := newMemLU(t, 64)
		hello(t, lu, iA, iB, iC)
		want(t, prOut(lu, iA, 0x06, 0, 0, 0xA), "GOOD")
		want(t, prOut(lu, iB, 0x06, 0, 0, 0xB), "GOOD")
		want(t, prOut(lu, iA, 0x01, m.typ, 0xA, 0), "GOOD")
		blk := make([]byte, 512)
		check := func(n *scsi.Nexus, okRead, okWrite bool) {
			t.Helper()
			_, r := read10(lu, n, 0, 1)
			if (r.Status == scsi.StatusGood) != okRead || (r.Status != scsi.StatusGood && r.Status != scsi.StatusReservationConflict) {
				t.Fatalf("type %d %s read: %s", m.typ, n.InitiatorName, sense(r))
			}
			r = write10(lu, n, 0, blk)
			if (r.Status == scsi.StatusGood) != okWrite || (r.Status != scsi.StatusGood && r.Status != scsi.StatusReservationConflict) {
				t.Fatalf("type %d %s write: %s", m.typ, n.InitiatorName, sense(r))
			}
			// INQUIRY is always allowed.
			want(t, do(lu, n, []byte{0x12, 0, 0, 0, 96, 0}, nil, 96), "GOOD")
		}
		check(iA, true, true)
		check(iB, m.regRead, m.regWrite)
		check(iC, m.unRead, m.unWrite)
	}
}

func TestPRUnitAttentions(t *testing.T) {
	lu, _ := newMemLU(t, 64)
	hello(t, lu, iA, iB, iC)
	want(t, prOut(lu, iA, 0x06, 0, 0, 0xA), "GOOD")
	want(t, prOut(lu, iB, 0x06, 0, 0, 0xB), "GOOD")
	want(t, prOut(lu, iB, 0x01, scsi.PRTypeWriteExclusive, 0xB, 0), "GOOD")
	// A preempts B: B gets REGISTRATIONS PREEMPTED, C (unregistered) nothing.
	want(t, prOut(lu, iA, 0x04, scsi.PRTypeExclusiveAccess, 0xA, 0xB), "GOOD")
	want(t, do(lu, iB, make([]byte, 6), nil, 0), "6/2A/05")
	want(t, do(lu, iC, make([]byte, 6), nil, 0), "GOOD")
	want(t, do(lu, iA, make([]byte, 6), nil, 0), "GOOD")
	// B re-registers; A releases an EA_RO? No: switch to RO type then release.
	want(t, prOut(lu, iB, 0x06, 0, 0, 0xB), "GOOD")
	want(t, prOut(lu, iA, 0x04, scsi.PRTypeExclusiveAccessRO, 0xA, 0xA), "GOOD")
	want(t, do(lu, iB, make([]byte, 6), nil, 0), "6/2A/04") // type changed: RESERVATIONS RELEASED
	want(t, prOut(lu, iA, 0x02, scsi.PRTypeExclusiveAccessRO, 0xA, 0), "GOOD")
	want(t, do(lu, iB, make([]byte, 6), nil, 0), "6/2A/04")
	// CLEAR: RESERVATIONS PREEMPTED to the others.
	want(t, prOut(lu, iA, 0x03, 0, 0xA, 0), "GOOD")
	want(t, do(lu, iB, make([]byte, 6), nil, 0), "6/2A/03")
}

func TestPRParamErrors(t *testing.T) {
	lu, _ := newMemLU(t, 64)
	hello(t, lu, iA)
	p := prParams(0, 1, 0)
	// Parameter list length not 24 without SPEC_I_PT.
	want(t, do(lu, iA, prOutCDB(0, 0, 20), p[:20], 0), "5/1A/00")
	want(t, do(lu, iA, prOutCDB(0, 0, 28), append(p, 0, 0, 0, 0), 0), "5/1A/00")
	// SPEC_I_PT with REGISTER AND IGNORE EXISTING KEY.
	q := append(prParams(0, 1, 0x08), 0, 0, 0, 0)
	want(t, do(lu, iA, prOutCDB(6, 0, len(q)), q, 0), "5/26/00")
	// Unknown service action.
	want(t, do(lu, iA, prOutCDB(0x09, 0, 24), p, 0), "5/24/00")
	// Unsupported PR IN service action.
	c := make([]byte, 10)
	c[0], c[1], c[8] = 0x5E, 0x05, 8
	want(t, do(lu, iA, c, nil, 8), "5/24/00")
	// SPEC_I_PT registers the initiator named in a TransportID.
	name := "iqn.2026-01.test:c"
	tid := make([]byte, 4+24)
	tid[0] = 0x05
	binary.BigEndian.PutUint16(tid[2:], 24)
	copy(tid[4:], name)
	s := prParams(0, 0x77, 0x08)
	s = binary.BigEndian.AppendUint32(s, uint32(len(tid)))
	s = append(s, tid...)
	want(t, do(lu, iA, prOutCDB(0, 0, len(s)), s, 0), "GOOD")
	keys, _ := prIn(lu, iA, 0)
	if binary.BigEndian.Uint32(keys[4:]) != 16 {
		t.Fatalf("READ KEYS after SPEC_I_PT: % x", keys)
	}
	hello(t, lu, iC)
	want(t, prOut(lu, iC, 0, 0, 0x77, 0x78), "GOOD")
}

func TestPRPersistsInFileStore(t *testing.T) {
	dir := t.TempDir()
	store, err := scsi.NewFilePRStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	be := scsitest.NewMemBackend(64 * 512)
	cfg := func(c *scsi.LUConfig) { c.PRStore = store; c.Name = "disk1" }
	lu := newLU(t, plainBackend{be}, cfg)
	hello(t, lu, iA, iB)
	p := prParams(0, 0xA, 0x01) // APTPL
	want(t, do(lu, iA, prOutCDB(0x06, 0, 24), p, 0), "GOOD")
	want(t, prOut(lu, iA, 0x01, scsi.PRTypeExclusiveAccess, 0xA, 0), "GOOD")

	// A new LU (gateway restart) on a fresh store handle sees it all.
	store2, _ := scsi.NewFilePRStore(dir)
	lu2 := newLU(t, plainBackend{scsitest.NewMemBackend(64 * 512)}, func(c *scsi.LUConfig) { c.PRStore = store2; c.Name = "disk1" })
	hello(t, lu2, iA, iB)
	_, r := read10(lu2, iB, 0, 1)
	want(t, r, "CONFLICT")
	res, _ := prIn(lu2, iA, 1)
	if binary.BigEndian.Uint64(res[8:]) != 0xA || res[21] != scsi.PRTypeExclusiveAccess {
		t.Fatalf("READ RESERVATION after reload: % x", res)
	}
	caps, _ := prIn(lu2, iA, 2)
	if caps[3]&1 == 0 {
		t.Fatal("PTPL_A not reported after reload")
	}
}

func TestPRStoreFailureLeavesState(t *testing.T) {
	store := scsi.NewMemPRStore()
	lu := newLU(t, scsitest.NewMemBackend(64*512), func(c *scsi.LUConfig) { c.PRStore = store })
	hello(t, lu, iA)
	want(t, prOut(lu, iA, 0x06, 0, 0, 0xA), "GOOD")
	store.Fail = errors.New("etcd down")
	want(t, prOut(lu, iA, 0x06, 0, 0, 0xB), "5/55/04")
	want(t, prOut(lu, iA, 0x01, scsi.PRTypeExclusiveAccess, 0xA, 0), "B/00/00")
	if st := lu.PRState(); st.Reserved || st.Registrations[0].Key != 0xA {
		t.Fatalf("state changed despite store failure: %+v", st)
	}
}

func TestReserve6(t *testing.T) {
	lu, _ := newMemLU(t, 64)
	hello(t, lu, iA, iB)
	want(t, do(lu, iA, []byte{0x16, 0, 0, 0, 0, 0}, nil, 0), "GOOD")
	want(t, do(lu, iA, []byte{0x16, 0, 0, 0, 0, 0}, nil, 0), "GOOD")
	want(t, do(lu, iB, []byte{0x16, 0, 0, 0, 0, 0}, nil, 0), "CONFLICT")
	_, r := read10(lu, iB, 0, 1)
	want(t, r, "CONFLICT")
	want(t, do(lu, iB, []byte{0x12, 0, 0, 0, 96, 0}, nil, 96), "GOOD")
	// RELEASE from a non-holder: GOOD, nothing released.
	want(t, do(lu, iB, []byte{0x17, 0, 0, 0, 0, 0}, nil, 0), "GOOD")
	_, r = read10(lu, iB, 0, 1)
	want(t, r, "CONFLICT")
	// Nexus loss releases it.
	scsi.NewRouter(map[uint64]*scsi.LogicalUnit{0: lu}).NexusLost(iA)
	_, r = read10(lu, iB, 0, 1)
	want(t, r, "GOOD")
	// RESERVE(10) with 3RDPTY: invalid field.
	want(t, do(lu, iB, []byte{0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0), "5/24/00")
	want(t, do(lu, iB, []byte{0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0), "GOOD")
	// PR registrations with a reservation held: RESERVE from a stranger conflicts.
	want(t, do(lu, iB, []byte{0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0), "GOOD")
	hello(t, lu, iA)
	want(t, prOut(lu, iA, 0x06, 0, 0, 0xA), "GOOD")
	want(t, prOut(lu, iA, 0x01, scsi.PRTypeWriteExclusive, 0xA, 0), "GOOD")
	want(t, do(lu, iB, []byte{0x16, 0, 0, 0, 0, 0}, nil, 0), "CONFLICT")
	want(t, do(lu, iA, []byte{0x16, 0, 0, 0, 0, 0}, nil, 0), "GOOD")
}
