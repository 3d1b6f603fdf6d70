package rbdlun

import (
	"bytes"
	"path/filepath"
	"testing"
)

// FuzzFileOps decodes a byte string into a sequence of backend operations
// (4 bytes each: kind, offset and length in 512-byte sectors, fill byte),
// runs them against a FileBackend and a plain byte slice, and requires the
// two to agree after every step. It exercises the fallocate fallbacks too.
func FuzzFileOps(f *testing.F) {
	f.Add([]byte{0, 0, 8, 0xAA, 3, 2, 4, 0, 1, 0, 16, 0})
	f.Add([]byte{0, 10, 100, 1, 2, 12, 50, 0, 4, 0, 255, 0, 5, 9, 9, 0})
	const sectors = 256
	f.Fuzz(func(t *testing.T, prog []byte) {
		b, err := OpenFile(filepath.Join(t.TempDir(), "f"), sectors*512, FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		model := make([]byte, sectors*512)
		for i := 0; i+4 <= len(prog) && i < 4*64; i += 4 {
			kind, s, n, v := prog[i]%6, int64(prog[i+1]), int64(prog[i+2])%32+1, prog[i+3]
			if s+n > sectors {
				n = sectors - s
			}
			off, length := s*512, n*512
			switch kind {
			case 0:
				p := bytes.Repeat([]byte{v}, int(length))
				err = b.WriteAt(ctx, p, off, v&1 == 1)
				copy(model[off:], p)
			case 1:
				got := make([]byte, length)
				err = b.ReadAt(ctx, got, off)
				if err == nil && !bytes.Equal(got, model[off:off+length]) {
					t.Fatalf("step %d: read %d+%d differs", i/4, off, length)
				}
			case 2:
				err = b.Unmap(ctx, off, length)
				clear(model[off : off+length])
			case 3:
				err = b.WriteZeroes(ctx, off, length, v&1 == 1)
				clear(model[off : off+length])
			case 4:
				var m bool
				var l int64
				m, l, err = b.Mapped(ctx, off, length)
				if err == nil && (l <= 0 || l > length) {
					t.Fatalf("Mapped length %d outside (0,%d]", l, length)
				}
				if err == nil && !m && !bytes.Equal(model[off:off+l], make([]byte, l)) {
					t.Fatalf("Mapped says hole over nonzero data at %d+%d", off, l)
				}
			case 5:
				// Switch to the fallbacks, as on a file system without
				// fallocate modes.
				b.noZeroRange.Store(true)
				b.noPunch.Store(v&1 == 1)
				err = b.Flush(ctx)
			}
			if err != nil {
				t.Fatalf("step %d op %d: %v", i/4, kind, err)
			}
		}
		got := make([]byte, len(model))
		if err := b.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, model) {
			t.Fatalf("final contents differ: %v", err)
		}
	})
}
