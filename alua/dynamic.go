package alua

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Dynamic is the port groups of one LU whose states change at run time:
// ownership moves and SET TARGET PORT GROUPS. Readers load an immutable
// snapshot through an atomic pointer, so the data path never takes a lock
// nor sees a half-made change; a writer builds a new snapshot under mu, swaps it in and
// then tells the subscribers, which is how the LU learns it must raise
// ASYMMETRIC ACCESS STATE CHANGED.
type Dynamic struct {
	snap       atomic.Pointer[[]Group]
	admit      atomic.Pointer[AdmitFunc]
	access     atomic.Pointer[AdmitAccessFunc]
	explicit   atomic.Pointer[ExplicitFunc]
	transition time.Duration // immutable

	mu     sync.Mutex // serialises writers; guards subs and nextID
	subs   map[int]func(Change)
	nextID int
}

// Change describes one applied change of a Dynamic, as subscribers see it.
type Change struct {
	// Status is what caused it: StatusImplicit or StatusExplicit.
	Status StatusCode
	// Origin is the opaque value handed to SetStates; for a change made by
	// SET TARGET PORT GROUPS it is what the device server passed in
	// ExplicitRequest.Origin (the command's I_T nexus), because SPC-4
	// 5.16.2.5 raises the unit attention on every other I_T nexus only.
	Origin any
}

// AdmitFunc decides, for one media command arriving on relPort while the
// port's group is active, the state to process it under: an active state
// serves it, Transitioning answers NOT READY 04/0A. The gateway's
// ownership driver installs it: a command at a non-owner is demand for the
// LU, and the owner alone may touch the image.
type AdmitFunc func(relPort uint16) AccessState

// Access is the kind of media access a command makes.
type Access uint8

const (
	// AccessRead: the command only reads the medium (READ, VERIFY,
	// PRE-FETCH). Any gateway can serve it consistently when the owner
	// acknowledges writes only once they are durable (no write-back
	// cache), because a non-owner reads what the owner completed.
	AccessRead Access = iota + 1
	// AccessWrite: the command changes the medium or the LU's shared
	// state, or must reach the owner's cache (SYNCHRONIZE CACHE): only the
	// owner may run it.
	AccessWrite
)

// AdmitAccessFunc is an AdmitFunc that is told the command's access. It
// may block, for instance to hold a write at a non-owner while ownership
// moves here instead of answering Transitioning, but must return once ctx
// (the command's) ends: the command was aborted.
type AdmitAccessFunc func(ctx context.Context, relPort uint16, a Access) AccessState

// NewDynamic returns port groups starting as groups (copied). transition is
// the implicit transition time reported by RTPG; 0 means
// DefaultTransitionTime. It fails on duplicate group ids or ports.
func NewDynamic(groups []Group, transition time.Duration) (*Dynamic, error) {
	if err := checkGroups(groups); err != nil {
		return nil, err
	}
	if transition <= 0 {
		transition = DefaultTransitionTime
	}
	d := &Dynamic{transition: transition, subs: map[int]func(Change){}}
	gs := cloneGroups(groups)
	d.snap.Store(&gs)
	return d, nil
}

// checkGroups rejects group sets RTPG could not report unambiguously.
func checkGroups(groups []Group) error {
	ids := map[uint16]bool{}
	ports := map[uint16]uint16{}
	for _, g := range groups {
		if ids[g.ID] {
			return fmt.Errorf("alua: target port group %d listed twice", g.ID)
		}
		ids[g.ID] = true
		if len(g.RelativePorts) > 255 {
			// SPC-4 6.37: TARGET PORT COUNT is one byte.
			return fmt.Errorf("alua: target port group %d has %d ports (max 255)", g.ID, len(g.RelativePorts))
		}
		for _, p := range g.RelativePorts {
			if p == 0 {
				// SPC-4 7.8.6.7: relative target port identifier 0 is reserved.
				return fmt.Errorf("alua: target port group %d: relative target port 0 is reserved", g.ID)
			}
			if o, dup := ports[p]; dup {
				return fmt.Errorf("alua: relative target port %d is in groups %d and %d", p, o, g.ID)
			}
			ports[p] = g.ID
		}
	}
	return nil
}

// Groups returns a copy of the current groups.
func (d *Dynamic) Groups() []Group { return cloneGroups(*d.snap.Load()) }

// StateOf returns the current state of the group holding relPort.
func (d *Dynamic) StateOf(relPort uint16) AccessState { return stateOf(*d.snap.Load(), relPort) }

// GroupOf returns the group holding relPort.
func (d *Dynamic) GroupOf(relPort uint16) (Group, bool) {
	for _, g := range *d.snap.Load() {
		if g.HasPort(relPort) {
			return cloneGroups([]Group{g})[0], true
		}
	}
	return Group{}, false
}

// TransitionTime is the implicit transition time RTPG reports.
func (d *Dynamic) TransitionTime() time.Duration { return d.transition }

// Admit is the state a media command on relPort is processed under: the
// group's state, narrowed by the AdmitFunc when the group is active.
func (d *Dynamic) Admit(relPort uint16) AccessState {
	st := d.StateOf(relPort)
	if !st.Active() {
		return st
	}
	if f := d.admit.Load(); f != nil {
		return (*f)(relPort)
	}
	return st
}

// AdmitAccess is Admit told what the command does: the AdmitAccessFunc
// decides when one is installed, else the AdmitFunc (which cannot tell
// reads from writes).
func (d *Dynamic) AdmitAccess(ctx context.Context, relPort uint16, a Access) AccessState {
	if f := d.access.Load(); f != nil {
		if st := d.StateOf(relPort); !st.Active() {
			return st
		}
		return (*f)(ctx, relPort, a)
	}
	return d.Admit(relPort)
}

// SetAdmitAccess installs (or, with nil, removes) the access-aware media
// admission function; it takes precedence over SetAdmit's.
func (d *Dynamic) SetAdmitAccess(f AdmitAccessFunc) {
	if f == nil {
		d.access.Store(nil)
		return
	}
	d.access.Store(&f)
}

// SetAdmit installs (or, with nil, removes) the media admission function.
func (d *Dynamic) SetAdmit(f AdmitFunc) {
	if f == nil {
		d.admit.Store(nil)
		return
	}
	d.admit.Store(&f)
}

// SetStates sets the state of each group named in states (by group id),
// recording status as the reason, and notifies subscribers if anything
// changed. It reports whether something changed; an unknown group id is an
// error and changes nothing.
func (d *Dynamic) SetStates(states map[uint16]AccessState, status StatusCode, origin any) (bool, error) {
	d.mu.Lock()
	cur := *d.snap.Load()
	next := cloneGroups(cur)
	for id, st := range states {
		i := indexOf(next, id)
		if i < 0 {
			d.mu.Unlock()
			return false, fmt.Errorf("alua: no target port group %d", id)
		}
		if !next[i].SupportedOrDefault().Has(st) {
			d.mu.Unlock()
			return false, fmt.Errorf("alua: target port group %d does not support state %v", id, st)
		}
	}
	changed := false
	for id, st := range states {
		g := &next[indexOf(next, id)]
		if g.State != st {
			g.State, g.Status = st, status
			changed = true
		}
	}
	if changed {
		d.snap.Store(&next)
	}
	subs := d.subscribersLocked()
	d.mu.Unlock()
	if changed {
		notify(subs, Change{Status: status, Origin: origin})
	}
	return changed, nil
}

// SetGroups replaces the whole group set (a gateway joined or left) and
// notifies subscribers.
func (d *Dynamic) SetGroups(groups []Group) error {
	if err := checkGroups(groups); err != nil {
		return err
	}
	gs := cloneGroups(groups)
	d.mu.Lock()
	d.snap.Store(&gs)
	subs := d.subscribersLocked()
	d.mu.Unlock()
	notify(subs, Change{Status: StatusImplicit})
	return nil
}

// Subscribe registers f to run after every applied change, outside any
// lock of d; it returns a function that unregisters f. The LU subscribes
// to raise its unit attentions.
func (d *Dynamic) Subscribe(f func(Change)) (cancel func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id := d.nextID
	d.nextID++
	d.subs[id] = f
	return func() {
		d.mu.Lock()
		delete(d.subs, id)
		d.mu.Unlock()
	}
}

func (d *Dynamic) subscribersLocked() []func(Change) {
	out := make([]func(Change), 0, len(d.subs))
	for _, f := range d.subs {
		out = append(out, f)
	}
	return out
}

func notify(subs []func(Change), c Change) {
	for _, f := range subs {
		f(c)
	}
}

func indexOf(gs []Group, id uint16) int {
	for i := range gs {
		if gs[i].ID == id {
			return i
		}
	}
	return -1
}
