//go:build !race

package target

import "testing"

// TestHotPathAllocs keeps the per-command allocations of a pipelined 4 KiB
// read and write (BenchmarkRead4K/Write4K) from creeping back: today one
// SCSICmd from the parser and the task itself.
func TestHotPathAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("benchmark-driven")
	}
	for _, write := range []bool{false, true} {
		r := testing.Benchmark(func(b *testing.B) { runBench(b, write) })
		if a := r.AllocsPerOp(); a > 3 {
			t.Errorf("write=%v: %d allocs per command (%s), want <= 3", write, a, r.MemString())
		}
	}
}
