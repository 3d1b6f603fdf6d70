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
// outlives the process (and, with the etcd store, the gateway). The LU
// commits a changed state with Save before it answers GOOD to PERSISTENT
// RESERVE OUT; a Save error fails the command and leaves the old state in
// force.
//
// Concurrency: the LU serialises its own Load/Save calls; different LUs may
// call concurrently, so implementations must be safe for that.
type PRStore interface {
	// Load returns the stored state of LU lu, or an empty state (and no
	// error) if nothing is stored.
	Load(lu string) (*PRState, error)
	// Save replaces the stored state of lu. The state must be durable when
	// Save returns nil.
	Save(lu string, st *PRState) error
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
