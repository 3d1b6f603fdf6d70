package rbdlun

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var ctx = context.Background()

func open(t *testing.T, size int64, opts FileOptions) (*FileBackend, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "lun.img")
	b, err := OpenFile(p, size, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, p
}

func blocks(t *testing.T, p string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks
}

func TestOpenCreatesSparse(t *testing.T) {
	b, p := open(t, 1<<30, FileOptions{})
	if b.Size() != 1<<30 {
		t.Fatalf("size %d", b.Size())
	}
	if n := blocks(t, p); n > 16 {
		t.Fatalf("new 1 GiB file has %d blocks allocated; want sparse", n)
	}
}

func TestOpenNeverTruncatesAndGrows(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.img")
	if err := os.WriteFile(p, bytes.Repeat([]byte{7}, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := OpenFile(p, 4096, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b.Size() != 8192 {
		t.Fatalf("larger file truncated or misreported: %d", b.Size())
	}
	b.Close()
	b, err = OpenFile(p, 1<<20, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Size() != 1<<20 {
		t.Fatalf("not grown: %d", b.Size())
	}
	got := make([]byte, 8192)
	if err := b.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{7}, 8192)) {
		t.Fatalf("existing data lost: %v", err)
	}
	if err := b.ReadAt(ctx, got, 1<<19); err != nil || !bytes.Equal(got, make([]byte, 8192)) {
		t.Fatalf("grown range not zero: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenFile(filepath.Join(dir, "empty"), 0, FileOptions{}); err == nil {
		t.Fatal("empty file without size accepted")
	}
	if _, err := OpenFile(dir, 4096, FileOptions{}); err == nil {
		t.Fatal("directory accepted")
	}
	if _, err := OpenFile(filepath.Join(dir, "missing"), 4096, FileOptions{ReadOnly: true}); err == nil {
		t.Fatal("read-only open created a file")
	}
	if _, err := OpenFile(filepath.Join(dir, "neg"), -1, FileOptions{}); err == nil {
		t.Fatal("negative size accepted")
	}
}

func TestFlockExcludesSecondOpener(t *testing.T) {
	_, p := open(t, 1<<20, FileOptions{})
	if b2, err := OpenFile(p, 1<<20, FileOptions{}); err == nil {
		b2.Close()
		t.Fatal("second exclusive open succeeded")
	}
}

func TestReadWriteFUAFlush(t *testing.T) {
	b, _ := open(t, 1<<20, FileOptions{})
	data := bytes.Repeat([]byte("abcdefgh"), 512)
	if err := b.WriteAt(ctx, data, 8192, true); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteAt(ctx, data, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	for _, off := range []int64{0, 8192} {
		if err := b.ReadAt(ctx, got, off); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.WriteAt(cctx, data, 0, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled write: %v", err)
	}
}

func TestReadOnly(t *testing.T) {
	b, p := open(t, 1<<20, FileOptions{})
	b.Close()
	ro, err := OpenFile(p, 0, FileOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.WriteAt(ctx, make([]byte, 512), 0, false); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write: %v", err)
	}
	if err := ro.Unmap(ctx, 0, 512); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("unmap: %v", err)
	}
	if err := ro.ReadAt(ctx, make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
}

func TestUnmapFreesBlocksAndReadsZero(t *testing.T) {
	b, p := open(t, 8<<20, FileOptions{})
	data := bytes.Repeat([]byte{0xAB}, 4<<20)
	if err := b.WriteAt(ctx, data, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	before := blocks(t, p)
	if before < (4<<20)/512 {
		t.Fatalf("only %d blocks after a 4 MiB write", before)
	}
	if err := b.Unmap(ctx, 0, 4<<20); err != nil {
		t.Fatal(err)
	}
	after := blocks(t, p)
	if after > before/8 {
		t.Fatalf("st_blocks %d -> %d: unmap did not free space", before, after)
	}
	got := make([]byte, 4096)
	if err := b.ReadAt(ctx, got, 1<<20); err != nil || !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatalf("unmapped range not zero: %v", err)
	}
	if b.Size() != 8<<20 {
		t.Fatalf("unmap changed size: %d", b.Size())
	}
	if !b.UnmapReadsZero() {
		t.Fatal("UnmapReadsZero false")
	}
}

func TestWriteZeroesKeepsAllocation(t *testing.T) {
	b, p := open(t, 8<<20, FileOptions{})
	if err := b.WriteAt(ctx, bytes.Repeat([]byte{1}, 1<<20), 0, true); err != nil {
		t.Fatal(err)
	}
	before := blocks(t, p)
	if err := b.WriteZeroes(ctx, 4096, 1<<19, false); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 1<<20)
	if err := b.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{1}, 1<<20)
	copy(want[4096:4096+1<<19], make([]byte, 1<<19))
	if !bytes.Equal(got, want) {
		t.Fatal("zeroed range wrong")
	}
	// ZERO_RANGE (when supported) keeps blocks; the fallback chain may
	// punch, so only check we never grew.
	if after := blocks(t, p); after > before {
		t.Fatalf("blocks grew %d -> %d", before, after)
	}
}

func TestWriteZerosFallback(t *testing.T) {
	b, _ := open(t, 4<<20, FileOptions{})
	if err := b.WriteAt(ctx, bytes.Repeat([]byte{9}, 3<<20), 0, false); err != nil {
		t.Fatal(err)
	}
	// Force the last resort, as on a file system without fallocate.
	b.noZeroRange.Store(true)
	b.noPunch.Store(true)
	if err := b.WriteZeroes(ctx, 512, (2<<20)+512, false); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 3<<20)
	b.ReadAt(ctx, got, 0)
	for i, c := range got {
		zero := i >= 512 && i < 512+(2<<20)+512
		if (c == 0) != zero {
			t.Fatalf("byte %d = %d", i, c)
		}
	}
}

func TestMapped(t *testing.T) {
	b, _ := open(t, 16<<20, FileOptions{})
	if err := b.WriteAt(ctx, bytes.Repeat([]byte{1}, 1<<20), 4<<20, true); err != nil {
		t.Fatal(err)
	}
	m, n, err := b.Mapped(ctx, 0, 16<<20)
	if err != nil || m || n != 4<<20 {
		t.Fatalf("at 0: %v %d %v", m, n, err)
	}
	m, n, err = b.Mapped(ctx, 4<<20, 16<<20)
	if err != nil || !m || n != 1<<20 {
		t.Fatalf("at 4M: %v %d %v", m, n, err)
	}
	m, n, err = b.Mapped(ctx, 4<<20, 4096)
	if err != nil || !m || n != 4096 {
		t.Fatalf("limit: %v %d %v", m, n, err)
	}
	m, n, err = b.Mapped(ctx, 8<<20, 1<<20)
	if err != nil || m || n != 1<<20 {
		t.Fatalf("tail hole: %v %d %v", m, n, err)
	}
}

func TestSizePicksUpExternalResize(t *testing.T) {
	b, p := open(t, 1<<20, FileOptions{SizeRefresh: 5 * time.Millisecond})
	if err := os.Truncate(p, 2<<20); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for b.Size() != 2<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("size still %d", b.Size())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := os.Truncate(p, 1<<19); err != nil {
		t.Fatal(err)
	}
	if b.RefreshSize() != 1<<19 {
		t.Fatal("RefreshSize")
	}
	if err := b.ReadAt(ctx, make([]byte, 4096), 1<<20); err == nil {
		t.Fatal("read past a shrunk end succeeded")
	}
}

func TestConcurrentIO(t *testing.T) {
	b, _ := open(t, 4<<20, FileOptions{SizeRefresh: time.Millisecond})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			off := int64(g) * (512 << 10)
			buf := bytes.Repeat([]byte{byte(g + 1)}, 64<<10)
			got := make([]byte, len(buf))
			for i := range 20 {
				o := off + int64(i%8)*(64<<10)
				if err := b.WriteAt(ctx, buf, o, i%5 == 0); err != nil {
					t.Error(err)
					return
				}
				if err := b.ReadAt(ctx, got, o); err != nil || !bytes.Equal(got, buf) {
					t.Errorf("g%d: %v", g, err)
					return
				}
				if i%7 == 0 {
					b.Unmap(ctx, o, 64<<10)
					b.Mapped(ctx, o, 64<<10)
					b.Flush(ctx)
				}
				_ = b.Size()
			}
		}()
	}
	wg.Wait()
}

func TestCloseTwice(t *testing.T) {
	b, _ := open(t, 1<<20, FileOptions{})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err == nil {
		t.Fatal("second Close returned nil")
	}
}

func TestGrow(t *testing.T) {
	b, _ := open(t, 1<<20, FileOptions{})
	if err := b.WriteAt(ctx, []byte{1, 2, 3}, 1<<20-3, false); err != nil {
		t.Fatal(err)
	}
	if err := b.Grow(4 << 20); err != nil || b.Size() != 4<<20 {
		t.Fatalf("grow: %v %d", err, b.Size())
	}
	if err := b.Grow(2 << 20); err != nil || b.Size() != 4<<20 {
		t.Fatalf("shrink request changed size: %v %d", err, b.Size())
	}
	got := make([]byte, 3)
	if err := b.ReadAt(ctx, got, 1<<20-3); err != nil || got[2] != 3 {
		t.Fatal("data lost by grow")
	}
}
