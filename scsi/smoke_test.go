package scsi_test

import (
	"bytes"
	"testing"
)

func TestReadWriteRoundTrip(t *testing.T) {
	e := newEnv(t, nil)
	data := fill(1024, 0xAB)
	r, _ := e.do(nexusA, []byte{0x2A, 0, 0, 0, 0, 10, 0, 0, 2, 0}, data, 0)
	wantGood(t, r)
	r, got := e.do(nexusA, []byte{0x28, 0, 0, 0, 0, 10, 0, 0, 2, 0}, nil, 1024)
	wantGood(t, r)
	if !bytes.Equal(got, data) || r.TransferLength != 1024 {
		t.Fatalf("read back %d bytes (tl %d), mismatch", len(got), r.TransferLength)
	}
}
