package gwcli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"

	"github.com/rbdgw/rbdgw/config"
)

// Scope is what one command line runs with: the API, the configuration
// as read for this line, the tree built from it and where the shell is.
type Scope struct {
	Ctx    context.Context
	Client *Client
	Out    io.Writer
	// Err gets warnings that must not mix with Out (nil: Out).
	Err io.Writer
	// JSON prints the API's answers as JSON instead of text.
	JSON bool
	// Shell is true in the interactive shell (a bare path changes
	// directory; one-shot, it lists it).
	Shell bool
	// Config and Root are this line's configuration and tree; Cluster is
	// filled when a command needs gateway states.
	Config  *config.Config
	Root    *Node
	Cluster *ClusterView
	// Cwd is the current node; a command may set NewCwd (cd, goto) and
	// Exit.
	Cwd    *Node
	NewCwd string
	Exit   bool
	// BookmarksFile keeps `bookmarks add` across runs (empty: none).
	BookmarksFile string
}

// Load reads the configuration (and, with cluster, the gateways' states)
// and builds the tree; cwd is kept if it still exists, else the nearest
// ancestor that does.
func (x *Scope) Load(cwd string, cluster bool) error {
	var c config.Config
	if err := x.Client.Do(x.Ctx, http.MethodGet, "/config", nil, &c); err != nil {
		return err
	}
	x.Config = &c
	x.Cluster = nil
	if cluster {
		var cl ClusterView
		if err := x.Client.Do(x.Ctx, http.MethodGet, "/cluster", nil, &cl); err != nil {
			return err
		}
		x.Cluster = &cl
	}
	x.SetConfig(&c, x.Cluster, cwd)
	return nil
}

// SetConfig builds the tree of c and places the scope at cwd (or its
// nearest existing ancestor).
func (x *Scope) SetConfig(c *config.Config, cl *ClusterView, cwd string) {
	x.Config, x.Cluster = c, cl
	x.Root = Build(c, cl)
	x.Cwd = x.Root
	for p := cwd; p != "" && p != "/"; p = parentPath(p) {
		if n, err := Resolve(x.Root, p); err == nil {
			x.Cwd = n
			break
		}
	}
}

func parentPath(p string) string {
	i := strings.LastIndex(strings.TrimRight(p, "/"), "/")
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// call sends one request and reports: the answer as JSON with --json,
// else "ok" (ceph-iscsi's word for success).
func (x *Scope) call(method, path string, body any) error {
	var out json.RawMessage
	if err := x.Client.Do(x.Ctx, method, path, body, &out); err != nil {
		return err
	}
	if x.JSON {
		return x.printJSON(out)
	}
	fmt.Fprintln(x.Out, "ok")
	return nil
}

func (x *Scope) printJSON(v any) error {
	if raw, ok := v.(json.RawMessage); ok {
		var anyv any
		if err := json.Unmarshal(raw, &anyv); err == nil {
			v = anyv
		}
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(x.Out, string(b))
	return err
}

// target is the configuration's target the current node belongs to.
func (x *Scope) target() *config.Target {
	if x.Config == nil || x.Cwd == nil {
		return nil
	}
	for i := range x.Config.Targets {
		if strings.EqualFold(x.Config.Targets[i].IQN, x.Cwd.Target) {
			return &x.Config.Targets[i]
		}
	}
	return nil
}

// Completion value lists.

// names maps a list to its names.
func names[T any](list []T, name func(T) string) []string {
	var out []string
	for _, v := range list {
		out = append(out, name(v))
	}
	return out
}

func diskNames(x *Scope) []string {
	if x.Config == nil {
		return nil
	}
	return names(x.Config.Disks, func(d config.Disk) string { return d.Name })
}

// targetList lists something of the current node's target.
func targetList[T any](list func(t *config.Target) []T, name func(T) string) func(*Scope) []string {
	return func(x *Scope) []string {
		if t := x.target(); t != nil {
			return names(list(t), name)
		}
		return nil
	}
}

var (
	targetDisks    = targetList(func(t *config.Target) []config.LUNMap { return t.LUNs }, func(m config.LUNMap) string { return m.Disk })
	targetHosts    = targetList(func(t *config.Target) []config.Host { return t.Hosts }, func(h config.Host) string { return h.IQN })
	targetGateways = targetList(func(t *config.Target) []string { return t.Gateways }, func(s string) string { return s })
	targetGroups   = targetList(func(t *config.Target) []config.HostGroup { return t.HostGroups }, func(g config.HostGroup) string { return g.Name })
)

func unmappedDisks(x *Scope) []string {
	mapped := targetDisks(x)
	var out []string
	for _, d := range diskNames(x) {
		if !contains(mapped, d) {
			out = append(out, d)
		}
	}
	return out
}

func targetIQNs(x *Scope) []string {
	if x.Config == nil {
		return nil
	}
	return names(x.Config.Targets, func(t config.Target) string { return t.IQN })
}

func gatewayNames(x *Scope) []string {
	if x.Config == nil {
		return nil
	}
	return names(x.Config.Gateways, func(g config.Gateway) string { return g.Name })
}

func pools(x *Scope) []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range diskNames(x) {
		if p, _, ok := strings.Cut(d, "/"); ok && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	if x.Cluster != nil {
		for _, p := range x.Cluster.Ceph.Pools {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	if !seen["rbd"] {
		out = append(out, "rbd")
	}
	return out
}

// controlNames lists a controls struct's JSON keys.
func controlNames(v any) func(*Scope) []string {
	return func(*Scope) []string {
		b, _ := json.Marshal(v)
		var m map[string]any
		json.Unmarshal(b, &m)
		out := make([]string, 0, len(m))
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
}

func fixed(vals ...string) func(*Scope) []string { return func(*Scope) []string { return vals } }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// bookmarks reads the bookmarks file (missing: none).
func (x *Scope) bookmarks() map[string]string {
	m := map[string]string{}
	if x.BookmarksFile == "" {
		return m
	}
	if b, err := os.ReadFile(x.BookmarksFile); err == nil {
		json.Unmarshal(b, &m)
	}
	return m
}

func (x *Scope) saveBookmarks(m map[string]string) error {
	if x.BookmarksFile == "" {
		return fmt.Errorf("no bookmarks file (no home directory)")
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return os.WriteFile(x.BookmarksFile, b, 0o600)
}

func bookmarkNames(x *Scope) []string {
	var out []string
	for k := range x.bookmarks() {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
