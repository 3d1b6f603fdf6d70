package alua

import "testing"

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
