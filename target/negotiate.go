package target

import "fmt"

// Stage is a login stage (RFC 7143 11.12.3, CSG/NSG encoding).
type Stage uint8

const (
	StageSecurity    Stage = 0
	StageOperational Stage = 1
	StageFullFeature Stage = 3
)

// SessionType is the SessionType key (RFC 7143 13.21).
type SessionType uint8

const (
	SessionNormal SessionType = iota
	SessionDiscovery
)

// SessionParams is the outcome of a login.
type SessionParams struct {
	SessionType                          SessionType
	InitiatorName, InitiatorAlias        string
	TargetName                           string
	Target                               *Target // nil for discovery
	ACL                                  *ACL    // matched ACL entry, if any
	HeaderDigest, DataDigest             bool    // CRC32C negotiated
	MaxConnections                       uint32
	InitialR2T, ImmediateData            bool
	MaxRecvDataSegmentLength             uint32 // the initiator's: the most the target may send in one PDU (already capped by Operational.MaxXmitDataSegmentLength)
	TargetMaxRecvDataSegmentLength       uint32 // what the target declared it accepts
	MaxBurstLength, FirstBurstLength     uint32
	DefaultTime2Wait, DefaultTime2Retain uint32
	MaxOutstandingR2T                    uint32
	DataPDUInOrder, DataSequenceInOrder  bool
	ErrorRecoveryLevel                   uint8
}

// LoginError is a refusal: the Login Response status class/detail
// (RFC 7143 11.13.5).
type LoginError struct {
	Class, Detail uint8
	Reason        string
}

func (e *LoginError) Error() string {
	return fmt.Sprintf("iscsi login refused (status %02x%02x): %s", e.Class, e.Detail, e.Reason)
}

// LoginConfig configures one login negotiation.
type LoginConfig struct {
	LookupTarget  func(name string) *Target // nil if no such target
	DiscoveryAuth *CHAP
	Leading       bool // first connection of a new session (TSIH 0)
}

// LoginStep is one complete Login Request (continuations already joined).
type LoginStep struct {
	CSG, NSG Stage
	Transit  bool
	Keys     []KeyValue
}

// LoginReply is what the target answers to one step.
type LoginReply struct {
	Keys    []KeyValue
	Transit bool
	NSG     Stage
}

// LoginNegotiator runs the target side of one connection's login phase.
// It is not safe for concurrent use: the connection's goroutine owns it.
type LoginNegotiator struct {
	cfg    LoginConfig
	params SessionParams
	done   bool
}

// NewLoginNegotiator starts a login negotiation.
func NewLoginNegotiator(cfg LoginConfig) *LoginNegotiator {
	return &LoginNegotiator{cfg: cfg}
}

// Step consumes one request; a *LoginError ends the login with that status.
func (n *LoginNegotiator) Step(s LoginStep) (LoginReply, *LoginError) {
	for _, kv := range s.Keys {
		switch kv.Key {
		case "InitiatorName":
			n.params.InitiatorName = kv.Value
		case "TargetName":
			n.params.TargetName = kv.Value
			if n.cfg.LookupTarget != nil {
				n.params.Target = n.cfg.LookupTarget(kv.Value)
			}
		case "SessionType":
			if kv.Value == "Discovery" {
				n.params.SessionType = SessionDiscovery
			}
		}
	}
	if s.Transit && s.NSG == StageFullFeature {
		n.done = true
	}
	return LoginReply{Transit: s.Transit, NSG: s.NSG}, nil
}

// Done reports that the target answered a transit to StageFullFeature.
func (n *LoginNegotiator) Done() bool { return n.done }

// Params returns the negotiated session parameters.
func (n *LoginNegotiator) Params() SessionParams { return n.params }
