package scsi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/alua"
	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/scsi/scsitest"
)

func TestPowerOnUnitAttention(t *testing.T) {
	e := newEnv(t, nil)
	c := &scsi.Nexus{InitiatorPort: "iqn.x:c,i,0x01", TargetPort: "iqn.x:t,t,0x1"}
	// INQUIRY does not consume the UA (SAM-5 5.14).
	r, _ := e.do(c, []byte{0x12, 0, 0, 0, 36, 0}, nil, 36)
	wantGood(t, r)
	r, _ = e.do(c, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
	wantSense(t, r, scsi.SenseUnitAttention, 0x29, 0x00)
	r, _ = e.do(c, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
	wantGood(t, r)
}

func TestRequestSenseClearsUA(t *testing.T) {
	e := newEnv(t, nil)
	c := &scsi.Nexus{InitiatorPort: "iqn.x:c,i,0x01", TargetPort: "iqn.x:t,t,0x1"}
	r, d := e.do(c, []byte{0x03, 0, 0, 0, 252, 0}, nil, 252)
	wantGood(t, r)
	if k, a, q := senseOf(d); k != scsi.SenseUnitAttention || a != 0x29 || q != 0 {
		t.Fatalf("REQUEST SENSE data %x", d)
	}
	// DESC=1 asks for descriptor format.
	r, d = e.do(c, []byte{0x03, 1, 0, 0, 252, 0}, nil, 252)
	wantGood(t, r)
	if d[0] != 0x72 || d[1] != 0 {
		t.Fatalf("want descriptor NO SENSE, got %x", d)
	}
	r, _ = e.do(c, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
	wantGood(t, r)
}

func TestCDBChecks(t *testing.T) {
	e := newEnv(t, func(c *scsi.LUConfig) { c.MaxTransferBlocks = 1024 })
	for _, tc := range []struct {
		name    string
		cdb     []byte
		asc     byte
		field   uint16
		bit     int
		noField bool
	}{
		{"unknown opcode", []byte{0xEE, 0, 0, 0, 0, 0}, 0x20, 0, -1, false},
		{"NACA", []byte{0, 0, 0, 0, 0, 0x04}, 0x24, 5, 2, false},
		{"short READ(10)", []byte{0x28, 0, 0, 0}, 0x24, 0, -1, false},
		{"RDPROTECT", []byte{0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0}, 0x24, 1, 7, false},
		{"WRPROTECT", []byte{0x2A, 0x40, 0, 0, 0, 0, 0, 0, 1, 0}, 0x24, 1, 7, false},
		{"CmdDt", []byte{0x12, 0x02, 0, 0, 36, 0}, 0x24, 1, 1, false},
		{"page without EVPD", []byte{0x12, 0, 0x80, 0, 36, 0}, 0x24, 2, -1, false},
		{"unknown VPD", []byte{0x12, 1, 0x55, 0, 36, 0}, 0x24, 2, -1, false},
		{"RC10 LBA without PMI", []byte{0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0}, 0x24, 2, -1, false},
		{"unknown SA", []byte{0x9E, 0x1B, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, 0x24, 1, 4, false},
		{"mode sense saved", []byte{0x1A, 0, 0xC8, 0, 255, 0}, 0x39, 2, 7, false},
		{"mode sense bad page", []byte{0x1A, 0, 0x05, 0, 255, 0}, 0x24, 2, 5, false},
		{"RSOC bad option", []byte{0xA3, 0x0C, 0x05, 0, 0, 0, 0, 0, 1, 0, 0, 0}, 0x24, 2, 2, false},
		{"RTPG bad format", []byte{0xA3, 0x4A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, 0x24, 1, 7, false},
		{"REPORT LUNS small alloc", []byte{0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0}, 0x24, 6, -1, false},
		{"START STOP LOEJ", []byte{0x1B, 0, 0, 0, 0x02, 0}, 0x24, 4, 1, false},
		{"READ beyond end", []byte{0x28, 0, 0, 0, 0x07, 0xFF, 0, 0, 2, 0}, 0x21, 0, 0, true},
		{"READ(16) LBA overflow", []byte{0x88, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 2, 0, 0}, 0x21, 0, 0, true},
		{"READ above max transfer", []byte{0x28, 0, 0, 0, 0, 0, 0, 0x04, 0x01, 0}, 0x24, 7, -1, false},
		{"VERIFY BYTCHK 2", []byte{0x2F, 0x04, 0, 0, 0, 0, 0, 0, 1, 0}, 0x24, 1, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := e.do(nexusA, tc.cdb, nil, 512)
			wantSense(t, r, scsi.SenseIllegalRequest, tc.asc, 0)
			if !tc.noField {
				wantField(t, r, true, tc.field, tc.bit)
			}
		})
	}
	if n := e.be.Count(scsitest.OpRead); n != 0 {
		t.Fatalf("backend read %d times on rejected commands", n)
	}
}

func TestZeroLengthTransfers(t *testing.T) {
	e := newEnv(t, nil)
	for _, cdb := range [][]byte{
		{0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		{0x2A, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		{0xA8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		{0x8A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		{0x2F, 0x02, 0, 0, 0, 0, 0, 0, 0, 0},
		{0x2E, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		// LBA == capacity with zero blocks is in range (SBC-3 4.5).
		{0x28, 0, 0, 0, 0x08, 0, 0, 0, 0, 0},
	} {
		r, _ := e.do(nexusA, cdb, nil, 0)
		wantGood(t, r)
		if r.TransferLength != 0 {
			t.Fatalf("%x: TransferLength %d", cdb, r.TransferLength)
		}
	}
	if e.be.Count(scsitest.OpRead)+e.be.Count(scsitest.OpWrite) != 0 {
		t.Fatal("zero-length commands reached the backend")
	}
	// READ(6) with length 0 means 256 blocks.
	r, d := e.do(nexusA, []byte{0x08, 0, 0, 0, 0, 0}, nil, 256*512)
	wantGood(t, r)
	if len(d) != 256*512 || r.TransferLength != 256*512 {
		t.Fatalf("READ(6) 0 blocks: %d bytes", len(d))
	}
}

func TestWriteResiduals(t *testing.T) {
	// libiscsi Write10Residuals: fewer bytes than the CDB asks: GOOD, only
	// whole blocks received are written, TransferLength says the CDB size.
	e := newEnv(t, nil)
	r, _ := e.do(nexusA, []byte{0x2A, 0, 0, 0, 0, 0, 0, 0, 2, 0}, fill(1024, 'a'), 0)
	wantGood(t, r)
	r, _ = e.do(nexusA, []byte{0x2A, 0, 0, 0, 0, 0, 0, 0, 2, 0}, fill(512, 'b'), 0)
	wantGood(t, r)
	if r.TransferLength != 1024 {
		t.Fatalf("TransferLength %d, want 1024", r.TransferLength)
	}
	got := e.be.Bytes(0, 1024)
	if !bytes.Equal(got[:512], fill(512, 'b')) || !bytes.Equal(got[512:], fill(512, 'a')) {
		t.Fatal("short write wrote the wrong blocks")
	}
	// 200 bytes: nothing whole to write, still GOOD.
	r, _ = e.do(nexusA, []byte{0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0}, fill(200, 'c'), 0)
	wantGood(t, r)
	// No data at all.
	r, _ = e.do(nexusA, []byte{0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0}, nil, 0)
	wantGood(t, r)
	if !bytes.Equal(e.be.Bytes(0, 512), fill(512, 'b')) {
		t.Fatal("partial block was written")
	}
	// Read with a small buffer: overflow, the transfer length stays 2 blocks.
	r, d := e.do(nexusA, []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0}, nil, 512)
	wantGood(t, r)
	if r.TransferLength != 1024 || len(d) != 512 || !bytes.Equal(d, fill(512, 'b')) {
		t.Fatalf("read overflow: tl %d len %d", r.TransferLength, len(d))
	}
}

func TestFUAAndDurability(t *testing.T) {
	e := newEnv(t, func(c *scsi.LUConfig) { c.WriteCache = true })
	e.do(nexusA, []byte{0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0}, fill(512, 1), 0)
	e.do(nexusA, []byte{0x2A, 0x08, 0, 0, 0, 2, 0, 0, 1, 0}, fill(512, 2), 0)
	crash := e.be.CrashClone()
	if !bytes.Equal(crash.Bytes(512, 512), make([]byte, 512)) {
		t.Fatal("cached write survived the crash")
	}
	if !bytes.Equal(crash.Bytes(1024, 512), fill(512, 2)) {
		t.Fatal("FUA write lost in the crash")
	}
	r, _ := e.do(nexusA, []byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0)
	wantGood(t, r)
	if !bytes.Equal(e.be.CrashClone().Bytes(512, 512), fill(512, 1)) {
		t.Fatal("SYNCHRONIZE CACHE did not make the write durable")
	}
	// WCE=0 (default): every write is durable.
	e2 := newEnv(t, nil)
	e2.do(nexusA, []byte{0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0}, fill(512, 3), 0)
	if !bytes.Equal(e2.be.CrashClone().Bytes(512, 512), fill(512, 3)) {
		t.Fatal("write with WCE=0 was not durable")
	}
}

func TestBackendErrors(t *testing.T) {
	e := newEnv(t, nil)
	e.be.SetHook(func(ctx context.Context, op scsitest.Op, off, n int64) error {
		switch op {
		case scsitest.OpRead:
			return scsitest.ErrInjected
		case scsitest.OpWrite:
			return &scsi.NotReadyError{ASC: 0x04, ASCQ: 0x0A, Err: scsitest.ErrInjected}
		}
		return nil
	})
	r, _ := e.do(nexusA, []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}, nil, 512)
	wantSense(t, r, scsi.SenseMediumError, 0x11, 0)
	r, _ = e.do(nexusA, []byte{0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0}, fill(512, 0), 0)
	wantSense(t, r, scsi.SenseNotReady, 0x04, 0x0A)
	e.be.SetHook(func(ctx context.Context, op scsitest.Op, off, n int64) error { return scsitest.ErrInjected })
	r, _ = e.do(nexusA, []byte{0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0}, fill(512, 0), 0)
	wantSense(t, r, scsi.SenseMediumError, 0x0C, 0)
	// Two more errors are the power-on unit attentions newEnv consumed.
	if s := e.lu.Stats(); s.Errors != 5 || s.ReadOps != 1 || s.WriteOps != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestReadOnly(t *testing.T) {
	e := newEnv(t, func(c *scsi.LUConfig) { c.ReadOnly = true })
	r, _ := e.do(nexusA, []byte{0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0}, fill(512, 0), 0)
	wantSense(t, r, scsi.SenseDataProtect, 0x27, 0)
	r, d := e.do(nexusA, []byte{0x1A, 0x08, 0x3F, 0, 255, 0}, nil, 255)
	wantGood(t, r)
	if d[2]&0x80 == 0 {
		t.Fatal("WP not set in MODE SENSE")
	}
}

func TestInquiry(t *testing.T) {
	e := newEnv(t, func(c *scsi.LUConfig) { c.ThinProvisioned = true })
	r, d := e.do(nexusA, []byte{0x12, 0, 0, 0x01, 0x04, 0}, nil, 260)
	wantGood(t, r)
	if len(d) < 36 || int(d[4]) != len(d)-5 || d[2] != 6 || d[5]&0x30 != 0x10 || d[7]&0x02 == 0 {
		t.Fatalf("standard INQUIRY %x", d)
	}
	if string(d[8:16]) != "RBDGW   " {
		t.Fatalf("vendor %q", d[8:16])
	}
	// Allocation length 0: no data, not an error; small: truncated.
	r, d = e.do(nexusA, []byte{0x12, 0, 0, 0, 0, 0}, nil, 0)
	wantGood(t, r)
	if len(d) != 0 || r.TransferLength != 0 {
		t.Fatal("alloc 0 returned data")
	}
	r, d = e.do(nexusA, []byte{0x12, 0, 0, 0, 5, 0}, nil, 5)
	wantGood(t, r)
	if len(d) != 5 || r.TransferLength != 5 {
		t.Fatal("alloc 5")
	}
	// Supported pages.
	r, d = e.do(nexusA, []byte{0x12, 1, 0, 0, 255, 0}, nil, 255)
	wantGood(t, r)
	if !bytes.Equal(d, []byte{0, 0, 0, 6, 0, 0x80, 0x83, 0xB0, 0xB1, 0xB2}) {
		t.Fatalf("VPD 00: %x", d)
	}
	r, d = e.do(nexusA, []byte{0x12, 1, 0x80, 0, 255, 0}, nil, 255)
	if string(d[4:]) != "serial0001" {
		t.Fatalf("VPD 80: %q", d)
	}
	r, d = e.do(nexusA, []byte{0x12, 1, 0x83, 0, 255, 0}, nil, 255)
	wantGood(t, r)
	cfg := e.lu.Config()
	if d[4] != 0x01 || d[5] != 0x03 || d[7] != 16 || !bytes.Equal(d[8:24], cfg.WWN[:]) || d[8]>>4 != 6 {
		t.Fatalf("VPD 83 NAA: %x", d)
	}
	if !bytes.Contains(d, []byte{0x51, 0x94, 0, 4, 0, 0, 0, 1}) || !bytes.Contains(d, []byte{0x51, 0x95, 0, 4, 0, 0, 0, 1}) {
		t.Fatalf("VPD 83 lacks port designators: %x", d)
	}
	if !bytes.Contains(d, []byte(nexusA.TargetPort+"\x00")) {
		t.Fatal("VPD 83 lacks the SCSI name string")
	}
	r, d = e.do(nexusA, []byte{0x12, 1, 0xB0, 0, 255, 0}, nil, 255)
	wantGood(t, r)
	// Default MAXIMUM TRANSFER LENGTH: 32 MiB of 512-byte blocks; MAXIMUM
	// UNMAP LBA COUNT at most 1Mi (libiscsi Inquiry.BlockLimits).
	if d[3] != 0x3C || binary.BigEndian.Uint32(d[8:]) != 65536 || binary.BigEndian.Uint32(d[20:]) == 0 ||
		binary.BigEndian.Uint32(d[20:]) > 1<<20 {
		t.Fatalf("VPD B0: %x", d)
	}
	r, d = e.do(nexusA, []byte{0x12, 1, 0xB1, 0, 255, 0}, nil, 255)
	if binary.BigEndian.Uint16(d[4:]) != 1 {
		t.Fatalf("VPD B1: %x", d)
	}
	r, d = e.do(nexusA, []byte{0x12, 1, 0xB2, 0, 255, 0}, nil, 255)
	if d[5]&0xE4 != 0xE4 || d[6]&7 != 2 {
		t.Fatalf("VPD B2: %x", d)
	}
}

func TestReadCapacity(t *testing.T) {
	e := newEnv(t, func(c *scsi.LUConfig) { c.ThinProvisioned = true })
	r, d := e.do(nexusA, []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 8)
	wantGood(t, r)
	if !bytes.Equal(d, []byte{0, 0, 0x07, 0xFF, 0, 0, 2, 0}) {
		t.Fatalf("RC10 %x", d)
	}
	r, d = e.do(nexusA, []byte{0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, nil, 32)
	wantGood(t, r)
	if binary.BigEndian.Uint64(d) != testBlocks-1 || binary.BigEndian.Uint32(d[8:]) != 512 || d[14]&0xC0 != 0xC0 {
		t.Fatalf("RC16 %x", d)
	}
	// Resize: CAPACITY DATA HAS CHANGED on every nexus, once.
	e.be.Resize(4096 * 512)
	r, _ = e.do(nexusA, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
	wantSense(t, r, scsi.SenseUnitAttention, 0x2A, 0x09)
	r, _ = e.do(nexusB, []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 8)
	wantSense(t, r, scsi.SenseUnitAttention, 0x2A, 0x09)
	r, d = e.do(nexusB, []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 8)
	wantGood(t, r)
	if binary.BigEndian.Uint32(d) != 4095 {
		t.Fatalf("after resize %x", d)
	}
}

func TestModeSenseSelect(t *testing.T) {
	e := newEnv(t, nil)
	r, d := e.do(nexusA, []byte{0x1A, 0, 0x3F, 0, 255, 0}, nil, 255)
	wantGood(t, r)
	if int(d[0]) != len(d)-1 || d[3] != 8 {
		t.Fatalf("MODE SENSE(6) header %x", d[:4])
	}
	// MODE SENSE(10) with LLBAA: long descriptor.
	r, d = e.do(nexusA, []byte{0x5A, 0x10, 0x08, 0, 0, 0, 0, 0, 255, 0}, nil, 255)
	wantGood(t, r)
	if d[4]&1 == 0 || binary.BigEndian.Uint16(d[6:]) != 16 || binary.BigEndian.Uint64(d[8:]) != testBlocks || d[24] != 0x08 {
		t.Fatalf("MODE SENSE(10) LLBAA %x", d)
	}
	// Changeable control page: D_SENSE only.
	r, d = e.do(nexusA, []byte{0x1A, 0x08, 0x4A, 0, 255, 0}, nil, 255)
	wantGood(t, r)
	if d[4] != 0x0A || d[6] != 0x04 {
		t.Fatalf("changeable control %x", d)
	}
	// Current control page, then set D_SENSE.
	r, d = e.do(nexusA, []byte{0x1A, 0x08, 0x0A, 0, 255, 0}, nil, 255)
	wantGood(t, r)
	page := append([]byte(nil), d[4:]...)
	page[2] |= 0x04
	param := append([]byte{0, 0, 0, 0}, page...)
	r, _ = e.do(nexusA, []byte{0x15, 0x10, 0, 0, byte(len(param)), 0}, param, 0)
	wantGood(t, r)
	// The other nexus learns MODE PARAMETERS CHANGED, in descriptor format.
	r, _ = e.do(nexusB, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
	wantSense(t, r, scsi.SenseUnitAttention, 0x2A, 0x01)
	if r.Sense[0] != 0x72 {
		t.Fatalf("D_SENSE=1 but sense %x", r.Sense)
	}
	r, _ = e.do(nexusA, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
	wantGood(t, r)
	// Changing an unchangeable field: INVALID FIELD IN PARAMETER LIST.
	page[3] ^= 0x02 // QERR
	param = append([]byte{0, 0, 0, 0}, page...)
	r, _ = e.do(nexusA, []byte{0x15, 0x10, 0, 0, byte(len(param)), 0}, param, 0)
	wantSense(t, r, scsi.SenseIllegalRequest, 0x26, 0)
	if r.Sense[0] != 0x72 || !bytes.Contains(r.Sense, []byte{0x02, 0x06, 0, 0, 0x80 | 0x08 | 1, 0, 7}) {
		t.Fatalf("descriptor sense without field pointer: %x", r.Sense)
	}
	// PF=0 with data, SP=1.
	r, _ = e.do(nexusA, []byte{0x15, 0x00, 0, 0, byte(len(param)), 0}, param, 0)
	wantSense(t, r, scsi.SenseIllegalRequest, 0x24, 0)
	r, _ = e.do(nexusA, []byte{0x15, 0x11, 0, 0, byte(len(param)), 0}, param, 0)
	wantSense(t, r, scsi.SenseIllegalRequest, 0x24, 0)
	// WCE via MODE SELECT(10) takes effect: writes are no longer FUA.
	r, d = e.do(nexusA, []byte{0x5A, 0x08, 0x08, 0, 0, 0, 0, 0, 255, 0}, nil, 255)
	wantGood(t, r)
	cp := append([]byte(nil), d[8:]...)
	cp[2] |= 0x04
	param = append(make([]byte, 8), cp...)
	r, _ = e.do(nexusA, []byte{0x55, 0x10, 0, 0, 0, 0, 0, 0, byte(len(param)), 0}, param, 0)
	wantGood(t, r)
	e.do(nexusA, []byte{0x2A, 0, 0, 0, 0, 5, 0, 0, 1, 0}, fill(512, 9), 0)
	if bytes.Equal(e.be.CrashClone().Bytes(5*512, 512), fill(512, 9)) {
		t.Fatal("WCE=1 write was durable without flush")
	}
	// LU reset restores defaults and reports 29/03.
	e.rt.TaskManagement(nexusA, scsi.TMFLogicalUnitReset, 0)
	r, _ = e.do(nexusA, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
	if r.Sense[0] != 0x70 {
		t.Fatalf("reset did not restore D_SENSE=0: %x", r.Sense)
	}
	wantSense(t, r, scsi.SenseUnitAttention, 0x29, 0x03)
}

func TestVerify(t *testing.T) {
	e := newEnv(t, nil)
	e.do(nexusA, []byte{0x2A, 0, 0, 0, 0, 0, 0, 0, 2, 0}, fill(1024, 7), 0)
	r, _ := e.do(nexusA, []byte{0x2F, 0x02, 0, 0, 0, 0, 0, 0, 2, 0}, fill(1024, 7), 0)
	wantGood(t, r)
	bad := fill(1024, 7)
	bad[700] = 0
	r, _ = e.do(nexusA, []byte{0x2F, 0x02, 0, 0, 0, 0, 0, 0, 2, 0}, bad, 0)
	wantSense(t, r, scsi.SenseMiscompare, 0x1D, 0)
	if r.Sense[0]&0x80 == 0 || binary.BigEndian.Uint32(r.Sense[3:]) != 700 {
		t.Fatalf("miscompare offset %x", r.Sense)
	}
	r, _ = e.do(nexusA, []byte{0x8F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0}, nil, 0)
	wantGood(t, r)
	r, _ = e.do(nexusA, []byte{0x2E, 0x02, 0, 0, 0, 4, 0, 0, 1, 0}, fill(512, 4), 0)
	wantGood(t, r)
	if !bytes.Equal(e.be.CrashClone().Bytes(4*512, 512), fill(512, 4)) {
		t.Fatal("WRITE AND VERIFY not durable")
	}
}

func TestReportLUNsAndMissingLUN(t *testing.T) {
	e := newEnv(t, nil)
	lu2, _ := scsi.NewLogicalUnit(scsi.LUConfig{Name: "b"}, scsitest.NewMemBackend(1<<20))
	defer lu2.Close()
	rt := scsi.NewRouter(map[uint64]*scsi.LogicalUnit{0: e.lu, 300: lu2})
	run := func(lun uint64, cdb []byte, n int) (scsi.Response, []byte) {
		cmd := &scsi.Command{Nexus: nexusA, LUN: lun, CDB: cdb, DataIn: make([]byte, n), ExpectedLength: uint32(n)}
		r := rt.Execute(context.Background(), cmd)
		return r, cmd.DataIn[:r.DataLen]
	}
	r, d := run(5<<48, []byte{0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, 256)
	wantGood(t, r)
	want := []byte{0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x41, 0x2C, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(d, want) {
		t.Fatalf("REPORT LUNS %x", d)
	}
	// Flat-addressed LUN 300 reaches lu2.
	r, _ = run(0x412C<<48, []byte{0x12, 0, 0, 0, 36, 0}, 36)
	wantGood(t, r)
	r, d = run(5<<48, []byte{0x12, 0, 0, 0, 36, 0}, 36)
	wantGood(t, r)
	if d[0] != 0x7F {
		t.Fatalf("missing LUN INQUIRY byte 0 %#x", d[0])
	}
	r, _ = run(5<<48, []byte{0, 0, 0, 0, 0, 0}, 0)
	wantSense(t, r, scsi.SenseIllegalRequest, 0x25, 0)
	r, d = run(5<<48, []byte{0x03, 0, 0, 0, 18, 0}, 18)
	wantGood(t, r)
	if k, a, _ := senseOf(d); k != scsi.SenseIllegalRequest || a != 0x25 {
		t.Fatalf("REQUEST SENSE on missing LUN %x", d)
	}
	if rt.TaskManagement(nexusA, scsi.TMFLogicalUnitReset, 7<<48) != scsi.TMFLUNDoesNotExist {
		t.Fatal("reset of missing LUN")
	}
}

func TestReportSupportedOpcodes(t *testing.T) {
	e := newEnv(t, nil)
	r, d := e.do(nexusA, []byte{0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0}, nil, 65535)
	wantGood(t, r)
	n := int(binary.BigEndian.Uint32(d))
	if n+4 != len(d) || n%8 != 0 {
		t.Fatalf("RSOC length %d of %d", n, len(d))
	}
	seen := map[byte]bool{}
	for i := 4; i < len(d); i += 8 {
		op, servactv := d[i], d[i+5]&1 != 0
		seen[op] = true
		opt := byte(1)
		if servactv {
			opt = 2
		}
		cdb := []byte{0xA3, 0x0C, 0x80 | opt, op, d[i+2], d[i+3], 0, 0, 1, 0, 0, 0}
		r, one := e.do(nexusA, cdb, nil, 256)
		wantGood(t, r)
		if one[1]&7 != 3 || int(binary.BigEndian.Uint16(one[2:])) != int(binary.BigEndian.Uint16(d[i+6:])) || one[4] != op {
			t.Fatalf("one command %x: %x", cdb, one)
		}
		if l := 4 + int(binary.BigEndian.Uint16(one[2:])); binary.BigEndian.Uint16(one[l:]) != 0x0A {
			t.Fatalf("no timeouts descriptor for %x", op)
		}
		// The other reporting option is invalid for this opcode.
		cdb[2] = 3 - opt
		r, _ = e.do(nexusA, cdb, nil, 256)
		wantSense(t, r, scsi.SenseIllegalRequest, 0x24, 0)
	}
	for _, op := range []byte{0x00, 0x03, 0x12, 0x28, 0x2A, 0x88, 0x8A, 0x9E, 0xA0, 0xA3, 0x1A, 0x5A} {
		if !seen[op] {
			t.Errorf("opcode %#x not reported", op)
		}
	}
	r, one := e.do(nexusA, []byte{0xA3, 0x0C, 0x01, 0xEE, 0, 0, 0, 0, 1, 0, 0, 0}, nil, 256)
	wantGood(t, r)
	if one[1]&7 != 1 {
		t.Fatalf("unsupported opcode reported as %x", one)
	}
}

func TestReportTPGAndALUA(t *testing.T) {
	groups := alua.Static{
		{ID: 1, State: alua.ActiveOptimized, Preferred: true, RelativePorts: []uint16{1}},
		{ID: 2, State: alua.Standby, RelativePorts: []uint16{2}},
	}
	e := newEnv(t, func(c *scsi.LUConfig) { c.ALUA = groups })
	r, d := e.do(nexusA, []byte{0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, nil, 256)
	wantGood(t, r)
	want := []byte{0, 0, 0, 24,
		0x80, 0x8F, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1,
		0x02, 0x8F, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2}
	if !bytes.Equal(d, want) {
		t.Fatalf("RTPG %x", d)
	}
	r, d = e.do(nexusA, []byte{0xA3, 0x2A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, nil, 256)
	wantGood(t, r)
	if d[4] != 0x10 || binary.BigEndian.Uint32(d) != 28 {
		t.Fatalf("RTPG extended %x", d)
	}
	// A command through the standby port: NOT READY 04/0B for media, but
	// INQUIRY works.
	sb := &scsi.Nexus{InitiatorPort: nexusA.InitiatorPort, TargetPort: "iqn.x:tgt,t,0x0002", RelativeTargetPort: 2, TargetPortGroup: 2}
	e.do(sb, []byte{0, 0, 0, 0, 0, 0}, nil, 0) // power-on UA
	r, _ = e.do(sb, []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}, nil, 512)
	wantSense(t, r, scsi.SenseNotReady, 0x04, 0x0B)
	r, _ = e.do(sb, []byte{0x12, 0, 0, 0, 36, 0}, nil, 36)
	wantGood(t, r)
	e.lu.NotifyALUAChange()
	r, _ = e.do(nexusA, []byte{0, 0, 0, 0, 0, 0}, nil, 0)
	wantSense(t, r, scsi.SenseUnitAttention, 0x2A, 0x06)
}

func TestMiscCommands(t *testing.T) {
	e := newEnv(t, nil)
	for _, cdb := range [][]byte{
		{0x1B, 0, 0, 0, 0, 0}, // STOP
		{0x1B, 1, 0, 0, 1, 0}, // START, IMMED
		{0x1E, 0, 0, 0, 1, 0}, // PREVENT
		{0x1E, 0, 0, 0, 0, 0}, // ALLOW
		{0x34, 0, 0, 0, 0, 0, 0, 0, 8, 0},
		{0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		{0x00, 0, 0, 0, 0, 0}, // the unit is still ready after STOP
	} {
		r, _ := e.do(nexusA, cdb, nil, 0)
		wantGood(t, r)
	}
	r, _ := e.do(nexusA, []byte{0x34, 0, 0, 0, 0x08, 0, 0, 0, 1, 0}, nil, 0)
	wantSense(t, r, scsi.SenseIllegalRequest, 0x21, 0)
	r, _ = e.do(nexusA, []byte{0x1E, 0, 0, 0, 2, 0}, nil, 0)
	wantSense(t, r, scsi.SenseIllegalRequest, 0x24, 0)
	r, d := e.do(nexusA, []byte{0xA3, 0x0D, 0x80, 0, 0, 0, 0, 0, 0, 16, 0, 0}, nil, 16)
	wantGood(t, r)
	if len(d) != 16 || d[0]&0x08 == 0 || d[3] != 0x0C {
		t.Fatalf("RSTMF %x", d)
	}
	_ = time.Second
}

func TestSoftwareWriteProtect(t *testing.T) {
	e := newEnv(t, nil)
	_, d := e.do(nexusA, []byte{0x1A, 0x08, 0x0A, 0, 255, 0}, nil, 255)
	page := append([]byte(nil), d[4:]...)
	page[4] |= 0x08
	param := append([]byte{0, 0, 0, 0}, page...)
	r, _ := e.do(nexusA, []byte{0x15, 0x10, 0, 0, byte(len(param)), 0}, param, 0)
	wantGood(t, r)
	r, _ = e.do(nexusA, []byte{0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0}, fill(512, 1), 0)
	wantSense(t, r, scsi.SenseDataProtect, 0x27, 0x02)
	r, d = e.do(nexusA, []byte{0x1A, 0x08, 0x3F, 0, 255, 0}, nil, 255)
	wantGood(t, r)
	if d[2]&0x80 == 0 {
		t.Fatal("WP not reported with SWP=1")
	}
	r, _ = e.do(nexusA, []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}, nil, 512)
	wantGood(t, r)
}
