package scsi_test

import (
	"encoding/hex"
	"errors"
	"testing"

	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/scsi/scsitest"
)

// Two gateways serving one LU through one shared PR store: the LU objects
// stand for the same disk (same WWN) on different gateways.
func sharedPRLUs(t *testing.T, store scsi.PRStore) (gw1, gw2 *scsi.LogicalUnit) {
	t.Helper()
	cfg := func(c *scsi.LUConfig) { c.PRStore = store; c.Name = "rbd/shared" }
	gw1 = newLU(t, scsitest.NewMemBackend(64*512), cfg)
	gw2 = newLU(t, scsitest.NewMemBackend(64*512), cfg)
	return gw1, gw2
}

func prStores(t *testing.T) map[string]scsi.PRStore {
	fs, err := scsi.NewFilePRStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return map[string]scsi.PRStore{"mem": scsi.NewMemPRStore(), "file": fs}
}

func TestPRStoreIsCompareAndSwap(t *testing.T) {
	for name, store := range prStores(t) {
		t.Run(name, func(t *testing.T) {
			st, err := store.Load("lu")
			if err != nil || st.Version != 0 {
				t.Fatalf("empty Load = %+v, %v", st, err)
			}
			if err := store.Save("lu", &scsi.PRState{Version: 2}); !errors.Is(err, scsi.ErrPRStale) {
				t.Fatalf("Save skipping a version: %v, want ErrPRStale", err)
			}
			if err := store.Save("lu", &scsi.PRState{Version: 1, Generation: 7}); err != nil {
				t.Fatal(err)
			}
			// A writer that started from version 0 too lost the race.
			if err := store.Save("lu", &scsi.PRState{Version: 1, Generation: 8}); !errors.Is(err, scsi.ErrPRStale) {
				t.Fatalf("second Save of version 1: %v, want ErrPRStale", err)
			}
			st, _ = store.Load("lu")
			if st.Version != 1 || st.Generation != 7 {
				t.Fatalf("stored %+v, want the first writer's state", st)
			}
		})
	}
}

// A PR OUT at a gateway whose copy is stale does not overwrite what the
// other committed: it loses the compare-and-swap, reloads and decides on
// the fresh state, so both registrations survive.
func TestPRStaleCopyCannotOverwrite(t *testing.T) {
	for name, store := range prStores(t) {
		t.Run(name, func(t *testing.T) {
			gw1, gw2 := sharedPRLUs(t, store)
			hello(t, gw1, iA)
			hello(t, gw2, iB)
			want(t, prOut(gw1, iA, 0x00, 0, 0, 0xA), "GOOD") // REGISTER A at gateway 1
			want(t, prOut(gw2, iB, 0x00, 0, 0, 0xB), "GOOD") // gateway 2 still has the empty copy
			st, err := store.Load(keyOf(gw1))
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Registrations) != 2 || st.Version != 2 {
				t.Fatalf("stored %+v: want both registrations at version 2", st)
			}
			// Reservation by A at gateway 1 (stale again) and a conflicting
			// one by B at gateway 2: the second sees the first.
			want(t, prOut(gw2, iB, 0x01, scsi.PRTypeWriteExclusive, 0xB, 0), "GOOD")
			if r := prOut(gw1, iA, 0x01, scsi.PRTypeWriteExclusive, 0xA, 0); r.Status != scsi.StatusReservationConflict {
				t.Fatalf("RESERVE on the stale gateway: %s, want RESERVATION CONFLICT", sense(r))
			}
		})
	}
}

// A new owner serves the reservations the previous owner committed.
func TestPRReloadByNewOwner(t *testing.T) {
	store := scsi.NewMemPRStore()
	gw1, gw2 := sharedPRLUs(t, store)
	hello(t, gw1, iA, iB)
	hello(t, gw2, iA, iB)
	want(t, prOut(gw1, iA, 0x00, 0, 0, 0xA), "GOOD")
	want(t, prOut(gw1, iA, 0x01, scsi.PRTypeExclusiveAccess, 0xA, 0), "GOOD")
	if gw2.PRState().Reserved {
		t.Fatal("gateway 2 saw the reservation before reloading")
	}
	if err := gw2.ReloadPR(); err != nil {
		t.Fatal(err)
	}
	if st := gw2.PRState(); !st.Reserved || st.Type != scsi.PRTypeExclusiveAccess {
		t.Fatalf("after ReloadPR: %+v", st)
	}
	// The reservation is enforced by the new owner: B may not read.
	_, r := read10(gw2, iB, 0, 1)
	if r.Status != scsi.StatusReservationConflict {
		t.Fatalf("read by B at the new owner: %s", sense(r))
	}
}

// A store that keeps losing the race makes the command fail with ABORTED
// COMMAND instead of looping or answering GOOD.
func TestPRCommitGivesUpOnPersistentConflict(t *testing.T) {
	store := &racingStore{PRStore: scsi.NewMemPRStore()}
	lu := newLU(t, scsitest.NewMemBackend(64*512), func(c *scsi.LUConfig) { c.PRStore = store })
	hello(t, lu, iA)
	want(t, prOut(lu, iA, 0x06, 0, 0, 0xA), "5/55/04") // REGISTER AND IGNORE: resources
	if store.saves != 3 {
		t.Fatalf("%d Save attempts, want 3", store.saves)
	}
	if lu.PRState().Registrations != nil {
		t.Fatal("a failed commit changed the state in force")
	}
}

// racingStore: another gateway always committed just before.
type racingStore struct {
	scsi.PRStore
	saves int
}

func (s *racingStore) Save(lu string, st *scsi.PRState) error {
	s.saves++
	return scsi.ErrPRStale
}

func keyOf(lu *scsi.LogicalUnit) string {
	w := lu.Config().WWN
	return hex.EncodeToString(w[:])
}
