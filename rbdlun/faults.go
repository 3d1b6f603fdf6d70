package rbdlun

import (
	"errors"
	"sync/atomic"

	"github.com/rbdgw/rbdgw/scsi"
)

// ErrInjected is the error injectors return by default.
var ErrInjected = errors.New("rbdlun: injected error")

// Injector decides, per operation, whether it fails. It is called before
// the inner operation; a non-nil error is returned instead of calling it.
// Injectors are called concurrently.
type Injector interface {
	MaybeError(op Op, off, length int64) error
}

// InjectorFunc adapts a function to Injector.
type InjectorFunc func(op Op, off, length int64) error

func (f InjectorFunc) MaybeError(op Op, off, length int64) error { return f(op, off, length) }

// FailOps fails every operation of the listed kinds with ErrInjected.
func FailOps(ops ...Op) Injector {
	var set [16]bool
	for _, o := range ops {
		set[o&15] = true
	}
	return InjectorFunc(func(op Op, _, _ int64) error {
		if set[op&15] {
			return ErrInjected
		}
		return nil
	})
}

// Switch is an injector that can be turned on and off while I/O runs, for
// tests that fail a backend in the middle of a workload.
type Switch struct {
	inj Injector
	on  atomic.Bool
}

// NewSwitch returns a Switch around inj, initially off.
func NewSwitch(inj Injector) *Switch { return &Switch{inj: inj} }

func (s *Switch) Set(on bool) { s.on.Store(on) }

func (s *Switch) MaybeError(op Op, off, length int64) error {
	if !s.on.Load() {
		return nil
	}
	return s.inj.MaybeError(op, off, length)
}

// Counter counts the errors its injector produced, so a test can check
// that an injected failure reached the initiator rather than vanishing.
type Counter struct {
	Injector
	n atomic.Int64
}

func (c *Counter) MaybeError(op Op, off, length int64) error {
	err := c.Injector.MaybeError(op, off, length)
	if err != nil {
		c.n.Add(1)
	}
	return err
}

// Count returns how many errors were injected.
func (c *Counter) Count() int64 { return c.n.Load() }

// WithFaults wraps b so that inj may fail any operation. The wrapper
// forwards exactly the optional interfaces b implements.
func WithFaults(b scsi.Backend, inj Injector) scsi.Backend {
	return wrap(b, faults{inj})
}

type faults struct{ inj Injector }

func (f faults) begin(op Op, off, length int64) (int, error) {
	return 0, f.inj.MaybeError(op, off, length)
}
func (f faults) end(_ int, err error) error { return err }
func (f faults) close()                     {}
