package config

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// storeUnderTest is one store implementation as the contract suite drives
// it. Every subtest gets a fresh, empty configuration (a new MemStore, a
// new etcd prefix).
type storeUnderTest struct {
	// client returns another client of the same configuration (the same
	// MemStore, a new etcd client on the same prefix); the harness closes
	// it.
	client func(t *testing.T) Store
	// down makes the store unreachable (every etcd member stopped); up
	// brings it back with its data.
	down, up func(t *testing.T)
	// stopOne stops one of several members and returns a function that
	// starts it again; nil for single-member stores.
	stopOne func(t *testing.T) (restart func())
	// restart stops and starts every member keeping their data; nil for
	// stores that keep nothing (MemStore).
	restart func(t *testing.T)
}

// testStoreContract is the behaviour every Store must have, so that tests
// on MemStore hold for etcd: run against MemStore, embedded etcd and a
// 3-member etcd cluster.
func testStoreContract(t *testing.T, fresh func(t *testing.T) storeUnderTest) {
	t.Run("RoundTrip", func(t *testing.T) { contractRoundTrip(t, fresh(t)) })
	t.Run("ValidationFailureWritesNothing", func(t *testing.T) { contractRefusedWritesNothing(t, fresh(t)) })
	t.Run("ConcurrentUpdatesBothApply", func(t *testing.T) { contractConcurrent(t, fresh(t)) })
	t.Run("WatchSeesFinalState", func(t *testing.T) { contractWatch(t, fresh(t)) })
	t.Run("RestartKeepsData", func(t *testing.T) {
		s := fresh(t)
		if s.restart == nil {
			t.Skip("this store keeps nothing across restarts")
		}
		contractRestart(t, s)
	})
	t.Run("OneMemberDown", func(t *testing.T) {
		s := fresh(t)
		if s.stopOne == nil {
			t.Skip("single-member store")
		}
		contractOneDown(t, s)
	})
	t.Run("AllDownIsUnavailable", func(t *testing.T) { contractAllDown(t, fresh(t)) })
}

// sampleCluster is a cluster configuration with every kind of key,
// including names that need escaping in a key.
func sampleCluster() Config {
	c := validCluster()
	c.DiscoveryAuth = CHAP{Username: "discovery", Password: "discoverypass"}
	c.Ceph = Ceph{Conf: "/etc/ceph/ceph.conf", User: "admin"}
	c.Disks = append(c.Disks, NewDisk("pool/image", "file:pool-image.img", 4<<20))
	c.Targets[0].LUNs = append(c.Targets[0].LUNs, LUNMap{LUNID: 10, Disk: "pool/image"})
	c.Targets[0].Controls.CmdSNDepth = 256
	// With gateways listed, the store gives disks without a WWN one; fixed
	// ones keep the round trip exact.
	for i := range c.Disks {
		c.Disks[i].WWN = fmt.Sprintf("6001405a-bcde-f012-3456-789abcdef%03d", i)
	}
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func set(c Config) func(*Config) error {
	return func(dst *Config) error { *dst = c.Clone(); return nil }
}

func addDisk(name string) func(*Config) error {
	return func(c *Config) error {
		c.Disks = append(c.Disks, NewDisk(name, "file:"+name+".img", 1<<20))
		return nil
	}
}

func mustGet(t *testing.T, s Store) (Config, int64) {
	t.Helper()
	c, e, err := s.Get(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return c, e
}

func contractRoundTrip(t *testing.T, h storeUnderTest) {
	s := h.client(t)
	ctx := ctxT(t)
	empty, e0 := mustGet(t, s)
	if !reflect.DeepEqual(empty, Config{}) {
		t.Fatalf("fresh store holds %+v", empty)
	}
	want := sampleCluster()
	e1, err := s.Update(ctx, set(want))
	if err != nil {
		t.Fatal(err)
	}
	if e1 <= e0 {
		t.Fatalf("epoch %d after %d", e1, e0)
	}
	got, eg := mustGet(t, s)
	want = want.Cluster()
	want.Sort()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read back differs:\n got %+v\nwant %+v", got, want)
	}
	if eg != e1 {
		t.Fatalf("Get epoch %d, Update returned %d", eg, e1)
	}
	// Another client reads the same.
	if other, eo := mustGet(t, h.client(t)); !reflect.DeepEqual(other, want) || eo != e1 {
		t.Fatalf("second client: epoch %d %+v", eo, other)
	}
	// No change: same epoch, nothing written.
	if e, err := s.Update(ctx, func(*Config) error { return nil }); err != nil || e != e1 {
		t.Fatalf("no-op update: %d %v", e, err)
	}
	// Removing objects deletes their keys and moves the epoch.
	e2, err := s.Update(ctx, func(c *Config) error {
		c.Targets[0].HostGroups = nil
		c.Targets[0].LUNs = c.Targets[0].LUNs[:2] // drops LUN 10, pool/image
		c.Disks = c.Disks[:2]
		c.DiscoveryAuth = CHAP{}
		return nil
	})
	if err != nil || e2 <= e1 {
		t.Fatalf("removal: %d %v", e2, err)
	}
	got, _ = mustGet(t, s)
	if len(got.Disks) != 2 || len(got.Targets[0].LUNs) != 2 || got.Targets[0].HostGroups != nil || got.DiscoveryAuth.Enabled() {
		t.Fatalf("after removal: %+v", got)
	}
	// A new gateway gets a fresh port group id.
	if _, err := s.Update(ctx, func(c *Config) error {
		c.Gateways = append(c.Gateways, Gateway{Name: "gw-new", Portals: []string{"127.0.0.9:3260"}})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, _ = mustGet(t, s)
	if g, ok := got.Gateway("gw-new"); !ok || g.TPGID != want.LastTPGID+1 {
		t.Fatalf("new gateway: %+v (last_tpg_id was %d)", g, want.LastTPGID)
	}
}

// seeded returns a client of h holding sampleCluster, a context and the
// epoch of that write.
func seeded(t *testing.T, h storeUnderTest) (Store, context.Context, int64) {
	t.Helper()
	s := h.client(t)
	ctx := ctxT(t)
	e, err := s.Update(ctx, set(sampleCluster()))
	if err != nil {
		t.Fatal(err)
	}
	return s, ctx, e
}

func contractRefusedWritesNothing(t *testing.T, h storeUnderTest) {
	s, ctx, e1 := seeded(t, h)
	before, _ := mustGet(t, s)

	_, err := s.Update(ctx, func(c *Config) error {
		c.Disks = append(c.Disks, NewDisk("fine", "file:fine.img", 1<<20)) // valid on its own
		c.Targets[0].LUNs[0].Disk = "missing"
		return nil
	})
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("invalid update: %v", err)
	}
	wantFieldError(t, err, "targets[0].luns[0].disk")

	boom := errors.New("fn refuses")
	if _, err := s.Update(ctx, func(c *Config) error { c.Disks = nil; return boom }); !errors.Is(err, boom) {
		t.Fatalf("fn error: %v", err)
	}
	after, e2 := mustGet(t, s)
	if e2 != e1 || !reflect.DeepEqual(before, after) {
		t.Fatalf("refused updates changed the store: epoch %d -> %d", e1, e2)
	}
}

func contractConcurrent(t *testing.T, h storeUnderTest) {
	a, b := h.client(t), h.client(t)
	ctx := ctxT(t)
	if _, err := a.Update(ctx, set(sampleCluster())); err != nil {
		t.Fatal(err)
	}
	// Two updates that both read the same epoch before either writes: one
	// must find a conflict, read again and apply on top of the other.
	var calls atomic.Int32
	var read sync.WaitGroup
	read.Add(2)
	update := func(s Store, name string, errc chan<- error) {
		first := true
		_, err := s.Update(ctx, func(c *Config) error {
			calls.Add(1)
			if first {
				first = false
				read.Done()
				read.Wait()
			}
			return addDisk(name)(c)
		})
		errc <- err
	}
	errc := make(chan error, 2)
	go update(a, "from-a", errc)
	go update(b, "from-b", errc)
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("fn called %d times; want 3 (one retry after the conflict)", n)
	}
	// And many at once from both clients.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Update(ctx, addDisk(fmt.Sprintf("many-%02d", i)))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, _ := mustGet(t, a)
	for _, name := range []string{"from-a", "from-b", "many-00", "many-39"} {
		if _, ok := got.Disk(name); !ok {
			t.Errorf("disk %s lost", name)
		}
	}
	if n := len(got.Disks); n != len(sampleCluster().Disks)+42 {
		t.Fatalf("%d disks", n)
	}
}

// waitEpoch reads w until a snapshot at epoch or later arrives, checking
// that epochs only grow; it returns that snapshot.
func waitEpoch(t *testing.T, w <-chan Snapshot, epoch, last int64, within time.Duration) Snapshot {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case s, ok := <-w:
			if !ok {
				t.Fatalf("watch closed waiting for epoch %d", epoch)
			}
			if s.Epoch <= last {
				t.Fatalf("watch went from epoch %d to %d", last, s.Epoch)
			}
			last = s.Epoch
			if s.Epoch >= epoch {
				return s
			}
		case <-deadline:
			t.Fatalf("no snapshot at epoch %d within %s (last %d)", epoch, within, last)
		}
	}
}

func contractWatch(t *testing.T, h storeUnderTest) {
	s := h.client(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	e1, err := s.Update(ctx, set(sampleCluster()))
	if err != nil {
		t.Fatal(err)
	}
	// From an older epoch: the current configuration at once.
	w0 := h.client(t).Watch(ctx, 0)
	if got := waitEpoch(t, w0, e1, 0, 10*time.Second); got.Epoch != e1 {
		t.Fatalf("first snapshot at %d, want %d", got.Epoch, e1)
	}
	// From the current epoch: nothing until a change; then every change's
	// final state, even when the reader is slow and changes come fast.
	w := h.client(t).Watch(ctx, e1)
	select {
	case got := <-w:
		t.Fatalf("snapshot %d without a change", got.Epoch)
	case <-time.After(200 * time.Millisecond):
	}
	var last int64
	for i := range 30 {
		last, err = s.Update(ctx, addDisk(fmt.Sprintf("w%02d", i)))
		if err != nil {
			t.Fatal(err)
		}
	}
	want, _ := mustGet(t, s)
	got := waitEpoch(t, w, last, e1, 10*time.Second)
	if got.Epoch != last || !reflect.DeepEqual(got.Config, want) {
		t.Fatalf("final snapshot at %d (want %d) differs from Get", got.Epoch, last)
	}
	// A deletion is a change too.
	last, err = s.Update(ctx, func(c *Config) error { c.Disks = c.Disks[:len(c.Disks)-1]; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got := waitEpoch(t, w, last, got.Epoch, 10*time.Second); len(got.Config.Disks) != len(want.Disks)-1 {
		t.Fatalf("deletion not seen: %d disks", len(got.Config.Disks))
	}
	cancel()
	for range w {
	}
	// Closed on cancel: the range above ends. Closing the store ends its
	// watches too.
	c := h.client(t)
	w = c.Watch(ctxT(t), 0)
	waitEpoch(t, w, last, 0, 10*time.Second)
	c.Close()
	select {
	case _, ok := <-w:
		if ok {
			t.Fatal("snapshot after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch still open 5s after Close")
	}
}

func contractRestart(t *testing.T, h storeUnderTest) {
	s, _, e1 := seeded(t, h)
	want, _ := mustGet(t, s)
	h.restart(t)
	c, e := mustGet(t, h.client(t))
	if e != e1 || !reflect.DeepEqual(c, want) {
		t.Fatalf("after restart: epoch %d (was %d), equal %v", e, e1, reflect.DeepEqual(c, want))
	}
}

func contractOneDown(t *testing.T, h storeUnderTest) {
	s, ctx, _ := seeded(t, h)
	w := h.client(t).Watch(ctx, 0)
	waitEpoch(t, w, 1, 0, 10*time.Second)
	restart := h.stopOne(t)
	start := time.Now()
	e, err := s.Update(ctx, addDisk("while-one-down"))
	if err != nil {
		t.Fatalf("update with one member down: %v", err)
	}
	t.Logf("update with one member down took %s", time.Since(start))
	if got := waitEpoch(t, w, e, 0, 10*time.Second); len(got.Config.Disks) != len(sampleCluster().Disks)+1 {
		t.Fatal("watch missed the update made with one member down")
	}
	restart()
	if _, err := s.Update(ctx, addDisk("after-restart")); err != nil {
		t.Fatal(err)
	}
}

func contractAllDown(t *testing.T, h storeUnderTest) {
	s, ctx, e1 := seeded(t, h)
	var err error
	w := h.client(t).Watch(ctx, e1)
	h.down(t)
	const deadline = 2 * time.Second
	for name, call := range map[string]func(context.Context) error{
		"Get": func(ctx context.Context) error { _, _, err := s.Get(ctx); return err },
		"Update": func(ctx context.Context) error {
			_, err := s.Update(ctx, addDisk("while-down"))
			return err
		},
		"Ping": func(ctx context.Context) error { return s.(Pinger).Ping(ctx) },
	} {
		dctx, cancel := context.WithTimeout(ctx, deadline)
		start := time.Now()
		err := call(dctx)
		took := time.Since(start)
		cancel()
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s with the store down: %v; want ErrUnavailable", name, err)
		}
		// A little slack for the scheduler on a busy 2-core machine.
		if took > deadline+time.Second {
			t.Errorf("%s took %s with a %s deadline", name, took, deadline)
		}
		t.Logf("%s failed after %s: %v", name, took.Round(time.Millisecond), err)
	}
	h.up(t)
	// Back: updates work again, the one refused above is not there, and
	// the watch that lived through the outage delivers.
	var e2 int64
	for start := time.Now(); ; {
		e2, err = s.Update(ctx, addDisk("after-outage"))
		if err == nil {
			break
		}
		if !errors.Is(err, ErrUnavailable) || time.Since(start) > 20*time.Second {
			t.Fatalf("after the store came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got := waitEpoch(t, w, e2, e1, 20*time.Second)
	if _, ok := got.Config.Disk("while-down"); ok {
		t.Fatal("an update refused while down was applied")
	}
	if _, ok := got.Config.Disk("after-outage"); !ok {
		t.Fatal("watch after the outage misses the new disk")
	}
}
