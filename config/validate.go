package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// FieldError is one validation failure: the key path in the file (for
// example "targets[0].controls.max_burst_length"), the offending value and
// why it is refused.
type FieldError struct {
	Path   string
	Value  any
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: %v: %s", e.Path, e.Value, e.Reason)
}

type errs struct{ list []error }

func (e *errs) add(path string, value any, format string, args ...any) {
	e.list = append(e.list, &FieldError{Path: path, Value: value, Reason: fmt.Sprintf(format, args...)})
}

func joinErrs(e errs) error { return errors.Join(e.list...) }

// Validate checks every field and the relations between them, returning
// all problems found (errors.Join of *FieldError) or nil: the per-process
// settings (portals, data_dir) and the cluster configuration.
func (c *Config) Validate() error {
	var e errs
	c.validateProcess(&e)
	c.validateCluster(&e)
	return joinErrs(e)
}

// ValidateCluster checks what the store keeps (everything but portals and
// data_dir), the way Validate does.
func (c *Config) ValidateCluster() error {
	var e errs
	c.validateCluster(&e)
	return joinErrs(e)
}

func (c *Config) validateProcess(e *errs) {
	if len(c.Portals) == 0 {
		e.add("portals", "[]", "at least one portal is needed")
	}
	seenPortal := map[string]int{}
	for i, p := range c.Portals {
		path := fmt.Sprintf("portals[%d]", i)
		if err := ValidatePortal(p); err != nil {
			e.add(path, quote(p), "%v", err)
		}
		if j, dup := seenPortal[p]; dup {
			e.add(path, quote(p), "duplicate of portals[%d]", j)
		}
		seenPortal[p] = i
	}
	if c.DataDir == "" {
		e.add("data_dir", `""`, "a data directory is needed for generated WWNs and reservations")
	}
}

func (c *Config) validateCluster(e *errs) {
	validateCHAP(e, "discovery_auth", c.DiscoveryAuth)
	gateways := validateGateways(e, c)

	disks := map[string]int{}
	for i := range c.Disks {
		d := &c.Disks[i]
		path := fmt.Sprintf("disks[%d]", i)
		validateDisk(e, path, d)
		validateFailback(e, path, d, gateways)
		if j, dup := disks[d.Name]; dup && d.Name != "" {
			e.add(path+".name", quote(d.Name), "duplicate of disks[%d]", j)
		} else {
			disks[d.Name] = i
		}
	}
	iqns := map[string]int{}
	for i := range c.Targets {
		t := &c.Targets[i]
		path := fmt.Sprintf("targets[%d]", i)
		validateTarget(e, path, t, disks)
		validateTargetGateways(e, path, t, gateways)
		validateHostGroups(e, path, t)
		key := strings.ToLower(t.IQN)
		if j, dup := iqns[key]; dup {
			e.add(path+".iqn", quote(t.IQN), "duplicate of targets[%d]", j)
		} else {
			iqns[key] = i
		}
	}
}

// ValidatePortal checks a "host:port" portal address. The host is an IP
// address (IPv6 in brackets) or a DNS name; the port 0-65535, where 0
// (tests) binds a free port that SendTargets then advertises.
func ValidatePortal(p string) error {
	host, port, err := net.SplitHostPort(p)
	if err != nil {
		return fmt.Errorf("want host:port (IPv6 as [addr]:port): %v", err)
	}
	_, err = strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("port %q is not 0-65535", port)
	}
	if host == "" {
		return errors.New("host is empty (use 0.0.0.0 or [::] for every address)")
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if strings.Contains(host, ":") {
		return fmt.Errorf("host %q is not an IP address", host)
	}
	if !validDNSName(host) {
		return fmt.Errorf("host %q is neither an IP address nor a DNS name", host)
	}
	return nil
}

// unspecifiedHost reports a portal on every address (0.0.0.0 or [::]).
func unspecifiedHost(p string) bool {
	host, _, err := net.SplitHostPort(p)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsUnspecified()
}

func validDNSName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func validateTarget(e *errs, path string, t *Target, disks map[string]int) {
	if err := ValidateName(t.IQN); err != nil {
		e.add(path+".iqn", quote(t.IQN), "%v", err)
	}
	// RFC 7143 13.6: TargetAlias is a UTF-8 string of at most 255 bytes.
	if len(t.Alias) > 255 {
		e.add(path+".alias", quote(t.Alias), "longer than 255 bytes (RFC 7143 13.6)")
	}
	validateCHAP(e, path+".auth", t.Auth)
	validateTargetControls(e, path+".controls", t.Controls)
	switch {
	case t.ACL != "" && t.ACL != ACLOpen:
		e.add(path+".acl", quote(t.ACL), "unknown; %q admits every initiator, empty admits only hosts (or target CHAP)", ACLOpen)
	case t.ACL == ACLOpen && len(t.Hosts) > 0:
		e.add(path+".acl", quote(t.ACL), "a target with hosts admits only them; remove acl or the hosts")
	}

	luns := map[uint64]int{}
	for i, m := range t.LUNs {
		lp := fmt.Sprintf("%s.luns[%d]", path, i)
		// SAM-5 4.7.6: a single level LUN structure with the flat space
		// addressing method carries LUNs 0-16383.
		if m.LUNID > 16383 {
			e.add(lp+".lun_id", m.LUNID, "out of range 0..16383 (SAM-5 flat space addressing)")
		}
		if j, dup := luns[m.LUNID]; dup {
			e.add(lp+".lun_id", m.LUNID, "duplicate of %s.luns[%d]", path, j)
		} else {
			luns[m.LUNID] = i
		}
		if _, ok := disks[m.Disk]; !ok {
			e.add(lp+".disk", quote(m.Disk), "no disk of that name in disks")
		}
	}
	hosts := map[string]int{}
	for i, h := range t.Hosts {
		hp := fmt.Sprintf("%s.hosts[%d]", path, i)
		if err := ValidateName(h.IQN); err != nil {
			e.add(hp+".iqn", quote(h.IQN), "%v", err)
		}
		key := strings.ToLower(h.IQN)
		if j, dup := hosts[key]; dup {
			e.add(hp+".iqn", quote(h.IQN), "duplicate of %s.hosts[%d]", path, j)
		} else {
			hosts[key] = i
		}
		validateCHAP(e, hp+".auth", h.Auth)
		for k, id := range h.LUNs {
			if _, ok := luns[id]; !ok {
				e.add(fmt.Sprintf("%s.luns[%d]", hp, k), id, "the target maps no such lun_id")
			}
		}
	}
}

// RFC 7143 section 13 ranges for the negotiated keys.
const (
	minDataLength = 512
	maxDataLength = 1<<24 - 1
	// cmdsn_depth: design.md allows up to 512 commands in flight per session.
	maxCmdSNDepth = 512
	maxTimeout    = 3600
)

func validateTargetControls(e *errs, path string, c TargetControls) {
	inRange := func(key string, v, lo, hi uint32, why string) {
		if v < lo || v > hi {
			e.add(path+"."+key, v, "out of range %d..%d (%s)", lo, hi, why)
		}
	}
	inRange("cmdsn_depth", c.CmdSNDepth, 1, maxCmdSNDepth, "commands in flight per session")
	inRange("dataout_timeout", c.DataOutTimeout, 1, maxTimeout, "seconds")
	inRange("nopin_timeout", c.NopInTimeout, 0, maxTimeout, "seconds, 0 disables")
	inRange("nopin_response_timeout", c.NopInResponseTimeout, 1, maxTimeout, "seconds")
	// RFC 7143 13.17: MaxOutstandingR2T=<numerical-value-from-1-to-65535>.
	inRange("max_outstanding_r2t", c.MaxOutstandingR2T, 1, 65535, "RFC 7143 13.17")
	// RFC 7143 13.14: FirstBurstLength=<numerical-value-512-to-(2**24 - 1)>.
	inRange("first_burst_length", c.FirstBurstLength, minDataLength, maxDataLength, "RFC 7143 13.14")
	// RFC 7143 13.13: MaxBurstLength=<numerical-value-512-to-(2**24 - 1)>.
	inRange("max_burst_length", c.MaxBurstLength, minDataLength, maxDataLength, "RFC 7143 13.13")
	// RFC 7143 13.12: MaxRecvDataSegmentLength=<numerical-value-512-to-(2**24 - 1)>.
	inRange("max_recv_data_segment_length", c.MaxRecvDataSegmentLength, minDataLength, maxDataLength, "RFC 7143 13.12")
	inRange("max_xmit_data_segment_length", c.MaxXmitDataSegmentLength, minDataLength, maxDataLength, "RFC 7143 13.12")
	// RFC 7143 13.14: "FirstBurstLength MUST NOT exceed MaxBurstLength."
	if c.FirstBurstLength > c.MaxBurstLength {
		e.add(path+".first_burst_length", c.FirstBurstLength,
			"exceeds max_burst_length %d (RFC 7143 13.14: FirstBurstLength MUST NOT exceed MaxBurstLength)", c.MaxBurstLength)
	}
}

func validateDisk(e *errs, path string, d *Disk) {
	if d.Name == "" {
		e.add(path+".name", `""`, "a disk needs a name")
	} else if strings.ContainsAny(d.Name, " \t\n\x00") || len(d.Name) > 255 {
		e.add(path+".name", quote(d.Name), "no whitespace or NUL, at most 255 bytes")
	}
	if _, err := ParseBackend(d.Backend); err != nil {
		e.add(path+".backend", quote(d.Backend), "%v", err)
	}
	switch d.BlockSize {
	case 512, 1024, 2048, 4096:
	default:
		e.add(path+".block_size", d.BlockSize, "want 512, 1024, 2048 or 4096")
	}
	if d.Size <= 0 {
		e.add(path+".size", d.Size, "a disk needs a size greater than zero")
	} else if d.BlockSize != 0 && int64(d.Size)%int64(d.BlockSize) != 0 {
		e.add(path+".size", d.Size, "not a multiple of block_size %d", d.BlockSize)
	}
	if d.WWN != "" {
		if _, err := ParseWWN(d.WWN); err != nil {
			e.add(path+".wwn", quote(d.WWN), "%v", err)
		}
	}
	c := d.Controls
	// ceph-iscsi's ranges for its LIO/tcmu knobs.
	if c.MaxDataAreaMB < 1 || c.MaxDataAreaMB > 2048 {
		e.add(path+".controls.max_data_area_mb", c.MaxDataAreaMB, "out of range 1..2048")
	}
	if c.QFullTimeout > 600 {
		e.add(path+".controls.qfull_timeout", c.QFullTimeout, "out of range 0..600 seconds")
	}
	if c.OSDOpTimeout > 600 {
		e.add(path+".controls.osd_op_timeout", c.OSDOpTimeout, "out of range 0..600 seconds")
	}
	if c.HWMaxSectors < 1 || c.HWMaxSectors > 131072 {
		e.add(path+".controls.hw_max_sectors", c.HWMaxSectors, "out of range 1..131072 blocks")
	}
}

// validateFailback checks a disk's preferred gateway and failback policy
// against the configured gateways.
func validateFailback(e *errs, path string, d *Disk, gateways map[string]int) {
	switch d.Failback {
	case "", FailbackNone:
	case FailbackPreferred:
		if d.PreferredGateway == "" {
			e.add(path+".failback", quote(d.Failback), "failing back needs a preferred_gateway")
		}
	default:
		e.add(path+".failback", quote(d.Failback), "want %q or %q", FailbackNone, FailbackPreferred)
	}
	if d.PreferredGateway != "" {
		if _, ok := gateways[d.PreferredGateway]; !ok {
			e.add(path+".preferred_gateway", quote(d.PreferredGateway), "not one of the configured gateways")
		}
	}
}

func quote(s string) string { return strconv.Quote(s) }
