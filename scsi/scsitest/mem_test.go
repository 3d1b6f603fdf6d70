package scsitest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/rbdgw/rbdgw/scsi"
)

func TestCrashCloneDropsUnflushed(t *testing.T) {
	ctx := context.Background()
	m := NewMemBackend(1 << 16)
	a, b := bytes.Repeat([]byte{1}, 512), bytes.Repeat([]byte{2}, 512)
	if err := m.WriteAt(ctx, a, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteAt(ctx, b, 512, true); err != nil {
		t.Fatal(err)
	}
	c := m.CrashClone()
	if !bytes.Equal(c.Bytes(0, 512), make([]byte, 512)) || !bytes.Equal(c.Bytes(512, 512), b) {
		t.Fatal("crash clone kept unflushed data or lost FUA data")
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.CrashClone().Bytes(0, 512), a) {
		t.Fatal("flushed data lost")
	}
}

func TestContractAndHooks(t *testing.T) {
	ctx := context.Background()
	m := NewMemBackend(4096)
	if err := m.ReadAt(ctx, nil, 0); !errors.Is(err, ErrContract) {
		t.Fatalf("zero-length read: %v", err)
	}
	if err := m.WriteAt(ctx, make([]byte, 512), 4096, false); !errors.Is(err, ErrContract) {
		t.Fatalf("out of range write: %v", err)
	}
	if m.Violations() != 2 {
		t.Fatalf("violations %d", m.Violations())
	}
	m.SetHook(func(ctx context.Context, op Op, off, n int64) error {
		if op == OpFlush {
			return ErrInjected
		}
		return nil
	})
	if err := m.Flush(ctx); !errors.Is(err, ErrInjected) {
		t.Fatalf("hook not applied: %v", err)
	}
	if m.Count(OpFlush) != 1 {
		t.Fatal("flush not counted")
	}
}

func TestOptionalInterfaces(t *testing.T) {
	ctx := context.Background()
	m := NewMemBackend(1 << 16)
	blk := bytes.Repeat([]byte{7}, 512)
	if err := m.WriteSame(ctx, blk, 0, 8192); err != nil {
		t.Fatal(err)
	}
	mapped, n, err := m.Mapped(ctx, 0, 1<<16)
	if err != nil || !mapped || n != 8192 {
		t.Fatalf("Mapped = %v %d %v", mapped, n, err)
	}
	err = m.CompareAndWrite(ctx, bytes.Repeat([]byte{8}, 512), blk, 0)
	var mc *scsi.MiscompareError
	if !errors.As(err, &mc) || mc.Offset != 0 {
		t.Fatalf("CompareAndWrite mismatch: %v", err)
	}
	if err := m.Unmap(ctx, 0, 4096); err != nil {
		t.Fatal(err)
	}
	if mapped, _, _ := m.Mapped(ctx, 0, 4096); mapped || !bytes.Equal(m.Bytes(0, 512), make([]byte, 512)) {
		t.Fatal("unmapped range still mapped or non-zero")
	}
	if err := m.WriteZeroes(ctx, 4096, 4096, false); err != nil {
		t.Fatal(err)
	}
	m.Resize(1 << 17)
	if m.Size() != 1<<17 {
		t.Fatal("resize")
	}
}
