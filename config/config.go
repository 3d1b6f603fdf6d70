// Package config is the gateway configuration model: portals, targets with
// their session controls, CHAP credentials and initiator ACLs, disks and the
// LUN maps that tie disks to targets. It knows nothing of the data path.
//
// Field names (JSON tags, which are also the YAML keys) follow ceph-iscsi's
// gateway.conf and its control knobs, so admins find what they know.
//
// Validation is pure: Validate looks only at the value, never at the file
// system or the network, so the API server, gwcli and the daemon share it.
package config

import "slices"

// Defaults (ceph-iscsi's, as design.md lists them).
const (
	DefaultPortal  = "0.0.0.0:3260"
	DefaultDataDir = "/var/lib/rbdgw"

	DefaultCmdSNDepth               = 128
	DefaultDataOutTimeout           = 20 // seconds
	DefaultNopInTimeout             = 5  // seconds
	DefaultNopInResponseTimeout     = 5  // seconds
	DefaultImmediateData            = true
	DefaultInitialR2T               = true
	DefaultMaxOutstandingR2T        = 1
	DefaultFirstBurstLength         = 262144
	DefaultMaxBurstLength           = 524288
	DefaultMaxRecvDataSegmentLength = 262144
	DefaultMaxXmitDataSegmentLength = 262144

	DefaultMaxDataAreaMB = 8
	DefaultQFullTimeout  = 5  // seconds
	DefaultOSDOpTimeout  = 30 // seconds
	DefaultHWMaxSectors  = 65536

	DefaultBlockSize = 512
)

// Config is one gateway's whole configuration.
type Config struct {
	// Portals are the "host:port" addresses the gateway listens on and that
	// SendTargets advertises.
	Portals []string `json:"portals" yaml:"portals"`
	// DataDir holds generated state: WWNs of disks that had none, persistent
	// reservations, the demo's CHAP secret.
	DataDir string `json:"data_dir" yaml:"data_dir"`
	// DiscoveryAuth, when its username is set, is required of discovery
	// sessions.
	DiscoveryAuth CHAP `json:"discovery_auth" yaml:"discovery_auth"`
	// Ceph says how to reach the cluster that holds rbd: disks.
	Ceph    Ceph     `json:"ceph" yaml:"ceph"`
	Disks   []Disk   `json:"disks,omitempty" yaml:"disks,omitempty"`
	Targets []Target `json:"targets,omitempty" yaml:"targets,omitempty"`
	// Gateways are the cluster's gateway nodes. Empty means a single
	// gateway that serves Portals (a configuration file); when set, each
	// process serves the portals of the gateway named by --gateway-name
	// and Portals is not used (see ForGateway).
	Gateways []Gateway `json:"gateways,omitempty" yaml:"gateways,omitempty"`
	// LastTPGID is the highest target port group id ever given to a
	// gateway. Ids are assigned above it and never reused, so an
	// initiator never mistakes a new gateway for a removed one.
	LastTPGID uint16 `json:"last_tpg_id,omitempty" yaml:"last_tpg_id,omitempty"`
}

// Ceph is how a gateway reaches its Ceph cluster. The zero value means
// librados' defaults: /etc/ceph/ceph.conf, cluster "ceph", client.admin.
type Ceph struct {
	// Conf is the ceph.conf path.
	Conf string `json:"conf,omitempty" yaml:"conf,omitempty"`
	// Cluster is the cluster name ("ceph").
	Cluster string `json:"cluster,omitempty" yaml:"cluster,omitempty"`
	// User is the client id without "client." ("admin").
	User string `json:"user,omitempty" yaml:"user,omitempty"`
	// Keyring overrides the keyring path of the conf (cephx).
	Keyring string `json:"keyring,omitempty" yaml:"keyring,omitempty"`
}

// CHAP holds one scope's CHAP credentials (discovery, target or host). An
// empty username means CHAP is off for that scope.
type CHAP struct {
	Username       string `json:"username,omitempty" yaml:"username,omitempty"`
	Password       string `json:"password,omitempty" yaml:"password,omitempty"`
	MutualUsername string `json:"mutual_username,omitempty" yaml:"mutual_username,omitempty"`
	MutualPassword string `json:"mutual_password,omitempty" yaml:"mutual_password,omitempty"`
}

// Enabled reports whether one-way CHAP is configured.
func (c CHAP) Enabled() bool { return c.Username != "" }

// Redacted returns a copy safe to log or print: passwords replaced.
func (c CHAP) Redacted() CHAP {
	if c.Password != "" {
		c.Password = "<redacted>"
	}
	if c.MutualPassword != "" {
		c.MutualPassword = "<redacted>"
	}
	return c
}

// Target is one iSCSI target node.
type Target struct {
	IQN      string         `json:"iqn" yaml:"iqn"`
	Alias    string         `json:"alias,omitempty" yaml:"alias,omitempty"`
	Auth     CHAP           `json:"auth" yaml:"auth"`
	Controls TargetControls `json:"controls" yaml:"controls"`
	// Hosts lists the initiators the target admits. Access is denied by
	// default: without hosts the target admits only initiators passing
	// the target's CHAP, or, with ACL "open", any initiator.
	Hosts []Host `json:"hosts,omitempty" yaml:"hosts,omitempty"`
	// ACL "open" admits every initiator to a target without hosts (labs
	// only; logged at every start). Empty: only hosts, or target CHAP.
	ACL string `json:"acl,omitempty" yaml:"acl,omitempty"`
	// LUNs maps LUN ids to disks.
	LUNs []LUNMap `json:"luns,omitempty" yaml:"luns,omitempty"`
	// Gateways names the gateways that serve the target; empty means all.
	Gateways []string `json:"gateways,omitempty" yaml:"gateways,omitempty"`
	// HostGroups give several hosts one LUN list (ceph-iscsi's "groups").
	HostGroups []HostGroup `json:"groups,omitempty" yaml:"groups,omitempty"`
}

// ACLOpen is the Target.ACL value that admits every initiator.
const ACLOpen = "open"

// NewTarget returns a target with default controls.
func NewTarget(iqn string) Target {
	return Target{IQN: iqn, Controls: DefaultTargetControls()}
}

// LUNMap exposes one disk as one LUN of a target.
type LUNMap struct {
	LUNID uint64 `json:"lun_id" yaml:"lun_id"`
	Disk  string `json:"disk" yaml:"disk"`
}

// Host is an initiator ACL entry.
type Host struct {
	IQN string `json:"iqn" yaml:"iqn"`
	// Auth, when set, replaces the target's CHAP credentials for this host.
	Auth CHAP `json:"auth" yaml:"auth"`
	// LUNs lists the target LUN ids this host sees; empty means none
	// (unless the host is in a host group, which decides).
	LUNs []uint64 `json:"luns,omitempty" yaml:"luns,omitempty"`
}

// TargetControls are the per-target session knobs under ceph-iscsi's names.
// Lengths are bytes, timeouts seconds.
type TargetControls struct {
	CmdSNDepth               uint32 `json:"cmdsn_depth" yaml:"cmdsn_depth"`
	DataOutTimeout           uint32 `json:"dataout_timeout" yaml:"dataout_timeout"`
	NopInTimeout             uint32 `json:"nopin_timeout" yaml:"nopin_timeout"` // 0 disables NOP-In pings
	NopInResponseTimeout     uint32 `json:"nopin_response_timeout" yaml:"nopin_response_timeout"`
	ImmediateData            bool   `json:"immediate_data" yaml:"immediate_data"`
	InitialR2T               bool   `json:"initial_r2t" yaml:"initial_r2t"`
	MaxOutstandingR2T        uint32 `json:"max_outstanding_r2t" yaml:"max_outstanding_r2t"`
	FirstBurstLength         uint32 `json:"first_burst_length" yaml:"first_burst_length"`
	MaxBurstLength           uint32 `json:"max_burst_length" yaml:"max_burst_length"`
	MaxRecvDataSegmentLength uint32 `json:"max_recv_data_segment_length" yaml:"max_recv_data_segment_length"`
	MaxXmitDataSegmentLength uint32 `json:"max_xmit_data_segment_length" yaml:"max_xmit_data_segment_length"`
}

// DefaultTargetControls returns ceph-iscsi's defaults.
func DefaultTargetControls() TargetControls {
	return TargetControls{
		CmdSNDepth:               DefaultCmdSNDepth,
		DataOutTimeout:           DefaultDataOutTimeout,
		NopInTimeout:             DefaultNopInTimeout,
		NopInResponseTimeout:     DefaultNopInResponseTimeout,
		ImmediateData:            DefaultImmediateData,
		InitialR2T:               DefaultInitialR2T,
		MaxOutstandingR2T:        DefaultMaxOutstandingR2T,
		FirstBurstLength:         DefaultFirstBurstLength,
		MaxBurstLength:           DefaultMaxBurstLength,
		MaxRecvDataSegmentLength: DefaultMaxRecvDataSegmentLength,
		MaxXmitDataSegmentLength: DefaultMaxXmitDataSegmentLength,
	}
}

// Disk is one block device image.
type Disk struct {
	// Name identifies the disk in LUN maps ("pool/image" in ceph-iscsi).
	Name string `json:"name" yaml:"name"`
	// Backend is "file:<path>" or, later, "rbd:<pool>[/<namespace>]/<image>".
	Backend string `json:"backend" yaml:"backend"`
	// Size is the image size; the file is created sparse or grown to it.
	// An RBD image must already exist unless Create is set; its size is
	// the image's, and a larger Size grows it.
	Size Size `json:"size" yaml:"size"`
	// Create asks for a missing RBD image to be created at Size (file
	// images are always created).
	Create bool `json:"create,omitempty" yaml:"create,omitempty"`
	// WWN is the LU's 128-bit identity (32 hex digits, dashes allowed). When
	// empty the gateway generates one and persists it in the data dir, so the
	// identity survives restarts; set it explicitly in a cluster.
	WWN        string       `json:"wwn,omitempty" yaml:"wwn,omitempty"`
	BlockSize  uint32       `json:"block_size" yaml:"block_size"`
	WriteCache bool         `json:"write_cache" yaml:"write_cache"`
	ReadOnly   bool         `json:"read_only" yaml:"read_only"`
	Controls   DiskControls `json:"controls" yaml:"controls"`
	// PreferredGateway names the gateway that should own the disk's LU in
	// a cluster ("" none): REPORT TARGET PORT GROUPS marks its group
	// preferred (PREF), and with Failback "preferred" the LU goes back to
	// it once it has been up for 30 s after a failover moved the LU away.
	PreferredGateway string `json:"preferred_gateway,omitempty" yaml:"preferred_gateway,omitempty"`
	// Failback is FailbackNone (the default: the LU stays where a failover
	// or sustained demand moved it) or FailbackPreferred.
	Failback string `json:"failback,omitempty" yaml:"failback,omitempty"`
}

// Failback policies of a disk.
const (
	FailbackNone      = "none"
	FailbackPreferred = "preferred"
)

// NewDisk returns a disk with default block size and controls.
func NewDisk(name, backend string, size Size) Disk {
	return Disk{Name: name, Backend: backend, Size: size, BlockSize: DefaultBlockSize, Controls: DefaultDiskControls()}
}

// DiskControls are the per-disk knobs under ceph-iscsi's names. Of these,
// hw_max_sectors bounds a single transfer (in logical blocks); the others
// are kept for compatibility with ceph-iscsi configurations.
type DiskControls struct {
	MaxDataAreaMB uint32 `json:"max_data_area_mb" yaml:"max_data_area_mb"`
	QFullTimeout  uint32 `json:"qfull_timeout" yaml:"qfull_timeout"`
	OSDOpTimeout  uint32 `json:"osd_op_timeout" yaml:"osd_op_timeout"`
	HWMaxSectors  uint32 `json:"hw_max_sectors" yaml:"hw_max_sectors"`
}

// DefaultDiskControls returns ceph-iscsi's defaults.
func DefaultDiskControls() DiskControls {
	return DiskControls{
		MaxDataAreaMB: DefaultMaxDataAreaMB,
		QFullTimeout:  DefaultQFullTimeout,
		OSDOpTimeout:  DefaultOSDOpTimeout,
		HWMaxSectors:  DefaultHWMaxSectors,
	}
}

// Default returns a usable configuration: one portal, the default data dir,
// no targets.
func Default() Config {
	return Config{Portals: []string{DefaultPortal}, DataDir: DefaultDataDir}
}

// Clone returns a deep copy, so a caller holding the original cannot
// change a running gateway's view.
func (c Config) Clone() Config {
	c.Portals = slices.Clone(c.Portals)
	c.Disks = slices.Clone(c.Disks)
	c.Gateways = cloneEach(c.Gateways, func(g Gateway) Gateway {
		g.Portals = slices.Clone(g.Portals)
		return g
	})
	ts := make([]Target, len(c.Targets))
	for i, t := range c.Targets {
		t.LUNs = slices.Clone(t.LUNs)
		t.Gateways = slices.Clone(t.Gateways)
		t.HostGroups = cloneEach(t.HostGroups, func(g HostGroup) HostGroup {
			g.Members = slices.Clone(g.Members)
			g.Disks = slices.Clone(g.Disks)
			return g
		})
		hs := make([]Host, len(t.Hosts))
		for j, h := range t.Hosts {
			h.LUNs = slices.Clone(h.LUNs)
			hs[j] = h
		}
		if t.Hosts == nil {
			hs = nil
		}
		t.Hosts = hs
		ts[i] = t
	}
	if c.Targets == nil {
		ts = nil
	}
	c.Targets = ts
	return c
}

// cloneEach copies s, passing each element through deep; nil stays nil.
func cloneEach[T any](s []T, deep func(T) T) []T {
	if s == nil {
		return nil
	}
	out := make([]T, len(s))
	for i, v := range s {
		out[i] = deep(v)
	}
	return out
}

// Disk returns the disk with the given name.
func (c *Config) Disk(name string) (*Disk, bool) {
	return find(c.Disks, func(d *Disk) bool { return d.Name == name })
}

// Redacted returns a deep copy with every password replaced, for logging.
func (c Config) Redacted() Config {
	r := c.Clone()
	r.DiscoveryAuth = r.DiscoveryAuth.Redacted()
	for i := range r.Targets {
		r.Targets[i].Auth = r.Targets[i].Auth.Redacted()
		for j := range r.Targets[i].Hosts {
			r.Targets[i].Hosts[j].Auth = r.Targets[i].Hosts[j].Auth.Redacted()
		}
	}
	return r
}
