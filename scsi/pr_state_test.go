package scsi

import (
	"encoding/binary"
	"errors"
	"testing"
)

// Test nexuses: two initiators, two target ports.
var (
	nxA  = &Nexus{InitiatorPort: "iqn.a,i,0x000000000001", InitiatorName: "iqn.a", ISID: [6]byte{0, 0, 0, 0, 0, 1}, TargetPort: "iqn.t,t,0x1", RelativeTargetPort: 1}
	nxA2 = &Nexus{InitiatorPort: "iqn.a,i,0x000000000001", InitiatorName: "iqn.a", ISID: [6]byte{0, 0, 0, 0, 0, 1}, TargetPort: "iqn.t,t,0x2", RelativeTargetPort: 2}
	nxB  = &Nexus{InitiatorPort: "iqn.b,i,0x000000000002", InitiatorName: "iqn.b", ISID: [6]byte{0, 0, 0, 0, 0, 2}, TargetPort: "iqn.t,t,0x1", RelativeTargetPort: 1}
	nxC  = &Nexus{InitiatorPort: "iqn.c,i,0x000000000003", InitiatorName: "iqn.c", ISID: [6]byte{0, 0, 0, 0, 0, 3}, TargetPort: "iqn.t,t,0x1", RelativeTargetPort: 1}
)

// prOp is one PR OUT step of a scenario.
type prOp struct {
	n      *Nexus
	sa     byte
	typ    byte
	key    uint64
	sakey  uint64
	aptpl  bool
	allTg  bool
	tids   []TransportID
	unreg  bool
	rtpi   uint16
	scope  byte
	want   string // "", "conflict", or "asc/ascq" like "26/00"
	wantUA []string
}

func run(t *testing.T, st *PRState, op prOp) (*PRState, *PROutResult) {
	t.Helper()
	req := &PROutRequest{
		Nexus: op.n,
		CDB:   PersistentReserveOut{ServiceAction: op.sa, Scope: op.scope, Type: op.typ},
		Params: &PROutParams{Key: op.key, SAKey: op.sakey, APTPL: op.aptpl, AllTgPt: op.allTg,
			SpecIPT: len(op.tids) > 0 && op.sa != prOutRegisterAndMove, TransportIDs: op.tids, Unreg: op.unreg, RelativeTargetPort: op.rtpi},
		TargetPort: func(r uint16) (string, bool) {
			if r == 2 {
				return "iqn.t,t,0x2", true
			}
			return "", false
		},
	}
	before := st.Clone()
	res, err := ApplyPROut(st, req)
	if got := outcome(err); got != op.want {
		t.Fatalf("sa %d from %s: got %q, want %q (%v)", op.sa, op.n.InitiatorName, got, op.want, err)
	}
	if !prEqual(before, st) {
		t.Fatalf("ApplyPROut mutated its input")
	}
	if err != nil {
		return st, nil
	}
	if op.wantUA != nil {
		var got []string
		for _, u := range res.UAs {
			got = append(got, u.Port.Initiator+":"+hexb(u.ASCQ))
		}
		if len(got) != len(op.wantUA) {
			t.Fatalf("sa %d: UAs %v, want %v", op.sa, got, op.wantUA)
		}
		for i := range got {
			if got[i] != op.wantUA[i] {
				t.Fatalf("sa %d: UAs %v, want %v", op.sa, got, op.wantUA)
			}
		}
	}
	return res.State, res
}

func hexb(b byte) string { return string("0123456789abcdef"[b>>4]) + string("0123456789abcdef"[b&15]) }

func outcome(err error) string {
	if err == nil {
		return ""
	}
	var se *StatusError
	if errors.As(err, &se) && se.Status == StatusReservationConflict {
		return "conflict"
	}
	var cc *CheckCondition
	if errors.As(err, &cc) {
		return hexb(cc.ASC) + "/" + hexb(cc.ASCQ)
	}
	return err.Error()
}

func prEqual(a, b *PRState) bool {
	if a.Generation != b.Generation || a.Reserved != b.Reserved || a.Type != b.Type || a.Holder != b.Holder ||
		a.APTPL != b.APTPL || len(a.Registrations) != len(b.Registrations) {
		return false
	}
	for i := range a.Registrations {
		if a.Registrations[i] != b.Registrations[i] {
			return false
		}
	}
	return true
}

func register(t *testing.T, st *PRState, n *Nexus, key uint64) *PRState {
	st, _ = run(t, st, prOp{n: n, sa: prOutRegister, sakey: key})
	return st
}

func TestPRRegister(t *testing.T) {
	st := &PRState{}
	// Unregistered with a non-zero RESERVATION KEY: conflict (SPC-4 table 48).
	st, _ = run(t, st, prOp{n: nxA, sa: prOutRegister, key: 5, sakey: 1, want: "conflict"})
	// Unregistered, SA key 0: GOOD, nothing.
	st, res := run(t, st, prOp{n: nxA, sa: prOutRegister, sakey: 0})
	if res.Changed || st.Generation != 0 {
		t.Fatalf("no-op register changed state: %+v", st)
	}
	st = register(t, st, nxA, 0xA)
	if st.Generation != 1 || !st.Registered(nxA) || st.Registered(nxA2) || st.Registered(nxB) {
		t.Fatalf("after register: %+v", st)
	}
	// Re-register with the wrong key: conflict.
	st, _ = run(t, st, prOp{n: nxA, sa: prOutRegister, key: 0xB, sakey: 0xC, want: "conflict"})
	// Change the key.
	st, _ = run(t, st, prOp{n: nxA, sa: prOutRegister, key: 0xA, sakey: 0xC})
	if st.Registrations[0].Key != 0xC || st.Generation != 2 {
		t.Fatalf("key change: %+v", st)
	}
	// REGISTER AND IGNORE EXISTING KEY ignores the key field.
	st, _ = run(t, st, prOp{n: nxA, sa: prOutRegisterIgnore, key: 0x99, sakey: 0xD})
	if st.Registrations[0].Key != 0xD {
		t.Fatalf("ignore: %+v", st)
	}
	// SPEC_I_PT on a registered nexus: invalid field in parameter list.
	st, _ = run(t, st, prOp{n: nxA, sa: prOutRegister, key: 0xD, sakey: 1, tids: []TransportID{{Name: "iqn.c"}}, want: "26/00"})
	// Unregister.
	st, _ = run(t, st, prOp{n: nxA, sa: prOutRegister, key: 0xD, sakey: 0})
	if len(st.Registrations) != 0 || st.Generation != 4 {
		t.Fatalf("unregister: %+v", st)
	}
	// APTPL is recorded.
	st, _ = run(t, st, prOp{n: nxA, sa: prOutRegister, sakey: 1, aptpl: true})
	if !st.APTPL {
		t.Fatal("APTPL not recorded")
	}
}

func TestPRRegisterAllTgPtAndSpecIPT(t *testing.T) {
	st := &PRState{}
	st, _ = run(t, st, prOp{n: nxA, sa: prOutRegister, sakey: 1, allTg: true})
	if !st.Registered(nxA) || !st.Registered(nxA2) {
		t.Fatal("ALL_TG_PT registration must cover every target port")
	}
	st = &PRState{}
	st, _ = run(t, st, prOp{n: nxA, sa: prOutRegister, sakey: 7, tids: []TransportID{{Name: "iqn.b", ISID: "000000000002"}, {Name: "iqn.c"}}})
	if !st.Registered(nxB) || !st.Registered(nxC) || len(st.Registrations) != 3 {
		t.Fatalf("SPEC_I_PT: %+v", st)
	}
	// A TransportID that is already registered: whole command fails.
	_, _ = run(t, st, prOp{n: &Nexus{InitiatorName: "iqn.d", TargetPort: "iqn.t,t,0x1"}, sa: prOutRegister, sakey: 8,
		tids: []TransportID{{Name: "iqn.e"}, {Name: "iqn.b"}}, want: "26/00"})
	// Resource exhaustion: INSUFFICIENT REGISTRATION RESOURCES.
	req := &PROutRequest{Nexus: nxA, CDB: PersistentReserveOut{ServiceAction: prOutRegister}, Params: &PROutParams{SAKey: 1}, MaxRegistrations: 1}
	full := &PRState{Registrations: []PRRegistration{{Key: 2, Port: PRPortOf(nxB)}}}
	if _, err := ApplyPROut(full, req); outcome(err) != "55/04" {
		t.Fatalf("got %v, want 55/04", err)
	}
}

var allTypes = []byte{PRTypeWriteExclusive, PRTypeExclusiveAccess, PRTypeWriteExclusiveRO,
	PRTypeExclusiveAccessRO, PRTypeWriteExclusiveAR, PRTypeExclusiveAccessAR}

func TestPRReserveRelease(t *testing.T) {
	for _, typ := range allTypes {
		st := register(t, &PRState{}, nxA, 0xA)
		st = register(t, st, nxB, 0xB)
		gen := st.Generation
		// Unregistered nexus and wrong key: conflict.
		run(t, st, prOp{n: nxC, sa: prOutReserve, typ: typ, key: 0, want: "conflict"})
		run(t, st, prOp{n: nxA, sa: prOutReserve, typ: typ, key: 0xB, want: "conflict"})
		// Bad type and scope: invalid field in CDB.
		run(t, st, prOp{n: nxA, sa: prOutReserve, typ: 2, key: 0xA, want: "24/00"})
		run(t, st, prOp{n: nxA, sa: prOutReserve, typ: typ, scope: 1, key: 0xA, want: "24/00"})
		st, _ = run(t, st, prOp{n: nxA, sa: prOutReserve, typ: typ, key: 0xA})
		if st.Generation != gen {
			t.Fatal("RESERVE must not change the generation")
		}
		// Same type again from the holder: GOOD; different type: conflict.
		run(t, st, prOp{n: nxA, sa: prOutReserve, typ: typ, key: 0xA})
		other := PRTypeWriteExclusive
		if typ == other {
			other = PRTypeExclusiveAccess
		}
		run(t, st, prOp{n: nxA, sa: prOutReserve, typ: other, key: 0xA, want: "conflict"})
		ar := prAllRegistrants(typ)
		if ar {
			// B is a holder too: same type is GOOD.
			run(t, st, prOp{n: nxB, sa: prOutReserve, typ: typ, key: 0xB})
		} else {
			run(t, st, prOp{n: nxB, sa: prOutReserve, typ: typ, key: 0xB, want: "conflict"})
			// RELEASE by a non-holder: GOOD, reservation stays.
			s2, _ := run(t, st, prOp{n: nxB, sa: prOutRelease, typ: typ, key: 0xB})
			if !s2.Reserved {
				t.Fatal("non-holder released the reservation")
			}
		}
		// Release with the wrong type: INVALID RELEASE OF PERSISTENT RESERVATION.
		run(t, st, prOp{n: nxA, sa: prOutRelease, typ: other, key: 0xA, want: "26/04"})
		var wantUA []string
		if typ != PRTypeWriteExclusive && typ != PRTypeExclusiveAccess {
			wantUA = []string{"iqn.b:04"}
		} else {
			wantUA = []string{}
		}
		st, _ = run(t, st, prOp{n: nxA, sa: prOutRelease, typ: typ, key: 0xA, wantUA: wantUA})
		if st.Reserved {
			t.Fatal("still reserved after RELEASE")
		}
		// Release with nothing reserved: GOOD.
		run(t, st, prOp{n: nxA, sa: prOutRelease, typ: typ, key: 0xA})
	}
}

func TestPRUnregisterHolder(t *testing.T) {
	for _, typ := range allTypes {
		st := register(t, &PRState{}, nxA, 0xA)
		st = register(t, st, nxB, 0xB)
		st, _ = run(t, st, prOp{n: nxA, sa: prOutReserve, typ: typ, key: 0xA})
		st, _ = run(t, st, prOp{n: nxA, sa: prOutRegister, key: 0xA, sakey: 0})
		if prAllRegistrants(typ) {
			// SPC-4 5.13.11.2.1: all registrants reservations survive
			// until the last registrant leaves.
			if !st.Reserved || !st.IsHolder(nxB) {
				t.Fatalf("type %d: AR reservation lost: %+v", typ, st)
			}
			st, _ = run(t, st, prOp{n: nxB, sa: prOutRegister, key: 0xB, sakey: 0})
		}
		if st.Reserved {
			t.Fatalf("type %d: reservation survived its holder", typ)
		}
	}
}

func TestPRClear(t *testing.T) {
	st := register(t, &PRState{}, nxA, 0xA)
	st = register(t, st, nxB, 0xB)
	st, _ = run(t, st, prOp{n: nxA, sa: prOutReserve, typ: PRTypeExclusiveAccess, key: 0xA})
	run(t, st, prOp{n: nxC, sa: prOutClear, key: 0, want: "conflict"})
	run(t, st, prOp{n: nxB, sa: prOutClear, key: 0xA, want: "conflict"})
	gen := st.Generation
	st, _ = run(t, st, prOp{n: nxB, sa: prOutClear, key: 0xB, wantUA: []string{"iqn.a:03"}})
	if st.Reserved || len(st.Registrations) != 0 || st.Generation != gen+1 {
		t.Fatalf("after CLEAR: %+v", st)
	}
}

func TestPRPreempt(t *testing.T) {
	for _, sa := range []byte{prOutPreempt, prOutPreemptAndAbort} {
		// No reservation: remove registrations by key.
		st := register(t, &PRState{}, nxA, 0xA)
		st = register(t, st, nxB, 0xB)
		st = register(t, st, nxC, 0xB)
		run(t, st, prOp{n: nxA, sa: sa, key: 0xA, sakey: 0, want: "26/00"})
		run(t, st, prOp{n: nxA, sa: sa, key: 0xA, sakey: 0x77, want: "conflict"})
		run(t, st, prOp{n: nxA, sa: sa, key: 0xB, sakey: 0xB, want: "conflict"})
		s2, res := run(t, st, prOp{n: nxA, sa: sa, key: 0xA, sakey: 0xB, wantUA: []string{"iqn.b:05", "iqn.c:05"}})
		if len(s2.Registrations) != 1 || s2.Reserved || len(res.Preempted) != 2 {
			t.Fatalf("preempt without reservation: %+v", s2)
		}
		// Preempt the holder: reservation moves to the preempter, with a
		// new type; C (still registered) learns the reservation changed.
		st = register(t, &PRState{}, nxA, 0xA)
		st = register(t, st, nxB, 0xB)
		st = register(t, st, nxC, 0xC)
		st, _ = run(t, st, prOp{n: nxB, sa: prOutReserve, typ: PRTypeWriteExclusive, key: 0xB})
		run(t, st, prOp{n: nxA, sa: sa, typ: 9, key: 0xA, sakey: 0xB, want: "24/00"})
		s2, _ = run(t, st, prOp{n: nxA, sa: sa, typ: PRTypeExclusiveAccess, key: 0xA, sakey: 0xB,
			wantUA: []string{"iqn.b:05", "iqn.c:04"}})
		if !s2.IsHolder(nxA) || s2.Type != PRTypeExclusiveAccess || s2.Registered(nxB) || !s2.Registered(nxC) {
			t.Fatalf("preempt holder: %+v", s2)
		}
		// Preempt a non-holder key while reserved: registration goes, reservation stays.
		s3, _ := run(t, st, prOp{n: nxA, sa: sa, typ: PRTypeExclusiveAccess, key: 0xA, sakey: 0xC, wantUA: []string{"iqn.c:05"}})
		if !s3.IsHolder(nxB) || s3.Type != PRTypeWriteExclusive || s3.Registered(nxC) {
			t.Fatalf("preempt non-holder: %+v", s3)
		}
		// Holder preempts itself to change type: registration kept.
		s4, _ := run(t, st, prOp{n: nxB, sa: sa, typ: PRTypeExclusiveAccessRO, key: 0xB, sakey: 0xB})
		if !s4.IsHolder(nxB) || s4.Type != PRTypeExclusiveAccessRO {
			t.Fatalf("self preempt: %+v", s4)
		}
		// All registrants with key 0: everyone else goes.
		st = register(t, &PRState{}, nxA, 0xA)
		st = register(t, st, nxB, 0xB)
		st, _ = run(t, st, prOp{n: nxB, sa: prOutReserve, typ: PRTypeExclusiveAccessAR, key: 0xB})
		s5, _ := run(t, st, prOp{n: nxA, sa: sa, typ: PRTypeWriteExclusive, key: 0xA, sakey: 0, wantUA: []string{"iqn.b:05"}})
		if !s5.IsHolder(nxA) || s5.Registered(nxB) || s5.Type != PRTypeWriteExclusive {
			t.Fatalf("AR preempt: %+v", s5)
		}
	}
}

func TestPRRegisterAndMove(t *testing.T) {
	st := register(t, &PRState{}, nxA, 0xA)
	st = register(t, st, nxB, 0xB)
	mv := func(n *Nexus, key, sakey uint64, name, isid string, rtpi uint16, unreg bool, want string) *PRState {
		s, _ := run(t, st, prOp{n: n, sa: prOutRegisterAndMove, key: key, sakey: sakey, rtpi: rtpi, unreg: unreg,
			tids: []TransportID{{Name: name, ISID: isid, Offset: 24}}, want: want})
		return s
	}
	// Not reserved: conflict.
	mv(nxA, 0xA, 0xC, "iqn.c", "", 1, false, "conflict")
	st, _ = run(t, st, prOp{n: nxA, sa: prOutReserve, typ: PRTypeExclusiveAccess, key: 0xA})
	// Not the holder: conflict.
	mv(nxB, 0xB, 0xC, "iqn.c", "", 1, false, "conflict")
	// SA key zero, self as destination, unknown port: invalid field in parameter list.
	mv(nxA, 0xA, 0, "iqn.c", "", 1, false, "26/00")
	mv(nxA, 0xA, 0xC, "iqn.a", "000000000001", 1, false, "26/00")
	mv(nxA, 0xA, 0xC, "iqn.c", "", 9, false, "26/00")
	s := mv(nxA, 0xA, 0xC, "iqn.c", "000000000003", 2, true, "")
	c2 := *nxC
	c2.TargetPort, c2.RelativeTargetPort = "iqn.t,t,0x2", 2
	if !s.IsHolder(&c2) || s.Registered(nxA) || s.Type != PRTypeExclusiveAccess {
		t.Fatalf("after move: %+v", s)
	}
	// An all registrants reservation cannot be moved.
	st2 := register(t, &PRState{}, nxA, 0xA)
	st2, _ = run(t, st2, prOp{n: nxA, sa: prOutReserve, typ: PRTypeWriteExclusiveAR, key: 0xA})
	run(t, st2, prOp{n: nxA, sa: prOutRegisterAndMove, key: 0xA, sakey: 0xC, rtpi: 1, tids: []TransportID{{Name: "iqn.c"}}, want: "conflict"})
}

func TestPRInData(t *testing.T) {
	st := register(t, &PRState{}, nxA, 0xA)
	st = register(t, st, nxB, 0xB)
	k := prInReadKeysData(st)
	if binary.BigEndian.Uint32(k[0:]) != 2 || binary.BigEndian.Uint32(k[4:]) != 16 || binary.BigEndian.Uint64(k[16:]) != 0xB {
		t.Fatalf("READ KEYS % x", k)
	}
	if r := prInReadReservationData(st); len(r) != 8 || binary.BigEndian.Uint32(r[4:]) != 0 {
		t.Fatalf("READ RESERVATION unreserved % x", r)
	}
	st, _ = run(t, st, prOp{n: nxB, sa: prOutReserve, typ: PRTypeWriteExclusiveRO, key: 0xB})
	r := prInReadReservationData(st)
	if len(r) != 24 || binary.BigEndian.Uint64(r[8:]) != 0xB || r[21] != PRTypeWriteExclusiveRO {
		t.Fatalf("READ RESERVATION % x", r)
	}
	c := prInReportCapsData(st)
	if binary.BigEndian.Uint16(c) != 8 || c[3]&0x80 == 0 || c[4] != 0xEA || c[5] != 0x01 {
		t.Fatalf("REPORT CAPABILITIES % x", c)
	}
	f := prInReadFullStatusData(st)
	// First descriptor (A) is not holder; second (B) is.
	if f[8+12]&1 != 0 {
		t.Fatal("A reported as holder")
	}
	d2 := 8 + 24 + int(binary.BigEndian.Uint32(f[8+20:]))
	if f[d2+12]&1 == 0 || f[d2+13] != PRTypeWriteExclusiveRO {
		t.Fatalf("B descriptor % x", f[d2:])
	}
	tids, err := decodeTransportIDs(f[d2+24:], 0, true)
	if err != nil || tids[0].Name != "iqn.b" || tids[0].ISID != "000000000002" {
		t.Fatalf("full status TransportID %+v %v", tids, err)
	}
}
