package rbdlun

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/scsi"
)

// plain implements only scsi.Backend, over memory.
type plain struct {
	mu   sync.Mutex
	data []byte
	// block, when non-nil, makes WriteAt wait on it (for stall tests).
	block chan struct{}
}

func newPlain(n int) *plain { return &plain{data: make([]byte, n)} }

func (p *plain) ReadAt(_ context.Context, b []byte, off int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	copy(b, p.data[off:])
	return nil
}
func (p *plain) WriteAt(_ context.Context, b []byte, off int64, _ bool) error {
	if p.block != nil {
		<-p.block
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	copy(p.data[off:], b)
	return nil
}
func (p *plain) Flush(context.Context) error               { return nil }
func (p *plain) Unmap(_ context.Context, o, n int64) error { return nil }
func (p *plain) Size() int64                               { return int64(len(p.data)) }
func (p *plain) Close() error                              { return nil }

// full adds every optional interface to plain.
type full struct{ *plain }

func (full) WriteZeroes(context.Context, int64, int64, bool) error { return nil }
func (full) WriteSame(context.Context, []byte, int64, int64) error { return nil }
func (full) CompareAndWrite(context.Context, []byte, []byte, int64) error {
	return &scsi.MiscompareError{Offset: 3}
}
func (full) Mapped(context.Context, int64, int64) (bool, int64, error) { return true, 512, nil }
func (full) UnmapReadsZero() bool                                      { return true }

type onlyZero struct{ *plain }

func (onlyZero) WriteZeroes(context.Context, int64, int64, bool) error { return nil }

type onlyMapCAW struct{ *plain }

func (onlyMapCAW) Mapped(context.Context, int64, int64) (bool, int64, error)    { return false, 512, nil }
func (onlyMapCAW) CompareAndWrite(context.Context, []byte, []byte, int64) error { return nil }

func caps(b scsi.Backend) [5]bool {
	_, z := b.(scsi.WriteZeroer)
	_, s := b.(scsi.SameWriter)
	_, c := b.(scsi.CompareWriter)
	_, m := b.(scsi.AllocationMapper)
	zu, ok := b.(scsi.ZeroingUnmapper)
	return [5]bool{z, s, c, m, ok && zu.UnmapReadsZero()}
}

func TestWrappersForwardOptionalInterfaces(t *testing.T) {
	fb, _ := open(t, 1<<20, FileOptions{})
	inners := map[string]scsi.Backend{
		"plain": newPlain(4096), "full": full{newPlain(4096)}, "onlyZero": onlyZero{newPlain(4096)},
		"onlyMapCAW": onlyMapCAW{newPlain(4096)}, "file": fb,
	}
	for name, in := range inners {
		want := caps(in)
		for wname, w := range map[string]scsi.Backend{
			"faults": WithFaults(in, FailOps()),
			"stall":  WithStallDetection(in, time.Second, func(Stall) {}),
			"both":   WithStallDetection(WithFaults(in, FailOps()), time.Second, func(Stall) {}),
		} {
			if got := caps(w); got != want {
				t.Errorf("%s/%s: caps %v want %v", name, wname, got, want)
			}
			if u, ok := w.(Unwrapper); !ok || u.Unwrap() == nil {
				t.Errorf("%s/%s: no Unwrap", name, wname)
			}
			if wname != "faults" {
				w.(interface{ Close() error }).Close() // stops the ticker
			}
		}
	}
}

func TestForwardedCallsReachInner(t *testing.T) {
	w := WithFaults(full{newPlain(4096)}, FailOps())
	var me *scsi.MiscompareError
	if err := w.(scsi.CompareWriter).CompareAndWrite(ctx, nil, make([]byte, 512), 0); !errors.As(err, &me) || me.Offset != 3 {
		t.Fatalf("CAW error not forwarded: %v", err)
	}
	m, n, err := w.(scsi.AllocationMapper).Mapped(ctx, 0, 4096)
	if !m || n != 512 || err != nil {
		t.Fatal(m, n, err)
	}
	if err := w.WriteAt(ctx, []byte{1, 2, 3}, 10, false); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 3)
	w.ReadAt(ctx, got, 10)
	if got[2] != 3 {
		t.Fatal("write did not reach inner")
	}
}

func TestFaultsFailChosenOps(t *testing.T) {
	fb, _ := open(t, 1<<20, FileOptions{})
	c := &Counter{Injector: FailOps(OpWrite, OpWriteZeroes, OpMapped)}
	w := WithFaults(fb, c)
	if err := w.WriteAt(ctx, make([]byte, 512), 0, false); !errors.Is(err, ErrInjected) {
		t.Fatalf("write: %v", err)
	}
	if err := w.(scsi.WriteZeroer).WriteZeroes(ctx, 0, 512, false); !errors.Is(err, ErrInjected) {
		t.Fatalf("zeroes: %v", err)
	}
	if _, _, err := w.(scsi.AllocationMapper).Mapped(ctx, 0, 512); !errors.Is(err, ErrInjected) {
		t.Fatalf("mapped: %v", err)
	}
	if err := w.ReadAt(ctx, make([]byte, 512), 0); err != nil {
		t.Fatalf("read should pass: %v", err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("flush should pass: %v", err)
	}
	if c.Count() != 3 {
		t.Fatalf("count %d", c.Count())
	}
	sw := NewSwitch(FailOps(OpRead))
	w2 := WithFaults(newPlain(4096), sw)
	if err := w2.ReadAt(ctx, make([]byte, 1), 0); err != nil {
		t.Fatal("switch off but failed")
	}
	sw.Set(true)
	if err := w2.ReadAt(ctx, make([]byte, 1), 0); !errors.Is(err, ErrInjected) {
		t.Fatal("switch on but passed")
	}
	custom := errors.New("boom")
	w3 := WithFaults(newPlain(4096), InjectorFunc(func(op Op, off, n int64) error {
		if op == OpWrite && off >= 1024 {
			return custom
		}
		return nil
	}))
	if w3.WriteAt(ctx, []byte{1}, 0, false) != nil || !errors.Is(w3.WriteAt(ctx, []byte{1}, 2048, false), custom) {
		t.Fatal("InjectorFunc range not honoured")
	}
}

func TestStallDetection(t *testing.T) {
	p := newPlain(1 << 20)
	p.block = make(chan struct{})
	var mu sync.Mutex
	var stalls []Stall
	w := WithStallDetection(p, 20*time.Millisecond, func(s Stall) {
		mu.Lock()
		stalls = append(stalls, s)
		mu.Unlock()
	})
	defer w.Close()
	// Fast operations are not reported.
	for range 100 {
		w.ReadAt(ctx, make([]byte, 512), 0)
	}
	done := make(chan error)
	go func() { done <- w.WriteAt(ctx, make([]byte, 4096), 8192, false) }()
	time.Sleep(150 * time.Millisecond)
	close(p.block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(stalls) != 1 {
		t.Fatalf("want exactly one report for one stalled write, got %+v", stalls)
	}
	s := stalls[0]
	if s.Op != OpWrite || s.Off != 8192 || s.Length != 4096 || s.Duration < 20*time.Millisecond {
		t.Fatalf("stall %+v", s)
	}
	if s.Op.String() != "write" {
		t.Fatal(s.Op.String())
	}
}

func TestStallDetectionConcurrent(t *testing.T) {
	var n atomic.Int64
	fb, _ := open(t, 4<<20, FileOptions{})
	w := WithStallDetection(fb, time.Hour, func(Stall) { n.Add(1) })
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for i := range 200 {
				o := int64(g*200+i) % 1024 * 4096
				w.WriteAt(ctx, buf, o, false)
				w.ReadAt(ctx, buf, o)
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n.Load() != 0 {
		t.Fatal("spurious stall")
	}
}
