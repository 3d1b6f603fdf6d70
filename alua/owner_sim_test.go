package alua

import (
	"errors"
	"fmt"
	"math/rand"
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
	gen     int  // incarnation, so a dead one's lease expiry spares its successor
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
	cfg      func(self string) OwnerConfig

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
	c.cfg = cfg
	c.broadcast()
	return c
}

// partition makes gw's lease expire while it keeps running (cut off from
// etcd, still reachable by initiators) and heals it after d.
func (c *simCluster) partition(gw string, d time.Duration) {
	g := c.gws[gw]
	gen := g.gen
	g.alive = false
	c.broadcast()
	c.after(d, func() {
		if g.gen == gen && !g.stopped {
			g.alive = true
			c.broadcast()
		}
	})
}

// restart brings gw back as a new process with a fresh machine.
func (c *simCluster) restart(gw string) {
	o, err := NewOwner(c.cfg(gw))
	if err != nil {
		c.t.Fatal(err)
	}
	g := c.gws[gw]
	g.o, g.stopped, g.alive, g.fenced = o, false, true, false
	g.gen++
	c.broadcast()
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
	g := c.gws[gw]
	g.stopped = true
	gen := g.gen
	c.after(c.leaseTTL, func() {
		if g.gen == gen {
			g.alive = false
			c.broadcast()
		}
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

// Random deaths, restarts, path switches and explicit requests on three
// gateways: no gateway ever serves without holding the lock or after it
// was fenced, and once the disturbances stop every initiator is served.
func TestSimRandomizedSafety(t *testing.T) {
	ids := []string{"a", "b", "c"}
	cfg := func(self string) OwnerConfig {
		c := DefaultOwnerConfig("disk", self, ids)
		c.MinHold, c.ContendedHold = 5*time.Second, 10*time.Second
		return c
	}
	for seed := int64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewSource(seed))
		c := newSimCluster(t, cfg, ids...)
		pins := map[string]string{"x": "a", "y": "b"}
		const quiet = 200 * time.Second // no disturbance after this
		c.run(4*time.Minute, func(now time.Duration) map[string]string {
			if now < quiet && rng.Intn(200) == 0 { // about every 2 s
				switch rng.Intn(5) {
				case 0: // an initiator switches path
					ini := []string{"x", "y"}[rng.Intn(2)]
					pins[ini] = ids[rng.Intn(3)]
				case 1: // a gateway dies (keep one running)
					var up []string
					for _, id := range ids {
						if !c.gws[id].stopped {
							up = append(up, id)
						}
					}
					if len(up) > 1 {
						c.kill(up[rng.Intn(len(up))])
					}
				case 2: // a dead gateway comes back
					for _, id := range ids {
						if c.gws[id].stopped && !c.gws[id].alive {
							c.restart(id)
							break
						}
					}
				case 4: // a running gateway loses its lease for a while (partition)
					g := c.gws[ids[rng.Intn(3)]]
					if !g.stopped && g.alive {
						c.partition(g.id, time.Duration(2+rng.Intn(8))*time.Second)
					}
				case 3: // an initiator sends SET TARGET PORT GROUPS somewhere
					g := c.gws[ids[rng.Intn(3)]]
					if !g.stopped {
						acts, _ := g.o.Explicit(c.now, ids[rng.Intn(3)])
						c.apply(g, acts)
					}
				}
			}
			out := map[string]string{}
			for ini, gw := range pins {
				if g := c.gws[gw]; g.stopped {
					// Multipath moves to a running gateway.
					for _, id := range ids {
						if !c.gws[id].stopped {
							pins[ini], gw = id, id
							break
						}
					}
				}
				out[ini] = gw
			}
			if now >= quiet {
				// Settle on one path so the end state is deterministic.
				out["y"] = out["x"]
			}
			return out
		})
		served := c.served["x"]
		c.run(4*time.Minute+20*time.Second, func(time.Duration) map[string]string { return map[string]string{"x": pins["x"]} })
		if c.served["x"] == served {
			t.Fatalf("seed %d: initiator x not served in the 20 s after things settled (owner record %+v, pinned to %s)", seed, c.rec, pins["x"])
		}
	}
}
