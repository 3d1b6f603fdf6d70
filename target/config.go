package target

import (
	"log/slog"
	"time"

	"github.com/rbdgw/rbdgw/scsi"
)

// CHAP holds CHAP credentials. Username/Secret authenticate the initiator to
// the target; MutualUsername/MutualSecret, when set, authenticate the target
// to the initiator (mutual CHAP).
type CHAP struct {
	Username       string
	Secret         string
	MutualUsername string
	MutualSecret   string
}

// Enabled reports whether CHAP is required.
func (c *CHAP) Enabled() bool { return c != nil && c.Username != "" }

// ACL admits one initiator to a target, optionally with its own CHAP
// credentials (which take precedence over the target's).
type ACL struct {
	InitiatorName string
	Auth          *CHAP
}

// Operational holds the operational keys the target offers (RFC 7143
// section 13) and the session controls ceph-iscsi admins know by name.
type Operational struct {
	CmdSNDepth               uint32 // cmdsn_depth: commands in flight per session
	ImmediateData            bool
	InitialR2T               bool
	MaxOutstandingR2T        uint32
	FirstBurstLength         uint32
	MaxBurstLength           uint32
	MaxRecvDataSegmentLength uint32 // what the target declares it can receive
	MaxXmitDataSegmentLength uint32 // cap on what the target sends, below the initiator's MRDSL
	HeaderDigest             bool   // allow CRC32C when the initiator offers it
	DataDigest               bool
	DefaultTime2Wait         uint32
	DefaultTime2Retain       uint32
	NopInInterval            time.Duration // ping an idle connection this often (0: never)
	NopInTimeout             time.Duration // drop the connection if no reply in this time
	DataOutTimeout           time.Duration // dataout_timeout: drop if solicited data stalls
}

// DefaultOperational returns the ceph-iscsi defaults of design.md.
func DefaultOperational() Operational {
	return Operational{
		CmdSNDepth:               128,
		ImmediateData:            true,
		InitialR2T:               true,
		MaxOutstandingR2T:        1,
		FirstBurstLength:         262144,
		MaxBurstLength:           524288,
		MaxRecvDataSegmentLength: 262144,
		MaxXmitDataSegmentLength: 262144,
		HeaderDigest:             true,
		DataDigest:               true,
		DefaultTime2Wait:         2,
		DefaultTime2Retain:       20,
		NopInInterval:            5 * time.Second,
		NopInTimeout:             5 * time.Second,
		DataOutTimeout:           20 * time.Second,
	}
}

// Target is one iSCSI target node served by a Server.
type Target struct {
	Name  string // iqn.* / eui.* / naa.*
	Alias string
	// PortalGroupTag is this gateway's TPGT for the target.
	PortalGroupTag uint16
	// RelativeTargetPort is this gateway's relative target port id.
	RelativeTargetPort uint16
	// TargetPortGroup is this gateway's ALUA port group id.
	TargetPortGroup uint16
	// Portals lists every portal ("host:port") SendTargets advertises for the
	// target, with its group tag (all gateways' portals in a cluster).
	Portals []Portal
	// Auth, when enabled, is required of every initiator without its own
	// ACL credentials.
	Auth *CHAP
	// ACLs lists the initiators the target admits. Empty admits nobody,
	// unless Auth is enabled (any initiator holding the target's CHAP
	// secret) or OpenACL is set.
	ACLs []ACL
	// OpenACL admits any initiator when ACLs is empty: for labs only.
	OpenACL bool
	// Router returns the SCSI side for one initiator (its LUN map).
	Router func(initiatorName string) scsi.Router
	Op     Operational
}

// Portal is one advertised network portal.
type Portal struct {
	Address        string // "host:port"; IPv6 hosts in brackets
	PortalGroupTag uint16
}

// Config configures a Server.
type Config struct {
	Targets []*Target
	// DiscoveryAuth, when enabled, is required of discovery sessions.
	DiscoveryAuth *CHAP
	Logger        *slog.Logger
	// Limits bounds what peers can make the Server hold; zero fields
	// take the Default* values.
	Limits Limits
}
