package alua

import (
	"hash/fnv"
	"sort"
)

// Place chooses the owner gateway of an LU among the live gateways by
// rendezvous (highest random weight) hashing: every gateway computes the
// same answer from the same inputs without talking to the others, LUs
// spread evenly, and when a gateway joins only the LUs it now wins move to
// it (about 1/N of them); when one leaves only its own LUs move. It returns
// "" when gateways is empty.
func Place(lu string, gateways []string) string {
	best, bestW := "", uint64(0)
	for _, g := range gateways {
		w := weight(lu, g)
		// Ties (astronomically rare) go to the smaller name, so the
		// answer does not depend on the order of gateways.
		if best == "" || w > bestW || (w == bestW && g < best) {
			best, bestW = g, w
		}
	}
	return best
}

// PlaceAll returns the owner of each LU (Place for each).
func PlaceAll(lus, gateways []string) map[string]string {
	gs := append([]string(nil), gateways...)
	sort.Strings(gs)
	out := make(map[string]string, len(lus))
	for _, lu := range lus {
		out[lu] = Place(lu, gs)
	}
	return out
}

// weight is the hash of the (LU, gateway) pair, mixed so that similar names
// do not give correlated weights.
func weight(lu, gw string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(lu))
	h.Write([]byte{0})
	h.Write([]byte(gw))
	return mix64(h.Sum64())
}

// mix64 is a 64-bit finaliser (xor-shift-multiply) that spreads FNV's
// weak low-entropy outputs over all bits.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
