package scsi

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rbdgw/rbdgw/alua"
)

// LUConfig configures one logical unit. The zero value of every optional
// field is usable; NewLogicalUnit validates and fills defaults on a copy.
type LUConfig struct {
	Name string // admin name, e.g. "rbd/disk_1"
	// WWN is the NAA IEEE Registered Extended designator (NAA=6, SPC-4
	// 7.8.6.6.5) reported in VPD page 83h; it must be the same on every
	// gateway. Zero: derived from Name.
	WWN    [16]byte
	Serial string // unit serial number (VPD 80h); empty: derived from WWN

	VendorID, ProductID, ProductRevision string

	BlockSize uint32 // 512 (default) or 4096
	ReadOnly  bool
	// WriteCache is WCE in the caching mode page. False by default: every
	// acknowledged write is durable.
	WriteCache bool
	// ThinProvisioned advertises UNMAP and WRITE SAME unmap (LBPU, LBPWS)
	// and LBPME in READ CAPACITY(16).
	ThinProvisioned bool
	// MaxTransferBlocks caps the transfer length of one command (block
	// limits VPD MAXIMUM TRANSFER LENGTH, from ceph-iscsi's hw_max_sectors).
	// 0: DefaultMaxTransferBytes worth of blocks (32 MiB; the iSCSI target
	// accepts up to 64 MiB of expected data per command).
	MaxTransferBlocks uint32
	// ALUA gives the port groups of the LU; nil: one Active/Optimized group
	// made of the port each command arrives on.
	ALUA alua.PortGroups
	// PRStore persists persistent reservations; nil keeps them in memory.
	PRStore PRStore
	// Events, when set, is told about resets the other gateways serving
	// this LU must replay (cluster.go).
	Events LUEvents
	// Forwarder, when set, carries owner-gated commands that arrive while
	// the port groups answer Transitioning (this gateway does not own the
	// LU) to the gateway that does (forward.go).
	Forwarder Forwarder
	// Logger gets what the device server cannot answer through sense
	// data alone: a recovered panic with its stack. Nil discards.
	Logger *slog.Logger
}

// Defaults applied by NewLogicalUnit.
const (
	DefaultVendorID         = "RBDGW"
	DefaultProductID        = "RBD DISK"
	DefaultProductRevision  = "0001"
	DefaultBlockSize        = 512
	DefaultMaxTransferBytes = 32 << 20
	// MaxTransferBytesLimit bounds MaxTransferBlocks: the iSCSI target
	// accepts at most 64 MiB of expected data per command.
	MaxTransferBytesLimit    = 64 << 20
	maxPendingUnitAttentions = 16
)

func (c *LUConfig) validate() error {
	if c.BlockSize == 0 {
		c.BlockSize = DefaultBlockSize
	}
	if c.BlockSize != 512 && c.BlockSize != 4096 {
		return fmt.Errorf("scsi: LU %q: block size %d must be 512 or 4096", c.Name, c.BlockSize)
	}
	if c.VendorID == "" {
		c.VendorID = DefaultVendorID
	}
	if c.ProductID == "" {
		c.ProductID = DefaultProductID
	}
	if c.ProductRevision == "" {
		c.ProductRevision = DefaultProductRevision
	}
	if len(c.VendorID) > 8 || len(c.ProductID) > 16 || len(c.ProductRevision) > 4 {
		return fmt.Errorf("scsi: LU %q: vendor %q (max 8), product %q (max 16), revision %q (max 4) too long",
			c.Name, c.VendorID, c.ProductID, c.ProductRevision)
	}
	if c.MaxTransferBlocks == 0 {
		c.MaxTransferBlocks = DefaultMaxTransferBytes / c.BlockSize
	}
	// A command moving more than the transport accepts in one task could
	// never complete: cap the advertised length at MaxTransferBytesLimit.
	if uint64(c.MaxTransferBlocks)*uint64(c.BlockSize) > MaxTransferBytesLimit {
		c.MaxTransferBlocks = MaxTransferBytesLimit / c.BlockSize
	}
	if c.WWN == ([16]byte{}) {
		h := sha256.Sum256([]byte("rbdgw:" + c.Name))
		copy(c.WWN[:], h[:])
		c.WWN[0] = 0x60 | c.WWN[0]&0x0F // NAA 6
	}
	if c.WWN[0]>>4 != 6 {
		return fmt.Errorf("scsi: LU %q: WWN %x is not an NAA 6 designator", c.Name, c.WWN)
	}
	if c.Serial == "" {
		c.Serial = fmt.Sprintf("%x", c.WWN[8:])
	}
	return nil
}

// LUStats are cumulative counters of one LU, read with atomics so the
// metrics exporter never takes a lock on the data path.
type LUStats struct {
	ReadOps, WriteOps, OtherOps   uint64
	ReadBytes, WriteBytes         uint64
	ReadLatencyNs, WriteLatencyNs uint64
	OtherLatencyNs                uint64
	Errors                        uint64 // commands ending in CHECK CONDITION or another non-GOOD status
	// Panics counts commands that panicked in the device server and were
	// answered INTERNAL TARGET FAILURE (each is logged with its stack).
	Panics uint64
}

type luCounters struct {
	readOps, writeOps, otherOps atomic.Uint64
	readBytes, writeBytes       atomic.Uint64
	readLat, writeLat, otherLat atomic.Uint64
	errors                      atomic.Uint64
	panics                      atomic.Uint64
}

// LogicalUnit is one SCSI disk (SBC-3 direct-access block device) served
// from a Backend. All methods are safe for concurrent use.
type LogicalUnit struct {
	// Immutable after NewLogicalUnit.
	cfg   LUConfig
	be    Backend
	table *opcodeTable
	bs    int64 // logical block size in bytes

	stats luCounters
	rl    rangeLock

	// mu guards the fields below.
	mu       sync.Mutex
	nexuses  map[string]*nexusState
	lastSize int64
	mode     modeState
	// lastSweep is when forwarded nexuses were last swept (forward.go).
	lastSweep time.Time

	// extras is the state of reservations and the other extras commands,
	// defined in extras.go by their owner.
	extras extrasState

	// aborting serializes aborts of other nexuses' tasks (abort.go).
	aborting sync.Mutex
	// retired: the LU's disk left the configuration (retire.go).
	retired atomic.Bool

	// aluaCancel ends the subscription to the port groups' changes
	// (alua.go); nil without one.
	aluaCancel func()
}

// nexusState is what the LU keeps per I_T nexus (SAM-5 5.14).
type nexusState struct {
	ua []uaCond
	// tasks counts the nexus's commands in the device server, so another
	// nexus's reset or PREEMPT AND ABORT can abort them (abort.go).
	tasks taskCounter
	// forwarded: the nexus is another gateway's, known here only from the
	// commands it forwarded, last at lastUse. Nothing tells this gateway
	// when its session ends, so idle ones are swept (forward.go).
	forwarded bool
	lastUse   time.Time
}

type uaCond struct{ asc, ascq byte }

// NewLogicalUnit validates cfg and builds an LU on b. The LU takes
// ownership of b and closes it in Close.
func NewLogicalUnit(cfg LUConfig, b Backend) (*LogicalUnit, error) {
	if b == nil {
		return nil, errors.New("scsi: NewLogicalUnit: nil backend")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	lu := &LogicalUnit{
		cfg:      cfg,
		be:       b,
		table:    coreTable(),
		bs:       int64(cfg.BlockSize),
		nexuses:  map[string]*nexusState{},
		lastSize: b.Size(),
	}
	lu.mode = defaultModeState(&lu.cfg)
	if err := lu.initExtras(); err != nil {
		return nil, err
	}
	lu.initALUA()
	return lu, nil
}

var (
	coreTableOnce sync.Once
	coreTableVal  *opcodeTable
)

// coreTable is built once: it is immutable and shared by every LU.
func coreTable() *opcodeTable {
	coreTableOnce.Do(func() { coreTableVal = newOpcodeTable() })
	return coreTableVal
}

// Config returns the LU's validated configuration.
func (lu *LogicalUnit) Config() LUConfig { return lu.cfg }

// Backend returns the LU's backend.
func (lu *LogicalUnit) Backend() Backend { return lu.be }

// Close releases the backend. No command may be in flight.
func (lu *LogicalUnit) Close() error {
	lu.closeALUA()
	lu.closeExtras()
	return lu.be.Close()
}

// Stats returns a snapshot of the LU's counters.
func (lu *LogicalUnit) Stats() LUStats {
	s := &lu.stats
	return LUStats{
		ReadOps: s.readOps.Load(), WriteOps: s.writeOps.Load(), OtherOps: s.otherOps.Load(),
		ReadBytes: s.readBytes.Load(), WriteBytes: s.writeBytes.Load(),
		ReadLatencyNs: s.readLat.Load(), WriteLatencyNs: s.writeLat.Load(), OtherLatencyNs: s.otherLat.Load(),
		Errors: s.errors.Load(), Panics: s.panics.Load(),
	}
}

func nexusKey(n *Nexus) string {
	if n == nil {
		return ""
	}
	return n.InitiatorPort + "\x00" + n.TargetPort
}

// nexusLocked returns the state of n, creating it with POWER ON, RESET OR
// BUS DEVICE RESET OCCURRED (29/00) pending: SAM-5 5.14 has the device
// server establish that unit attention for every I_T nexus after power on,
// and a nexus we have never seen has not been told yet.
func (lu *LogicalUnit) nexusLocked(n *Nexus) *nexusState {
	k := nexusKey(n)
	st := lu.nexuses[k]
	if st == nil {
		st = &nexusState{ua: []uaCond{{0x29, 0x00}}}
		lu.nexuses[k] = st
	}
	return st
}

// raiseUA queues a unit attention with the given additional sense code for
// every known I_T nexus except except (the nexus whose command caused it,
// per SPC-4 for MODE SELECT and PERSISTENT RESERVE OUT). except may be nil.
func (lu *LogicalUnit) raiseUA(except *Nexus, asc, ascq byte) {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	lu.raiseUALocked(except, asc, ascq)
}

func (lu *LogicalUnit) raiseUALocked(except *Nexus, asc, ascq byte) {
	ek := "\xff"
	if except != nil {
		ek = nexusKey(except)
	}
	for k, st := range lu.nexuses {
		if k == ek {
			continue
		}
		st.queueUA(asc, ascq)
	}
}

// raiseUAFor queues a unit attention on one nexus only.
func (lu *LogicalUnit) raiseUAFor(n *Nexus, asc, ascq byte) {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	lu.nexusLocked(n).queueUA(asc, ascq)
}

func (st *nexusState) queueUA(asc, ascq byte) {
	c := uaCond{asc, ascq}
	if asc == 0x29 {
		// SAM-5 5.14: a reset unit attention supersedes the others; the
		// initiator must rediscover everything anyway.
		st.ua = append(st.ua[:0], c)
		return
	}
	for _, u := range st.ua {
		if u == c {
			return
		}
	}
	if len(st.ua) >= maxPendingUnitAttentions {
		return
	}
	st.ua = append(st.ua, c)
}

// takeUALocked pops the highest priority pending unit attention of st.
func (st *nexusState) takeUA() (uaCond, bool) {
	if len(st.ua) == 0 {
		return uaCond{}, false
	}
	c := st.ua[0]
	st.ua = st.ua[1:]
	return c, true
}

// NotifyALUAChange raises ASYMMETRIC ACCESS STATE CHANGED (2A/06) on every
// nexus (SPC-4 5.16.2.5); the gateway calls it after a port group changes
// state.
func (lu *LogicalUnit) NotifyALUAChange() { lu.raiseUA(nil, 0x2A, 0x06) }

// reset performs a logical unit reset (SAM-5 6.6): aborting tasks is the
// transport's job; the LU clears its own state and raises BUS DEVICE RESET
// FUNCTION OCCURRED (29/03) on every nexus, or 29/00 style resets for
// target resets via asc/ascq.
func (lu *LogicalUnit) reset(ascq byte) {
	lu.mu.Lock()
	lu.mode.resetToSaved()
	for _, st := range lu.nexuses {
		st.queueUA(0x29, ascq)
	}
	lu.mu.Unlock()
	lu.extrasReset()
}

// nexusLost forgets a nexus (session ended).
func (lu *LogicalUnit) nexusLost(n *Nexus) {
	lu.extrasNexusLost(n)
	lu.mu.Lock()
	delete(lu.nexuses, nexusKey(n))
	lu.mu.Unlock()
}

// capacity returns the LU size in blocks, and checks for a resize: SBC-3
// 4.6 has the device server raise CAPACITY DATA HAS CHANGED (2A/09) on
// every nexus when the capacity changes.
func (lu *LogicalUnit) capacity() uint64 {
	sz := lu.be.Size()
	lu.mu.Lock()
	if sz != lu.lastSize {
		lu.lastSize = sz
		lu.raiseUALocked(nil, 0x2A, 0x09)
	}
	lu.mu.Unlock()
	return uint64(sz / lu.bs)
}

// Execute runs one command addressed to this LU and returns its response.
// Used alone (without a Router) REPORT LUNS lists the command's own LUN.
func (lu *LogicalUnit) Execute(ctx context.Context, cmd *Command) Response {
	return lu.execute(ctx, cmd, nil)
}

func (lu *LogicalUnit) execute(ctx context.Context, cmd *Command, rt *router) Response {
	return lu.executeRequest(&request{ctx: ctx, lu: lu, cmd: cmd, nexus: cmd.Nexus, rt: rt})
}

func (lu *LogicalUnit) executeRequest(r *request) Response {
	start := time.Now()
	err := lu.run(r)
	if r.tasks != nil && r.tasks.leave(r.taskGen) {
		// Aborted by another nexus while it ran (abort.go): TAS=1.
		err = &StatusError{Status: StatusTaskAborted}
	}
	lu.finish(r, err, start)
	return r.resp
}

func (lu *LogicalUnit) run(r *request) (err error) {
	defer func() {
		// One malformed command must not take the daemon down; but a
		// panic is a bug, and its stack is what fixes it.
		if p := recover(); p != nil {
			lu.stats.panics.Add(1)
			if lu.cfg.Logger != nil {
				lu.cfg.Logger.Error("device server panic answered INTERNAL TARGET FAILURE", "lu", lu.cfg.Name,
					"cdb", fmt.Sprintf("% x", r.cmd.CDB), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			}
			err = newCC(SenseHardwareError, 0x44, 0x00) // INTERNAL TARGET FAILURE
		}
	}()
	lu.capacity() // notice resizes before unit attentions are reported
	e, lerr := lu.lookup(r.cmd.CDB)
	r.entry = e

	// SAM-5 5.14: a pending unit attention is reported on the next command
	// of the nexus, except INQUIRY, REPORT LUNS and REQUEST SENSE which
	// neither report nor clear it.
	if IsForwarded(r.ctx) {
		// The forwarding gateway reported the nexus's unit attentions
		// already; here the command only joins the task set, so that
		// aborts, resets and Quiesce see it.
		lu.mu.Lock()
		r.enterTasks(lu.forwardedNexusLocked(r.nexus))
		lu.mu.Unlock()
	} else if e == nil || e.Flags&opNoUA == 0 {
		lu.mu.Lock()
		st := lu.nexusLocked(r.nexus)
		ua, ok := st.takeUA()
		if !ok {
			r.enterTasks(st)
		}
		lu.mu.Unlock()
		if ok {
			return newCC(SenseUnitAttention, ua.asc, ua.ascq)
		}
	} else {
		lu.mu.Lock()
		r.enterTasks(lu.nexusLocked(r.nexus))
		lu.mu.Unlock()
	}
	if lerr != nil {
		return lerr
	}
	if e.Flags&opNoUA == 0 {
		// SBC-3 4.11: a running or failed sanitize operation owns the
		// medium (INQUIRY, REPORT LUNS and REQUEST SENSE still run).
		if err := lu.sanitizeGate(e); err != nil {
			return err
		}
	}
	if err := lu.aluaCheck(r); err != nil {
		return err
	}
	// SPC-4 5.13.1: commands not allowed under a reservation held by another
	// nexus end in RESERVATION CONFLICT.
	if e.Flags&opResvAllowed == 0 && lu.reservationConflict(r) {
		return errReservationConflict
	}
	_, c, err := lu.table.decodeCDB(r.cmd.CDB)
	if err != nil {
		return err
	}
	if e.Flags&opWrite != 0 {
		if lu.cfg.ReadOnly {
			// SBC-3 4.10: writes to a write protected medium end in DATA
			// PROTECT, WRITE PROTECTED.
			return errWriteProtected()
		}
		lu.mu.Lock()
		swp := lu.mode.cur.swp
		lu.mu.Unlock()
		if swp {
			// SPC-4 7.5.8: with SWP=1 "the device server shall terminate ...
			// commands that perform writes to the medium with CHECK CONDITION
			// status ... DATA PROTECT, WRITE PROTECTED" (SBC-3 4.10 uses the
			// LOGICAL UNIT SOFTWARE WRITE PROTECTED qualifier).
			return newCC(SenseDataProtect, 0x27, 0x02)
		}
	}
	return e.exec(r, c)
}

// finish turns err into the response and records statistics.
func (lu *LogicalUnit) finish(r *request, err error, start time.Time) {
	if err != nil {
		var cc *CheckCondition
		var se *StatusError
		var nr *NotReadyError
		var fw *forwardedResponse
		switch {
		case errors.As(err, &fw):
			r.resp = fw.resp
			if fw.resp.Status == StatusGood {
				err = nil // counted below as the command it was
			}
		case errors.As(err, &cc):
		case errors.As(err, &se):
			r.resp = Response{Status: se.Status}
		case errors.As(err, &nr):
			cc = newCC(SenseNotReady, nr.ASC, nr.ASCQ)
		default:
			cc = newCC(SenseHardwareError, 0x44, 0x00)
		}
		if cc != nil {
			r.resp = Response{Status: StatusCheckCondition, Sense: cc.Sense(lu.descSense())}
		}
		if err != nil {
			lu.stats.errors.Add(1)
		}
	}
	lat := uint64(time.Since(start))
	s := &lu.stats
	switch {
	case r.entry != nil && r.entry.Flags&opWrite != 0:
		s.writeOps.Add(1)
		s.writeLat.Add(lat)
		if err == nil {
			s.writeBytes.Add(uint64(r.resp.TransferLength))
		}
	case r.entry != nil && r.entry.Flags&(opMedia|opResvRead) == opMedia|opResvRead:
		s.readOps.Add(1)
		s.readLat.Add(lat)
		s.readBytes.Add(uint64(r.resp.DataLen))
	default:
		s.otherOps.Add(1)
		s.otherLat.Add(lat)
	}
}

// descSense reports whether sense data goes out in descriptor format
// (control mode page D_SENSE, SPC-4 7.5.8).
func (lu *LogicalUnit) descSense() bool {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	return lu.mode.cur.dsense
}

// mediaError maps a backend error to sense (design: NOT READY for
// *NotReadyError, otherwise MEDIUM ERROR, UNRECOVERED READ ERROR (11/00) or
// WRITE ERROR (0C/00)).
func mediaError(err error, write bool) error {
	var nr *NotReadyError
	if errors.As(err, &nr) {
		return newCC(SenseNotReady, nr.ASC, nr.ASCQ)
	}
	var cc *CheckCondition
	if errors.As(err, &cc) {
		return cc
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &StatusError{Status: StatusTaskAborted}
	}
	if write {
		return errWriteError()
	}
	return errReadError()
}
