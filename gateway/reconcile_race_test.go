//go:build race

package gateway

// raceEnabled: the race detector slows everything (the embedded etcd
// server included) several times, so timing budgets are logged, not
// enforced.
const raceEnabled = true
