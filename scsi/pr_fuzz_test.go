package scsi

import (
	"errors"
	"testing"
)

// FuzzPROutParams feeds arbitrary parameter lists through the decoder and,
// when they decode, through the state machine: neither may panic, and
// every rejection must be a SCSI outcome.
func FuzzPROutParams(f *testing.F) {
	basic := make([]byte, 24)
	basic[15] = 1
	f.Add(byte(prOutRegister), basic)
	spec := append(append([]byte{}, basic...), 0, 0, 0, 28)
	spec[20] = 0x08
	spec = append(spec, encodeTransportID(PRPort{Initiator: "iqn.x", ISID: "000000000001"})...)
	f.Add(byte(prOutRegister), spec)
	mv := append(append([]byte{}, basic...), encodeTransportID(PRPort{Initiator: "iqn.y"})...)
	mv[23] = byte(len(mv) - 24)
	f.Add(byte(prOutRegisterAndMove), mv)
	f.Fuzz(func(t *testing.T, sa byte, b []byte) {
		sa &= 0x1F
		p, err := decodePROutParams(sa, b)
		if err != nil {
			var cc *CheckCondition
			if !errors.As(err, &cc) {
				t.Fatalf("decoder returned %T", err)
			}
			return
		}
		st := &PRState{Registrations: []PRRegistration{{Key: 1, Port: PRPortOf(nxA)}}, Reserved: true, Type: PRTypeWriteExclusive, Holder: PRPortOf(nxA)}
		for _, ty := range []byte{PRTypeExclusiveAccess, 0x0F} {
			res, err := ApplyPROut(st, &PROutRequest{Nexus: nxA, CDB: PersistentReserveOut{ServiceAction: sa, Type: ty}, Params: p})
			if err != nil {
				var cc *CheckCondition
				var se *StatusError
				if !errors.As(err, &cc) && !errors.As(err, &se) {
					t.Fatalf("state machine returned %T", err)
				}
				continue
			}
			if res.State.Reserved && !validPRType(res.State.Type) {
				t.Fatalf("invalid reservation type %d established", res.State.Type)
			}
		}
	})
}
