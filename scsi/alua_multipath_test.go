package scsi_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/alua"
	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/scsi/scsitest"
	"github.com/rbdgw/rbdgw/target"
)

// A two-gateway cluster in one process, driven by real libiscsi
// initiators: two iSCSI servers (127.0.0.1 and 127.0.0.2), each in front of
// its own LogicalUnit copy of one disk with its own view of the two port
// groups, an alua.Owner per gateway run by mpDriver over an in-memory
// compare-and-swap record (etcd's role) and a shared exclusive lock (the
// RBD lock's role), persistent reservations in one store and resets
// relayed between the copies.

// mpRecords is the ownership record with compare-and-swap and a watch.
type mpRecords struct {
	mu    sync.Mutex
	rec   alua.Record
	subs  []chan alua.Record
	moves int // changes of owner
}

func (s *mpRecords) ownerChanges() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.moves
}

func (s *mpRecords) watch() chan alua.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(chan alua.Record, 1)
	c <- s.rec
	s.subs = append(s.subs, c)
	return c
}

func (s *mpRecords) cas(expect, write alua.Record) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if expect.Rev != s.rec.Rev {
		return false
	}
	write.Rev = s.rec.Rev + 1
	if write.Owner != s.rec.Owner {
		s.moves++
	}
	s.rec = write
	for _, c := range s.subs {
		// Latest value wins: drop an undelivered older one.
		select {
		case <-c:
		default:
		}
		c <- write
	}
	return true
}

// mpLock is the image's exclusive lock with fencing.
type mpLock struct {
	mu     sync.Mutex
	holder string
	fences int
}

func (l *mpLock) fenceCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fences
}

func (l *mpLock) acquire(gw string, fence bool, old string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if fence && l.holder == old && old != "" {
		l.holder = ""
		l.fences++
	}
	if l.holder != "" && l.holder != gw {
		return fmt.Errorf("lock held by %s", l.holder)
	}
	l.holder = gw
	return nil
}

func (l *mpLock) release(gw string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder == gw {
		l.holder = ""
	}
}

// mpDriver runs one gateway's Owner machine: one goroutine owns it;
// commands reach it through asks.
type mpDriver struct {
	id        string
	live      []string
	groupOf   map[string]uint16
	groups    *alua.Dynamic
	lu        *scsi.LogicalUnit
	recs      *mpRecords
	lock      *mpLock
	m         *alua.Owner
	asks      chan mpAsk
	releasing atomic.Bool
}

type mpAsk struct {
	access alua.Access
	reply  chan alua.AccessState
}

// admit is the LU's gate: reads and owner commands are answered at once;
// a write at a non-owner is held (re-asked, so it stays demand) until
// ownership arrives, the command is aborted, or this gateway is handing
// the LU away.
func (d *mpDriver) admit(ctx context.Context, _ uint16, a alua.Access) alua.AccessState {
	deadline := time.Now().Add(alua.DefaultTransitionTime)
	for {
		q := mpAsk{access: a, reply: make(chan alua.AccessState, 1)}
		select {
		case d.asks <- q:
		case <-ctx.Done():
			return alua.Transitioning
		}
		st := <-q.reply
		if st.Active() || d.releasing.Load() || time.Now().After(deadline) {
			return st
		}
		select {
		case <-ctx.Done():
			return alua.Transitioning
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (d *mpDriver) run(ctx context.Context) {
	recs := d.recs.watch()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var acts []alua.Action
		select {
		case <-ctx.Done():
			return
		case r := <-recs:
			acts = d.m.Observe(time.Now(), alua.Observation{Record: r, Live: d.live})
		case q := <-d.asks:
			var st alua.AccessState
			st, acts = d.m.Access(time.Now(), q.access)
			q.reply <- st
		case <-tick.C:
			acts = d.m.Tick(time.Now())
		}
		d.do(acts)
	}
}

func (d *mpDriver) do(acts []alua.Action) {
	for len(acts) > 0 {
		a := acts[0]
		acts = acts[1:]
		switch a.Kind {
		case alua.ActSetStates:
			states := map[uint16]alua.AccessState{}
			for gw, st := range a.States {
				states[d.groupOf[gw]] = st
			}
			d.groups.SetStates(states, alua.StatusImplicit, nil)
		case alua.ActClaim, alua.ActRequest, alua.ActDeny:
			d.recs.cas(a.Expect, a.Write)
		case alua.ActServe:
			err := d.lock.acquire(d.id, a.Fence, a.Old)
			if err == nil {
				err = d.lu.ReloadPR()
			}
			d.releasing.Store(false)
			acts = append(acts, d.m.Acquired(time.Now(), err)...)
		case alua.ActRelease:
			// Stop admitting, let what runs finish, unlock, hand over.
			d.releasing.Store(true)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := d.lu.Quiesce(ctx)
			cancel()
			if err == nil {
				d.lock.release(d.id)
				if !d.recs.cas(a.Expect, a.Write) {
					err = fmt.Errorf("handoff write lost")
				}
			}
			acts = append(acts, d.m.Released(time.Now(), err)...)
			d.releasing.Store(false)
		}
	}
}

type mpCluster struct {
	urls [2]string
	lock *mpLock
	recs *mpRecords
	lus  [2]*scsi.LogicalUnit
}

const mpIQN = "iqn.2026-12.io.rbdgw:multipath"

func startMultipathCluster(t *testing.T, tweak func(*alua.OwnerConfig)) *mpCluster {
	t.Helper()
	ids := []string{"gw1", "gw2"}
	groupOf := map[string]uint16{"gw1": 1, "gw2": 2}
	be := scsitest.NewMemBackend(16 << 20)
	prs := scsi.NewMemPRStore()
	relays := [2]*relay{{}, {}}
	c := &mpCluster{lock: &mpLock{}, recs: &mpRecords{}}
	ctx, cancel := context.WithCancel(context.Background())
	var groups [2]*alua.Dynamic
	for i := range ids {
		g, err := alua.NewDynamic([]alua.Group{
			{ID: 1, State: alua.ActiveNonOptimized, RelativePorts: []uint16{1}},
			{ID: 2, State: alua.ActiveNonOptimized, RelativePorts: []uint16{2}},
		}, 0)
		if err != nil {
			t.Fatal(err)
		}
		lu, err := scsi.NewLogicalUnit(scsi.LUConfig{Name: "rbd/mp", ALUA: g, PRStore: prs, Events: relays[i], ThinProvisioned: true}, be)
		if err != nil {
			t.Fatal(err)
		}
		groups[i], c.lus[i] = g, lu
	}
	// Each gateway replays the other's resets; wired before any session.
	relays[0].to, relays[1].to = []*scsi.LogicalUnit{c.lus[1]}, []*scsi.LogicalUnit{c.lus[0]}
	for i, id := range ids {
		lu := c.lus[i]
		oc := alua.DefaultOwnerConfig("rbd/mp", id, ids)
		oc.ReadsAnywhere = true
		if tweak != nil {
			tweak(&oc)
		}
		m, err := alua.NewOwner(oc)
		if err != nil {
			t.Fatal(err)
		}
		d := &mpDriver{id: id, live: ids, groupOf: groupOf, groups: groups[i], lu: lu, recs: c.recs, lock: c.lock, m: m, asks: make(chan mpAsk)}
		groups[i].SetAdmitAccess(d.admit)
		go d.run(ctx)

		tg := &target.Target{Name: mpIQN, PortalGroupTag: uint16(i + 1), RelativeTargetPort: uint16(i + 1), TargetPortGroup: uint16(i + 1),
			Op: target.DefaultOperational(), OpenACL: true, Router: func(string) scsi.Router { return scsi.NewRouter(map[uint64]*scsi.LogicalUnit{0: lu}) }}
		srv, err := target.NewServer(target.Config{Targets: []*target.Target{tg}})
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:0", i+1))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { srv.Serve(l); close(done) }()
		t.Cleanup(func() { srv.Close(); <-done })
		c.urls[i] = fmt.Sprintf("iscsi://%s/%s/0", l.Addr(), mpIQN)
	}
	t.Cleanup(func() {
		cancel()
		c.lus[0].Close()
		c.lus[1].Close()
	})
	return c
}

func needLibiscsi(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not installed (make deps installs libiscsi-bin)", tool)
	}
	return p
}

// libiscsi's MultipathIO.Reset with one path through each gateway: a
// LOGICAL UNIT RESET through either gateway raises the reset unit
// attention on both paths.
//
// The suite's Simple and CompareAndWrite tests cannot pass across
// gateways with single-writer ownership: they alternate writes between
// the paths, every switch is an implicit ALUA transition, SPC-4 has it
// raise ASYMMETRIC ACCESS STATE CHANGED on every I_T nexus, and libiscsi
// counts that unit attention on its next command as a failure (it does
// not retry). Everything else they check holds, see
// TestMultipathWritesFollowOwnership.
func TestMultipathResetAcrossGateways(t *testing.T) {
	cu := needLibiscsi(t, "iscsi-test-cu")
	c := startMultipathCluster(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, cu, "--dataloss", "-i", "iqn.2026-12.test:mp1", "-I", "iqn.2026-12.test:mp2",
		"-t", "ALL.MultipathIO.Reset", c.urls[0], c.urls[1]).CombinedOutput()
	s := string(out)
	if err != nil || !strings.Contains(s, "found matching LU device identifier for all (2) paths") ||
		!strings.Contains(s, "Test: Reset ...passed") {
		t.Fatalf("MultipathIO.Reset across gateways: %v\n%s", err, s)
	}
}

// An initiator that retries as real ones do (unit attentions, and NOT
// READY while the LU moves) writes through one gateway and reads back
// through the other, switching paths: every write lands where the lock
// is, every read sees the last write, reads at the non-owner move
// nothing, and each switch of the write path is one graceful move.
func TestMultipathWritesFollowOwnership(t *testing.T) {
	c := startMultipathCluster(t, func(oc *alua.OwnerConfig) {
		oc.DemandWindow, oc.DemandGap = 50*time.Millisecond, 50*time.Millisecond
		oc.MinHold, oc.ContendedHold = 100*time.Millisecond, 200*time.Millisecond
	})
	paths := [2]*scsi.Nexus{mkNexus("iqn.2026-12.test:host", 1, 1), mkNexus("iqn.2026-12.test:host", 2, 2)}
	moves0 := -1
	for round := 0; round < 6; round++ {
		w, r := round%2, 1-round%2
		data := fill(4096, byte(0x30+round))
		start := time.Now()
		retrying(t, c.lus[w], paths[w], []byte{0x2A, 0, 0, 0, 0, 8, 0, 0, 8, 0}, data, 0)
		if moves0 < 0 {
			moves0 = c.recs.ownerChanges() // the first write placed the LU
		}
		got := retrying(t, c.lus[r], paths[r], []byte{0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0}, nil, 4096)
		if !bytes.Equal(got, data) {
			t.Fatalf("round %d: read through gateway %d does not return what gateway %d wrote", round, r+1, w+1)
		}
		t.Logf("round %d: write through gw%d, read back through gw%d in %v", round, w+1, r+1, time.Since(start).Round(time.Millisecond))
	}
	// Five switches of the write path after the first write.
	if m := c.recs.ownerChanges() - moves0; m != 5 {
		t.Fatalf("%d ownership moves for 5 switches of the write path", m)
	}
	if c.lock.fenceCount() != 0 {
		t.Fatalf("%d fences between two healthy gateways", c.lock.fenceCount())
	}
}

// retrying runs cdb like an initiator: unit attentions and NOT READY
// (transition) are retried; anything else must be GOOD.
func retrying(t *testing.T, lu *scsi.LogicalUnit, n *scsi.Nexus, cdb, out []byte, in int) []byte {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		data, r := doIn(lu, n, cdb, out, in)
		if r.Status == scsi.StatusGood {
			return data
		}
		if k, a, q := senseOf(r.Sense); !(k == scsi.SenseUnitAttention || k == scsi.SenseNotReady && a == 0x04 && q == 0x0A) {
			t.Fatalf("%x through port %d: %s", cdb[0], n.RelativeTargetPort, sense(r))
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%x through port %d never succeeded", cdb[0], n.RelativeTargetPort)
	return nil
}
