package alua

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// A simulated cluster: gateways running Owner machines against one
// compare-and-swap record (standing in for etcd) and one exclusive lock
// (standing in for the RBD lock, with fencing), on a simulated clock.

type simGateway struct {
	id      string
	o       *Owner
	alive   bool
	fenced  bool // blocklisted: its writes would fail
	stopped bool // died: no more inputs
}

type simEvent struct {
	at  time.Time
	run func()
}

type simCluster struct {
	t        *testing.T
	now      time.Time
	rec      Record
	holder   string // lock owner
	gws      map[string]*simGateway
	order    []string
	events   []simEvent
	leaseTTL time.Duration

	fences    int
	served    map[string]int // by initiator
	firstAt   map[string]time.Time
	violation string
}

func newSimCluster(t *testing.T, cfg func(self string) OwnerConfig, ids ...string) *simCluster {
	c := &simCluster{t: t, now: t0, gws: map[string]*simGateway{}, order: ids, leaseTTL: 3 * time.Second,
		served: map[string]int{}, firstAt: map[string]time.Time{}}
	for _, id := range ids {
		o, err := NewOwner(cfg(id))
		if err != nil {
			t.Fatal(err)
		}
		c.gws[id] = &simGateway{id: id, o: o, alive: true}
	}
	c.broadcast()
	return c
}

func (c *simCluster) live() []string {
	var out []string
	for _, id := range c.order {
		if c.gws[id].alive {
			out = append(out, id)
		}
	}
	return out
}

func (c *simCluster) broadcast() {
	for _, id := range c.order {
		g := c.gws[id]
		if !g.stopped {
			c.apply(g, g.o.Observe(c.now, Observation{Record: c.rec, Live: c.live()}))
		}
	}
}

func (c *simCluster) cas(expect, write Record) bool {
	if expect.Rev != c.rec.Rev {
		return false
	}
	write.Rev = c.rec.Rev + 1
	c.rec = write
	return true
}

func (c *simCluster) after(d time.Duration, f func()) {
	c.events = append(c.events, simEvent{at: c.now.Add(d), run: f})
}

// apply carries out a machine's actions the way the gateway driver will.
func (c *simCluster) apply(g *simGateway, acts []Action) {
	for _, a := range acts {
		switch a.Kind {
		case ActClaim, ActRequest, ActDeny:
			if c.cas(a.Expect, a.Write) {
				c.after(time.Millisecond, c.broadcast)
			}
		case ActRelease:
			// Drain, flush and unlock take a while; then the handoff write.
			c.after(100*time.Millisecond, func() {
				if g.stopped {
					return
				}
				if c.holder == g.id {
					c.holder = ""
				}
				ok := c.cas(a.Expect, a.Write)
				var err error
				if !ok {
					err = errors.New("handoff write lost")
				}
				c.apply(g, g.o.Released(c.now, err))
				if ok {
					c.broadcast()
				}
			})
		case ActServe:
			c.after(50*time.Millisecond, func() {
				if g.stopped {
					return
				}
				if a.Fence && c.holder == a.Old {
					c.gws[a.Old].fenced = true
					c.holder = ""
					c.fences++
				}
				var err error
				if c.holder == "" || c.holder == g.id {
					c.holder, g.fenced = g.id, false
				} else {
					err = fmt.Errorf("lock held by %s", c.holder)
				}
				c.apply(g, g.o.Acquired(c.now, err))
			})
		}
	}
}

// io sends one media command of initiator ini to gateway gw.
func (c *simCluster) io(ini, gw string) {
	g := c.gws[gw]
	if g.stopped {
		return
	}
	st, acts := g.o.Demand(c.now)
	c.apply(g, acts)
	if st != ActiveOptimized {
		return
	}
	// Safety: only the lock holder may serve, and never a fenced gateway.
	if c.holder != gw || g.fenced {
		if c.violation == "" {
			c.violation = fmt.Sprintf("t=%v: %s served %s while the lock holder is %q (fenced %v)", c.now.Sub(t0), gw, ini, c.holder, g.fenced)
		}
		return
	}
	c.served[ini]++
	if _, ok := c.firstAt[ini+"@"+gw]; !ok {
		c.firstAt[ini+"@"+gw] = c.now
	}
}

// kill makes gw die at once; its lease expires leaseTTL later.
func (c *simCluster) kill(gw string) {
	c.gws[gw].stopped = true
	c.after(c.leaseTTL, func() {
		c.gws[gw].alive = false
		c.broadcast()
	})
}

// run advances the clock to end in 10 ms steps; pins maps initiators to the
// gateway they send to (a function of time, for path failover).
func (c *simCluster) run(end time.Duration, pins func(now time.Duration) map[string]string) {
	step := 10 * time.Millisecond
	for c.now.Before(t0.Add(end)) {
		c.now = c.now.Add(step)
		for len(c.events) > 0 {
			var due []simEvent
			rest := c.events[:0:0]
			for _, e := range c.events {
				if !e.at.After(c.now) {
					due = append(due, e)
				} else {
					rest = append(rest, e)
				}
			}
			c.events = rest
			if len(due) == 0 {
				break
			}
			for _, e := range due {
				e.run()
			}
		}
		for ini, gw := range pins(c.now.Sub(t0)) {
			c.io(ini, gw)
		}
		if c.now.Sub(t0)%(100*time.Millisecond) == 0 {
			for _, id := range c.order {
				if g := c.gws[id]; !g.stopped {
					c.apply(g, g.o.Tick(c.now))
				}
			}
		}
	}
	if c.violation != "" {
		c.t.Fatal(c.violation)
	}
}

func (c *simCluster) moves() int {
	// Every live gateway observed the same changes; take the most.
	m := 0
	for _, g := range c.gws {
		if !g.stopped && g.o.Moves() > m {
			m = g.o.Moves()
		}
	}
	return m
}

func TestSimContendingInitiatorsMoveBoundedTimes(t *testing.T) {
	cfg := func(self string) OwnerConfig { return DefaultOwnerConfig("disk", self, []string{"a", "b"}) }
	c := newSimCluster(t, cfg, "a", "b")
	const minutes = 10
	// Initiator x only reaches gateway a, y only b, both busy all the time.
	c.run(minutes*time.Minute, func(time.Duration) map[string]string { return map[string]string{"x": "a", "y": "b"} })
	moves := c.moves()
	perMinute := float64(moves) / minutes
	t.Logf("%d moves in %d simulated minutes (%.2f/min), served x=%d y=%d, fences %d", moves, minutes, perMinute, c.served["x"], c.served["y"], c.fences)
	// One move per ContendedHold at most (60 s), plus the first claim.
	if limit := minutes*int(time.Minute/DefaultContendedHold) + 1; moves > limit {
		t.Fatalf("ownership moved %d times in %d minutes, limit %d", moves, minutes, limit)
	}
	// Neither initiator starves: the LU alternates.
	if c.served["x"] == 0 || c.served["y"] == 0 || moves < 2 {
		t.Fatalf("an initiator starved: served %v, moves %d", c.served, moves)
	}
	if c.fences != 0 {
		t.Fatalf("%d fences between two healthy gateways; handoffs must be graceful", c.fences)
	}
}

func TestSimPathSwitchMovesOnceGracefully(t *testing.T) {
	cfg := func(self string) OwnerConfig { return DefaultOwnerConfig("disk", self, []string{"a", "b"}) }
	c := newSimCluster(t, cfg, "a", "b")
	owner := Place("disk", []string{"a", "b"})
	other := map[string]string{"a": "b", "b": "a"}[owner]
	// The initiator uses the owner's path for 30 s, then only the other one.
	switchAt := 30 * time.Second
	c.run(2*time.Minute, func(now time.Duration) map[string]string {
		if now < switchAt {
			return map[string]string{"x": owner}
		}
		return map[string]string{"x": other}
	})
	if m := c.moves(); m != 2 { // the initial claim, then the one move
		t.Fatalf("moves = %d, want 2 (initial claim and one move)", m)
	}
	if c.fences != 0 {
		t.Fatalf("a graceful move fenced %d times", c.fences)
	}
	first, ok := c.firstAt["x@"+other]
	if !ok {
		t.Fatal("the initiator was never served on its new path")
	}
	// DemandWindow plus the handoff (about 0.2 s here).
	took := first.Sub(t0) - switchAt
	t.Logf("I/O resumed on the new path after %v", took)
	if took > DefaultDemandWindow+time.Second {
		t.Fatalf("path switch took %v", took)
	}
}

func TestSimOwnerDeathFailsOverWithinLease(t *testing.T) {
	cfg := func(self string) OwnerConfig { return DefaultOwnerConfig("disk", self, []string{"a", "b"}) }
	c := newSimCluster(t, cfg, "a", "b")
	owner := Place("disk", []string{"a", "b"})
	other := map[string]string{"a": "b", "b": "a"}[owner]
	deathAt := 40 * time.Second
	killed := false
	c.run(time.Minute, func(now time.Duration) map[string]string {
		if now < deathAt {
			return map[string]string{"x": owner}
		}
		if !killed {
			killed = true
			c.kill(owner)
		}
		// Multipath fails the dead path over at once.
		return map[string]string{"x": other}
	})
	first, ok := c.firstAt["x@"+other]
	if !ok {
		t.Fatal("no I/O served after the owner died")
	}
	took := first.Sub(t0) - deathAt
	t.Logf("I/O resumed %v after the owner died (lease TTL %v)", took, c.leaseTTL)
	// The lease must expire; then claim, fence, lock: well under ESXi's 8 s.
	if took > c.leaseTTL+time.Second {
		t.Fatalf("failover took %v", took)
	}
	if c.fences != 1 {
		t.Fatalf("fences = %d, want 1 (the dead owner)", c.fences)
	}
}
