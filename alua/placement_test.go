package alua

import (
	"fmt"
	"math"
	"testing"
)

func TestPlaceIsDeterministicAndOrderFree(t *testing.T) {
	if got := Place("disk", nil); got != "" {
		t.Fatalf("Place with no gateways = %q", got)
	}
	for i := 0; i < 50; i++ {
		lu := fmt.Sprintf("rbd/img%d", i)
		a := Place(lu, []string{"gw1", "gw2", "gw3"})
		b := Place(lu, []string{"gw3", "gw1", "gw2"})
		if a != b {
			t.Fatalf("%s: %q vs %q depending on order", lu, a, b)
		}
	}
}

func TestPlaceBalancesAndMovesLittle(t *testing.T) {
	const n = 3000
	lus := make([]string, n)
	for i := range lus {
		lus[i] = fmt.Sprintf("rbd/disk_%d", i)
	}
	three := []string{"gw-a", "gw-b", "gw-c"}
	before := PlaceAll(lus, three)
	count := map[string]int{}
	for _, g := range before {
		count[g]++
	}
	for _, g := range three {
		// Each gateway within 10% of n/3.
		if d := math.Abs(float64(count[g]) - n/3.0); d > 0.1*n/3 {
			t.Fatalf("unbalanced: %v", count)
		}
	}
	t.Logf("3 gateways, %d LUs: %v", n, count)

	// Adding a gateway moves only LUs to the new one, about n/4 of them.
	after := PlaceAll(lus, append(three, "gw-d"))
	moved := 0
	for _, lu := range lus {
		if before[lu] != after[lu] {
			moved++
			if after[lu] != "gw-d" {
				t.Fatalf("%s moved from %s to %s, not to the new gateway", lu, before[lu], after[lu])
			}
		}
	}
	if d := math.Abs(float64(moved) - n/4.0); d > 0.1*n/4 {
		t.Fatalf("adding a gateway moved %d of %d LUs, want about %d", moved, n, n/4)
	}
	t.Logf("adding a fourth gateway moved %d LUs", moved)

	// Removing one moves only its own LUs.
	two := PlaceAll(lus, []string{"gw-a", "gw-c"})
	for _, lu := range lus {
		if before[lu] != "gw-b" && two[lu] != before[lu] {
			t.Fatalf("%s moved from %s to %s though its gateway stayed", lu, before[lu], two[lu])
		}
	}
}
