package rbdlun

import (
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSync is an fdatasync that counts calls and blocks each until released.
type fakeSync struct {
	calls   atomic.Int32
	entered chan int32
	release chan error
}

func newFakeSync() *fakeSync {
	return &fakeSync{entered: make(chan int32, 64), release: make(chan error)}
}

func (f *fakeSync) fdatasync(int) error {
	n := f.calls.Add(1)
	f.entered <- n
	return <-f.release
}

func openSyncTest(t *testing.T) (*FileBackend, *fakeSync) {
	t.Helper()
	fb, err := OpenFile(filepath.Join(t.TempDir(), "f"), 1<<20, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fb.Close() })
	fs := newFakeSync()
	fb.syncs.fdatasync = fs.fdatasync
	return fb, fs
}

// A FUA write that arrives while an fdatasync is running must not be
// acknowledged by that call (it may have started before the write landed):
// it waits for the next one.
func TestGroupCommitWaitsForNextSync(t *testing.T) {
	fb, fs := openSyncTest(t)
	buf := make([]byte, 4096)
	aDone := make(chan error, 1)
	go func() { aDone <- fb.WriteAt(ctx, buf, 0, true) }()
	<-fs.entered // call 1 running, for A
	bDone := make(chan error, 1)
	go func() { bDone <- fb.WriteAt(ctx, buf, 4096, true) }()
	time.Sleep(20 * time.Millisecond) // B is queued behind call 1
	fs.release <- nil                 // call 1 ends
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-bDone:
		t.Fatalf("B acknowledged by a sync that started before it (err %v)", err)
	case n := <-fs.entered:
		if n != 2 {
			t.Fatalf("call %d", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no second fdatasync for B")
	}
	fs.release <- nil
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
}

// Many concurrent FUA writes share a few fdatasync calls, and an error
// reaches every writer that call covered.
func TestGroupCommitShares(t *testing.T) {
	fb, fs := openSyncTest(t)
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	<-startBlocked(fb, fs) // call 1 holds the group
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- fb.WriteAt(ctx, make([]byte, 512), int64(i)*512, true)
		}()
	}
	time.Sleep(50 * time.Millisecond) // all 32 wait behind call 1
	fs.release <- nil                 // end call 1
	if c := <-fs.entered; c != 2 {
		t.Fatalf("call %d", c)
	}
	injected := errors.New("EIO")
	fs.release <- injected // call 2 covers all 32 and fails
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, injected) {
			t.Fatalf("writer got %v, want the shared call's error", err)
		}
	}
	if c := fs.calls.Load(); c != 2 {
		t.Fatalf("%d fdatasync calls for 1+32 syncs, want 2", c)
	}
	// The failure does not stick to later syncs.
	go func() { <-fs.entered; fs.release <- nil }()
	if err := fb.Flush(ctx); err != nil {
		t.Fatalf("flush after a failed call: %v", err)
	}
}

// startBlocked starts a Flush whose fdatasync (call 1) blocks until released;
// the returned channel yields once it is running.
func startBlocked(fb *FileBackend, fs *fakeSync) <-chan int32 {
	go fb.Flush(ctx)
	return fs.entered
}
