// Package alua models asymmetric logical unit access (SPC-4 5.16) across
// gateways: target port groups and their access states (this file and
// dynamic.go), SET TARGET PORT GROUPS requests (explicit.go), the balanced
// choice of an LU's owner gateway (placement.go) and the ownership state
// machine that moves an LU between gateways (owner*.go). It imports nothing
// of rbdgw so that scsi can query it and the gateway can drive it.
package alua

import "time"

// AccessState is a target port group's asymmetric access state, coded as in
// the REPORT TARGET PORT GROUPS descriptor (SPC-4 6.37, table 167).
type AccessState uint8

const (
	ActiveOptimized    AccessState = 0x0
	ActiveNonOptimized AccessState = 0x1
	Standby            AccessState = 0x2
	Unavailable        AccessState = 0x3
	Offline            AccessState = 0xE
	Transitioning      AccessState = 0xF
)

func (s AccessState) String() string {
	switch s {
	case ActiveOptimized:
		return "active/optimized"
	case ActiveNonOptimized:
		return "active/non-optimized"
	case Standby:
		return "standby"
	case Unavailable:
		return "unavailable"
	case Offline:
		return "offline"
	case Transitioning:
		return "transitioning"
	}
	return "reserved"
}

// Active reports whether the state lets media commands through (SPC-4
// 5.16.2.4.2/3: both active states process every command).
func (s AccessState) Active() bool { return s == ActiveOptimized || s == ActiveNonOptimized }

// SupportedStates is the set of states a group may be in, coded as byte 1
// of the RTPG descriptor (SPC-4 6.37 table 168): T_SUP, O_SUP, LBD_SUP,
// U_SUP, S_SUP, AN_SUP, AO_SUP.
type SupportedStates uint8

const (
	SupTransitioning      SupportedStates = 0x80
	SupOffline            SupportedStates = 0x40
	SupUnavailable        SupportedStates = 0x08
	SupStandby            SupportedStates = 0x04
	SupActiveNonOptimized SupportedStates = 0x02
	SupActiveOptimized    SupportedStates = 0x01

	// DefaultSupported is what a gateway port group can be put in: the
	// ownership machine uses AO, ANO and Transitioning; Standby and
	// Unavailable are reachable through SET TARGET PORT GROUPS or for a
	// gateway known to be down. Offline (a port that is being serviced) is
	// never reported.
	DefaultSupported = SupTransitioning | SupUnavailable | SupStandby | SupActiveNonOptimized | SupActiveOptimized
)

// Has reports whether state s is in the set.
func (ss SupportedStates) Has(s AccessState) bool {
	switch s {
	case ActiveOptimized:
		return ss&SupActiveOptimized != 0
	case ActiveNonOptimized:
		return ss&SupActiveNonOptimized != 0
	case Standby:
		return ss&SupStandby != 0
	case Unavailable:
		return ss&SupUnavailable != 0
	case Offline:
		return ss&SupOffline != 0
	case Transitioning:
		return ss&SupTransitioning != 0
	}
	return false
}

// StatusCode is the STATUS CODE of an RTPG descriptor (SPC-4 6.37 table
// 169): why the group is in its current state.
type StatusCode uint8

const (
	StatusNone     StatusCode = 0x00 // no status available
	StatusExplicit StatusCode = 0x01 // altered by SET TARGET PORT GROUPS
	StatusImplicit StatusCode = 0x02 // altered by an implicit transition
)

// DefaultTransitionTime is the IMPLICIT TRANSITION TIME reported in the
// RTPG extended header (SPC-4 6.37): how long an ownership move may keep a
// group Transitioning. It bounds the ownership machine's release timeout
// plus the lock handoff (see OwnerConfig).
const DefaultTransitionTime = 10 * time.Second

// Group is one target port group: the ports of one gateway.
type Group struct {
	ID        uint16
	State     AccessState
	Preferred bool
	// Supported is the set of states the group may take; zero means
	// DefaultSupported.
	Supported SupportedStates
	// Status says what put the group in State.
	Status        StatusCode
	RelativePorts []uint16
}

// SupportedOrDefault returns g.Supported, or DefaultSupported when unset.
func (g Group) SupportedOrDefault() SupportedStates {
	if g.Supported == 0 {
		return DefaultSupported
	}
	return g.Supported
}

// HasPort reports whether relPort belongs to g.
func (g Group) HasPort(relPort uint16) bool {
	for _, p := range g.RelativePorts {
		if p == relPort {
			return true
		}
	}
	return false
}

// PortGroups answers access-state questions for one logical unit.
// Implementations must be safe for concurrent use: the device server calls
// StateOf on every media command.
type PortGroups interface {
	// Groups lists every target port group of the LU, in a stable order.
	Groups() []Group
	// StateOf is the access state of the group holding relPort; a port in no
	// group is reported Active/Optimized.
	StateOf(relPort uint16) AccessState
}

// Static is a fixed set of groups; it never changes after construction.
type Static []Group

// Groups returns a copy of the groups.
func (s Static) Groups() []Group { return cloneGroups(s) }

// StateOf returns the state of the group containing relPort.
func (s Static) StateOf(relPort uint16) AccessState { return stateOf(s, relPort) }

func cloneGroups(gs []Group) []Group {
	out := make([]Group, len(gs))
	for i, g := range gs {
		g.RelativePorts = append([]uint16(nil), g.RelativePorts...)
		out[i] = g
	}
	return out
}

func stateOf(gs []Group, relPort uint16) AccessState {
	for _, g := range gs {
		if g.HasPort(relPort) {
			return g.State
		}
	}
	return ActiveOptimized
}
