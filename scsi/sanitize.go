package scsi

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// Sanitize is SANITIZE (SBC-3 5.27, SBC-4 5.30): OVERWRITE, BLOCK ERASE
// or EXIT FAILURE MODE. CRYPTO ERASE is not supported: the LU holds no
// encryption key whose change would make the data unrecoverable, so it is
// neither registered nor advertised (WACEREQ=0).
type Sanitize struct {
	SA       byte
	Immed    bool
	AUSE     bool
	ParamLen uint16
}

// SANITIZE service actions (SBC-3 table 40).
const (
	sanitizeOverwrite       = 0x01
	sanitizeBlockErase      = 0x02
	sanitizeCryptoErase     = 0x03
	sanitizeExitFailureMode = 0x1F
)

const (
	// sanitizeParamLenField is the CDB offset of PARAMETER LIST LENGTH.
	sanitizeParamLenField = 7
	// overwriteHeaderLen is the OVERWRITE parameter list header (SBC-3
	// 5.27.3): flags and count, reserved, INITIALIZATION PATTERN LENGTH.
	overwriteHeaderLen = 4
	// sanitizeStep bounds one backend call of a sanitize operation, so
	// progress moves and Close is noticed.
	sanitizeStep = 64 << 20
)

func registerSanitize(t *opcodeTable) {
	for _, sa := range []byte{sanitizeOverwrite, sanitizeBlockErase, sanitizeExitFailureMode} {
		t.add(define("SANITIZE", usage(0x48, 0xA0|sa, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x07),
			opMedia|opWrite, decodeSanitize, execSanitize).withSA(uint16(sa)))
	}
}

func decodeSanitize(cdb []byte) (Sanitize, error) {
	c := Sanitize{SA: cdb[1] & 0x1F, Immed: cdb[1]&0x80 != 0, AUSE: cdb[1]&0x20 != 0, ParamLen: be16(cdb[7:9])}
	// SBC-3 5.27.1 table 39: byte 1 bit 6 and bytes 2-6 are reserved;
	// SPC-4 4.5.1: a reserved field that is not zero is INVALID FIELD IN
	// CDB.
	if cdb[1]&0x40 != 0 {
		return Sanitize{}, invalidCDB(1, 6)
	}
	for i := 2; i <= 6; i++ {
		if cdb[i] != 0 {
			return Sanitize{}, invalidCDB(i, -1)
		}
	}
	switch c.SA {
	case sanitizeOverwrite:
		// SBC-3 5.27.1: "If the service action is OVERWRITE and the
		// PARAMETER LIST LENGTH field is set to a value less than 5 or
		// greater than the logical block length plus 4, ... INVALID FIELD
		// IN CDB." (The upper bound needs the LU; exec checks it.)
		if c.ParamLen <= overwriteHeaderLen {
			return Sanitize{}, invalidCDB(sanitizeParamLenField, -1)
		}
	default:
		// SBC-3 5.27.1: "If the service action is BLOCK ERASE, CRYPTO ERASE,
		// or EXIT FAILURE MODE and the PARAMETER LIST LENGTH field is not
		// set to zero, ... INVALID FIELD IN CDB."
		if c.ParamLen != 0 {
			return Sanitize{}, invalidCDB(sanitizeParamLenField, -1)
		}
	}
	return c, nil
}

// overwriteParams is the OVERWRITE parameter list (SBC-3 5.27.3).
type overwriteParams struct {
	Invert  bool
	Count   int
	Pattern []byte
}

// decodeOverwriteParams parses and checks the OVERWRITE parameter list
// against the logical block size. It is pure.
//
// libiscsi's Sanitize.Overwrite expects INVALID FIELD IN CDB for every
// malformed list: the PARAMETER LIST LENGTH named a list that cannot be
// honoured, so the sense points at that CDB field.
func decodeOverwriteParams(b []byte, bs int) (overwriteParams, error) {
	if len(b) <= overwriteHeaderLen || len(b) > bs+overwriteHeaderLen {
		return overwriteParams{}, invalidCDB(sanitizeParamLenField, -1)
	}
	p := overwriteParams{Invert: b[0]&0x80 != 0, Count: int(b[0] & 0x1F)}
	patLen := int(be16(b[2:4]))
	// SBC-3 5.27.3: "The OVERWRITE COUNT field specifies the number of
	// overwrite passes ... The value of zero is reserved."
	if p.Count == 0 {
		return overwriteParams{}, invalidCDB(sanitizeParamLenField, -1)
	}
	// SBC-3 5.27.3: "If the INITIALIZATION PATTERN LENGTH field is set to
	// zero or to a value greater than the logical block length, then the
	// device server shall terminate the command ... INVALID FIELD IN
	// PARAMETER LIST" — reported against the CDB as above. A pattern longer
	// than the list is malformed the same way.
	if patLen == 0 || patLen > bs || patLen > len(b)-overwriteHeaderLen {
		return overwriteParams{}, invalidCDB(sanitizeParamLenField, -1)
	}
	p.Pattern = b[overwriteHeaderLen : overwriteHeaderLen+patLen]
	return p, nil
}

// sanitizeState is the LU's sanitize operation. A sanitize runs in the
// background on its own context: SBC-3 4.11 has it continue across task
// management functions and I_T nexus loss; only Close stops it.
type sanitizeState struct {
	// mu guards the fields below.
	mu      sync.Mutex
	running bool
	// failed is the sanitize failure mode (SBC-3 4.11): a sanitize that
	// did not complete leaves the medium unusable until a new SANITIZE, or
	// EXIT FAILURE MODE when the failed one had AUSE set.
	failed, failedAUSE bool
	done               chan struct{}
	// busy is running || failed, kept so the gate on every command reads
	// one atomic instead of taking mu.
	busy atomic.Bool

	// progress is bytes done out of total, for the progress indication.
	progress, total atomic.Int64

	// stop ends a running operation at Close; wg tracks it.
	stop   context.CancelFunc
	stopCt context.Context
	wg     sync.WaitGroup
}

// sanitizeGate refuses commands while a sanitize runs or failed (called
// for every command but INQUIRY, REPORT LUNS and REQUEST SENSE).
func (lu *LogicalUnit) sanitizeGate(e *opEntry) error {
	s := &lu.extras.sanitize
	if !s.busy.Load() {
		return nil
	}
	s.mu.Lock()
	running, failed := s.running, s.failed
	s.mu.Unlock()
	// SBC-3 4.11.2: "While a sanitize operation is in progress, the device
	// server shall terminate all commands other than INQUIRY, REPORT LUNS
	// and REQUEST SENSE with CHECK CONDITION status with the sense key set
	// to NOT READY and the additional sense code set to LOGICAL UNIT NOT
	// READY, SANITIZE IN PROGRESS."
	if running {
		return lu.sanitizeInProgress()
	}
	// SBC-3 4.11.3: in the sanitize failure mode, medium access commands
	// end in MEDIUM ERROR, SANITIZE COMMAND FAILED; a new SANITIZE may run.
	if failed && e.Flags&opMedia != 0 && e.Opcode != 0x48 {
		return newCC(SenseMediumError, 0x31, 0x03)
	}
	return nil
}

// sanitizeInProgress is NOT READY, SANITIZE IN PROGRESS (04/1B) with the
// progress indication (SPC-4 4.5.2.4.4).
func (lu *LogicalUnit) sanitizeInProgress() *CheckCondition {
	s := &lu.extras.sanitize
	cc := newCC(SenseNotReady, 0x04, 0x1B)
	cc.ProgressValid = true
	if t := s.total.Load(); t > 0 {
		cc.Progress = uint16(s.progress.Load() * 0xFFFF / t)
	}
	return cc
}

// sanitizeSense is what REQUEST SENSE reports when no unit attention is
// pending: the progress of a running sanitize, or nil.
func (lu *LogicalUnit) sanitizeSense() *CheckCondition {
	s := &lu.extras.sanitize
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	if !running {
		return nil
	}
	return lu.sanitizeInProgress()
}

func execSanitize(r *request, c Sanitize) error {
	lu := r.lu
	s := &lu.extras.sanitize
	if c.SA == sanitizeExitFailureMode {
		s.mu.Lock()
		defer s.mu.Unlock()
		// SBC-3 5.27.1: EXIT FAILURE MODE leaves the sanitize failure mode
		// only if the failed SANITIZE had AUSE set to one; otherwise a new
		// sanitize operation is required: INVALID FIELD IN CDB.
		if s.failed && !s.failedAUSE {
			return invalidCDB(1, 4)
		}
		s.failed = false
		s.busy.Store(false)
		return nil
	}
	var op func(ctx context.Context) error
	switch c.SA {
	case sanitizeOverwrite:
		data := r.cmd.DataOut
		if len(data) < int(c.ParamLen) {
			return errParamListLength()
		}
		p, err := decodeOverwriteParams(data[:c.ParamLen], int(lu.bs))
		if err != nil {
			return err
		}
		op = func(ctx context.Context) error { return lu.sanitizeOverwrite(ctx, p) }
	case sanitizeBlockErase:
		op = lu.sanitizeBlockErase
	}

	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return lu.sanitizeInProgress()
	}
	s.running, s.failed = true, false
	s.busy.Store(true)
	done := make(chan struct{})
	s.done = done
	s.progress.Store(0)
	s.total.Store(lu.be.Size())
	ctx := s.stopCt
	s.wg.Add(1)
	s.mu.Unlock()

	var opErr error
	go func() {
		defer s.wg.Done()
		// Wait out commands already past the gate, then own the medium.
		unlock := lu.lockRange(0, lu.be.Size(), true)
		err := op(ctx)
		if err == nil {
			err = lu.be.Flush(ctx)
		}
		unlock()
		s.mu.Lock()
		s.running = false
		s.failed, s.failedAUSE = err != nil, c.AUSE
		s.busy.Store(s.failed)
		opErr = err
		close(done)
		s.mu.Unlock()
	}()

	// SBC-3 5.27.1: "If the IMMED bit is set to one, then the device server
	// shall return status after the SANITIZE command has been validated";
	// otherwise status follows the operation.
	if c.Immed {
		return nil
	}
	select {
	case <-done:
	case <-r.ctx.Done():
		// The task was aborted; the operation carries on (SBC-3 4.11).
		return mediaError(r.ctx.Err(), true)
	}
	s.mu.Lock()
	err := opErr
	s.mu.Unlock()
	if err != nil {
		// SBC-3 4.11.3: MEDIUM ERROR, SANITIZE COMMAND FAILED.
		var nr *NotReadyError
		if errors.As(err, &nr) {
			return mediaError(err, true)
		}
		return newCC(SenseMediumError, 0x31, 0x03)
	}
	return nil
}

// sanitizeOverwrite writes the initialization pattern over every logical
// block, Count passes, inverting it between passes when asked (SBC-3
// 5.27.3).
func (lu *LogicalUnit) sanitizeOverwrite(ctx context.Context, p overwriteParams) error {
	size := lu.be.Size()
	block := make([]byte, lu.bs)
	for i := 0; i < len(block); i += len(p.Pattern) {
		copy(block[i:], p.Pattern)
	}
	chunk := min(int64(writeSameChunk), size)
	buf := make([]byte, chunk)
	s := &lu.extras.sanitize
	s.total.Store(int64(p.Count) * size)
	for pass := 0; pass < p.Count; pass++ {
		if p.Invert && pass%2 == 1 {
			for i := range block {
				block[i] = ^block[i]
			}
		}
		for i := int64(0); i < chunk; i += lu.bs {
			copy(buf[i:], block)
		}
		// The pattern is written as data even when it is all zeros: a
		// zeroing shortcut (fallocate ZERO_RANGE, rbd_write_zeroes) may only
		// remap the range and leave the old data on the storage underneath,
		// which is what BLOCK ERASE does; OVERWRITE promises to overwrite.
		for off := int64(0); off < size; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(chunk, size-off)
			if err := lu.be.WriteAt(ctx, buf[:n], off, false); err != nil {
				return err
			}
			off += n
			s.progress.Add(n)
		}
		if p.Invert && pass%2 == 1 {
			for i := range block {
				block[i] = ^block[i]
			}
		}
	}
	return nil
}

// sanitizeBlockErase deallocates every logical block (SBC-3 5.27.4: "alter
// the media so that the data cannot be recovered"); on a fully provisioned
// LU it writes zeros instead. Reads afterwards succeed (WABEREQ=01b).
func (lu *LogicalUnit) sanitizeBlockErase(ctx context.Context) error {
	size := lu.be.Size()
	s := &lu.extras.sanitize
	wz, _ := lu.be.(WriteZeroer)
	var zeros []byte
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(sanitizeStep), size-off)
		var err error
		switch {
		case lu.thin() && lu.unmapReadsZero():
			err = lu.be.Unmap(ctx, off, n)
		case wz != nil:
			err = wz.WriteZeroes(ctx, off, n, lu.thin())
		default:
			if zeros == nil {
				zeros = make([]byte, min(int64(writeSameChunk), size))
			}
			n = min(n, int64(len(zeros)))
			err = lu.be.WriteAt(ctx, zeros[:n], off, false)
		}
		if err != nil {
			return err
		}
		off += n
		s.progress.Add(n)
	}
	return nil
}

// initSanitize and closeSanitize bracket the LU's life.
func (lu *LogicalUnit) initSanitize() {
	s := &lu.extras.sanitize
	s.stopCt, s.stop = context.WithCancel(context.Background())
}

func (lu *LogicalUnit) closeSanitize() {
	s := &lu.extras.sanitize
	s.stop()
	s.wg.Wait()
}
