package scsi_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/scsi/scsitest"
)

var (
	nexusA = &scsi.Nexus{InitiatorPort: "iqn.2024-01.test:a,i,0x000000000001", InitiatorName: "iqn.2024-01.test:a",
		TargetPort: "iqn.2024-01.test:tgt,t,0x0001", RelativeTargetPort: 1, TargetPortGroup: 1}
	nexusB = &scsi.Nexus{InitiatorPort: "iqn.2024-01.test:b,i,0x000000000002", InitiatorName: "iqn.2024-01.test:b",
		TargetPort: "iqn.2024-01.test:tgt,t,0x0001", RelativeTargetPort: 1, TargetPortGroup: 1}
)

const testBlocks = 2048

type env struct {
	t  *testing.T
	be *scsitest.MemBackend
	lu *scsi.LogicalUnit
	rt scsi.Router
}

func newEnv(t *testing.T, mod func(*scsi.LUConfig)) *env {
	t.Helper()
	cfg := scsi.LUConfig{Name: "rbd/test", Serial: "serial0001"}
	if mod != nil {
		mod(&cfg)
	}
	bs := int64(512)
	if cfg.BlockSize != 0 {
		bs = int64(cfg.BlockSize)
	}
	be := scsitest.NewMemBackend(testBlocks * bs)
	lu, err := scsi.NewLogicalUnit(cfg, be)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if v := be.Violations(); v != 0 {
			t.Errorf("backend contract violated %d times", v)
		}
		lu.Close()
	})
	e := &env{t: t, be: be, lu: lu, rt: scsi.NewRouter(map[uint64]*scsi.LogicalUnit{0: lu})}
	// Consume the power-on unit attention of both nexuses.
	e.do(nexusA, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
	e.do(nexusB, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
	return e
}

// do runs cdb on LUN 0 with out as Data-Out and an in buffer of inLen.
func (e *env) do(n *scsi.Nexus, cdb []byte, out []byte, inLen int) (scsi.Response, []byte) {
	return e.doLUN(n, 0, cdb, out, inLen)
}

func (e *env) doLUN(n *scsi.Nexus, lun uint64, cdb []byte, out []byte, inLen int) (scsi.Response, []byte) {
	e.t.Helper()
	cmd := &scsi.Command{Nexus: n, LUN: lun, CDB: cdb, DataOut: out}
	if out != nil {
		cmd.Dir = scsi.DirWrite
		cmd.ExpectedLength = uint32(len(out))
	}
	if inLen > 0 {
		cmd.Dir |= scsi.DirRead
		cmd.DataIn = make([]byte, inLen)
		cmd.ExpectedLength = uint32(inLen)
	}
	resp := e.rt.Execute(context.Background(), cmd)
	if resp.DataLen > len(cmd.DataIn) {
		e.t.Fatalf("DataLen %d > buffer %d", resp.DataLen, len(cmd.DataIn))
	}
	return resp, cmd.DataIn[:resp.DataLen]
}

// senseOf returns key, asc, ascq of fixed or descriptor sense.
func senseOf(b []byte) (key, asc, ascq byte) {
	if len(b) < 4 {
		return 0xFF, 0xFF, 0xFF
	}
	if b[0]&0x7F >= 0x72 {
		return b[1] & 0x0F, b[2], b[3]
	}
	if len(b) < 14 {
		return 0xFF, 0xFF, 0xFF
	}
	return b[2] & 0x0F, b[12], b[13]
}

func wantGood(t *testing.T, r scsi.Response) {
	t.Helper()
	if r.Status != scsi.StatusGood {
		k, a, q := senseOf(r.Sense)
		t.Fatalf("status %#x sense %x/%02x/%02x, want GOOD", r.Status, k, a, q)
	}
}

func wantSense(t *testing.T, r scsi.Response, key, asc, ascq byte) {
	t.Helper()
	if r.Status != scsi.StatusCheckCondition {
		t.Fatalf("status %#x, want CHECK CONDITION %x/%02x/%02x", r.Status, key, asc, ascq)
	}
	k, a, q := senseOf(r.Sense)
	if k != key || a != asc || q != ascq {
		t.Fatalf("sense %x/%02x/%02x, want %x/%02x/%02x", k, a, q, key, asc, ascq)
	}
}

// wantField checks the sense-key specific field pointer of fixed sense.
func wantField(t *testing.T, r scsi.Response, cd bool, field uint16, bit int) {
	t.Helper()
	s := r.Sense
	if len(s) < 18 || s[15]&0x80 == 0 {
		t.Fatalf("no SKSV field pointer in sense %x", s)
	}
	if got := s[15]&0x40 != 0; got != cd {
		t.Fatalf("C/D = %v, want %v", got, cd)
	}
	if got := uint16(s[16])<<8 | uint16(s[17]); got != field {
		t.Fatalf("field pointer %d, want %d", got, field)
	}
	if bit >= 0 && (s[15]&0x08 == 0 || int(s[15]&7) != bit) {
		t.Fatalf("bit pointer %x, want %d", s[15], bit)
	}
}

func fill(n int, v byte) []byte { return bytes.Repeat([]byte{v}, n) }
