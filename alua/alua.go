// Package alua models asymmetric logical unit access (SPC-4 5.16): target
// port groups and their access states. It imports nothing of rbdgw so that
// scsi can query it and the gateway can drive it.
package alua

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

// Group is one target port group: the ports of one gateway.
type Group struct {
	ID            uint16
	State         AccessState
	Preferred     bool
	RelativePorts []uint16
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
func (s Static) Groups() []Group {
	out := make([]Group, len(s))
	for i, g := range s {
		g.RelativePorts = append([]uint16(nil), g.RelativePorts...)
		out[i] = g
	}
	return out
}

// StateOf returns the state of the group containing relPort.
func (s Static) StateOf(relPort uint16) AccessState {
	for _, g := range s {
		for _, p := range g.RelativePorts {
			if p == relPort {
				return g.State
			}
		}
	}
	return ActiveOptimized
}
