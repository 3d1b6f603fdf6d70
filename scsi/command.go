package scsi

import "context"

// Nexus names an I_T nexus (SAM-5 4.7): the initiator port and target port
// of a session. Unit attentions, RESERVE(6) and persistent reservation
// registrations are kept per nexus.
type Nexus struct {
	// InitiatorPort is the iSCSI initiator port name:
	// "<initiator iqn>,i,0x<ISID hex>".
	InitiatorPort string
	// InitiatorName is the initiator IQN alone (for ACLs and TransportID).
	InitiatorName string
	// ISID is the 6-byte initiator session id, as TransportID format 01h needs it.
	ISID [6]byte
	// TargetPort is "<target iqn>,t,0x<TPGT hex>".
	TargetPort string
	// RelativeTargetPort is the relative target port identifier (VPD 0x83, RTPG).
	RelativeTargetPort uint16
	// TargetPortGroup is the ALUA target port group id of the port.
	TargetPortGroup uint16
}

// TaskAttr is the SAM task attribute of a command.
type TaskAttr uint8

const (
	TaskSimple TaskAttr = iota
	TaskOrdered
	TaskHeadOfQueue
	TaskACA
)

// Direction is the data direction the transport announced for a command.
type Direction uint8

const (
	DirNone  Direction = 0
	DirRead  Direction = 1 << 0 // Data-In: target to initiator
	DirWrite Direction = 1 << 1 // Data-Out: initiator to target
)

// Command is one SCSI command handed by a transport to a Router.
type Command struct {
	Nexus *Nexus
	LUN   uint64 // the 8-byte SAM LUN field, as received
	Tag   uint32 // the transport's task tag (iSCSI ITT); used by ABORT TASK
	Attr  TaskAttr
	CDB   []byte // whole CDB, including any extended CDB from an AHS
	Dir   Direction
	// ExpectedLength is the transport's expected data transfer length
	// (iSCSI EDTL). For writes, DataOut holds exactly the bytes the
	// initiator sent (len(DataOut) <= ExpectedLength).
	ExpectedLength uint32
	DataOut        []byte
	// DataIn is a buffer of ExpectedLength bytes (from the transport's pool)
	// that the device server fills for Data-In commands.
	DataIn []byte
}

// Response is the outcome of a command.
type Response struct {
	Status byte   // SAM status (Good, CheckConditionStatus, ...)
	Sense  []byte // fixed-format sense data when Status is CHECK CONDITION
	// DataLen is how many bytes of Command.DataIn are valid (<= len(DataIn)).
	DataLen int
	// TransferLength is the number of bytes the command itself meant to
	// move (from the CDB: blocks x block size, or the allocation length
	// capped by what exists). The transport derives iSCSI residuals from it
	// against ExpectedLength.
	TransferLength int
}

// SAM status codes.
const (
	StatusGood                = 0x00
	StatusCheckCondition      = 0x02
	StatusConditionMet        = 0x04
	StatusBusy                = 0x08
	StatusReservationConflict = 0x18
	StatusTaskSetFull         = 0x28
	StatusACAActive           = 0x30
	StatusTaskAborted         = 0x40
)

// TaskFunction is a SAM task management function.
type TaskFunction uint8

const (
	TMFAbortTask TaskFunction = iota + 1
	TMFAbortTaskSet
	TMFClearACA
	TMFClearTaskSet
	TMFLogicalUnitReset
	TMFTargetWarmReset
	TMFTargetColdReset
	TMFTaskReassign
)

// TMFResult is the SAM service response to a task management function.
type TMFResult uint8

const (
	TMFComplete TMFResult = iota
	TMFTaskDoesNotExist
	TMFLUNDoesNotExist
	TMFNotSupported
	TMFRejected
)

// Router is what a transport hands commands to: the set of logical units a
// target exposes to one initiator, REPORT LUNS, and commands addressed to
// LUNs that do not exist. The iSCSI target depends only on this interface.
//
// Execute may be called concurrently for many commands of one nexus; it
// blocks until the command completes or ctx is cancelled (ABORT TASK and
// friends cancel it; the result of a cancelled command is not sent).
type Router interface {
	Execute(ctx context.Context, cmd *Command) Response
	// TaskManagement acts on the logical unit side of a TMF (clearing
	// reservations, raising unit attentions). The transport aborts its own
	// in-flight tasks (cancelling their ctx) before it calls this.
	TaskManagement(n *Nexus, fn TaskFunction, lun uint64) TMFResult
	// NexusLost tells the device server that a nexus ended (session closed
	// or dropped): RESERVE(6) reservations held by it are released.
	NexusLost(n *Nexus)
}
