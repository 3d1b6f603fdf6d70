package gwcli

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/rbdgw/rbdgw/config"
)

// ceph-iscsi's gateway.conf (version 11), the parts that carry over.
type cephConf struct {
	Version       *int                       `json:"version"`
	DiscoveryAuth cephAuth                   `json:"discovery_auth"`
	Gateways      map[string]json.RawMessage `json:"gateways"`
	Disks         map[string]cephDisk        `json:"disks"`
	Targets       map[string]cephTarget      `json:"targets"`
}

type cephAuth struct {
	Username                 string `json:"username"`
	Password                 string `json:"password"`
	PasswordEncryption       bool   `json:"password_encryption_enabled"`
	MutualUsername           string `json:"mutual_username"`
	MutualPassword           string `json:"mutual_password"`
	MutualPasswordEncryption bool   `json:"mutual_password_encryption_enabled"`
}

type cephDisk struct {
	Pool      string                     `json:"pool"`
	Image     string                     `json:"image"`
	WWN       string                     `json:"wwn"`
	Backstore string                     `json:"backstore"`
	Controls  map[string]json.RawMessage `json:"controls"`
}

type cephLUN struct {
	LUNID uint64 `json:"lun_id"`
}

type cephTarget struct {
	ACLEnabled *bool                      `json:"acl_enabled"`
	Auth       cephAuth                   `json:"auth"`
	Controls   map[string]json.RawMessage `json:"controls"`
	Disks      map[string]cephLUN         `json:"disks"`
	Portals    map[string]struct {
		PortalIPs []string `json:"portal_ip_addresses"`
	} `json:"portals"`
	Clients map[string]struct {
		Auth      cephAuth           `json:"auth"`
		LUNs      map[string]cephLUN `json:"luns"`
		GroupName string             `json:"group_name"`
	} `json:"clients"`
	Groups map[string]struct {
		Members []string           `json:"members"`
		Disks   map[string]cephLUN `json:"disks"`
	} `json:"groups"`
}

// IsCephISCSI tells a ceph-iscsi gateway.conf from gwcli's own export:
// only the former has a version and targets keyed by IQN.
func IsCephISCSI(raw []byte) bool {
	var probe struct {
		Version *int            `json:"version"`
		Targets json.RawMessage `json:"targets"`
	}
	return json.Unmarshal(raw, &probe) == nil && probe.Version != nil && strings.HasPrefix(strings.TrimSpace(string(probe.Targets)), "{")
}

// ImportOptions are what a gateway.conf does not hold.
type ImportOptions struct {
	// Key decrypts passwords ceph-iscsi stored encrypted (its
	// iscsi-gateway.key); nil refuses them.
	Key *rsa.PrivateKey
	// ImageSize gives an RBD image's size (gateway.conf keeps none); the
	// import asks the API for it.
	ImageSize func(pool, image string) (config.Size, error)
}

// FromCephISCSI converts a ceph-iscsi gateway.conf into the cluster part
// of a configuration (no portals or data dir: those are per gateway
// process). Warnings list what does not carry over exactly. It is pure
// apart from ImageSize.
func FromCephISCSI(raw []byte, o ImportOptions) (config.Config, []string, error) {
	var cc cephConf
	if err := json.Unmarshal(raw, &cc); err != nil {
		return config.Config{}, nil, fmt.Errorf("gateway.conf: %w", err)
	}
	if cc.Version == nil {
		return config.Config{}, nil, errors.New("gateway.conf: no version key; is this a ceph-iscsi gateway.conf?")
	}
	var c config.Config
	var warnings []string
	var err error
	if c.DiscoveryAuth, err = convertAuth("discovery_auth", cc.DiscoveryAuth, o.Key); err != nil {
		return c, nil, err
	}

	portals := map[string][]string{}
	for _, iqn := range sortedKeys(cc.Targets) {
		ct := cc.Targets[iqn]
		t := config.NewTarget(iqn)
		if t.Auth, err = convertAuth("targets."+iqn+".auth", ct.Auth, o.Key); err != nil {
			return c, nil, err
		}
		if err := overlayControls(&t.Controls, ct.Controls); err != nil {
			return c, nil, fmt.Errorf("targets.%s.controls: %w", iqn, err)
		}
		lunOf := map[string]uint64{}
		for _, disk := range sortedKeys(ct.Disks) {
			t.LUNs = append(t.LUNs, config.LUNMap{LUNID: ct.Disks[disk].LUNID, Disk: disk})
			lunOf[disk] = ct.Disks[disk].LUNID
		}
		for _, gw := range sortedKeys(ct.Portals) {
			t.Gateways = append(t.Gateways, gw)
			for _, ip := range ct.Portals[gw].PortalIPs {
				p := net.JoinHostPort(ip, "3260")
				if !contains(portals[gw], p) {
					portals[gw] = append(portals[gw], p)
				}
			}
		}
		acl := ct.ACLEnabled == nil || *ct.ACLEnabled
		if !acl && len(ct.Clients) > 0 {
			warnings = append(warnings, fmt.Sprintf("targets.%s: acl_enabled is false, so its %d clients are not imported (every initiator passing the target's CHAP is admitted)", iqn, len(ct.Clients)))
		}
		if !acl && !t.Auth.Enabled() {
			// ceph-iscsi's acl_enabled=false without target CHAP admits
			// every initiator; here that must be said explicitly.
			t.ACL = config.ACLOpen
			warnings = append(warnings, fmt.Sprintf("targets.%s: acl_enabled is false and the target has no CHAP: imported as acl: open (every initiator admitted without authentication)", iqn))
		}
		for _, hiqn := range sortedKeys(ct.Clients) {
			if !acl {
				break
			}
			cl := ct.Clients[hiqn]
			h := config.Host{IQN: hiqn}
			if h.Auth, err = convertAuth("targets."+iqn+".clients."+hiqn+".auth", cl.Auth, o.Key); err != nil {
				return c, nil, err
			}
			if cl.GroupName == "" {
				for _, disk := range sortedKeys(cl.LUNs) {
					h.LUNs = append(h.LUNs, cl.LUNs[disk].LUNID)
				}
			}
			t.Hosts = append(t.Hosts, h)
		}
		for _, g := range sortedKeys(ct.Groups) {
			cg := ct.Groups[g]
			hg := config.HostGroup{Name: g, Members: append([]string(nil), cg.Members...)}
			hg.Disks = sortedKeys(cg.Disks)
			t.HostGroups = append(t.HostGroups, hg)
		}
		c.Targets = append(c.Targets, t)
	}

	// Image sizes come last: they cost the API a call each, and the
	// checks above need none.
	for _, name := range sortedKeys(cc.Disks) {
		d := cc.Disks[name]
		if d.Backstore != "" && d.Backstore != "user:rbd" {
			return c, nil, fmt.Errorf("disks.%s: backstore %q: only user:rbd (tcmu-runner RBD) images carry over", name, d.Backstore)
		}
		pool, image := d.Pool, d.Image
		if pool == "" || image == "" {
			pool, image, _ = strings.Cut(name, "/")
		}
		if o.ImageSize == nil {
			return c, nil, fmt.Errorf("disks.%s: the image size is unknown (gateway.conf keeps none)", name)
		}
		size, err := o.ImageSize(pool, image)
		if err != nil {
			return c, nil, fmt.Errorf("disks.%s: image size: %w", name, err)
		}
		disk := config.NewDisk(name, "rbd:"+pool+"/"+image, size)
		disk.WWN = d.WWN
		if err := overlayControls(&disk.Controls, d.Controls); err != nil {
			return c, nil, fmt.Errorf("disks.%s.controls: %w", name, err)
		}
		c.Disks = append(c.Disks, disk)
	}

	for _, name := range sortedKeys(cc.Gateways) {
		var probe map[string]any
		if json.Unmarshal(cc.Gateways[name], &probe) != nil {
			continue // older layouts kept lists (ip_list) beside the gateways
		}
		if len(portals[name]) == 0 {
			return c, nil, fmt.Errorf("gateways.%s: no portal IPs for it in any target", name)
		}
		c.Gateways = append(c.Gateways, config.Gateway{Name: name, Portals: portals[name]})
	}
	for gw := range portals {
		if _, ok := c.Gateway(gw); !ok {
			return c, nil, fmt.Errorf("a target has portals on gateway %s, which gateways does not list", gw)
		}
	}
	c.Sort()
	return c, warnings, nil
}

func convertAuth(path string, a cephAuth, key *rsa.PrivateKey) (config.CHAP, error) {
	pw, err := decryptPassword(path+".password", a.Password, a.PasswordEncryption, key)
	if err != nil {
		return config.CHAP{}, err
	}
	mpw, err := decryptPassword(path+".mutual_password", a.MutualPassword, a.MutualPasswordEncryption, key)
	if err != nil {
		return config.CHAP{}, err
	}
	return config.CHAP{Username: a.Username, Password: pw, MutualUsername: a.MutualUsername, MutualPassword: mpw}, nil
}

// maxPlainPassword is ceph-iscsi's longest CHAP secret: a longer one in
// gateway.conf can only be an encrypted one.
const maxPlainPassword = 16

// decryptPassword undoes ceph-iscsi's password encryption: base64 of
// RSA-OAEP with the gateway key (SHA-256, or SHA-1 on older setups).
func decryptPassword(path, pw string, flagged bool, key *rsa.PrivateKey) (string, error) {
	if pw == "" || (!flagged && len(pw) <= maxPlainPassword) {
		return pw, nil
	}
	if key == nil {
		return "", fmt.Errorf("%s is encrypted (ceph-iscsi password encryption): give the gateways' RSA private key with key=<file> (usually /etc/ceph/iscsi-gateway.key)", path)
	}
	ct, err := base64.StdEncoding.DecodeString(pw)
	if err != nil {
		return "", fmt.Errorf("%s: encrypted password is not base64: %v", path, err)
	}
	if p, err := rsa.DecryptOAEP(sha256.New(), nil, key, ct, nil); err == nil {
		return string(p), nil
	}
	p, err := rsa.DecryptOAEP(sha1.New(), nil, key, ct, nil)
	if err != nil {
		return "", fmt.Errorf("%s: cannot decrypt with the given key: %v", path, err)
	}
	return string(p), nil
}

// ParseRSAKey reads a PEM RSA private key (PKCS#1 or PKCS#8).
func ParseRSAKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	b, _ := pem.Decode(pemBytes)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA key")
	}
	return rk, nil
}

// overlayControls sets the controls ceph-iscsi lists over dst's defaults.
// ceph-iscsi writes values as numbers or as strings ("Yes", "64").
func overlayControls(dst any, controls map[string]json.RawMessage) error {
	if len(controls) == 0 {
		return nil
	}
	cur, _ := json.Marshal(dst)
	var fields map[string]json.RawMessage
	json.Unmarshal(cur, &fields)
	for k, v := range controls {
		if _, ok := fields[k]; !ok {
			return fmt.Errorf("unknown control %q", k)
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			v = controlValue(s)
		}
		if _, err := strconv.ParseFloat(string(v), 64); err != nil && string(v) != "true" && string(v) != "false" {
			return fmt.Errorf("%s: %s is not a number or yes/no", k, v)
		}
		fields[k] = v
	}
	merged, _ := json.Marshal(fields)
	return json.Unmarshal(merged, dst)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
