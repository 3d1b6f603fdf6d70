package scsi

import (
	"errors"
	"testing"
)

// FuzzDecodeCDB feeds arbitrary CDBs through the decode step of every
// opcode: it must never panic and must yield either a typed command or a
// *CheckCondition.
func FuzzDecodeCDB(f *testing.F) {
	t := coreTable()
	for _, e := range t.entries() {
		f.Add(append([]byte(nil), e.Usage...))
		z := make([]byte, len(e.Usage))
		z[0] = e.Opcode
		if e.HasSA {
			z[1] = byte(e.SA)
		}
		f.Add(z)
	}
	f.Add([]byte{})
	f.Add([]byte{0x28})
	f.Fuzz(func(tt *testing.T, cdb []byte) {
		e, c, err := t.decodeCDB(cdb)
		if err != nil {
			var cc *CheckCondition
			if !errors.As(err, &cc) {
				tt.Fatalf("decode error %T %v is not a CheckCondition", err, err)
			}
			if s := cc.Sense(false); len(s) != 18 {
				tt.Fatalf("fixed sense length %d", len(s))
			}
			_ = cc.Sense(true)
			return
		}
		if e == nil || c == nil {
			tt.Fatalf("no entry or command for %x", cdb)
		}
	})
}

func TestEveryEntryHasUsageAndName(t *testing.T) {
	for _, e := range coreTable().entries() {
		if e.Name == "" || len(e.Usage) < 6 || e.Usage[0] != e.Opcode {
			t.Errorf("entry %#x/%#x: name %q usage %x", e.Opcode, e.SA, e.Name, e.Usage)
		}
		if e.HasSA && e.Opcode != 0x7F && e.Usage[1]&0x1F != byte(e.SA) {
			t.Errorf("%s: usage byte 1 %#x does not carry service action %#x", e.Name, e.Usage[1], e.SA)
		}
	}
}
