package scsi

import (
	"context"
	"sort"
)

// opFlags describe how the device server treats a command before executing
// it.
type opFlags uint16

const (
	// opMedia: the command accesses the medium; it is refused with NOT READY
	// when the LU is stopped or its port group is not active (SPC-4 5.16.2).
	opMedia opFlags = 1 << iota
	// opNoUA: the command neither reports nor clears a pending unit
	// attention (SAM-5 5.14: INQUIRY, REPORT LUNS, REQUEST SENSE).
	opNoUA
	// opResvAllowed: allowed in the presence of any reservation held by
	// another nexus (SPC-4 5.13.1 table 66 "Allowed" in every column).
	opResvAllowed
	// opResvRead: allowed under Write Exclusive type reservations held by
	// another nexus (reads of the medium, SPC-4 table 66).
	opResvRead
	// opWrite: the command modifies the medium; refused on a read-only LU.
	opWrite
	// opALUAStandby: allowed when the port group is Standby or Unavailable
	// (SPC-4 5.16.2.4.4: INQUIRY, REPORT LUNS, REPORT TARGET PORT GROUPS,
	// MODE SENSE, REQUEST SENSE, ...).
	opALUAStandby
	// opALUAUnavailable: allowed when the port group is Unavailable (SPC-4
	// 5.16.2.4.5: INQUIRY, REPORT LUNS, REPORT and SET TARGET PORT GROUPS,
	// REQUEST SENSE).
	opALUAUnavailable
	// opALUATransitioning: allowed while the port group is Transitioning
	// (SPC-4 5.16.2.6: INQUIRY, REPORT LUNS, REPORT TARGET PORT GROUPS,
	// REQUEST SENSE).
	opALUATransitioning
	// opExplicitALUA: offered only by an LU with explicit ALUA (SET TARGET
	// PORT GROUPS); elsewhere it is an unsupported service action.
	opExplicitALUA
	// opAtomicWrite: offered only by an LU whose backend writes some unit
	// atomically across a crash (WRITE ATOMIC); elsewhere an unsupported
	// operation code.
	opAtomicWrite
	// opOwner: executed only by the gateway that owns the LU, so it passes
	// the ownership gate like a media command (PERSISTENT RESERVE OUT).
	opOwner
	// opAnyGateway: a media command every gateway answers from what all of
	// them know (READ CAPACITY): not gated by ownership, so path probes at
	// a non-owner neither fail nor count as demand.
	opAnyGateway
)

// opEntry is one command of the opcode table: its CDB is decoded into a
// typed struct before anything executes, so a bad field is INVALID FIELD
// IN CDB and never a half-done command.
type opEntry struct {
	Opcode byte
	SA     uint16
	HasSA  bool
	Name   string
	// Usage is the CDB usage data of REPORT SUPPORTED OPERATION CODES
	// (SPC-4 6.35.3): Usage[0] is the opcode, later bytes have a 1 in every
	// bit the device server looks at. len(Usage) is the CDB length.
	Usage []byte
	Flags opFlags
	// Nominal and Recommended are the command timeouts descriptor values in
	// seconds (SPC-4 6.35.4).
	Nominal, Recommended uint32

	decode func(cdb []byte) (any, error)
	exec   func(r *request, c any) error
}

// opcodeTable maps CDB opcodes (and service actions) to commands.
type opcodeTable struct {
	ops [256]*opEntry
	// sa holds commands of opcodes with service actions, by opcode.
	sa map[byte]map[uint16]*opEntry
}

// saOpcodes have a service action field; the field sits in byte 1, bits
// 4-0 for these opcodes (SPC-4 4.2.5.1); 0x7F uses bytes 8-9 instead.
var saField = map[byte]bool{0x9E: true, 0x9F: true, 0xA3: true, 0xA4: true, 0x5E: true, 0x5F: true, 0x83: true, 0x84: true, 0x7F: true, 0x48: true}

func newOpcodeTable() *opcodeTable {
	t := &opcodeTable{sa: map[byte]map[uint16]*opEntry{}}
	registerCore(t)
	registerALUA(t)
	registerExtras(t)
	return t
}

// define builds a table entry from a typed decode and exec pair. decode
// must be pure: it sees only the CDB bytes and returns either the typed
// command or a *CheckCondition.
func define[T any](name string, usage []byte, flags opFlags, decode func(cdb []byte) (T, error), exec func(r *request, c T) error) *opEntry {
	return &opEntry{
		Name:        name,
		Opcode:      usage[0],
		Usage:       usage,
		Flags:       flags,
		Nominal:     0,
		Recommended: 0,
		decode: func(cdb []byte) (any, error) {
			c, err := decode(cdb)
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		exec: func(r *request, c any) error { return exec(r, c.(T)) },
	}
}

// add registers e; entries marked withSA are keyed by opcode and service
// action (the SA sits in byte 1 bits 4-0, or bytes 8-9 for 7Fh).
func (t *opcodeTable) add(e *opEntry) {
	if e.HasSA {
		if !saField[e.Opcode] {
			panic("scsi: service action registered for opcode without one: " + e.Name)
		}
		m := t.sa[e.Opcode]
		if m == nil {
			m = map[uint16]*opEntry{}
			t.sa[e.Opcode] = m
		}
		m[e.SA] = e
		return
	}
	if saField[e.Opcode] {
		panic("scsi: opcode needs a service action: " + e.Name)
	}
	t.ops[e.Opcode] = e
}

// withSA sets the service action bits into a usage template; helper for
// registrations.
func usage(b ...byte) []byte { return b }

// lookup finds the entry for a CDB. It returns a *CheckCondition for an
// unknown opcode or service action (SPC-4 4.2.5.1 / table 28: 20/00, or
// INVALID FIELD IN CDB on the service action).
func (t *opcodeTable) lookup(cdb []byte) (*opEntry, error) {
	if len(cdb) == 0 {
		return nil, errInvalidOpcode()
	}
	op := cdb[0]
	if m, ok := t.sa[op]; ok {
		var sa uint16
		if op == 0x7F {
			if len(cdb) < 10 {
				return nil, errInvalidOpcode()
			}
			sa = uint16(cdb[8])<<8 | uint16(cdb[9])
		} else {
			if len(cdb) < 2 {
				return nil, errInvalidOpcode()
			}
			sa = uint16(cdb[1] & 0x1F)
		}
		if e := m[sa]; e != nil {
			return e, nil
		}
		// SPC-4 4.2.5.1: an unsupported service action is INVALID FIELD IN
		// CDB on the service action field. libiscsi accepts 20/00 too, but
		// points readers at the service action byte this way.
		if op == 0x7F {
			return nil, invalidCDB(8, -1)
		}
		return nil, invalidCDB(1, 4)
	}
	if e := t.ops[op]; e != nil {
		return e, nil
	}
	return nil, errInvalidOpcode()
}

// entries lists every registered command in opcode, service action order
// (REPORT SUPPORTED OPERATION CODES, reporting option 0).
func (t *opcodeTable) entries() []*opEntry {
	var out []*opEntry
	for i := range t.ops {
		if t.ops[i] != nil {
			out = append(out, t.ops[i])
		}
	}
	for _, m := range t.sa {
		for _, e := range m {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Opcode != out[j].Opcode {
			return out[i].Opcode < out[j].Opcode
		}
		return out[i].SA < out[j].SA
	})
	return out
}

// decodeCDB is the whole decode step: table lookup, CDB length, the
// control byte, then the command's own decoder. The result is a typed
// command struct or a *CheckCondition, never anything else.
func (t *opcodeTable) decodeCDB(cdb []byte) (*opEntry, any, error) {
	e, err := t.lookup(cdb)
	if err != nil {
		return nil, nil, err
	}
	n := len(e.Usage)
	// SPC-4 4.2.1: a CDB shorter than its operation code defines cannot be
	// parsed; report it as an invalid field at the operation code.
	if len(cdb) < n {
		return e, nil, invalidCDB(0, -1)
	}
	// SAM-5 5.2 / SPC-4 4.2.5.5 (CONTROL byte): NACA=1 requests ACA, which
	// this device server does not support: "If the NACA bit is set to one
	// but the device server does not support ACA, the device server shall
	// terminate the command with CHECK CONDITION status, ILLEGAL REQUEST,
	// INVALID FIELD IN CDB".
	if cdb[n-1]&0x04 != 0 {
		return e, nil, invalidCDB(n-1, 2)
	}
	c, err := e.decode(cdb[:n])
	if err != nil {
		return e, nil, err
	}
	return e, c, nil
}

// request is what an exec func gets: the LU, the command, its nexus, and
// the response being built.
type request struct {
	ctx   context.Context
	lu    *LogicalUnit
	cmd   *Command
	nexus *Nexus
	entry *opEntry
	resp  Response
	// rt is the issuing initiator's LUN map: what REPORT LUNS lists and
	// the only LUs EXTENDED COPY may name. Nil for a command run on an LU
	// directly (LogicalUnit.Execute, a forwarded command): then the LU
	// reaches itself alone.
	rt *router
	// tasks and taskGen count the command in its nexus's task set
	// (abort.go); nil for a command that ended before it was counted.
	tasks   *taskCounter
	taskGen uint64
}

// enterTasks counts r in st's task set; called with lu.mu held.
func (r *request) enterTasks(st *nexusState) {
	r.tasks = &st.tasks
	r.taskGen = st.tasks.enter()
}

// dataIn sends b as Data-In, truncated to the allocation length alloc
// (SPC-4 4.2.5.6: "The device server shall terminate transfers to the
// Data-In Buffer when the number of bytes ... equals the ALLOCATION LENGTH
// or when all available data has been transferred").
func (r *request) dataIn(b []byte, alloc int) {
	n := len(b)
	if alloc < n {
		n = alloc
	}
	r.resp.TransferLength = n
	r.resp.DataLen = copy(r.cmd.DataIn, b[:n])
}
