package target

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestTaskCtx(t *testing.T) {
	var x taskCtx
	if x.Err() != nil {
		t.Fatal("fresh taskCtx already cancelled")
	}
	done := x.Done()
	select {
	case <-done:
		t.Fatal("Done closed before cancel")
	default:
	}
	go x.cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed by cancel")
	}
	if !errors.Is(x.Err(), context.Canceled) {
		t.Fatalf("Err %v", x.Err())
	}
	x.cancel() // idempotent
	// Done asked for only after the cancel is closed already.
	var y taskCtx
	y.cancel()
	select {
	case <-y.Done():
	default:
		t.Fatal("late Done not closed")
	}
	// Derived contexts see the cancel.
	var z taskCtx
	d, stop := context.WithTimeout(&z, time.Minute)
	defer stop()
	z.cancel()
	select {
	case <-d.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("child not cancelled")
	}
}

// Derived contexts register with AfterFunc instead of a watcher goroutine,
// and stopped registrations never run.
func TestTaskCtxAfterFunc(t *testing.T) {
	var x taskCtx
	ran := make(chan int, 4)
	stop1 := x.AfterFunc(func() { ran <- 1 })
	stop2 := x.AfterFunc(func() { ran <- 2 })
	if !stop2() {
		t.Fatal("stop of a pending AfterFunc reported false")
	}
	child, cancel := context.WithCancel(&x)
	defer cancel()
	if len(x.after) != 2 { // 1 and the child's
		t.Fatalf("%d registrations, want 2 (WithCancel should use AfterFunc)", len(x.after))
	}
	x.cancel()
	select {
	case v := <-ran:
		if v != 1 {
			t.Fatalf("ran %d", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc not run")
	}
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("child not cancelled")
	}
	if stop1() {
		t.Fatal("stop after run reported true")
	}
	select {
	case v := <-ran:
		t.Fatalf("stopped func %d ran", v)
	case <-time.After(20 * time.Millisecond):
	}
	x.AfterFunc(func() { ran <- 3 }) // after cancel: runs at once
	if v := <-ran; v != 3 {
		t.Fatalf("ran %d", v)
	}
}
