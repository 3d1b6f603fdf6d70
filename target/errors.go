package target

import (
	"fmt"
	"sync"
)

// Errors are typed by the scope they end, so each failure ends no more
// than it must. The connection loop switches on the type: ConnError drops
// the connection, SessionError ends the session (every connection of it
// and its tasks), TaskError answers one PDU with a Reject and goes on.

// ConnError ends one connection.
type ConnError struct {
	Reason string
	Err    error
}

func (e *ConnError) Error() string {
	if e.Err != nil {
		return "iscsi: connection: " + e.Reason + ": " + e.Err.Error()
	}
	return "iscsi: connection: " + e.Reason
}

func (e *ConnError) Unwrap() error { return e.Err }

// SessionError ends the session the connection belongs to.
type SessionError struct {
	Reason string
}

func (e *SessionError) Error() string { return "iscsi: session: " + e.Reason }

// TaskError rejects one PDU (RFC 7143 11.17) and leaves the connection up.
type TaskError struct {
	ITT    uint32
	Reason byte // RFC 7143 11.17.1 reject reason
	Msg    string
}

func (e *TaskError) Error() string {
	return fmt.Sprintf("iscsi: task %#x rejected (reason %#x): %s", e.ITT, e.Reason, e.Msg)
}

// errorCounts records every rejection by token, for metrics and tests.
var errorCounts sync.Map // token -> *countCell

type countCell struct {
	mu sync.Mutex
	n  uint64
}

// countError records a rejection token (the style of x/net/http2's
// countError: one short name per check that fired).
func countError(token string) {
	v, ok := errorCounts.Load(token)
	if !ok {
		v, _ = errorCounts.LoadOrStore(token, &countCell{})
	}
	c := v.(*countCell)
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

// ErrorCounts returns a snapshot of the rejection counters by token.
func ErrorCounts() map[string]uint64 {
	out := map[string]uint64{}
	errorCounts.Range(func(k, v any) bool {
		c := v.(*countCell)
		c.mu.Lock()
		out[k.(string)] = c.n
		c.mu.Unlock()
		return true
	})
	return out
}
