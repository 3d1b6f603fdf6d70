package ha

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rbdgw/rbdgw/alua"
	"github.com/rbdgw/rbdgw/scsi"
)

// ImageLock hands an LU's image between gateways.
type ImageLock interface {
	// Acquire makes this gateway the image's only writer. With fence the
	// previous holder did not let go: take the image from it and cut it
	// off first (RBD: break its exclusive lock and blocklist its client).
	Acquire(ctx context.Context, fence bool) error
	// Release flushes and gives the image up, so that the next owner
	// takes it without fencing.
	Release(ctx context.Context) error
	// Fences reports whether Acquire(fence=true) stops a stale owner's
	// writes by itself (RBD's blocklist does). Without such a fence (file
	// images) an owner serves only while its lease is certainly valid.
	Fences() bool
}

// LUControl is what the driver needs of the logical unit
// (*scsi.LogicalUnit).
type LUControl interface {
	// Quiesce waits until the commands in the device server have left.
	Quiesce(ctx context.Context) error
	// ReloadPR reads the persistent reservations from the store, as a new
	// owner must before serving.
	ReloadPR() error
	// ExecuteForwarded runs a command another gateway forwarded to this
	// one as the LU's owner.
	ExecuteForwarded(ctx context.Context, cmd *scsi.Command) scsi.Response
}

// LUConfig ties one LU to the cluster.
type LUConfig struct {
	// Owner configures the state machine; Owner.LU names the LU in etcd
	// and Owner.Self must be the cluster's gateway name.
	Owner alua.OwnerConfig
	// Groups are the LU's port groups; GroupOf maps a gateway name to its
	// target port group id.
	Groups  *alua.Dynamic
	GroupOf map[string]uint16
	Lock    ImageLock
	LU      LUControl
}

// driverTick is how often time-driven decisions are taken (the machine
// wants DemandGap/2 or faster).
const driverTick = 200 * time.Millisecond

// handoffTimeout bounds a release or an acquisition.
const handoffTimeout = 10 * time.Second

// Driver runs one LU's ownership state machine: one goroutine owns the
// machine; the data path only reads atomics and signals demand.
type Driver struct {
	cfg  LUConfig
	m    *Membership
	recs *Records
	log  *slog.Logger

	// Written by the driver goroutine, read by the data path.
	serving atomic.Bool
	// servingLease is the lease generation the LU was acquired under:
	// without a fence of its own (file images) the LU is served only
	// while that very lease holds, not a later one taken after it
	// expired, when another gateway may have claimed the LU.
	servingLease atomic.Uint64
	// Set by the data path, consumed by the driver goroutine.
	demand  atomic.Bool
	localIO atomic.Bool
	kick    chan struct{} // cap 1: demand arrived

	recMu  sync.Mutex
	rec    alua.Record // newest record delivered; guarded by recMu
	recNew chan struct{}

	cancel  context.CancelFunc
	done    chan struct{}
	unsub   func()
	machine *alua.Owner // owned by the driver goroutine
	// groupOf maps gateways to port group ids; owned by the driver
	// goroutine once started (SetGateways replaces it there).
	groupOf map[string]uint16
	reconf  chan reconfig
}

// reconfig is a change to a running driver, applied by its goroutine.
type reconfig struct {
	apply func(now time.Time) ([]alua.Action, error)
	done  chan error
}

func newDriver(cfg LUConfig, m *Membership, recs *Records, log *slog.Logger) (*Driver, error) {
	if cfg.Owner.Self != m.Self() {
		return nil, fmt.Errorf("ha: LU %s: owner config is for gateway %q, this is %q", cfg.Owner.LU, cfg.Owner.Self, m.Self())
	}
	if cfg.Groups == nil || cfg.Lock == nil || cfg.LU == nil {
		return nil, fmt.Errorf("ha: LU %s: port groups, image lock and LU are required", cfg.Owner.LU)
	}
	for _, g := range cfg.Owner.Gateways {
		if _, ok := cfg.GroupOf[g]; !ok {
			return nil, fmt.Errorf("ha: LU %s: gateway %s has no target port group", cfg.Owner.LU, g)
		}
	}
	machine, err := alua.NewOwner(cfg.Owner)
	if err != nil {
		return nil, err
	}
	d := &Driver{cfg: cfg, m: m, recs: recs, log: log.With("lu", cfg.Owner.LU),
		kick: make(chan struct{}, 1), recNew: make(chan struct{}, 1), done: make(chan struct{}), machine: machine,
		groupOf: maps.Clone(cfg.GroupOf), reconf: make(chan reconfig)}
	return d, nil
}

func (d *Driver) start(ctx context.Context) {
	ctx, d.cancel = context.WithCancel(ctx)
	d.cfg.Groups.SetAdmitAccess(d.admit)
	d.unsub = d.recs.Subscribe(d.cfg.Owner.LU, func(r alua.Record) {
		d.recMu.Lock()
		d.rec = r
		d.recMu.Unlock()
		signal(d.recNew)
	})
	go d.run(ctx)
}

// stop ends the driver; an owner releases the image gracefully first, so
// another gateway takes it over without fencing.
func (d *Driver) stop() {
	d.cancel()
	<-d.done
	d.unsub()
	d.cfg.Groups.SetAdmitAccess(nil)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// admit is the LU's media admission (alua.AdmitAccessFunc), on the data
// path: the owner serves while it may; with Owner.ReadsAnywhere a
// non-owner serves reads itself while a live owner holds the LU (without
// write-back caching a read sees every completed write); anything else is
// demand for the LU and is answered TRANSITIONING: the device server
// forwards it to the owner (Cluster.Forwarder) or, when it cannot, answers
// NOT READY so that the initiator retries.
//
// A command another gateway forwarded here is served by the owner like
// its own, but is not the owner's own I/O (which keeps the LU here when
// contended) nor demand at a non-owner: the forwarding gateway counts it
// as its demand.
func (d *Driver) admit(ctx context.Context, _ uint16, a alua.Access) alua.AccessState {
	forwarded := scsi.IsForwarded(ctx)
	if d.serving.Load() && (d.cfg.Lock.Fences() || d.m.ValidLease(d.servingLease.Load())) {
		if !forwarded && !d.localIO.Load() {
			d.localIO.Store(true)
		}
		return alua.ActiveOptimized
	}
	if forwarded {
		return alua.Transitioning
	}
	if a == alua.AccessRead && d.cfg.Owner.ReadsAnywhere && d.ownerServesElsewhere() {
		return alua.ActiveNonOptimized
	}
	if !d.demand.Swap(true) {
		signal(d.kick)
	}
	return alua.Transitioning
}

// ownerServesElsewhere: another gateway owns the LU and its lease is
// alive, and this gateway's own lease is valid.
func (d *Driver) ownerServesElsewhere() bool {
	owner := d.Owner().Owner
	if owner == "" || owner == d.m.Self() || !d.m.Valid() {
		return false
	}
	return d.m.IsLive(owner)
}

// SetGateways gives the running driver a new gateway set (gateways added
// to the configuration) with their port group ids; the LU's port groups
// must already hold the new groups. The ownership record and this
// gateway's part stay; the states of every group are published again.
func (d *Driver) SetGateways(gateways []string, groupOf map[string]uint16) error {
	for _, g := range gateways {
		if _, ok := groupOf[g]; !ok {
			return fmt.Errorf("ha: LU %s: gateway %s has no target port group", d.cfg.Owner.LU, g)
		}
	}
	groupOf = maps.Clone(groupOf)
	return d.reconfigure(func(now time.Time) ([]alua.Action, error) {
		acts, err := d.machine.SetGateways(now, gateways)
		if err == nil {
			d.groupOf = groupOf
		}
		return acts, err
	})
}

// SetPreference gives the running driver the LU's new preferred gateway
// and failback policy; the LU's port groups should show the new PREF bit.
func (d *Driver) SetPreference(preferred string, failback alua.FailbackPolicy) error {
	return d.reconfigure(func(now time.Time) ([]alua.Action, error) {
		return d.machine.SetPreference(now, preferred, failback)
	})
}

// reconfigure runs apply on the driver goroutine and carries out the
// actions it returns there.
func (d *Driver) reconfigure(apply func(now time.Time) ([]alua.Action, error)) error {
	rc := reconfig{apply: apply, done: make(chan error, 1)}
	select {
	case d.reconf <- rc:
		return <-rc.done
	case <-d.done:
		return fmt.Errorf("ha: LU %s: driver stopped", d.cfg.Owner.LU)
	}
}

// Serving reports whether this gateway serves the LU's media commands.
func (d *Driver) Serving() bool { return d.serving.Load() }

// Owner returns the newest ownership record seen.
func (d *Driver) Owner() alua.Record {
	d.recMu.Lock()
	defer d.recMu.Unlock()
	return d.rec
}

func (d *Driver) observation() alua.Observation {
	live := d.m.Live()
	if !d.cfg.Lock.Fences() && !d.m.Valid() {
		// Without a fence of its own the LU is safe here only under a valid
		// lease: until it is renewed this gateway counts itself dead.
		live = without(live, d.m.Self())
	}
	return alua.Observation{Record: d.Owner(), Live: live}
}

func without(list []string, s string) []string {
	out := list[:0:0]
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

func (d *Driver) run(ctx context.Context) {
	defer close(d.done)
	members, unsubscribe := d.m.Subscribe()
	defer unsubscribe()
	tick := time.NewTicker(driverTick)
	defer tick.Stop()
	d.do(ctx, d.machine.Observe(time.Now(), d.observation()))
	for {
		var acts []alua.Action
		select {
		case <-ctx.Done():
			d.leave()
			return
		case <-d.recNew:
			acts = d.machine.Observe(time.Now(), d.observation())
		case <-members:
			acts = d.machine.Observe(time.Now(), d.observation())
		case <-d.kick:
			if d.demand.Swap(false) {
				_, acts = d.machine.Demand(time.Now())
			}
		case rc := <-d.reconf:
			var err error
			acts, err = rc.apply(time.Now())
			rc.done <- err
		case <-tick.C:
			now := time.Now()
			if d.localIO.Swap(false) {
				d.machine.Demand(now) // the owner's own I/O (contention)
			}
			if d.demand.Swap(false) {
				_, acts = d.machine.Demand(now)
			}
			acts = append(acts, d.machine.Tick(now)...)
		}
		d.do(ctx, acts)
	}
}

// do carries out actions and whatever their outcomes lead to.
func (d *Driver) do(ctx context.Context, acts []alua.Action) {
	for len(acts) > 0 {
		a := acts[0]
		acts = acts[1:]
		acts = append(acts, d.act(ctx, a)...)
	}
}

func (d *Driver) act(ctx context.Context, a alua.Action) []alua.Action {
	switch a.Kind {
	case alua.ActSetStates:
		states := make(map[uint16]alua.AccessState, len(a.States))
		for g, st := range a.States {
			if id, ok := d.groupOf[g]; ok {
				states[id] = st
			}
		}
		if _, err := d.cfg.Groups.SetStates(states, alua.StatusImplicit, nil); err != nil {
			d.log.Error("ALUA states not applied", "err", err)
		}
	case alua.ActClaim, alua.ActRequest, alua.ActDeny:
		if _, err := d.recs.CAS(ctx, d.cfg.Owner.LU, a.Expect, a.Write); err != nil {
			d.log.Warn("ownership record not written", "action", a.Kind, "err", err)
		}
	case alua.ActStopServing:
		if d.serving.Swap(false) {
			d.log.Info("stopped serving", "owner", d.Owner().Owner)
		}
	case alua.ActServe:
		err := d.acquire(ctx, a)
		return d.machine.Acquired(time.Now(), err)
	case alua.ActRelease:
		err := d.release(ctx, a)
		return d.machine.Released(time.Now(), err)
	}
	return nil
}

// acquire takes the image (fencing the old owner when told to), loads the
// committed persistent reservations and starts serving.
func (d *Driver) acquire(ctx context.Context, a alua.Action) error {
	ctx, cancel := context.WithTimeout(ctx, handoffTimeout)
	defer cancel()
	start := time.Now()
	lease := d.m.Lease()
	if !d.cfg.Lock.Fences() && !d.m.ValidLease(lease) {
		return fmt.Errorf("ha: LU %s: this gateway's lease is not valid", d.cfg.Owner.LU)
	}
	if err := d.cfg.Lock.Acquire(ctx, a.Fence); err != nil {
		d.log.Warn("image not acquired", "fence", a.Fence, "old_owner", a.Old, "err", err)
		return err
	}
	if err := d.cfg.LU.ReloadPR(); err != nil {
		d.log.Warn("reservations not loaded", "err", err)
		return err
	}
	d.servingLease.Store(lease)
	d.serving.Store(true)
	d.log.Info("serving", "epoch", d.Owner().Epoch, "fenced", a.Old, "took", time.Since(start))
	return nil
}

// release stops admitting media commands, waits for those in flight,
// gives the image up and hands the record over.
func (d *Driver) release(ctx context.Context, a alua.Action) error {
	ctx, cancel := context.WithTimeout(ctx, handoffTimeout)
	defer cancel()
	d.serving.Store(false)
	if err := d.cfg.LU.Quiesce(ctx); err != nil {
		return err
	}
	if err := d.cfg.Lock.Release(ctx); err != nil {
		return err
	}
	ok, err := d.recs.CAS(ctx, d.cfg.Owner.LU, a.Expect, a.Write)
	if err == nil && !ok {
		err = fmt.Errorf("ha: LU %s: ownership record changed during the handoff", d.cfg.Owner.LU)
	}
	if err != nil {
		return err
	}
	d.log.Info("handed over", "to", a.Write.Owner)
	return nil
}

// leave is the driver's last act when the gateway stops serving the LU:
// an owner releases the image so a successor needs no fence; its record
// stays and the successor claims it once this gateway's lease is gone.
func (d *Driver) leave() {
	if !d.serving.Swap(false) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), handoffTimeout)
	defer cancel()
	if err := d.cfg.LU.Quiesce(ctx); err != nil {
		d.log.Warn("commands still in flight at shutdown", "err", err)
	}
	if err := d.cfg.Lock.Release(ctx); err != nil {
		d.log.Warn("image not released at shutdown", "err", err)
	}
}
