package alua

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// testOwnerConfig: gateway a of a, b; short, distinct timings.
func testOwnerConfig(self string) OwnerConfig {
	c := DefaultOwnerConfig("disk", self, []string{"a", "b"})
	c.DemandWindow = 3 * time.Second
	c.DemandGap = time.Second
	c.MinHold = 20 * time.Second
	c.ContendedHold = 60 * time.Second
	c.ReleaseTimeout = 5 * time.Second
	c.FailbackAfter = 30 * time.Second
	return c
}

// step is one input to the machine and what it must answer.
type step struct {
	at   float64
	in   string // observe, demand, tick, acquired, acquire-failed, released, release-failed
	rec  Record
	live []string
	// want lists the kinds of the actions expected, ActSetStates left out;
	// wantState is Demand's answer.
	want      []ActionKind
	wantState AccessState
	phase     string
	check     func(t *testing.T, acts []Action)
	// target and wantErr: the "explicit" input.
	target  string
	wantErr error
}

func runSteps(t *testing.T, cfg OwnerConfig, steps []step) {
	t.Helper()
	o, err := NewOwner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range steps {
		now := at(s.at)
		var acts []Action
		switch s.in {
		case "observe":
			acts = o.Observe(now, Observation{Record: s.rec, Live: s.live})
		case "demand", "read", "write":
			var st AccessState
			switch s.in {
			case "demand":
				st, acts = o.Demand(now)
			case "read":
				st, acts = o.Access(now, AccessRead)
			default:
				st, acts = o.Access(now, AccessWrite)
			}
			if st != s.wantState {
				t.Fatalf("step %d (t=%v %s): answered %v, want %v", i, s.at, s.in, st, s.wantState)
			}
		case "tick":
			acts = o.Tick(now)
		case "explicit":
			var err error
			acts, err = o.Explicit(now, s.target)
			if !errors.Is(err, s.wantErr) {
				t.Fatalf("step %d (t=%v explicit %s): error %v, want %v", i, s.at, s.target, err, s.wantErr)
			}
		case "acquired":
			acts = o.Acquired(now, nil)
		case "acquire-failed":
			acts = o.Acquired(now, errors.New("EROFS"))
		case "released":
			acts = o.Released(now, nil)
		case "release-failed":
			acts = o.Released(now, errors.New("flush failed"))
		default:
			t.Fatalf("step %d: unknown input %q", i, s.in)
		}
		var kinds []ActionKind
		for _, a := range acts {
			if a.Kind != ActSetStates {
				kinds = append(kinds, a.Kind)
			}
		}
		if !reflect.DeepEqual(kinds, s.want) {
			t.Fatalf("step %d (t=%v %s): actions %v, want %v (phase %s)", i, s.at, s.in, kinds, s.want, o.Phase())
		}
		if s.phase != "" && o.Phase() != s.phase {
			t.Fatalf("step %d (t=%v %s): phase %s, want %s", i, s.at, s.in, o.Phase(), s.phase)
		}
		if s.check != nil {
			s.check(t, acts)
		}
	}
}

func find(acts []Action, k ActionKind) Action {
	for _, a := range acts {
		if a.Kind == k {
			return a
		}
	}
	return Action{}
}

func wantWrite(w Record) func(*testing.T, []Action) {
	return func(t *testing.T, acts []Action) {
		t.Helper()
		for _, a := range acts {
			if a.Kind != ActSetStates {
				if a.Write != w {
					t.Fatalf("%v writes %+v, want %+v", a.Kind, a.Write, w)
				}
				return
			}
		}
		t.Fatal("no compare-and-swap action")
	}
}

func wantStates(want map[string]AccessState) func(*testing.T, []Action) {
	return func(t *testing.T, acts []Action) {
		t.Helper()
		got := find(acts, ActSetStates).States
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("states %v, want %v", got, want)
		}
	}
}

var (
	none          []ActionKind
	both          = []string{"a", "b"}
	ownedByB      = Record{Owner: "b", Epoch: 1, Rev: 10}
	ownedByBAskA  = Record{Owner: "b", Epoch: 1, Request: "a", Rev: 11}
	ownedByA      = Record{Owner: "a", Epoch: 2, Rev: 12}
	ownedByAAskB  = Record{Owner: "a", Epoch: 1, Request: "b", Rev: 11}
	ownedByAFresh = Record{Owner: "a", Epoch: 1, Rev: 10}
)

func TestOwnerMachine(t *testing.T) {
	tests := []struct {
		name  string
		self  string
		tweak func(*OwnerConfig)
		steps []step
	}{
		{name: "dead owner: claim at once on demand, fence it, serve", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByB, live: both, want: none, phase: "follower",
				check: wantStates(map[string]AccessState{"a": ActiveNonOptimized, "b": ActiveOptimized})},
			// The only live gateway is Place's choice: it claims unprompted.
			{at: 1, in: "observe", rec: ownedByB, live: []string{"a"}, want: []ActionKind{ActClaim}, phase: "claiming",
				check: wantWrite(Record{Owner: "a", Epoch: 2})},
			{at: 1.1, in: "demand", wantState: Transitioning, want: none},
			{at: 1.2, in: "observe", rec: Record{Owner: "a", Epoch: 2, Rev: 11}, live: []string{"a"}, want: []ActionKind{ActServe}, phase: "acquiring",
				check: func(t *testing.T, acts []Action) {
					if s := find(acts, ActServe); !s.Fence || s.Old != "b" {
						t.Fatalf("serve %+v: want fence of b", s)
					}
				}},
			{at: 1.3, in: "demand", wantState: Transitioning, want: none},
			{at: 1.4, in: "acquired", want: none, phase: "serving",
				check: wantStates(map[string]AccessState{"a": ActiveOptimized, "b": Unavailable})},
			{at: 1.5, in: "demand", wantState: ActiveOptimized, want: none},
		}},
		{name: "dead owner, no demand: only the placed gateway claims", self: "a", steps: []step{
			{at: 0, in: "observe", rec: Record{Owner: "c", Epoch: 4, Rev: 3}, live: both,
				want: placedClaim("disk", "a", both), phase: placedPhase("disk", "a", both)},
		}},
		{name: "nobody owns the LU yet: placement claims without fencing", self: placeOf("fresh", both), tweak: func(c *OwnerConfig) { c.LU = "fresh" }, steps: []step{
			{at: 0, in: "observe", rec: Record{}, live: both, want: []ActionKind{ActClaim}, phase: "claiming",
				check: wantWrite(Record{Owner: placeOf("fresh", both), Epoch: 1})},
			{at: 0.1, in: "observe", rec: Record{Owner: placeOf("fresh", both), Epoch: 1, Rev: 1}, live: both, want: []ActionKind{ActServe},
				check: func(t *testing.T, acts []Action) {
					if s := find(acts, ActServe); s.Fence {
						t.Fatalf("serve %+v fences nobody's lock", s)
					}
				}},
		}},
		{name: "live owner: brief demand does not move the LU", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByB, live: both, want: none},
			{at: 30, in: "demand", wantState: Transitioning, want: none},
			{at: 30.5, in: "demand", wantState: Transitioning, want: none},
			{at: 32, in: "tick", want: none},
			// A gap longer than DemandGap restarts the window.
			{at: 33, in: "demand", wantState: Transitioning, want: none},
			{at: 34, in: "demand", wantState: Transitioning, want: none},
			{at: 35, in: "demand", wantState: Transitioning, want: none},
			{at: 35.9, in: "demand", wantState: Transitioning, want: none},
			{at: 36.1, in: "demand", wantState: Transitioning, want: []ActionKind{ActRequest}, phase: "requesting",
				check: wantWrite(Record{Owner: "b", Epoch: 1, Request: "a"})},
		}},
		{name: "live owner: sustained demand asks, owner hands over, requester serves without fencing", self: "a", steps: join(askedAt(25), []step{
			{at: 28.05, in: "tick", want: none, phase: "requesting"},
			{at: 28.1, in: "observe", rec: ownedByBAskA, live: both, want: none, phase: "requesting"},
			{at: 29, in: "observe", rec: Record{Owner: "a", Epoch: 2, Rev: 12}, live: both, want: []ActionKind{ActServe},
				check: func(t *testing.T, acts []Action) {
					if s := find(acts, ActServe); s.Fence {
						t.Fatalf("graceful handoff must not fence: %+v", s)
					}
				}},
			{at: 29.1, in: "acquired", want: none, phase: "serving"},
		})},
		{name: "demand within MinHold of a move waits", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByB, live: both, want: none},
			{at: 1, in: "demand", wantState: Transitioning, want: none},
			{at: 2, in: "demand", wantState: Transitioning, want: none},
			{at: 3, in: "demand", wantState: Transitioning, want: none},
			{at: 4, in: "demand", wantState: Transitioning, want: none},
			{at: 19.5, in: "tick", want: none},
			{at: 20, in: "demand", wantState: Transitioning, want: none}, // the gap reset the window
			{at: 21, in: "demand", wantState: Transitioning, want: none},
			{at: 22, in: "demand", wantState: Transitioning, want: none},
			{at: 23, in: "demand", wantState: Transitioning, want: []ActionKind{ActRequest}},
		}},
		{name: "owner neither hands over nor refuses: fence it after ReleaseTimeout", self: "a", steps: join(askedAt(25), []step{
			{at: 28.1, in: "observe", rec: ownedByBAskA, live: both, want: none},
			{at: 32.9, in: "tick", want: none},
			{at: 33.1, in: "tick", want: []ActionKind{ActClaim}, phase: "claiming",
				check: wantWrite(Record{Owner: "a", Epoch: 2})},
			{at: 33.2, in: "observe", rec: Record{Owner: "a", Epoch: 2, Rev: 12}, live: both, want: []ActionKind{ActServe},
				check: func(t *testing.T, acts []Action) {
					if s := find(acts, ActServe); !s.Fence || s.Old != "b" {
						t.Fatalf("serve %+v: want fence of b", s)
					}
				}},
		})},
		{name: "refused request backs off MinHold", self: "a", steps: join(askedAt(25), []step{
			{at: 28.1, in: "observe", rec: ownedByBAskA, live: both, want: none},
			{at: 28.2, in: "observe", rec: Record{Owner: "b", Epoch: 1, Rev: 12}, live: both, want: none, phase: "follower"},
			{at: 29, in: "demand", wantState: Transitioning, want: none},
			{at: 47, in: "tick", want: none},
			{at: 48.3, in: "demand", wantState: Transitioning, want: none}, // new window after the gap
			{at: 49, in: "demand", wantState: Transitioning, want: none},
			{at: 50, in: "demand", wantState: Transitioning, want: none},
			{at: 51, in: "demand", wantState: Transitioning, want: none},
			{at: 51.3, in: "demand", wantState: Transitioning, want: []ActionKind{ActRequest}},
		})},
		{name: "stale record after a request is ignored", self: "a", steps: join(askedAt(25), []step{
			{at: 28.1, in: "observe", rec: ownedByB, live: both, want: none, phase: "requesting"},
		})},
		{name: "owner dies while asked: claim with fence", self: "a", steps: join(askedAt(25), []step{
			{at: 29, in: "observe", rec: ownedByBAskA, live: []string{"a"}, want: []ActionKind{ActClaim}},
		})},
		{name: "owner: idle after MinHold hands over", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByAFresh, live: both, want: []ActionKind{ActServe}},
			{at: 0.1, in: "acquired", want: none, phase: "serving"},
			{at: 1, in: "demand", wantState: ActiveOptimized, want: none},
			{at: 25, in: "observe", rec: ownedByAAskB, live: both, want: []ActionKind{ActRelease}, phase: "releasing",
				check: wantWrite(Record{Owner: "b", Epoch: 2})},
			{at: 25.1, in: "demand", wantState: Transitioning, want: none},
			{at: 25.5, in: "released", want: none, phase: "follower"},
			{at: 25.6, in: "observe", rec: Record{Owner: "b", Epoch: 2, Rev: 12}, live: both, want: none,
				check: wantStates(map[string]AccessState{"a": ActiveNonOptimized, "b": ActiveOptimized})},
		}},
		{name: "owner: busy refuses until ContendedHold", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByAFresh, live: both, want: []ActionKind{ActServe}},
			{at: 0.1, in: "acquired", want: none},
			{at: 24, in: "demand", wantState: ActiveOptimized, want: none},
			{at: 25, in: "observe", rec: ownedByAAskB, live: both, want: []ActionKind{ActDeny}, phase: "serving",
				check: wantWrite(Record{Owner: "a", Epoch: 1})},
			{at: 59, in: "demand", wantState: ActiveOptimized, want: none},
			{at: 60, in: "observe", rec: Record{Owner: "a", Epoch: 1, Request: "b", Rev: 13}, live: both, want: []ActionKind{ActRelease}},
		}},
		{name: "owner: request within MinHold refused even when idle", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByAFresh, live: both, want: []ActionKind{ActServe}},
			{at: 0.1, in: "acquired", want: none},
			{at: 10, in: "observe", rec: ownedByAAskB, live: both, want: []ActionKind{ActDeny}},
		}},
		{name: "owner: failed release keeps the LU", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByAFresh, live: both, want: []ActionKind{ActServe}},
			{at: 0.1, in: "acquired", want: none},
			{at: 25, in: "observe", rec: ownedByAAskB, live: both, want: []ActionKind{ActRelease}},
			{at: 26, in: "release-failed", want: []ActionKind{ActDeny, ActServe}, phase: "acquiring"},
			{at: 26.1, in: "acquired", want: none, phase: "serving"},
		}},
		{name: "owner: release fails after the LU was taken: do not serve again", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByAFresh, live: both, want: []ActionKind{ActServe}},
			{at: 0.1, in: "acquired", want: none},
			{at: 25, in: "observe", rec: ownedByAAskB, live: both, want: []ActionKind{ActRelease}},
			{at: 31, in: "observe", rec: Record{Owner: "b", Epoch: 2, Rev: 12}, live: both, want: none, phase: "follower"},
			{at: 31.1, in: "release-failed", want: none, phase: "follower"},
		}},
		{name: "owner loses its lease: stop serving at once", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByAFresh, live: both, want: []ActionKind{ActServe}},
			{at: 0.1, in: "acquired", want: none},
			{at: 5, in: "observe", rec: ownedByAFresh, live: []string{"b"}, want: []ActionKind{ActStopServing}, phase: "follower",
				check: wantStates(map[string]AccessState{"a": Transitioning, "b": ActiveNonOptimized})},
			{at: 5.1, in: "demand", wantState: Transitioning, want: none},
			// The lease returns before anyone claimed: take the lock again.
			{at: 6, in: "observe", rec: ownedByAFresh, live: both, want: []ActionKind{ActServe}},
		}},
		{name: "owner fenced by a claim: stop serving", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByAFresh, live: both, want: []ActionKind{ActServe}},
			{at: 0.1, in: "acquired", want: none},
			{at: 9, in: "observe", rec: Record{Owner: "b", Epoch: 2, Rev: 11}, live: both, want: []ActionKind{ActStopServing}, phase: "follower"},
		}},
		{name: "acquire failure retries after RetryInterval", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByAFresh, live: both, want: []ActionKind{ActServe}},
			{at: 0.1, in: "acquire-failed", want: none, phase: "acquiring"},
			{at: 0.5, in: "tick", want: none},
			{at: 1.2, in: "tick", want: []ActionKind{ActServe}},
		}},
		{name: "lost claim race: follow the winner", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByB, live: []string{"a"}, want: []ActionKind{ActClaim}},
			{at: 0.1, in: "observe", rec: Record{Owner: "c", Epoch: 2, Rev: 11}, live: []string{"a", "c"}, want: none, phase: "follower"},
		}},
		{name: "claim that never lands is given up", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByB, live: []string{"a"}, want: []ActionKind{ActClaim}},
			{at: 5.1, in: "tick", want: []ActionKind{ActClaim}}, // given up, and the placed gateway claims again
		}},
		{name: "failback: preferred asks after FailbackAfter", self: "a", tweak: func(c *OwnerConfig) {
			c.Preferred, c.Failback = "a", FailbackPreferred
		}, steps: []step{
			{at: 0, in: "observe", rec: ownedByB, live: both, want: none},
			{at: 29, in: "tick", want: none},
			{at: 30, in: "tick", want: []ActionKind{ActRequest}},
		}},
		{name: "failback none: preferred stays put", self: "a", tweak: func(c *OwnerConfig) { c.Preferred = "a" }, steps: []step{
			{at: 0, in: "observe", rec: ownedByB, live: both, want: none},
			{at: 100, in: "tick", want: none},
		}},
		{name: "failback: busy owner hands back to preferred after MinHold", self: "b", tweak: func(c *OwnerConfig) {
			c.Preferred, c.Failback = "a", FailbackPreferred
		}, steps: []step{
			{at: 0, in: "observe", rec: ownedByB, live: both, want: []ActionKind{ActServe}},
			{at: 0.1, in: "acquired", want: none},
			{at: 20.5, in: "demand", wantState: ActiveOptimized, want: none},
			{at: 21, in: "observe", rec: ownedByBAskA, live: both, want: []ActionKind{ActRelease}},
		}},
		{name: "explicit: the owner asked directly hands over at once", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByAFresh, live: both, want: []ActionKind{ActServe}},
			{at: 0.1, in: "acquired", want: none},
			{at: 1, in: "demand", wantState: ActiveOptimized, want: none},
			{at: 1.5, in: "explicit", target: "a", want: none, phase: "serving"},
			{at: 2, in: "explicit", target: "b", want: []ActionKind{ActRelease}, phase: "releasing",
				check: wantWrite(Record{Owner: "b", Epoch: 2})},
		}},
		{name: "explicit: a non-owner asks without damping, the owner grants within MinHold", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByB, live: both, want: none},
			{at: 1, in: "explicit", target: "a", want: []ActionKind{ActRequest}, phase: "requesting",
				check: wantWrite(Record{Owner: "b", Epoch: 1, Request: "a", Explicit: true})},
		}},
		{name: "explicit: the busy owner grants an explicit request at once", self: "b", steps: []step{
			{at: 0, in: "observe", rec: ownedByB, live: both, want: []ActionKind{ActServe}},
			{at: 0.1, in: "acquired", want: none},
			{at: 1, in: "demand", wantState: ActiveOptimized, want: none},
			{at: 1.1, in: "observe", rec: Record{Owner: "b", Epoch: 1, Request: "a", Explicit: true, Rev: 11}, live: both, want: []ActionKind{ActRelease}},
		}},
		{name: "explicit: refused while a move is under way or the target is down", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByBAskA, live: []string{"a", "b"}, want: none, phase: "requesting"},
			{at: 1, in: "explicit", target: "a", want: none, wantErr: ErrMoveInProgress},
			{at: 2, in: "explicit", target: "c", want: none, wantErr: ErrGatewayDown},
		}},
		{name: "explicit: a request relayed for us is followed through, fencing a silent owner", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByB, live: both, want: none},
			{at: 1, in: "observe", rec: Record{Owner: "b", Epoch: 1, Request: "a", Explicit: true, Rev: 11}, live: both, want: none, phase: "requesting"},
			{at: 6.1, in: "tick", want: []ActionKind{ActClaim}},
		}},
		{name: "reads anywhere: a non-owner serves reads without demand, writes are demand", self: "a",
			tweak: func(c *OwnerConfig) { c.ReadsAnywhere = true }, steps: []step{
				{at: 0, in: "observe", rec: ownedByB, live: both, want: none},
				{at: 25, in: "read", wantState: ActiveNonOptimized, want: none},
				{at: 26, in: "read", wantState: ActiveNonOptimized, want: none},
				{at: 27, in: "read", wantState: ActiveNonOptimized, want: none},
				{at: 28.5, in: "read", wantState: ActiveNonOptimized, want: none, phase: "follower"},
				{at: 29, in: "write", wantState: Transitioning, want: none},
				{at: 30, in: "write", wantState: Transitioning, want: none},
				{at: 31, in: "write", wantState: Transitioning, want: none},
				{at: 32, in: "write", wantState: Transitioning, want: []ActionKind{ActRequest}},
				{at: 32.1, in: "read", wantState: ActiveNonOptimized, want: none, phase: "requesting"},
				// The owner dies: a read is demand again, and claims.
				{at: 33, in: "observe", rec: ownedByBAskA, live: []string{"a"}, want: []ActionKind{ActClaim}},
				{at: 33.1, in: "read", wantState: Transitioning, want: none},
			}},
		{name: "reads are demand without ReadsAnywhere", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByB, live: both, want: none},
			{at: 25, in: "read", wantState: Transitioning, want: none},
			{at: 26, in: "read", wantState: Transitioning, want: none},
			{at: 27, in: "read", wantState: Transitioning, want: none},
			{at: 28, in: "read", wantState: Transitioning, want: []ActionKind{ActRequest}},
		}},
		{name: "an older record never replaces a newer one", self: "a", steps: []step{
			{at: 0, in: "observe", rec: ownedByA, live: both, want: []ActionKind{ActServe}},
			{at: 0.1, in: "acquired", want: none},
			{at: 1, in: "observe", rec: ownedByB, live: both, want: none, phase: "serving"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testOwnerConfig(tc.self)
			if tc.tweak != nil {
				tc.tweak(&cfg)
			}
			runSteps(t, cfg, tc.steps)
		})
	}
}

// askedAt: a follows b's ownership record and sees demand every second
// from start; DemandWindow later it asks b for the LU.
func askedAt(start float64) []step {
	return []step{
		{at: 0, in: "observe", rec: ownedByB, live: both, want: none},
		{at: start, in: "demand", wantState: Transitioning, want: none},
		{at: start + 1, in: "demand", wantState: Transitioning, want: none},
		{at: start + 2, in: "demand", wantState: Transitioning, want: none},
		{at: start + 3, in: "demand", wantState: Transitioning, want: []ActionKind{ActRequest}},
	}
}

func join(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func placeOf(lu string, gws []string) string { return Place(lu, gws) }

// placedClaim: with the owner dead and no demand, only Place's choice claims.
func placedClaim(lu, self string, live []string) []ActionKind {
	if Place(lu, live) == self {
		return []ActionKind{ActClaim}
	}
	return none
}

func placedPhase(lu, self string, live []string) string {
	if Place(lu, live) == self {
		return "claiming"
	}
	return "follower"
}

func TestOwnerConfigValidate(t *testing.T) {
	tests := []struct {
		tweak func(*OwnerConfig)
		want  string
	}{
		{func(c *OwnerConfig) { c.LU = "" }, "LU name is empty"},
		{func(c *OwnerConfig) { c.Self = "z" }, `Self "z" is not among Gateways`},
		{func(c *OwnerConfig) { c.Preferred = "z" }, `Preferred "z"`},
		{func(c *OwnerConfig) { c.Failback = FailbackPreferred }, "needs a Preferred gateway"},
		{func(c *OwnerConfig) { c.MinHold = 0 }, "MinHold (0s) must be > 0"},
		{func(c *OwnerConfig) { c.DemandGap = 10 * time.Second }, "DemandGap (10s) cannot be larger than DemandWindow (3s)"},
		{func(c *OwnerConfig) { c.ContendedHold = time.Second }, "ContendedHold (1s) cannot be smaller than MinHold (20s)"},
	}
	for _, tc := range tests {
		c := testOwnerConfig("a")
		tc.tweak(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want %q", err, tc.want)
		}
		if _, err := NewOwner(c); err == nil {
			t.Errorf("NewOwner accepted an invalid config (%s)", tc.want)
		}
	}
	c := DefaultOwnerConfig("disk", "a", []string{"a"})
	if err := c.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
}

func TestExplicitRelay(t *testing.T) {
	// Gateway c receives the STPG for a while b owns: c writes the request
	// on a's behalf and stays a follower.
	cfg := DefaultOwnerConfig("disk", "c", []string{"a", "b", "c"})
	o, err := NewOwner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o.Observe(at(0), Observation{Record: ownedByB, Live: []string{"a", "b", "c"}})
	acts, err := o.Explicit(at(1), "a")
	if err != nil || len(acts) == 0 || acts[0].Kind != ActRequest || acts[0].Write.Request != "a" || !acts[0].Write.Explicit {
		t.Fatalf("relay: %+v, %v", acts, err)
	}
	if o.Phase() != "follower" {
		t.Fatalf("relaying gateway in phase %s", o.Phase())
	}
	o2, _ := NewOwner(cfg)
	if _, err := o2.Explicit(at(0), "a"); !errors.Is(err, ErrNotInCluster) {
		t.Fatalf("Explicit before any observation: %v", err)
	}
}

func TestExplicitTarget(t *testing.T) {
	gw := map[uint16]string{1: "a", 2: "b"}
	tests := []struct {
		want    []StateRequest
		target  string
		wantErr bool
	}{
		{[]StateRequest{{1, Standby}, {2, ActiveOptimized}}, "b", false},
		{[]StateRequest{{1, ActiveNonOptimized}}, "", false},
		{[]StateRequest{{1, ActiveOptimized}, {2, ActiveOptimized}}, "", true},
		{[]StateRequest{{9, ActiveOptimized}}, "", true},
	}
	for _, tc := range tests {
		got, err := ExplicitTarget(ExplicitRequest{Want: tc.want}, gw)
		if got != tc.target || (err != nil) != tc.wantErr {
			t.Errorf("ExplicitTarget(%v) = %q, %v; want %q, error %v", tc.want, got, err, tc.target, tc.wantErr)
		}
	}
}

// An ownerless LU goes to its preferred gateway when that one is live,
// whatever Place would pick; without it live, Place decides.
func TestOwnerlessLUGoesToThePreferredGateway(t *testing.T) {
	for _, preferred := range []string{"a", "b"} {
		for _, self := range []string{"a", "b"} {
			cfg := testOwnerConfig(self)
			cfg.Preferred = preferred
			o, err := NewOwner(cfg)
			if err != nil {
				t.Fatal(err)
			}
			acts := o.Observe(at(0), Observation{Record: Record{Rev: 1}, Live: []string{"a", "b"}})
			claims := find(acts, ActClaim).Kind == ActClaim
			if claims != (self == preferred) {
				t.Errorf("preferred %s, gateway %s: claims %v", preferred, self, claims)
			}
		}
	}
	// The preferred gateway is down: the balanced placement among the live.
	cfg := testOwnerConfig("a")
	cfg.Preferred = "b"
	o, err := NewOwner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	acts := o.Observe(at(0), Observation{Record: Record{Rev: 1}, Live: []string{"a"}})
	if find(acts, ActClaim).Kind != ActClaim {
		t.Error("with the preferred gateway down the only live gateway does not claim")
	}
}

// A preference given to a running machine takes effect like a configured
// one: the preferred gateway asks for the LU once it has been live
// FailbackAfter; without it nothing moves.
func TestSetPreferenceStartsFailback(t *testing.T) {
	for _, prefer := range []bool{false, true} {
		o, err := NewOwner(testOwnerConfig("b"))
		if err != nil {
			t.Fatal(err)
		}
		o.Observe(at(0), Observation{Record: Record{Owner: "a", Epoch: 1, Rev: 5}, Live: []string{"a", "b"}})
		if prefer {
			if _, err := o.SetPreference(at(1), "b", FailbackPreferred); err != nil {
				t.Fatal(err)
			}
		}
		asks := find(o.Tick(at(31)), ActRequest).Kind == ActRequest
		if asks != prefer {
			t.Errorf("preference set %v: asks for the LU at 31 s: %v", prefer, asks)
		}
	}
	o, _ := NewOwner(testOwnerConfig("b"))
	if _, err := o.SetPreference(at(0), "z", FailbackPreferred); err == nil {
		t.Error("a preferred gateway outside the set was accepted")
	}
}
