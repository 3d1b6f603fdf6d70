package scsi

import "time"

// SetMoveHold shortens how long forwarded commands wait for a move to
// settle, for tests; it returns the function that restores it.
func SetMoveHold(d time.Duration) (restore func()) {
	old := moveHold
	moveHold = d
	return func() { moveHold = old }
}
