package alua

import (
	"context"
	"errors"
	"time"
)

// Optional capabilities of a PortGroups, found by type assertion (the
// device server works with a plain Static too).
type (
	// Notifier tells subscribers about applied state changes.
	Notifier interface {
		Subscribe(f func(Change)) (cancel func())
	}
	// Admitter narrows the state of an active port per media command.
	Admitter interface {
		Admit(relPort uint16) AccessState
	}
	// AccessAdmitter is an Admitter told whether the command only reads;
	// the device server prefers it.
	AccessAdmitter interface {
		AdmitAccess(ctx context.Context, relPort uint16, a Access) AccessState
	}
	// TransitionTimer reports the implicit transition time.
	TransitionTimer interface {
		TransitionTime() time.Duration
	}
	// Explicit accepts SET TARGET PORT GROUPS. ExplicitEnabled false means
	// implicit ALUA only (TPGS=01b): the device server then reports STPG as
	// unsupported.
	Explicit interface {
		ExplicitEnabled() bool
		RequestStates(req ExplicitRequest) error
	}
)

// StateRequest is one SET TARGET PORT GROUPS descriptor: put group Group
// into State.
type StateRequest struct {
	Group uint16
	State AccessState
}

// ExplicitRequest is a validated SET TARGET PORT GROUPS command: every
// group exists and supports the state asked of it.
type ExplicitRequest struct {
	// FromPort is the relative target port the command arrived on.
	FromPort uint16
	Want     []StateRequest
	// Origin is opaque to alua; pass it on to SetStates so the device
	// server can tell which I_T nexus asked.
	Origin any
}

// ExplicitFunc applies an explicit request. The gateway provides it so its
// failover logic decides what a request means (moving ownership, or
// refusing): it returns nil once the states are applied (with SetStates,
// status StatusExplicit, passing Origin) or an error when the transition
// failed.
type ExplicitFunc func(req ExplicitRequest) error

// ErrExplicitDisabled is returned by RequestStates when no ExplicitFunc is
// installed.
var ErrExplicitDisabled = errors.New("alua: explicit ALUA is not enabled")

// SetExplicit installs (or, with nil, removes) the handler of SET TARGET
// PORT GROUPS; installing one switches the LU to explicit ALUA (TPGS=11b).
func (d *Dynamic) SetExplicit(f ExplicitFunc) {
	if f == nil {
		d.explicit.Store(nil)
		return
	}
	d.explicit.Store(&f)
}

// ExplicitEnabled reports whether SET TARGET PORT GROUPS is accepted.
func (d *Dynamic) ExplicitEnabled() bool { return d.explicit.Load() != nil }

// RequestStates hands a validated request to the installed handler.
func (d *Dynamic) RequestStates(req ExplicitRequest) error {
	f := d.explicit.Load()
	if f == nil {
		return ErrExplicitDisabled
	}
	return (*f)(req)
}

// ApplyExplicit is the simplest ExplicitFunc: it applies the request to d as
// asked. A gateway without ownership rules (one node, or tests) uses it.
func (d *Dynamic) ApplyExplicit(req ExplicitRequest) error {
	states := make(map[uint16]AccessState, len(req.Want))
	for _, w := range req.Want {
		states[w.Group] = w.State
	}
	_, err := d.SetStates(states, StatusExplicit, req.Origin)
	return err
}
