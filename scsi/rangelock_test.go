package scsi

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRangeLockExclusiveWaitsForOverlap(t *testing.T) {
	var l rangeLock
	unlockShared := l.lock(0, 4096, false)
	// A non-overlapping exclusive lock is granted at once.
	u := l.lock(4096, 512, true)
	u()
	got := make(chan struct{})
	go func() {
		u := l.lock(512, 512, true)
		close(got)
		u()
	}()
	select {
	case <-got:
		t.Fatal("exclusive lock granted over a shared holder")
	case <-time.After(50 * time.Millisecond):
	}
	unlockShared()
	select {
	case <-got:
	case <-time.After(2 * time.Second):
		t.Fatal("exclusive lock never granted")
	}
}

func TestRangeLockNoStarvation(t *testing.T) {
	var l rangeLock
	first := l.lock(0, 512, false)
	excl := make(chan struct{})
	go func() {
		u := l.lock(0, 512, true)
		close(excl)
		u()
	}()
	time.Sleep(20 * time.Millisecond)
	// A new overlapping shared request queues behind the waiting exclusive.
	shared := make(chan struct{})
	go func() {
		u := l.lock(0, 512, false)
		close(shared)
		u()
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case <-shared:
		t.Fatal("shared lock overtook a waiting exclusive lock")
	default:
	}
	first()
	<-excl
	<-shared
}

func TestRangeLockMutualExclusion(t *testing.T) {
	var l rangeLock
	var inside atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				if i%2 == 0 {
					// [0,1024) and [512,1536) always overlap, so no two
					// exclusive holders may be inside at once.
					u := l.lock(int64(j%2)*512, 1024, true)
					if inside.Add(1) != 1 {
						t.Error("two holders inside an exclusive range")
					}
					inside.Add(-1)
					u()
				} else {
					u := l.lock(0, 4096, false)
					u()
				}
			}
		}(i)
	}
	wg.Wait()
}
