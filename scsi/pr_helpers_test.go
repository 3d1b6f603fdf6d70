package scsi_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/scsi/scsitest"
)

// Helpers shared by the extras' LU-level tests (package scsi_test, so they
// exercise the LU exactly as a transport does).

func mkNexus(name string, isid byte, tpgt int) *scsi.Nexus {
	n := &scsi.Nexus{
		InitiatorName:      name,
		ISID:               [6]byte{0x80, 0, 0, 0, 0, isid},
		TargetPort:         fmt.Sprintf("iqn.2026-01.test:tgt,t,0x%x", tpgt),
		RelativeTargetPort: uint16(tpgt),
	}
	n.InitiatorPort = fmt.Sprintf("%s,i,0x%x", name, n.ISID[:])
	return n
}

var (
	iA = mkNexus("iqn.2026-01.test:a", 1, 1)
	iB = mkNexus("iqn.2026-01.test:b", 2, 1)
	iC = mkNexus("iqn.2026-01.test:c", 3, 1)
)

// plainBackend hides every optional interface of the wrapped backend, so
// the device server's own fallbacks run.
type plainBackend struct{ scsi.Backend }

func newLU(t *testing.T, be scsi.Backend, mod func(*scsi.LUConfig)) *scsi.LogicalUnit {
	t.Helper()
	cfg := scsi.LUConfig{Name: "test/" + t.Name(), ThinProvisioned: true}
	if mod != nil {
		mod(&cfg)
	}
	lu, err := scsi.NewLogicalUnit(cfg, be)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lu.Close() })
	return lu
}

func newMemLU(t *testing.T, blocks int64) (*scsi.LogicalUnit, *scsitest.MemBackend) {
	be := scsitest.NewMemBackend(blocks * 512)
	return newLU(t, be, nil), be
}

// do runs one command; in is the Data-In buffer size.
func do(lu *scsi.LogicalUnit, n *scsi.Nexus, cdb, out []byte, in int) scsi.Response {
	_, r := doIn(lu, n, cdb, out, in)
	return r
}

// doIn runs one command and returns its valid Data-In bytes too.
func doIn(lu *scsi.LogicalUnit, n *scsi.Nexus, cdb, out []byte, in int) ([]byte, scsi.Response) {
	cmd := &scsi.Command{Nexus: n, CDB: cdb, DataOut: out, ExpectedLength: uint32(max(len(out), in)), DataIn: make([]byte, in)}
	if len(out) > 0 {
		cmd.Dir = scsi.DirWrite
	}
	if in > 0 {
		cmd.Dir |= scsi.DirRead
	}
	r := lu.Execute(context.Background(), cmd)
	return cmd.DataIn[:r.DataLen], r
}

// hello clears the power-on unit attention of a nexus.
func hello(t *testing.T, lu *scsi.LogicalUnit, ns ...*scsi.Nexus) {
	t.Helper()
	for _, n := range ns {
		for i := 0; i < 20; i++ {
			if do(lu, n, make([]byte, 6), nil, 0).Status == scsi.StatusGood {
				break
			}
		}
	}
}

// sense returns "KEY/ASC/ASCQ" of a response, or its status.
func sense(r scsi.Response) string {
	switch r.Status {
	case scsi.StatusGood:
		return "GOOD"
	case scsi.StatusReservationConflict:
		return "CONFLICT"
	case scsi.StatusCheckCondition:
		s := r.Sense
		if len(s) >= 14 && s[0]&0x7F == 0x70 {
			return fmt.Sprintf("%X/%02X/%02X", s[2]&0xF, s[12], s[13])
		}
		if len(s) >= 4 {
			return fmt.Sprintf("%X/%02X/%02X", s[1]&0xF, s[2], s[3])
		}
	}
	return fmt.Sprintf("status %#x", r.Status)
}

func want(t *testing.T, r scsi.Response, w string) {
	t.Helper()
	if got := sense(r); got != w {
		t.Fatalf("got %s, want %s", got, w)
	}
}

func cdb10(op byte, b1 byte, lba uint32, n uint16) []byte {
	c := make([]byte, 10)
	c[0], c[1] = op, b1
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], n)
	return c
}

func cdb16(op byte, b1 byte, lba uint64, n uint32) []byte {
	c := make([]byte, 16)
	c[0], c[1] = op, b1
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], n)
	return c
}

func read10(lu *scsi.LogicalUnit, n *scsi.Nexus, lba uint32, blocks uint16) ([]byte, scsi.Response) {
	return doIn(lu, n, cdb10(0x28, 0, lba, blocks), nil, int(blocks)*512)
}

func write10(lu *scsi.LogicalUnit, n *scsi.Nexus, lba uint32, data []byte) scsi.Response {
	return do(lu, n, cdb10(0x2A, 0, lba, uint16(len(data)/512)), data, 0)
}

// PR command builders.
func prOutCDB(sa, typ byte, plen int) []byte {
	c := make([]byte, 10)
	c[0], c[1], c[2] = 0x5F, sa, typ
	binary.BigEndian.PutUint32(c[5:], uint32(plen))
	return c
}

func prParams(key, sakey uint64, flags byte) []byte {
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:], key)
	binary.BigEndian.PutUint64(p[8:], sakey)
	p[20] = flags
	return p
}

func prOut(lu *scsi.LogicalUnit, n *scsi.Nexus, sa, typ byte, key, sakey uint64) scsi.Response {
	p := prParams(key, sakey, 0)
	return do(lu, n, prOutCDB(sa, typ, len(p)), p, 0)
}

func prIn(lu *scsi.LogicalUnit, n *scsi.Nexus, sa byte) ([]byte, scsi.Response) {
	c := make([]byte, 10)
	c[0], c[1] = 0x5E, sa
	binary.BigEndian.PutUint16(c[7:], 4096)
	return doIn(lu, n, c, nil, 4096)
}
