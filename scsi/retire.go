package scsi

// Retire takes the LU out of service when its disk leaves the
// configuration: from then on every command addressed to it is answered
// as for a LUN that does not exist (LOGICAL UNIT NOT SUPPORTED; INQUIRY
// with peripheral qualifier 011b) and REPORT LUNS leaves it out, also for
// sessions that logged in while it was mapped. The caller then waits for
// the commands in flight (Quiesce) and closes it, which lets another
// gateway or an admin have the image.
func (lu *LogicalUnit) Retire() { lu.retired.Store(true) }

// Retired reports whether Retire was called.
func (lu *LogicalUnit) Retired() bool { return lu.retired.Load() }
