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
