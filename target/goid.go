package target

import (
	"bytes"
	"runtime"
	"strconv"
)

// goid parses the current goroutine id from the stack header. It is slow
// and only used by the debug ownership assertion in tests.
func goid() uint64 {
	var b [64]byte
	n := runtime.Stack(b[:], false)
	f := bytes.Fields(b[:n])
	if len(f) < 2 {
		return 0
	}
	id, _ := strconv.ParseUint(string(f[1]), 10, 64)
	return id
}
