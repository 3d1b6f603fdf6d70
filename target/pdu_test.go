package target

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func unhex(s string) []byte {
	s = strings.Join(strings.Fields(s), "")
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Byte-literal encodings, laid out per RFC 7143 section 11.
func TestEncodeByteLiterals(t *testing.T) {
	tests := []struct {
		name string
		pdu  PDU
		want string
	}{
		{"nop-in ping reply", &NopIn{ITT: 0x11223344, TTT: reservedTag, StatSN: 5, ExpCmdSN: 6, MaxCmdSN: 7, Data: []byte("abcde")},
			`20800000 00000005 00000000 00000000 11223344 ffffffff 00000005 00000006
			 00000007 00000000 00000000 00000000 6162636465000000`},
		{"scsi response with sense and underflow", &SCSIResp{Underflow: true, Status: 2, ITT: 9, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3, ExpDataSN: 1, Residual: 512, Data: []byte{0, 2, 0x70, 0}},
			`21820002 00000004 00000000 00000000 00000009 00000000 00000001 00000002
			 00000003 00000001 00000000 00000200 00027000`},
		{"data-in with status", &DataIn{Final: true, HasStatus: true, Overflow: true, ITT: 1, TTT: reservedTag, StatSN: 4, ExpCmdSN: 5, MaxCmdSN: 6, DataSN: 2, BufferOffset: 1024, Residual: 8, Data: []byte{1, 2, 3, 4}},
			`25850000 00000004 00000000 00000000 00000001 ffffffff 00000004 00000005
			 00000006 00000002 00000400 00000008 01020304`},
		{"r2t", &R2T{LUN: 0x0001000000000000, ITT: 2, TTT: 3, StatSN: 4, ExpCmdSN: 5, MaxCmdSN: 6, R2TSN: 1, BufferOffset: 65536, DesiredLength: 4096},
			`31800000 00000000 00010000 00000000 00000002 00000003 00000004 00000005
			 00000006 00000001 00010000 00001000`},
		{"login response transit to FFP", &LoginResp{Transit: true, CSG: 1, NSG: 3, ISID: [6]byte{0x80, 0, 0, 0, 0, 1}, TSIH: 0x12, ITT: 7, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3},
			`23870000 00000000 80000000 00010012 00000007 00000000 00000001 00000002
			 00000003 00000000 00000000 00000000`},
		{"reject", &Reject{Reason: RejectNotSupported, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3},
			`3f800500 00000000 00000000 00000000 ffffffff 00000000 00000001 00000002
			 00000003 00000000 00000000 00000000`},
		{"async logout request", &AsyncMsg{Event: asyncLogoutRequest, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3, Param3: 5},
			`32800000 00000000 00000000 00000000 ffffffff 00000000 00000001 00000002
			 00000003 01000000 00000005 00000000`},
		{"logout response", &LogoutResp{ITT: 4, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3, Time2Wait: 2, Time2Retain: 20},
			`26800000 00000000 00000000 00000000 00000004 00000000 00000001 00000002
			 00000003 00000000 00020014 00000000`},
		{"tmf response", &TaskMgmtResp{Response: tmfRespNoTask, ITT: 4, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3},
			`22800100 00000000 00000000 00000000 00000004 00000000 00000001 00000002
			 00000003 00000000 00000000 00000000`},
	}
	for _, tc := range tests {
		got := AppendPDU(nil, tc.pdu, false, false)
		if want := unhex(tc.want); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %x\nwant %x", tc.name, got, want)
		}
	}
}

func TestParseByteLiterals(t *testing.T) {
	// SCSI Command: immediate, F+R, simple attr, LUN 1, ITT 0x10, EDTL 4096,
	// CmdSN 7, ExpStatSN 3, READ(10) of 8 blocks at LBA 16.
	b := unhex(`41c10000 00000000 00010000 00000000 00000010 00001000 00000007 00000003
		28000000 00100000 08000000 00000000`)
	p, err := ParsePDU(b[:48], nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := p.(*SCSICmd)
	if !c.Immediate || !c.Final || !c.Read || c.Write || c.Attr != 1 || c.LUN != 1<<48 || c.ITT != 0x10 ||
		c.EDTL != 4096 || c.CmdSN != 7 || c.ExpStatSN != 3 || c.CDB[0] != 0x28 || c.CDB[8] != 8 {
		t.Fatalf("parsed %+v", c)
	}
	// Login Request: T, CSG 1, NSG 3, VersionMax/Min 0, ISID, TSIH 0, CID 1.
	b = unhex(`43870000 00000000 80000000 00020000 00000001 00010000 00000001 00000000
		00000000 00000000 00000000 00000000`)
	p, err = ParsePDU(b, nil, []byte("a=b\x00"))
	if err != nil {
		t.Fatal(err)
	}
	l := p.(*LoginReq)
	if !l.Transit || l.Continue || l.CSG != 1 || l.NSG != 3 || l.ISID != [6]byte{0x80, 0, 0, 0, 0, 2} || l.CID != 1 || l.CmdSN != 1 {
		t.Fatalf("parsed %+v", l)
	}
	// Data-Out, TTT 5, DataSN 2, offset 8192.
	b = unhex(`05800000 00000200 00000000 00000000 00000010 00000005 00000000 00000003
		00000000 00000002 00002000 00000000`)
	p, _ = ParsePDU(b, nil, make([]byte, 512))
	d := p.(*DataOut)
	if !d.Final || d.TTT != 5 || d.DataSN != 2 || d.BufferOffset != 8192 || len(d.Data) != 512 {
		t.Fatalf("parsed %+v", d)
	}
	// Unknown opcode 0x1c falls back.
	b[0] = 0x1c
	p, _ = ParsePDU(b, nil, nil)
	if u, ok := p.(*UnknownPDU); !ok || u.Op != 0x1c {
		t.Fatalf("unknown opcode parsed as %T", p)
	}
}

func TestSCSICmdAHSRoundTrip(t *testing.T) {
	cdb := make([]byte, 32)
	for k := range cdb {
		cdb[k] = byte(k + 1)
	}
	c := &SCSICmd{Final: true, Read: true, Write: true, ITT: 1, EDTL: 512, CDB: cdb, HasBidiReadLength: true, BidiReadLength: 4096}
	b := AppendPDU(nil, c, false, false)
	// RFC 7143 11.2.1.4: extended CDB AHS: length 17 (16 + reserved byte),
	// padded to 20 bytes; bidirectional AHS 8 bytes: TotalAHSLength 7 words.
	if b[4] != 7 {
		t.Fatalf("TotalAHSLength %d", b[4])
	}
	if !bytes.Equal(b[48:52], []byte{0, 17, 1, 0}) || !bytes.Equal(b[68:76], unhex("00050200 00001000")) {
		t.Fatalf("AHS %x", b[48:76])
	}
	p, err := ParsePDU(b[:48], b[48:76], nil)
	if err != nil {
		t.Fatal(err)
	}
	got := p.(*SCSICmd)
	if !bytes.Equal(got.CDB, cdb) || got.BidiReadLength != 4096 || !got.HasBidiReadLength {
		t.Fatalf("round trip: %+v", got)
	}
	// A truncated AHS is an invalid PDU field.
	_, err = ParsePDU(b[:48], b[48:52], nil)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Reason != RejectInvalidField {
		t.Fatalf("truncated AHS: %v", err)
	}
}

func TestDigests(t *testing.T) {
	// RFC 3720 B.4: 32 bytes of zeros have CRC32C aa 36 91 8a on the wire.
	var z [32]byte
	var b [4]byte
	le.PutUint32(b[:], crc32c(z[:]))
	if !bytes.Equal(b[:], []byte{0xaa, 0x36, 0x91, 0x8a}) {
		t.Fatalf("crc32c of zeros: %x", b)
	}
	p := &NopOut{Immediate: true, ITT: 1, TTT: reservedTag, Data: []byte("xyz")}
	w := AppendPDU(nil, p, true, true)
	if len(w) != 48+4+4+4 {
		t.Fatalf("len %d", len(w))
	}
	pr := pduReader{r: bytes.NewReader(w), maxData: 8192, hdrDigest: true, dataDigest: true, pool: newBufPool()}
	raw, err := pr.readPDU()
	if err != nil || string(raw.pdu.(*NopOut).Data) != "xyz" {
		t.Fatalf("read back: %v", err)
	}
	for _, at := range []int{10, 50, 53, 57} {
		bad := append([]byte(nil), w...)
		bad[at] ^= 1
		pr := pduReader{r: bytes.NewReader(bad), maxData: 8192, hdrDigest: true, dataDigest: true, pool: newBufPool()}
		if _, err := pr.readPDU(); err == nil {
			t.Errorf("flipped byte %d: no digest error", at)
		}
	}
}

func TestReaderLimits(t *testing.T) {
	p := &NopOut{Immediate: true, ITT: 1, TTT: reservedTag, Data: make([]byte, 9000)}
	w := AppendPDU(nil, p, false, false)
	pr := pduReader{r: bytes.NewReader(w), maxData: 8192, pool: newBufPool()}
	var ce *ConnError
	if _, err := pr.readPDU(); !errors.As(err, &ce) {
		t.Fatalf("oversized data segment: %v", err)
	}
	pr = pduReader{r: bytes.NewReader(w[:30]), maxData: 1 << 20, pool: newBufPool()}
	if _, err := pr.readPDU(); !errors.As(err, &ce) {
		t.Fatalf("truncated BHS: %v", err)
	}
	pr = pduReader{r: bytes.NewReader(w[:100]), maxData: 1 << 20, pool: newBufPool()}
	if _, err := pr.readPDU(); !errors.As(err, &ce) {
		t.Fatalf("truncated data: %v", err)
	}
}

// FuzzParsePDU frames and parses arbitrary bytes; nothing may panic, and a
// PDU that parses must re-encode to a header that parses the same way.
func FuzzParsePDU(f *testing.F) {
	seeds := []PDU{
		&SCSICmd{Final: true, Read: true, ITT: 1, EDTL: 4096, CDB: cdbRead10(0, 8)},
		&SCSICmd{Final: true, Write: true, ITT: 1, EDTL: 512, CDB: make([]byte, 32), Data: make([]byte, 512)},
		&LoginReq{Transit: true, CSG: 1, NSG: 3, Data: []byte("InitiatorName=iqn.x\x00")},
		&DataOut{Final: true, ITT: 2, TTT: 3, Data: []byte{1, 2, 3}},
		&TaskMgmtReq{Immediate: true, Function: 1, RefTaskTag: 4},
		&TextReq{Final: true, ITT: 1, TTT: reservedTag, Data: []byte("SendTargets=All\x00")},
		&LogoutReq{Immediate: true, Reason: 0},
		&NopOut{Immediate: true, ITT: 5, TTT: reservedTag, Data: []byte("ping")},
		&SNACKReq{Type: 1},
	}
	for _, s := range seeds {
		f.Add(AppendPDU(nil, s, false, false))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pr := pduReader{r: bytes.NewReader(b), maxData: 1 << 16, pool: newBufPool()}
		for k := 0; k < 4; k++ {
			raw, err := pr.readPDU()
			if err != nil {
				return
			}
			if raw.pdu == nil {
				continue
			}
			out := AppendPDU(nil, raw.pdu, false, false)
			if len(out) < bhsLen {
				t.Fatalf("short encoding")
			}
			if _, err := ParsePDU(out[:bhsLen], out[bhsLen:bhsLen+int(out[4])*4], nil); err != nil {
				t.Fatalf("re-encoded %T does not parse: %v", raw.pdu, err)
			}
		}
	})
}

// TestFuzzSeedsCommitted keeps the committed corpus in step with the seeds.
func TestFuzzSeedsCommitted(t *testing.T) {
	ents, err := os.ReadDir(filepath.Join("testdata", "fuzz", "FuzzParsePDU"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("no committed seed corpus for FuzzParsePDU: %v", err)
	}
}
