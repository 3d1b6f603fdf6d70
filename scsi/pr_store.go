package scsi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync"
)

// PRStore keeps the persistent reservation state of logical units so it
// outlives the process and, with a store shared by the gateways (etcd,
// written by the gateway package), the gateway: SPC-4 5.13 reservations
// are a property of the logical unit, not of the port or gateway an
// initiator happens to use.
//
// Contract:
//   - Load returns the committed state of lu with the Version it was
//     committed at, or an empty state (Version 0, no error) if nothing is
//     stored.
//   - Save is a compare-and-swap: it stores st only if the stored Version is
//     st.Version-1 (nothing stored counts as 0), and otherwise returns an
//     error wrapping ErrPRStale and stores nothing. When Save returns nil
//     the state is durable (on a quorum, for etcd).
//   - The LU commits with Save before it answers GOOD to PERSISTENT RESERVE
//     OUT; any other Save error fails the command and leaves the old state
//     in force. On ErrPRStale another gateway committed first: the LU
//     reloads, runs the command again on the fresh state and retries a few
//     times before it answers ABORTED COMMAND. So a gateway holding an old
//     copy (a former owner, a partitioned one) can never overwrite a newer
//     reservation, and nothing it did is lost without the initiator being
//     told.
//   - Who executes: the owner. PERSISTENT RESERVE OUT is gated like a
//     media command (alua.Admitter): at a non-owner it counts as demand and
//     is answered NOT READY, ASYMMETRIC ACCESS STATE TRANSITION until that
//     gateway owns the LU; it is never executed or forwarded silently.
//     PERSISTENT RESERVE IN is served from the LU's copy anywhere.
//   - Freshness: a gateway calls LogicalUnit.ReloadPR when it becomes the
//     owner (before it serves, alua.ActServe) and whenever a shared store
//     reports that the LU's key changed, so non-owners answer PERSISTENT
//     RESERVE IN and reservation conflicts from a copy at most one
//     notification old.
//
// Concurrency: the LU serialises its own Load/Save calls; different LUs may
// call concurrently, so implementations must be safe for that.
type PRStore interface {
	Load(lu string) (*PRState, error)
	Save(lu string, st *PRState) error
}

// ErrPRStale is what Save wraps when the stored state is newer than the one
// the caller started from (compare-and-swap lost).
var ErrPRStale = errors.New("scsi: PR store: state changed since it was loaded")

// checkPRVersion is the compare step of Save shared by the stores here:
// stored is the Version currently kept (0 when nothing is).
func checkPRVersion(lu string, stored uint64, st *PRState) error {
	if st.Version != stored+1 {
		return fmt.Errorf("%w (LU %s: stored version %d, saving %d)", ErrPRStale, lu, stored, st.Version)
	}
	return nil
}

// MemPRStore is an in-memory PRStore: state survives LU re-creation within
// the process only. For tests and single-process setups.
type MemPRStore struct {
	mu sync.Mutex
	m  map[string][]byte // JSON, so callers never share a *PRState
	// Fail, when set, makes Save return it (fault injection for tests).
	Fail error
}

// NewMemPRStore returns an empty in-memory store.
func NewMemPRStore() *MemPRStore { return &MemPRStore{m: map[string][]byte{}} }

func (s *MemPRStore) Load(lu string) (*PRState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[lu]
	if !ok {
		return &PRState{}, nil
	}
	return unmarshalPRState(b)
}

func (s *MemPRStore) Save(lu string, st *PRState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return s.Fail
	}
	var stored uint64
	if b, ok := s.m[lu]; ok {
		cur, err := unmarshalPRState(b)
		if err != nil {
			return err
		}
		stored = cur.Version
	}
	if err := checkPRVersion(lu, stored, st); err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	s.m[lu] = b
	return nil
}

// FilePRStore keeps one JSON file per LU in a directory. Each Save writes
// a temporary file, fsyncs it, renames it over the old one and fsyncs the
// directory, so a crash leaves either the old or the new state, never a
// torn one.
type FilePRStore struct {
	dir string
	mu  sync.Mutex // serialises writers of the same directory
}

// NewFilePRStore returns a store in dir, creating it if needed.
func NewFilePRStore(dir string) (*FilePRStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("scsi: PR store: %w", err)
	}
	return &FilePRStore{dir: dir}, nil
}

// path maps an LU name (a WWN, or pool/image) to a safe file name.
func (s *FilePRStore) path(lu string) string {
	return filepath.Join(s.dir, url.PathEscape(lu)+".json")
}

func (s *FilePRStore) Load(lu string) (*PRState, error) {
	b, err := os.ReadFile(s.path(lu))
	if errors.Is(err, fs.ErrNotExist) {
		return &PRState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("scsi: PR store: %w", err)
	}
	return unmarshalPRState(b)
}

func (s *FilePRStore) Save(lu string, st *PRState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.Load(lu)
	if err != nil {
		return err
	}
	if err := checkPRVersion(lu, cur.Version, st); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.dir, ".pr-*.tmp")
	if err != nil {
		return fmt.Errorf("scsi: PR store: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("scsi: PR store: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("scsi: PR store: %w", err)
	}
	if err := os.Rename(tmp, s.path(lu)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("scsi: PR store: %w", err)
	}
	// The rename is durable only once the directory entry is.
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("scsi: PR store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("scsi: PR store: %w", err)
	}
	return nil
}

func unmarshalPRState(b []byte) (*PRState, error) {
	st := &PRState{}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("scsi: PR store: corrupt state: %w", err)
	}
	return st, nil
}
