package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rbdgw/rbdgw/alua"
	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/gateway/ha"
	"github.com/rbdgw/rbdgw/rbdlun"
	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/target"
)

// singleGatewayPort numbers a gateway's portal group, relative target
// port and ALUA port group when it runs alone; in a cluster each gateway
// uses its TPG id for all three (cluster.go).
const singleGatewayPort = 1

// portGroupID is this gateway's portal group tag, relative target port id
// and target port group id.
func (g *Gateway) portGroupID() uint16 {
	if g.ha != nil {
		return g.ha.self.TPGID
	}
	return singleGatewayPort
}

// Data directory layout.
const (
	wwnDir = "wwn" // <data_dir>/wwn/<disk>: generated WWNs
	prDir  = "pr"  // <data_dir>/pr: persistent reservations
)

// openLUs opens every disk's backend and builds its LU. Disks are opened
// even when no target maps them yet, so a bad disk fails at start, not at
// the first login.
func (g *Gateway) openLUs() error {
	if err := os.MkdirAll(g.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("gateway: data_dir: %w", err)
	}
	if g.ha != nil {
		g.prs = g.ha.c.PRStore()
	} else {
		prs, err := scsi.NewFilePRStore(filepath.Join(g.cfg.DataDir, prDir))
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		g.prs = prs
	}
	for i := range g.cfg.Disks {
		d := &g.cfg.Disks[i]
		lu, err := g.openLU(d)
		if err != nil {
			return err
		}
		g.lus[d.Name] = lu
	}
	return nil
}

// openLU opens one disk and builds its LU, registered for EXTENDED COPY.
func (g *Gateway) openLU(d *config.Disk) (*scsi.LogicalUnit, error) {
	be, err := g.openBackend(d, g.stall)
	if err != nil {
		return nil, err
	}
	if g.wrapBE != nil {
		be = g.wrapBE(d.Name, be)
	}
	wwn, err := g.diskWWN(d)
	if err != nil {
		be.Close()
		return nil, err
	}
	var groups *alua.Dynamic
	var portGroups alua.PortGroups // nil: one group, the arrival port's
	if g.ha != nil {
		if groups, err = g.ha.portGroups(d); err != nil {
			be.Close()
			return nil, fmt.Errorf("gateway: disk %s: %w", d.Name, err)
		}
		portGroups = groups
	}
	lu, err := scsi.NewLogicalUnit(scsi.LUConfig{
		Name:       d.Name,
		WWN:        wwn,
		BlockSize:  d.BlockSize,
		ReadOnly:   d.ReadOnly,
		WriteCache: d.WriteCache,
		// Both backends deallocate on UNMAP (file: punched holes, rbd:
		// discard), and unmapped blocks read back as zeros.
		ThinProvisioned:   true,
		MaxTransferBlocks: d.Controls.HWMaxSectors,
		PRStore:           g.prs,
		ALUA:              portGroups,
		Events:            g.ha.luEvents(wwn),
		Forwarder:         g.ha.forwarder(d.Name),
		Logger:            g.log.With("disk", d.Name),
	}, be)
	if err != nil {
		be.Close()
		return nil, fmt.Errorf("gateway: disk %s: %w", d.Name, err)
	}
	if g.ha != nil {
		lock, err := g.imageLock(d, be)
		if err == nil {
			err = g.ha.drive(d, lu, groups, lock)
		}
		if err != nil {
			lu.Close()
			return nil, err
		}
	}
	g.log.Info("disk opened", "disk", d.Name, "backend", d.Backend, "size", be.Size(),
		"wwn", config.FormatWWN(wwn), "block_size", d.BlockSize, "write_cache", d.WriteCache, "read_only", d.ReadOnly)
	return lu, nil
}

// openBackend opens a disk's image by its backend kind and adds stall
// detection (a warning for any operation slower than stall; negative: off).
func (g *Gateway) openBackend(d *config.Disk, stall time.Duration) (scsi.Backend, error) {
	bk, err := config.ParseBackend(d.Backend)
	if err != nil {
		return nil, fmt.Errorf("gateway: disk %s: %w", d.Name, err)
	}
	var be scsi.Backend
	switch bk.Kind {
	case config.BackendFile:
		be, err = g.openFile(d, bk)
	case config.BackendRBD:
		// rbd.go, or rbd_norbd.go in a build without -tags rbd.
		be, err = g.openRBD(d, bk)
	default:
		err = fmt.Errorf("backend %q not supported", d.Backend)
	}
	if err != nil {
		return nil, fmt.Errorf("gateway: disk %s: %w", d.Name, err)
	}
	if stall < 0 {
		return be, nil
	}
	log := g.log.With("disk", d.Name)
	return rbdlun.WithStallDetection(be, stall, func(s rbdlun.Stall) {
		log.Warn("backend operation stalled", "op", s.Op.String(), "offset", s.Off, "length", s.Length, "elapsed", s.Duration)
	}), nil
}

// openFile opens (creating or growing) a file image.
// imageLock is how a disk's image is handed between gateways: the file's
// flock and the lease for file: disks, the RBD exclusive lock and
// blocklisting for rbd: disks.
func (g *Gateway) imageLock(d *config.Disk, be scsi.Backend) (ha.ImageLock, error) {
	bk, err := config.ParseBackend(d.Backend)
	if err != nil {
		return nil, err
	}
	if bk.Kind == config.BackendFile {
		path, err := g.imagePath(bk)
		if err != nil {
			return nil, err
		}
		return &ha.FileImage{Path: path, Backend: be}, nil
	}
	lock, ok := findBackend[ha.ImageLock](be)
	if !ok {
		return nil, fmt.Errorf("gateway: disk %s: backend %s cannot be handed between gateways", d.Name, d.Backend)
	}
	return lock, nil
}

// diskWWN returns the disk's WWN: the configured one, else the one
// generated at first start and kept in <data_dir>/wwn/<disk>, so the LU
// identity (VPD 83h) survives restarts and initiators' multipath maps stay
// valid.
func (g *Gateway) diskWWN(d *config.Disk) ([16]byte, error) {
	if d.WWN != "" {
		w, err := config.ParseWWN(d.WWN)
		return naa6(w), err
	}
	dir := filepath.Join(g.cfg.DataDir, wwnDir)
	path := filepath.Join(dir, url.PathEscape(d.Name))
	b, err := os.ReadFile(path)
	if err == nil {
		w, err := config.ParseWWN(strings.TrimSpace(string(b)))
		if err != nil {
			return w, fmt.Errorf("gateway: disk %s: stored WWN in %s: %w", d.Name, path, err)
		}
		return naa6(w), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return [16]byte{}, fmt.Errorf("gateway: disk %s: %w", d.Name, err)
	}
	w, err := newWWN()
	if err != nil {
		return w, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return w, fmt.Errorf("gateway: %w", err)
	}
	if err := writeFileAtomic(path, []byte(config.FormatWWN(w)+"\n"), 0o600); err != nil {
		return w, fmt.Errorf("gateway: disk %s: persist WWN: %w", d.Name, err)
	}
	g.log.Info("generated WWN", "disk", d.Name, "wwn", config.FormatWWN(w), "file", path)
	return w, nil
}

// lioPrefix is what LIO puts in front of a UUID-derived NAA designator:
// NAA 6 and the Linux-iSCSI.org OUI 00-14-05.
const lioPrefix = "6001405"

// newWWN returns a random NAA 6 WWN in LIO's form: 6001405 and 25 random
// hex digits.
func newWWN() ([16]byte, error) {
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return r, err
	}
	return naa6FromHex(hex.EncodeToString(r[:])), nil
}

// naa6 returns w if it is already an NAA 6 designator; otherwise (a
// ceph-iscsi UUID) it derives one the way LIO does, prefix 6001405 and
// the first 25 hex digits, so an imported disk keeps its identity.
func naa6(w [16]byte) [16]byte {
	if w[0]>>4 == 6 {
		return w
	}
	return naa6FromHex(hex.EncodeToString(w[:]))
}

func naa6FromHex(h string) [16]byte {
	var w [16]byte
	hex.Decode(w[:], []byte(lioPrefix+h[:32-len(lioPrefix)]))
	return w
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// buildTargets maps the configured targets onto target.Target, routing
// LUNs to the given LUs.
func (g *Gateway) buildTargets(c *config.Config, lus map[string]*scsi.LogicalUnit) ([]*target.Target, error) {
	out := make([]*target.Target, 0, len(c.Targets))
	for i := range c.Targets {
		t := &c.Targets[i]
		all := map[uint64]*scsi.LogicalUnit{}
		for _, m := range t.LUNs {
			lu, ok := lus[m.Disk]
			if !ok {
				return nil, fmt.Errorf("gateway: target %s lun %d: disk %q not open", t.IQN, m.LUNID, m.Disk)
			}
			all[m.LUNID] = lu
		}
		allRouter := scsi.NewRouter(all)
		// Per-host routers, built once: the Router callback runs at every
		// login and must not allocate a LUN map each time.
		hostRouters := map[string]scsi.Router{}
		tt := &target.Target{
			Name:               t.IQN,
			Alias:              t.Alias,
			PortalGroupTag:     g.portGroupID(),
			RelativeTargetPort: g.portGroupID(),
			TargetPortGroup:    g.portGroupID(),
			Portals:            g.advertisedPortals(),
			Op:                 operational(t.Controls),
		}
		if t.Auth.Enabled() {
			tt.Auth = chapOf(t.Auth)
		}
		g.warnOpenAccess(t)
		tt.OpenACL = t.ACL == config.ACLOpen
		for _, h := range t.Hosts {
			acl := target.ACL{InitiatorName: h.IQN}
			if h.Auth.Enabled() {
				acl.Auth = chapOf(h.Auth)
			}
			tt.ACLs = append(tt.ACLs, acl)
			// A host sees its group's disks, else its own luns list.
			if ids, restricted := t.HostLUNs(h.IQN); restricted {
				sub := map[uint64]*scsi.LogicalUnit{}
				for _, id := range ids {
					sub[id] = all[id]
				}
				hostRouters[strings.ToLower(h.IQN)] = scsi.NewRouter(sub)
			}
		}
		tt.Router = func(initiator string) scsi.Router {
			if r, ok := hostRouters[strings.ToLower(initiator)]; ok {
				return r
			}
			return allRouter
		}
		out = append(out, tt)
		g.log.Info("target configured", "iqn", t.IQN, "luns", len(t.LUNs), "hosts", len(t.Hosts),
			"chap", t.Auth.Enabled(), "mutual_chap", t.Auth.MutualUsername != "")
	}
	return out, nil
}

// warnOpenAccess says, at every configuration applied, what a target
// admits when that is everyone or no one: targets are deny by default
// (a configuration written when a target without hosts admitted every
// initiator, and a host without disks saw every LUN, must be told).
func (g *Gateway) warnOpenAccess(t *config.Target) {
	switch {
	case t.ACL == config.ACLOpen:
		g.log.Warn("target admits every initiator without authentication (acl: open); for labs only", "iqn", t.IQN)
	case len(t.Hosts) == 0 && !t.Auth.Enabled():
		g.log.Warn("target admits no initiator: targets are deny by default; add hosts, set target CHAP, or set acl: open (labs)", "iqn", t.IQN)
	}
	for _, h := range t.Hosts {
		if ids, _ := t.HostLUNs(h.IQN); len(ids) == 0 && len(t.LUNs) > 0 {
			g.log.Warn("host sees no LUN of the target: a host sees only the disks given to it", "iqn", t.IQN, "host", h.IQN)
		}
	}
}

// advertisedPortals is what SendTargets lists for a target: this
// gateway's portals and, in a cluster, every other gateway's.
func (g *Gateway) advertisedPortals() []target.Portal {
	if g.ha != nil {
		return g.ha.portals(g.portals)
	}
	return append([]target.Portal(nil), g.portals...)
}

func chapOf(c config.CHAP) *target.CHAP {
	return &target.CHAP{Username: c.Username, Secret: c.Password, MutualUsername: c.MutualUsername, MutualSecret: c.MutualPassword}
}

// operational maps ceph-iscsi's target controls onto the target's
// operational keys; keys ceph-iscsi has no control for keep the target
// package's defaults.
func operational(c config.TargetControls) target.Operational {
	op := target.DefaultOperational()
	op.CmdSNDepth = c.CmdSNDepth
	op.ImmediateData = c.ImmediateData
	op.InitialR2T = c.InitialR2T
	op.MaxOutstandingR2T = c.MaxOutstandingR2T
	op.FirstBurstLength = c.FirstBurstLength
	op.MaxBurstLength = c.MaxBurstLength
	op.MaxRecvDataSegmentLength = c.MaxRecvDataSegmentLength
	op.MaxXmitDataSegmentLength = c.MaxXmitDataSegmentLength
	// nopin_timeout is LIO's interval between NOP-Ins; nopin_response_timeout
	// how long to wait for the answer.
	op.NopInInterval = time.Duration(c.NopInTimeout) * time.Second
	op.NopInTimeout = time.Duration(c.NopInResponseTimeout) * time.Second
	op.DataOutTimeout = time.Duration(c.DataOutTimeout) * time.Second
	return op
}
