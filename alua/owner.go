package alua

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Record is the ownership record of one LU as the cluster store keeps it.
// It is written only by compare-and-swap on Rev (Action.Expect), so two
// gateways can never both believe they won the same epoch.
type Record struct {
	Owner string // owning gateway; "" before the first claim
	// Epoch increases by one on every change of Owner. It is the fencing
	// generation: a gateway serves only the epoch it claimed or was handed.
	Epoch uint64
	// Request names a gateway asking the live owner for a graceful handoff.
	Request string
	// Explicit marks a Request made by SET TARGET PORT GROUPS: an
	// initiator asked for it, so the owner grants it without damping.
	Explicit bool
	// Rev is the store's revision of the record (etcd ModRevision); every
	// write increases it. The machine ignores records older than its own.
	Rev uint64
}

// Observation is what the caller knows of the cluster when the record or a
// lease changes.
type Observation struct {
	Record Record
	// Live lists the gateways whose lease is alive, this one included when
	// its own lease is.
	Live []string
}

// ActionKind names what the caller must do.
type ActionKind uint8

const (
	// ActSetStates: publish States (by gateway id) to the LU's port groups
	// (Dynamic.SetStates with StatusImplicit); the LU then raises 2A/06.
	ActSetStates ActionKind = iota + 1
	// ActClaim: compare-and-swap Write over Expect (take ownership). If it
	// fails the watch brings the winner's record.
	ActClaim
	// ActRequest: compare-and-swap Write (Request = Self) over Expect: ask
	// the live owner for a graceful handoff.
	ActRequest
	// ActDeny: the owner refuses a request: compare-and-swap Write
	// (Request cleared) over Expect.
	ActDeny
	// ActRelease: the owner gives the LU up: stop admitting media commands,
	// let those in flight finish, flush, release the RBD exclusive lock,
	// then compare-and-swap Write (Owner = requester, Epoch + 1) over Expect
	// and report the outcome with Released.
	ActRelease
	// ActServe: take the RBD exclusive lock (after breaking the lock held
	// by Old and blocklisting Old when Fence is set), reload the persistent
	// reservations from the store (LogicalUnit.ReloadPR), then report the
	// outcome with Acquired. Media commands are answered Transitioning
	// until then.
	ActServe
	// ActStopServing: stop admitting media commands at once; this gateway
	// is no longer the owner (or lost its own lease, so another may claim).
	ActStopServing
)

var actionNames = [...]string{"", "set-states", "claim", "request", "deny", "release", "serve", "stop-serving"}

func (k ActionKind) String() string {
	if int(k) < len(actionNames) {
		return actionNames[k]
	}
	return "unknown"
}

// Action is one output of the machine.
type Action struct {
	Kind ActionKind
	// Expect and Write: compare-and-swap actions write Write if the stored
	// record's revision is still Expect.Rev (Write.Rev is left for the
	// store to set).
	Expect, Write Record
	// Fence and Old: ActServe breaks Old's lock and blocklists Old first.
	Fence bool
	Old   string
	// States: ActSetStates, every configured gateway's group state.
	States map[string]AccessState
}

type ownerPhase uint8

const (
	phaseFollower   ownerPhase = iota // another gateway owns the LU, or nobody does
	phaseRequesting                   // asked the live owner for a handoff
	phaseClaiming                     // compare-and-swap of a claim sent
	phaseAcquiring                    // the record names us; taking the lock
	phaseServing                      // owner with the lock: media commands served
	phaseReleasing                    // owner handing the LU over
)

var phaseNames = [...]string{"follower", "requesting", "claiming", "acquiring", "serving", "releasing"}

// Owner is the ownership state machine of one LU on one gateway (design.md
// "High availability"). It is pure: it does no I/O and reads no clock;
// every input carries the time, and outputs are Actions the caller carries
// out (etcd transactions, RBD lock calls, ALUA state updates), feeding the
// results back as inputs. It is not safe for concurrent use: one goroutine
// (the gateway's per-LU driver) owns it.
//
// Rules:
//   - The owner's lease expired (or nobody owns the LU): claim at once on
//     demand, or unprompted on the gateway Place picks among the live
//     ones, and fence the old owner before serving.
//   - The owner is alive: ask it for a graceful handoff only after media
//     commands kept arriving here for DemandWindow; the owner hands over
//     once it held the LU MinHold and its own I/O stopped (or, still busy,
//     after ContendedHold), and refuses otherwise; the requester fences it
//     if it neither hands over nor refuses within ReleaseTimeout.
//   - No demand or failback move within MinHold of the last move, nor
//     within MinHold of a refusal: contending initiators pinned to
//     different gateways move the LU at most once per ContendedHold.
//   - FailbackPreferred: the preferred gateway asks for the LU back once it
//     has been live for FailbackAfter.
type Owner struct {
	cfg   OwnerConfig
	phase ownerPhase

	known         bool
	rec           Record
	live          map[string]bool
	since         time.Time // when the current epoch was first observed
	selfLiveSince time.Time
	moves         int

	demandStart, lastDemand time.Time
	lastLocalIO             time.Time
	backoffUntil            time.Time

	deadline      time.Time // requesting and claiming give up or escalate then
	sentRev       uint64    // Rev the pending compare-and-swap expects
	fenceOld      string    // claiming: the owner to fence once we win
	acquireFailed bool
	retryAt       time.Time
	answeredRev   uint64 // the record revision whose request was answered

	published map[string]AccessState
}

// NewOwner validates cfg and returns a machine in the follower phase that
// knows nothing until its first Observe.
func NewOwner(cfg OwnerConfig) (*Owner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Gateways = slices.Clone(cfg.Gateways)
	return &Owner{cfg: cfg, live: map[string]bool{}}, nil
}

// Phase names the machine's phase (for logs and metrics).
func (o *Owner) Phase() string { return phaseNames[o.phase] }

// Serving reports whether this gateway serves the LU's media commands.
func (o *Owner) Serving() bool { return o.phase == phaseServing }

// Record returns the newest ownership record observed.
func (o *Owner) Record() Record { return o.rec }

// Moves counts the changes of owner observed since start.
func (o *Owner) Moves() int { return o.moves }

// Observe feeds a new record and/or lease view.
func (o *Owner) Observe(now time.Time, obs Observation) []Action {
	o.live = map[string]bool{}
	for _, g := range obs.Live {
		o.live[g] = true
	}
	if !o.selfLive() {
		o.selfLiveSince = time.Time{}
	} else if o.selfLiveSince.IsZero() {
		o.selfLiveSince = now
	}
	rec := obs.Record
	if !o.known || rec.Rev >= o.rec.Rev {
		if !o.known || rec.Owner != o.rec.Owner || rec.Epoch != o.rec.Epoch {
			if o.known {
				o.moves++
			}
			o.since = now
		}
		o.rec, o.known = rec, true
	}
	var acts []Action
	self := o.cfg.Self
	switch o.phase {
	case phaseServing, phaseAcquiring:
		if o.rec.Owner != self || !o.selfLive() {
			acts = append(acts, Action{Kind: ActStopServing})
			o.phase = phaseFollower
		} else if o.phase == phaseServing && o.pendingRequest() {
			acts = append(acts, o.answerRequest(now))
		}
	case phaseReleasing:
		if o.rec.Owner != self {
			o.phase = phaseFollower
		} else if !o.selfLive() {
			acts = append(acts, Action{Kind: ActStopServing})
			o.phase = phaseFollower
		}
	case phaseFollower:
		if o.rec.Request == self && o.rec.Owner != self && o.ownerAlive() {
			// Another gateway asked on our behalf (SET TARGET PORT GROUPS
			// received there): follow the request through like our own.
			o.phase = phaseRequesting
			o.deadline = now.Add(o.cfg.ReleaseTimeout)
			o.sentRev = o.rec.Rev
		}
	case phaseRequesting:
		switch {
		case o.rec.Owner == self:
			acts = append(acts, o.startServe(false, ""))
		case o.rec.Rev > o.sentRev && o.rec.Request != self:
			// The owner refused, or the record moved on without us.
			o.phase = phaseFollower
			o.backoffUntil = now.Add(o.cfg.MinHold)
		}
	case phaseClaiming:
		if o.rec.Rev > o.sentRev {
			if o.rec.Owner == self {
				acts = append(acts, o.startServe(o.fenceOld != "" && o.fenceOld != self, o.fenceOld))
			} else {
				o.phase = phaseFollower // another gateway won
			}
		}
	}
	acts = append(acts, o.evaluate(now)...)
	return append(acts, o.publish()...)
}

// Demand reports a media command arriving here and returns the state to
// process it under: ActiveOptimized (serve it) when this gateway serves
// the LU, else Transitioning (NOT READY, ASYMMETRIC ACCESS STATE
// TRANSITION, so the initiator retries) while the machine decides.
func (o *Owner) Demand(now time.Time) (AccessState, []Action) {
	if o.phase == phaseServing {
		o.lastLocalIO = now
		return ActiveOptimized, nil
	}
	if o.lastDemand.IsZero() || now.Sub(o.lastDemand) > o.cfg.DemandGap {
		o.demandStart = now
	}
	o.lastDemand = now
	acts := o.evaluate(now)
	return Transitioning, append(acts, o.publish()...)
}

// Access is Demand for a command whose access is known: with
// ReadsAnywhere a read at a non-owner is served here (Active/Non-optimized)
// while a live owner holds the LU, and is not demand.
func (o *Owner) Access(now time.Time, a Access) (AccessState, []Action) {
	if a == AccessRead && o.cfg.ReadsAnywhere && o.known && o.selfLive() && o.ownerAlive() &&
		(o.phase == phaseFollower || o.phase == phaseRequesting) {
		return ActiveNonOptimized, nil
	}
	return o.Demand(now)
}

// SetGateways replaces the configured gateway set (a gateway was added to
// or removed from the cluster's configuration) and returns the actions it
// leads to: new group states to publish, and a claim if the owner is
// gone from the set. The set must keep this gateway and the preferred one.
func (o *Owner) SetGateways(now time.Time, gateways []string) ([]Action, error) {
	cfg := o.cfg
	cfg.Gateways = slices.Clone(gateways)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o.cfg = cfg
	o.published = nil // the group set changed: publish every state again
	return append(o.evaluate(now), o.publish()...), nil
}

// SetPreference replaces the LU's preferred gateway ("" none) and failback
// policy (the disk's configuration changed) and returns the actions that
// follow: a failback becomes due once the preferred gateway has been live
// FailbackAfter, as if it had been configured from the start.
func (o *Owner) SetPreference(now time.Time, preferred string, failback FailbackPolicy) ([]Action, error) {
	cfg := o.cfg
	cfg.Preferred, cfg.Failback = preferred, failback
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o.cfg = cfg
	return append(o.evaluate(now), o.publish()...), nil
}

// Tick lets timeouts act; call it about every DemandGap/2 or faster.
func (o *Owner) Tick(now time.Time) []Action {
	return append(o.evaluate(now), o.publish()...)
}

// Acquired reports the outcome of ActServe.
func (o *Owner) Acquired(now time.Time, err error) []Action {
	if o.phase != phaseAcquiring {
		return nil
	}
	if err != nil {
		o.acquireFailed = true
		o.retryAt = now.Add(o.cfg.RetryInterval)
		return nil
	}
	o.phase = phaseServing
	o.acquireFailed = false
	o.lastLocalIO = now
	o.lastDemand, o.demandStart = time.Time{}, time.Time{}
	var acts []Action
	if o.pendingRequest() {
		acts = append(acts, o.answerRequest(now))
	}
	return append(acts, o.publish()...)
}

// Released reports the outcome of ActRelease. On failure the gateway still
// owns the LU: it takes the lock again and refuses the request.
func (o *Owner) Released(now time.Time, err error) []Action {
	if o.phase != phaseReleasing {
		return nil
	}
	if err == nil {
		o.phase = phaseFollower
		return o.publish()
	}
	acts := []Action{o.deny()}
	acts = append(acts, o.startServe(false, ""))
	return append(acts, o.publish()...)
}

// Errors of Explicit; the device server answers SET TARGET PORT GROUPS
// COMMAND FAILED for any of them.
var (
	ErrNotInCluster   = errors.New("alua: this gateway's lease is not alive")
	ErrGatewayDown    = errors.New("alua: the requested gateway is not alive")
	ErrMoveInProgress = errors.New("alua: an ownership move is already in progress")
)

// Explicit asks for target to become the LU's owner because an initiator
// said so (SET TARGET PORT GROUPS naming target's group Active/Optimized,
// received by this gateway). Explicit moves skip the damping: the owner
// hands over as soon as it can. Any gateway may relay the request; the
// target follows it through (and fences an owner that does not answer).
func (o *Owner) Explicit(now time.Time, target string) ([]Action, error) {
	switch {
	case !o.known || !o.selfLive():
		return nil, ErrNotInCluster
	case !o.live[target]:
		return nil, fmt.Errorf("%w: %q", ErrGatewayDown, target)
	case target == o.rec.Owner && (target != o.cfg.Self || o.phase == phaseServing):
		return nil, nil // already there
	}
	if o.phase == phaseServing {
		// The owner itself was asked: hand over directly.
		o.answeredRev = o.rec.Rev
		o.phase = phaseReleasing
		acts := []Action{{Kind: ActRelease, Expect: o.rec, Write: Record{Owner: target, Epoch: o.rec.Epoch + 1}}}
		return append(acts, o.publish()...), nil
	}
	if o.rec.Request != "" || o.phase != phaseFollower || !o.ownerAlive() {
		// A move is under way (or a dead owner's LU is about to be
		// claimed): the initiator retries after the next 2A/06.
		return nil, ErrMoveInProgress
	}
	w := o.rec
	w.Request, w.Explicit, w.Rev = target, true, 0
	act := Action{Kind: ActRequest, Expect: o.rec, Write: w}
	if target == o.cfg.Self {
		o.phase = phaseRequesting
		o.deadline = now.Add(o.cfg.ReleaseTimeout)
		o.sentRev = o.rec.Rev
	}
	return append([]Action{act}, o.publish()...), nil
}

// ExplicitTarget is the gateway an explicit request makes the owner: the
// one whose group it asks to be Active/Optimized ("" when it asks none).
// gatewayOf maps target port group ids to gateway ids. Asking two groups
// to be Active/Optimized, or naming a group of no gateway, is an error:
// an LU has one owner.
func ExplicitTarget(req ExplicitRequest, gatewayOf map[uint16]string) (string, error) {
	target := ""
	for _, w := range req.Want {
		if w.State != ActiveOptimized {
			continue
		}
		gw, ok := gatewayOf[w.Group]
		if !ok {
			return "", fmt.Errorf("alua: target port group %d belongs to no gateway", w.Group)
		}
		if target != "" && target != gw {
			return "", fmt.Errorf("alua: groups of %s and %s both asked to be active/optimized; an LU has one owner", target, gw)
		}
		target = gw
	}
	return target, nil
}

// evaluate takes the decisions that depend on time and demand.
func (o *Owner) evaluate(now time.Time) []Action {
	if !o.known || !o.selfLive() {
		return nil
	}
	self := o.cfg.Self
	switch o.phase {
	case phaseRequesting:
		if !o.ownerAlive() {
			return []Action{o.claim(now)}
		}
		if !now.Before(o.deadline) {
			if o.rec.Request == self {
				// The owner saw the request and neither handed over nor
				// refused in time: it is stuck, fence it.
				return []Action{o.claim(now)}
			}
			o.phase = phaseFollower // our request never landed
			return o.evaluate(now)
		}
	case phaseClaiming:
		if !now.Before(o.deadline) {
			o.phase = phaseFollower // the claim never landed
			return o.evaluate(now)
		}
	case phaseAcquiring:
		if o.acquireFailed && !now.Before(o.retryAt) {
			o.acquireFailed = false
			return []Action{{Kind: ActServe, Fence: o.fenceOld != "" && o.fenceOld != self, Old: o.fenceOld}}
		}
	case phaseFollower:
		if o.rec.Owner == self {
			// Our own record (a restart, or our lease came back before
			// anyone claimed): take the lock again.
			return []Action{o.startServe(false, "")}
		}
		if !o.ownerAlive() {
			if o.demandRecent(now) || o.placement() == self {
				return []Action{o.claim(now)}
			}
			return nil
		}
		if o.rec.Request != "" || now.Before(o.backoffUntil) || now.Sub(o.since) < o.cfg.MinHold {
			return nil
		}
		if o.demandSustained(now) || o.failbackDue(now) {
			return []Action{o.request(now)}
		}
	}
	return nil
}

// pendingRequest: another gateway asks for the LU and this record revision
// has not been answered yet.
func (o *Owner) pendingRequest() bool {
	return o.rec.Request != "" && o.rec.Request != o.cfg.Self && o.rec.Rev != o.answeredRev
}

// answerRequest is the owner's decision on rec.Request.
func (o *Owner) answerRequest(now time.Time) Action {
	o.answeredRev = o.rec.Rev
	req := o.rec.Request
	held := now.Sub(o.since)
	idle := now.Sub(o.lastLocalIO) >= o.cfg.DemandWindow
	failback := o.cfg.Failback == FailbackPreferred && req == o.cfg.Preferred
	if o.live[req] && (o.rec.Explicit || held >= o.cfg.MinHold && (idle || failback || held >= o.cfg.ContendedHold)) {
		o.phase = phaseReleasing
		return Action{Kind: ActRelease, Expect: o.rec, Write: Record{Owner: req, Epoch: o.rec.Epoch + 1}}
	}
	return o.deny()
}

func (o *Owner) deny() Action {
	w := o.rec
	w.Request, w.Explicit, w.Rev = "", false, 0
	return Action{Kind: ActDeny, Expect: o.rec, Write: w}
}

func (o *Owner) claim(now time.Time) Action {
	o.phase = phaseClaiming
	o.deadline = now.Add(o.cfg.ReleaseTimeout)
	o.sentRev = o.rec.Rev
	o.fenceOld = o.rec.Owner
	return Action{Kind: ActClaim, Expect: o.rec, Write: Record{Owner: o.cfg.Self, Epoch: o.rec.Epoch + 1}}
}

func (o *Owner) request(now time.Time) Action {
	o.phase = phaseRequesting
	o.deadline = now.Add(o.cfg.ReleaseTimeout)
	o.sentRev = o.rec.Rev
	w := o.rec
	w.Request, w.Rev = o.cfg.Self, 0
	return Action{Kind: ActRequest, Expect: o.rec, Write: w}
}

func (o *Owner) startServe(fence bool, old string) Action {
	o.phase = phaseAcquiring
	o.acquireFailed = false
	if !fence {
		o.fenceOld = ""
		old = ""
	}
	return Action{Kind: ActServe, Fence: fence, Old: old}
}

func (o *Owner) selfLive() bool { return o.live[o.cfg.Self] }

// placement is the gateway an ownerless LU goes to unprompted: the
// preferred one when it is live, else the balanced choice among the live.
func (o *Owner) placement() string {
	if o.cfg.Preferred != "" && o.live[o.cfg.Preferred] {
		return o.cfg.Preferred
	}
	return Place(o.cfg.LU, o.liveList())
}

func (o *Owner) ownerAlive() bool { return o.rec.Owner != "" && o.live[o.rec.Owner] }

func (o *Owner) liveList() []string {
	var out []string
	for _, g := range o.cfg.Gateways {
		if o.live[g] {
			out = append(out, g)
		}
	}
	return out
}

// demandRecent: media commands are arriving here now.
func (o *Owner) demandRecent(now time.Time) bool {
	return !o.lastDemand.IsZero() && now.Sub(o.lastDemand) <= o.cfg.DemandGap
}

// demandSustained: media commands kept arriving for DemandWindow.
func (o *Owner) demandSustained(now time.Time) bool {
	return o.demandRecent(now) && now.Sub(o.demandStart) >= o.cfg.DemandWindow
}

func (o *Owner) failbackDue(now time.Time) bool {
	return o.cfg.Failback == FailbackPreferred && o.cfg.Self == o.cfg.Preferred &&
		!o.selfLiveSince.IsZero() && now.Sub(o.selfLiveSince) >= o.cfg.FailbackAfter
}

// states is every configured gateway's group state as this gateway reports
// it.
func (o *Owner) states() map[string]AccessState {
	m := make(map[string]AccessState, len(o.cfg.Gateways))
	for _, g := range o.cfg.Gateways {
		switch {
		case g == o.cfg.Self && o.phase == phaseServing:
			m[g] = ActiveOptimized
		case g == o.cfg.Self && (o.phase != phaseFollower || !o.selfLive()):
			// Moving, or cut off from the cluster: retry, don't fail over.
			m[g] = Transitioning
		case !o.live[g]:
			m[g] = Unavailable
		case g == o.rec.Owner && g != o.cfg.Self:
			m[g] = ActiveOptimized
		default:
			m[g] = ActiveNonOptimized
		}
	}
	return m
}

// publish returns ActSetStates when the states differ from the last
// published ones.
func (o *Owner) publish() []Action {
	if !o.known {
		return nil
	}
	s := o.states()
	if o.published != nil && maps.Equal(s, o.published) {
		return nil
	}
	o.published = s
	return []Action{{Kind: ActSetStates, States: maps.Clone(s)}}
}
