package alua

import (
	"fmt"
	"slices"
	"time"
)

// FailbackPolicy says whether an LU returns to its preferred gateway.
type FailbackPolicy uint8

const (
	// FailbackNone leaves an LU where it is until demand or a death moves it.
	FailbackNone FailbackPolicy = iota
	// FailbackPreferred moves an LU back to OwnerConfig.Preferred once that
	// gateway has been healthy for FailbackAfter (graceful, damped by
	// MinHold like any move).
	FailbackPreferred
)

func (p FailbackPolicy) String() string {
	if p == FailbackPreferred {
		return "preferred"
	}
	return "none"
}

// OwnerConfig configures the ownership machine of one LU on one gateway.
// Every gateway must run the same values for the same LU (they come from
// the cluster configuration), except Self.
type OwnerConfig struct {
	// LU names the logical unit (its WWN or pool/image); it seeds Place.
	LU string
	// Self is this gateway's id; Gateways lists every configured gateway,
	// Self included. A gateway's target port group shows its state.
	Self     string
	Gateways []string
	// Preferred is the LU's preferred gateway ("" none): RTPG shows its
	// group with PREF=1, and FailbackPreferred returns the LU to it.
	Preferred     string
	Failback      FailbackPolicy
	FailbackAfter time.Duration

	// DemandWindow is how long media commands must keep arriving at a
	// non-owner (no pause longer than DemandGap) before it asks a live
	// owner to hand the LU over. A dead owner is replaced at once.
	DemandWindow time.Duration
	DemandGap    time.Duration
	// MinHold is the time after each move during which no further
	// demand-driven or failback move starts, and after a refused request
	// before the same gateway asks again: two initiators pinned to
	// different gateways cannot make ownership move more often than that.
	MinHold time.Duration
	// ContendedHold is how long an owner that is still serving I/O of its
	// own keeps the LU against a request (contention): an idle owner hands
	// over after MinHold, a busy one only after ContendedHold.
	ContendedHold time.Duration
	// ReleaseTimeout is how long a live owner has to release gracefully
	// (drain, flush, unlock, hand over) before the requester fences it
	// (breaks the lock and blocklists it). It is also how long a claim may
	// wait for its compare-and-swap to show up before it is given up.
	ReleaseTimeout time.Duration
	// RetryInterval spaces retries of a failed lock acquisition.
	RetryInterval time.Duration
	// ReadsAnywhere lets a non-owner serve reads itself (Owner.Access with
	// AccessRead) while the owner is alive, instead of counting them as
	// demand. Safe only when the owner acknowledges writes once they are
	// durable (no write-back cache) and the backend reads without holding
	// the lock (RBD does): then a read anywhere sees every completed
	// write. Round-robin multipath reads stop moving the LU.
	ReadsAnywhere bool
}

// Default ownership timings. With a lease TTL of a few seconds an owner's
// death is acted on within TTL + one claim round trip; the graceful path
// takes DemandWindow + the release, both well under ESXi's 8 s.
const (
	DefaultDemandWindow   = 3 * time.Second
	DefaultDemandGap      = 1 * time.Second
	DefaultMinHold        = 20 * time.Second
	DefaultContendedHold  = 60 * time.Second
	DefaultReleaseTimeout = 5 * time.Second
	DefaultFailbackAfter  = 30 * time.Second
	DefaultRetryInterval  = 1 * time.Second
)

// DefaultOwnerConfig returns usable settings for LU lu on gateway self of
// the given gateways.
func DefaultOwnerConfig(lu, self string, gateways []string) OwnerConfig {
	return OwnerConfig{
		LU: lu, Self: self, Gateways: slices.Clone(gateways),
		FailbackAfter:  DefaultFailbackAfter,
		DemandWindow:   DefaultDemandWindow,
		DemandGap:      DefaultDemandGap,
		MinHold:        DefaultMinHold,
		ContendedHold:  DefaultContendedHold,
		ReleaseTimeout: DefaultReleaseTimeout,
		RetryInterval:  DefaultRetryInterval,
	}
}

// Validate checks ranges and the relations between the timings, naming the
// values it refuses.
func (c *OwnerConfig) Validate() error {
	if c.LU == "" {
		return fmt.Errorf("alua: owner config: LU name is empty")
	}
	if c.Self == "" {
		return fmt.Errorf("alua: owner config for %s: Self (gateway id) is empty", c.LU)
	}
	if !slices.Contains(c.Gateways, c.Self) {
		return fmt.Errorf("alua: owner config for %s: Self %q is not among Gateways %v", c.LU, c.Self, c.Gateways)
	}
	if c.Preferred != "" && !slices.Contains(c.Gateways, c.Preferred) {
		return fmt.Errorf("alua: owner config for %s: Preferred %q is not among Gateways %v", c.LU, c.Preferred, c.Gateways)
	}
	if c.Failback == FailbackPreferred && c.Preferred == "" {
		return fmt.Errorf("alua: owner config for %s: failback %q needs a Preferred gateway", c.LU, c.Failback)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"DemandWindow", c.DemandWindow}, {"DemandGap", c.DemandGap}, {"MinHold", c.MinHold},
		{"ContendedHold", c.ContendedHold}, {"ReleaseTimeout", c.ReleaseTimeout}, {"RetryInterval", c.RetryInterval}} {
		if d.v <= 0 {
			return fmt.Errorf("alua: owner config for %s: %s (%s) must be > 0", c.LU, d.name, d.v)
		}
	}
	if c.DemandGap > c.DemandWindow {
		return fmt.Errorf("alua: owner config for %s: DemandGap (%s) cannot be larger than DemandWindow (%s)", c.LU, c.DemandGap, c.DemandWindow)
	}
	if c.ContendedHold < c.MinHold {
		return fmt.Errorf("alua: owner config for %s: ContendedHold (%s) cannot be smaller than MinHold (%s)", c.LU, c.ContendedHold, c.MinHold)
	}
	if c.Failback == FailbackPreferred && c.FailbackAfter <= 0 {
		return fmt.Errorf("alua: owner config for %s: FailbackAfter (%s) must be > 0", c.LU, c.FailbackAfter)
	}
	return nil
}
