package ha_test

import (
	"sync"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/gateway/ha"
)

// A reset performed through one gateway has been replayed by the other
// live gateways when Reset returns (the task management response waits
// for it), and never by the gateway it came through.
func TestResetsReachTheOtherGateways(t *testing.T) {
	eps := startEtcd(t)
	a, _ := join(t, eps, "gw-a")
	defer a.Leave()
	b, _ := join(t, eps, "gw-b")
	defer b.Leave()
	type replay struct {
		lu   string
		ascq byte
	}
	var mu sync.Mutex
	seen := map[string][]replay{}
	for name, c := range map[string]*ha.Cluster{"gw-a": a, "gw-b": b} {
		c.WatchResets(func(lu string, ascq byte) {
			mu.Lock()
			seen[name] = append(seen[name], replay{lu, ascq})
			mu.Unlock()
		})
	}
	for _, c := range []*ha.Cluster{a, b} {
		waitFor(t, c.Membership().Self()+" sees both", 2*time.Second, func() bool { return len(c.Membership().Live()) == 2 })
	}
	replayed := func(gw string) int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen[gw])
	}
	a.LUEvents("6001405abc/x").Reset(0x03)
	if replayed("gw-b") != 1 {
		t.Errorf("gw-a's Reset returned before gw-b replayed it")
	}
	b.LUEvents("6001405def").Reset(0x00)
	if replayed("gw-a") != 1 {
		t.Errorf("gw-b's Reset returned before gw-a replayed it")
	}
	time.Sleep(100 * time.Millisecond) // a replay of its own would come now
	mu.Lock()
	defer mu.Unlock()
	if got := seen["gw-b"]; len(got) != 1 || got[0] != (replay{"6001405abc/x", 0x03}) {
		t.Errorf("gw-b replayed %v, want gw-a's LU reset", got)
	}
	if got := seen["gw-a"]; len(got) != 1 || got[0] != (replay{"6001405def", 0x00}) {
		t.Errorf("gw-a replayed %v, want gw-b's target reset", got)
	}
}
