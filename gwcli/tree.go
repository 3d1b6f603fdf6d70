package gwcli

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/rbdgw/rbdgw/config"
)

// Kind is what a node of the tree stands for; it decides the node's
// commands.
type Kind int

const (
	KindRoot Kind = iota
	KindCluster
	KindClusterGateway
	KindDisks
	KindPool
	KindDisk
	KindTargets
	KindTarget
	KindTargetGateways
	KindTargetGateway
	KindTargetDisks
	KindTargetPool
	KindTargetDisk
	KindHosts
	KindHost
	KindHostGroups
	KindHostGroup
)

// Node is one place in the ceph-iscsi style tree:
//
//	/cluster/<gateway>
//	/disks/<pool>/<image>
//	/iscsi-targets/<iqn>/{gateways/<name>, disks/<pool>/<image>,
//	                      hosts/<iqn>, host-groups/<name>}
type Node struct {
	Name     string
	Kind     Kind
	State    string // what ls shows in brackets
	Parent   *Node
	Children []*Node
	// Target is the IQN of the target the node belongs to (if any); Ref
	// is what the node itself names: a disk, host IQN, gateway or group
	// name, or a pool.
	Target, Ref string
}

// Path is the node's absolute path.
func (n *Node) Path() string {
	if n.Parent == nil {
		return "/"
	}
	p := n.Parent.Path()
	if p == "/" {
		return "/" + n.Name
	}
	return p + "/" + n.Name
}

func (n *Node) add(c *Node) *Node {
	c.Parent = n
	if c.Target == "" {
		c.Target = n.Target
	}
	n.Children = append(n.Children, c)
	return c
}

// Child finds a direct child by name (IQNs case-insensitively).
func (n *Node) Child(name string) *Node {
	for _, c := range n.Children {
		if c.Name == name {
			return c
		}
	}
	for _, c := range n.Children {
		if strings.EqualFold(c.Name, name) {
			return c
		}
	}
	return nil
}

// Find returns the first node below n (n included) of the given kind.
func (n *Node) Find(k Kind) *Node {
	if n.Kind == k {
		return n
	}
	for _, c := range n.Children {
		if f := c.Find(k); f != nil {
			return f
		}
	}
	return nil
}

// ClusterView is what /cluster shows beyond the configuration; nil when
// not fetched.
type ClusterView struct {
	Ceph struct {
		Health string   `json:"health"`
		Pools  []string `json:"pools"`
	} `json:"ceph"`
	Gateways []struct {
		config.Gateway
		State string `json:"state"`
	} `json:"gateways"`
	// Owners maps a disk to the gateway that owns its LU (several
	// gateways only).
	Owners map[string]string `json:"owners"`
}

// Build makes the tree of a configuration.
func Build(c *config.Config, cl *ClusterView) *Node {
	root := &Node{Name: "/", Kind: KindRoot}
	cluster := root.add(&Node{Name: "cluster", Kind: KindCluster, State: "Gateways: " + fmt.Sprint(len(c.Gateways))})
	states := map[string]string{}
	if cl != nil {
		cluster.State = "Ceph: " + cl.Ceph.Health + ", " + cluster.State
		if len(cl.Ceph.Pools) > 0 {
			cluster.State += ", Pools: " + strings.Join(cl.Ceph.Pools, ",")
		}
		for _, g := range cl.Gateways {
			states[g.Name] = g.State
		}
	}
	for _, g := range c.Gateways {
		st := strings.Join(g.Portals, ",") + fmt.Sprintf(", TPG %d", g.TPGID)
		if s, ok := states[g.Name]; ok {
			st = s + ", " + st
		}
		cluster.add(&Node{Name: g.Name, Kind: KindClusterGateway, Ref: g.Name, State: st})
	}

	disks := root.add(&Node{Name: "disks", Kind: KindDisks})
	var total config.Size
	for _, d := range c.Disks {
		total += d.Size
		st := fmt.Sprintf("%s, %s, %s", d.Size, d.Backend, mappedState(c, d.Name))
		if cl != nil && cl.Owners[d.Name] != "" {
			st += ", Owner: " + cl.Owners[d.Name]
		}
		addDiskNode(disks, KindPool, KindDisk, d.Name, st)
	}
	disks.State = fmt.Sprintf("%d disks, %s", len(c.Disks), total)

	targets := root.add(&Node{Name: "iscsi-targets", Kind: KindTargets,
		State: fmt.Sprintf("DiscoveryAuth: %s, Targets: %d", authState(c.DiscoveryAuth), len(c.Targets))})
	for i := range c.Targets {
		buildTarget(targets, c, &c.Targets[i], states)
	}
	return root
}

func buildTarget(parent *Node, c *config.Config, t *config.Target, states map[string]string) {
	tn := parent.add(&Node{Name: t.IQN, Kind: KindTarget, Target: t.IQN, Ref: t.IQN,
		State: fmt.Sprintf("Auth: %s, Gateways: %s, LUNs: %d, Hosts: %d", authState(t.Auth), gatewayCount(t), len(t.LUNs), len(t.Hosts))})
	gws := tn.add(&Node{Name: "gateways", Kind: KindTargetGateways, State: "Gateways: " + gatewayCount(t)})
	for _, name := range t.Gateways {
		st := "not in the cluster's gateways"
		if g, ok := c.Gateway(name); ok {
			st = strings.Join(g.Portals, ",")
		}
		if s, ok := states[name]; ok {
			st = s + ", " + st
		}
		gws.add(&Node{Name: name, Kind: KindTargetGateway, Ref: name, State: st})
	}
	tdisks := tn.add(&Node{Name: "disks", Kind: KindTargetDisks, State: fmt.Sprintf("Disks: %d", len(t.LUNs))})
	for _, m := range t.LUNs {
		st := fmt.Sprintf("LUN %d", m.LUNID)
		if d, ok := c.Disk(m.Disk); ok {
			st += ", " + d.Size.String()
		}
		addDiskNode(tdisks, KindTargetPool, KindTargetDisk, m.Disk, st)
	}
	hosts := tn.add(&Node{Name: "hosts", Kind: KindHosts, State: fmt.Sprintf("Hosts: %d", len(t.Hosts))})
	for _, h := range t.Hosts {
		hosts.add(&Node{Name: h.IQN, Kind: KindHost, Ref: h.IQN, State: "Auth: " + authState(h.Auth) + ", " + hostLUNState(t, h)})
	}
	groups := tn.add(&Node{Name: "host-groups", Kind: KindHostGroups, State: fmt.Sprintf("Groups: %d", len(t.HostGroups))})
	for _, g := range t.HostGroups {
		groups.add(&Node{Name: g.Name, Kind: KindHostGroup, Ref: g.Name,
			State: fmt.Sprintf("Hosts: %d, Disks: %d", len(g.Members), len(g.Disks))})
	}
}

// addDiskNode puts disk "pool/image" under a pool node (made on first
// use); a name without "/" is a direct child.
func addDiskNode(parent *Node, poolKind, diskKind Kind, name, state string) {
	pool, image, ok := strings.Cut(name, "/")
	at := parent
	if ok {
		at = parent.Child(pool)
		if at == nil {
			at = parent.add(&Node{Name: pool, Kind: poolKind, Ref: pool})
		}
		at.State = fmt.Sprintf("Disks: %d", len(at.Children)+1)
	} else {
		image = name
	}
	at.add(&Node{Name: image, Kind: diskKind, Ref: name, State: state})
}

func authState(a config.CHAP) string {
	switch {
	case a.MutualUsername != "":
		return "Mutual CHAP"
	case a.Username != "":
		return "CHAP"
	}
	return "None"
}

func gatewayCount(t *config.Target) string {
	if len(t.Gateways) == 0 {
		return "all"
	}
	return fmt.Sprint(len(t.Gateways))
}

func mappedState(c *config.Config, disk string) string {
	var on []string
	for _, t := range c.Targets {
		for _, m := range t.LUNs {
			if m.Disk == disk {
				on = append(on, fmt.Sprintf("%s LUN %d", t.IQN, m.LUNID))
			}
		}
	}
	if len(on) == 0 {
		return "unmapped"
	}
	return "mapped: " + strings.Join(on, "; ")
}

func hostLUNState(t *config.Target, h config.Host) string {
	for _, g := range t.HostGroups {
		if slices.ContainsFunc(g.Members, func(m string) bool { return strings.EqualFold(m, h.IQN) }) {
			return "Group: " + g.Name
		}
	}
	if len(h.LUNs) == 0 {
		return "LUNs: all"
	}
	ids := make([]string, len(h.LUNs))
	for i, id := range h.LUNs {
		ids[i] = fmt.Sprint(id)
	}
	return "LUNs: " + strings.Join(ids, ",")
}

// Resolve finds path relative to cwd ("/" absolute, ".." and "."
// allowed). A disk leaf named "ns/image" spans segments, so a segment
// with no child of its name is joined with the next ones.
func Resolve(cwd *Node, path string) (*Node, error) {
	n := cwd
	if strings.HasPrefix(path, "/") {
		for n.Parent != nil {
			n = n.Parent
		}
	}
	segs := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	for i := 0; i < len(segs); i++ {
		switch s := segs[i]; s {
		case ".":
		case "..":
			if n.Parent != nil {
				n = n.Parent
			}
		default:
			next := n.Child(s)
			for j := i + 1; next == nil && j < len(segs); j++ {
				if next = n.Child(strings.Join(segs[i:j+1], "/")); next != nil {
					i = j
				}
			}
			if next == nil {
				return nil, argErr("no such path: %s (under %s: %s)", path, n.Path(), childNames(n))
			}
			n = next
		}
	}
	return n, nil
}

func childNames(n *Node) string {
	if len(n.Children) == 0 {
		return "nothing"
	}
	names := make([]string, len(n.Children))
	for i, c := range n.Children {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

// stateColumn is where ls starts the [state] column.
const stateColumn = 64

// Render writes the tree below n, depth levels deep (<0: all), the way
// ceph-iscsi's ls does: "o- name ..... [state]".
func Render(w io.Writer, n *Node, depth int) {
	render(w, n, "", depth)
}

func render(w io.Writer, n *Node, indent string, depth int) {
	head := indent + "o- " + n.Name + " "
	if n.State != "" {
		dots := max(stateColumn-len(head), 3)
		head += strings.Repeat(".", dots) + " [" + n.State + "]"
	}
	fmt.Fprintln(w, strings.TrimRight(head, " "))
	if depth == 0 {
		return
	}
	for _, c := range n.Children {
		render(w, c, indent+"  ", depth-1)
	}
}
