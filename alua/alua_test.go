package alua

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestStatic(t *testing.T) {
	s := Static{
		{ID: 1, State: ActiveOptimized, RelativePorts: []uint16{1}},
		{ID: 2, State: Standby, RelativePorts: []uint16{2, 3}},
	}
	if got := s.StateOf(3); got != Standby {
		t.Fatalf("StateOf(3) = %v, want standby", got)
	}
	if got := s.StateOf(9); got != ActiveOptimized {
		t.Fatalf("StateOf(9) = %v, want active/optimized", got)
	}
	g := s.Groups()
	g[1].RelativePorts[0] = 7
	if s[1].RelativePorts[0] != 2 {
		t.Fatal("Groups must return a copy")
	}
}

func twoGroups() []Group {
	return []Group{
		{ID: 10, State: ActiveOptimized, Preferred: true, RelativePorts: []uint16{1}},
		{ID: 20, State: ActiveNonOptimized, RelativePorts: []uint16{2, 3}},
	}
}

func TestNewDynamicRejectsAmbiguousGroups(t *testing.T) {
	for name, gs := range map[string][]Group{
		"duplicate id":   {{ID: 1, RelativePorts: []uint16{1}}, {ID: 1, RelativePorts: []uint16{2}}},
		"shared port":    {{ID: 1, RelativePorts: []uint16{1}}, {ID: 2, RelativePorts: []uint16{1}}},
		"reserved port":  {{ID: 1, RelativePorts: []uint16{0}}},
		"too many ports": {{ID: 1, RelativePorts: make([]uint16, 256)}},
	} {
		if _, err := NewDynamic(gs, 0); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestDynamicStatesAndNotifications(t *testing.T) {
	d, err := NewDynamic(twoGroups(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if d.TransitionTime() != DefaultTransitionTime {
		t.Fatalf("transition time %v", d.TransitionTime())
	}
	var got []Change
	cancel := d.Subscribe(func(c Change) { got = append(got, c) })
	if d.StateOf(3) != ActiveNonOptimized || d.StateOf(1) != ActiveOptimized {
		t.Fatal("initial states")
	}
	changed, err := d.SetStates(map[uint16]AccessState{10: Transitioning, 20: ActiveOptimized}, StatusImplicit, "why")
	if err != nil || !changed {
		t.Fatalf("SetStates = %v, %v", changed, err)
	}
	if d.StateOf(1) != Transitioning || d.StateOf(2) != ActiveOptimized {
		t.Fatalf("states after SetStates: %v", d.Groups())
	}
	if g, _ := d.GroupOf(2); g.Status != StatusImplicit || g.ID != 20 {
		t.Fatalf("GroupOf(2) = %+v", g)
	}
	if len(got) != 1 || got[0].Origin != "why" || got[0].Status != StatusImplicit {
		t.Fatalf("notifications %+v", got)
	}
	// No change, no notification.
	if changed, _ := d.SetStates(map[uint16]AccessState{20: ActiveOptimized}, StatusImplicit, nil); changed || len(got) != 1 {
		t.Fatalf("a no-op change notified: %v %+v", changed, got)
	}
	// Unknown group or unsupported state: error, nothing applied.
	if _, err := d.SetStates(map[uint16]AccessState{20: Standby, 99: Standby}, StatusExplicit, nil); err == nil {
		t.Fatal("unknown group accepted")
	}
	if _, err := d.SetStates(map[uint16]AccessState{20: Offline}, StatusExplicit, nil); err == nil {
		t.Fatal("offline accepted though not supported")
	}
	if d.StateOf(2) != ActiveOptimized {
		t.Fatal("a refused change was partly applied")
	}
	cancel()
	d.SetStates(map[uint16]AccessState{20: Standby}, StatusExplicit, nil)
	if len(got) != 1 {
		t.Fatal("notified after cancel")
	}
}

func TestDynamicAdmit(t *testing.T) {
	d, _ := NewDynamic(twoGroups(), 0)
	if d.Admit(2) != ActiveNonOptimized {
		t.Fatal("without an admit function Admit is the state")
	}
	d.SetAdmit(func(uint16) AccessState { return Transitioning })
	if d.Admit(2) != Transitioning {
		t.Fatal("admit function ignored")
	}
	d.SetStates(map[uint16]AccessState{20: Standby}, StatusImplicit, nil)
	if d.Admit(2) != Standby {
		t.Fatal("an inactive group must not be narrowed by the admit function")
	}
	d.SetAdmit(nil)
	d.SetStates(map[uint16]AccessState{20: ActiveNonOptimized}, StatusImplicit, nil)
	if d.Admit(2) != ActiveNonOptimized {
		t.Fatal("SetAdmit(nil) did not remove it")
	}
}

func TestDynamicExplicit(t *testing.T) {
	d, _ := NewDynamic(twoGroups(), 2*time.Second)
	if d.ExplicitEnabled() {
		t.Fatal("explicit by default")
	}
	if err := d.RequestStates(ExplicitRequest{}); err != ErrExplicitDisabled {
		t.Fatalf("RequestStates without handler: %v", err)
	}
	d.SetExplicit(d.ApplyExplicit)
	if !d.ExplicitEnabled() {
		t.Fatal("SetExplicit did not enable explicit ALUA")
	}
	var origin any
	d.Subscribe(func(c Change) { origin = c.Origin })
	if err := d.RequestStates(ExplicitRequest{FromPort: 2, Want: []StateRequest{{Group: 20, State: ActiveOptimized}, {Group: 10, State: Standby}}, Origin: 42}); err != nil {
		t.Fatal(err)
	}
	if g := d.Groups(); g[0].State != Standby || g[1].State != ActiveOptimized || g[1].Status != StatusExplicit {
		t.Fatalf("groups %+v", g)
	}
	if origin != 42 {
		t.Fatalf("origin %v not passed through", origin)
	}
}

// Readers on the data path race writers; -race checks the snapshot scheme.
func TestDynamicConcurrentReadersAndWriters(t *testing.T) {
	d, _ := NewDynamic(twoGroups(), 0)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if s := d.StateOf(2); s != ActiveOptimized && s != ActiveNonOptimized {
					t.Errorf("torn state %v", s)
					return
				}
				d.Admit(1)
				_ = d.Groups()
			}
		}()
	}
	var n int
	var mu sync.Mutex
	d.Subscribe(func(Change) { mu.Lock(); n++; mu.Unlock() })
	for i := 0; i < 1000; i++ {
		st := ActiveOptimized
		if i%2 == 1 {
			st = ActiveNonOptimized
		}
		d.SetStates(map[uint16]AccessState{20: st}, StatusImplicit, nil)
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if n != 1000 { // every write flips the state
		t.Fatalf("%d notifications, want 1000", n)
	}
}

func TestDynamicAdmitAccess(t *testing.T) {
	d, _ := NewDynamic(twoGroups(), 0)
	d.SetAdmit(func(uint16) AccessState { return Transitioning })
	if d.AdmitAccess(context.Background(), 2, AccessRead) != Transitioning {
		t.Fatal("without an access function AdmitAccess falls back to the admit function")
	}
	d.SetAdmitAccess(func(_ context.Context, _ uint16, a Access) AccessState {
		if a == AccessRead {
			return ActiveNonOptimized
		}
		return Transitioning
	})
	if d.AdmitAccess(context.Background(), 2, AccessRead) != ActiveNonOptimized || d.AdmitAccess(context.Background(), 2, AccessWrite) != Transitioning {
		t.Fatal("access function ignored")
	}
	d.SetStates(map[uint16]AccessState{20: Unavailable}, StatusImplicit, nil)
	if d.AdmitAccess(context.Background(), 2, AccessRead) != Unavailable {
		t.Fatal("an inactive group must not be narrowed")
	}
	d.SetAdmitAccess(nil)
	d.SetStates(map[uint16]AccessState{20: ActiveNonOptimized}, StatusImplicit, nil)
	if d.AdmitAccess(context.Background(), 2, AccessRead) != Transitioning {
		t.Fatal("SetAdmitAccess(nil) did not fall back to the admit function")
	}
}
