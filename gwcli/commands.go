package gwcli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/rbdgw/rbdgw/config"
)

// Command is one thing a node can do.
type Command struct {
	// Name is one or two words ("create", "snapshot create").
	Name string
	Help string
	Pos  []Param
	Keys []Param
	// Kinds are the nodes that have the command; none means every node.
	Kinds []Kind
	Run   func(x *Scope, n *Node, a Args) error
}

func (c *Command) at(k Kind) bool { return len(c.Kinds) == 0 || slices.Contains(c.Kinds, k) }

// usageArgs is the argument part of the usage line at node n.
func (c *Command) usageArgs(n *Node) string {
	var parts []string
	for _, p := range c.Pos {
		if n != nil && slices.Contains(p.FromNode, n.Kind) {
			continue
		}
		if p.Required {
			parts = append(parts, "<"+p.Name+">")
		} else {
			parts = append(parts, "[<"+p.Name+">]")
		}
	}
	for _, p := range c.Keys {
		if n != nil && slices.Contains(p.FromNode, n.Kind) {
			continue
		}
		if p.Required {
			parts = append(parts, p.Name+"=")
		} else {
			parts = append(parts, "["+p.Name+"=]")
		}
	}
	return strings.Join(parts, " ")
}

// Commands returns the commands of a node kind, in help order.
func Commands(k Kind) []*Command {
	var out []*Command
	for _, c := range registry {
		if c.at(k) {
			out = append(out, c)
		}
	}
	return out
}

// lookup finds the command words name at node kind k: the longest match
// of one or two words. It returns how many words it used.
func lookup(k Kind, words []string) (*Command, int) {
	if len(words) >= 2 {
		for _, c := range registry {
			if c.at(k) && c.Name == words[0]+" "+words[1] {
				return c, 2
			}
		}
	}
	if len(words) >= 1 {
		for _, c := range registry {
			if c.at(k) && c.Name == words[0] {
				return c, 1
			}
		}
	}
	return nil, 0
}

// registry holds every command; init fills it (the commands refer to
// helpers that refer back to the registry).
var registry []*Command

func init() {
	registry = slices.Concat(globalCommands(), diskCommands(), targetCommands())
}

var (
	diskParam = Param{Name: "disk", Required: true, Help: "pool/image", Values: diskNames, FromNode: []Kind{KindDisk}}
	chapKeys  = []Param{
		{Name: "username", Help: "CHAP user: 8-64 of A-Z a-z 0-9 @ _ . : -"},
		{Name: "password", Help: "CHAP secret: 12-16 of A-Z a-z 0-9 @ _ / -"},
		{Name: "mutual_username", Help: "the target's user for mutual CHAP"},
		{Name: "mutual_password", Help: "the target's secret; must differ from password"},
	}
	chapMode = Param{Name: "mode", Help: "nochap turns CHAP off", Values: fixed("nochap"), Strict: true}
)

// request is a command that is one API call built from its arguments.
func request(build func(x *Scope, n *Node, a Args) (method, path string, body any, err error)) func(*Scope, *Node, Args) error {
	return func(x *Scope, n *Node, a Args) error {
		method, path, body, err := build(x, n, a)
		if err != nil {
			return err
		}
		return x.call(method, path, body)
	}
}

func targetPath(iqn string) string { return "/targets/" + PathEscape(iqn) }

// diskPath is a disk's API path: /disks/pool/image, or /disks/_/name.
func diskPath(name string) string {
	pool, image, ok := strings.Cut(name, "/")
	if !ok {
		pool, image = "_", name
	}
	return "/disks/" + PathEscape(pool) + "/" + PathEscape(image)
}

// chapFromArgs checks CHAP arguments with config's rules, naming the rule
// that failed, before anything is sent.
func chapFromArgs(a Args) (config.CHAP, error) {
	if a["mode"] == "nochap" {
		for _, k := range chapKeys {
			if a.Has(k.Name) {
				return config.CHAP{}, argErr("auth nochap takes no %s", k.Name)
			}
		}
		return config.CHAP{}, nil
	}
	if a.Has("mode") {
		return config.CHAP{}, argErr("auth: %q is not a mode (only nochap)", a["mode"])
	}
	c := config.CHAP{Username: a["username"], Password: a["password"], MutualUsername: a["mutual_username"], MutualPassword: a["mutual_password"]}
	if c.Username == "" || c.Password == "" {
		return c, argErr("auth: give username= and password= (or nochap)")
	}
	if err := config.ValidateCHAPUser(c.Username); err != nil {
		return c, argErr("username: %v", err)
	}
	if err := config.ValidateCHAPPassword(c.Password); err != nil {
		return c, argErr("password: %v", err)
	}
	if (c.MutualUsername == "") != (c.MutualPassword == "") {
		return c, argErr("mutual CHAP needs both mutual_username= and mutual_password=")
	}
	if c.MutualUsername != "" {
		if err := config.ValidateCHAPUser(c.MutualUsername); err != nil {
			return c, argErr("mutual_username: %v", err)
		}
		if err := config.ValidateCHAPPassword(c.MutualPassword); err != nil {
			return c, argErr("mutual_password: %v", err)
		}
		if c.MutualUsername == c.Username {
			return c, argErr("mutual_username: must differ from username")
		}
		if c.MutualPassword == c.Password {
			return c, argErr("mutual_password: must differ from password (RFC 7143 12.1.3)")
		}
	}
	return c, nil
}

// controlValue types a control's value the way the API wants it: yes/no
// and true/false are booleans, digits a number.
func controlValue(s string) json.RawMessage {
	switch strings.ToLower(s) {
	case "yes", "true", "on":
		return json.RawMessage("true")
	case "no", "false", "off":
		return json.RawMessage("false")
	}
	if _, err := strconv.ParseUint(s, 10, 64); err == nil {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}

func boolArg(a Args, name string) (bool, error) {
	v, ok := a[name]
	if !ok {
		return false, nil
	}
	b, err := strconv.ParseBool(strings.NewReplacer("yes", "true", "no", "false").Replace(strings.ToLower(v)))
	if err != nil {
		return false, argErr("%s=%s: want true or false", name, v)
	}
	return b, nil
}

func sizeArg(a Args, name string) (config.Size, error) {
	s, err := config.ParseSize(a[name])
	if err != nil || s <= 0 {
		return 0, argErr("%s=%s: want a size such as 90G, 512M or 1T", name, a[name])
	}
	return s, nil
}

func globalCommands() []*Command {
	pathParam := Param{Name: "path", Values: nil, Help: "a path (tab completes)"}
	return []*Command{
		{Name: "ls", Help: "show the tree below a path with each object's state", Pos: []Param{pathParam},
			Keys: []Param{{Name: "depth", Help: "levels to show (default all)"}}, Run: runLs},
		{Name: "cd", Help: "change the current path (no path: /)", Pos: []Param{pathParam}, Run: func(x *Scope, n *Node, a Args) error {
			to := x.Root
			if a["path"] != "" {
				var err error
				if to, err = Resolve(x.Cwd, a["path"]); err != nil {
					return err
				}
			}
			x.NewCwd = to.Path()
			return nil
		}},
		{Name: "pwd", Help: "show the current path", Run: func(x *Scope, n *Node, a Args) error {
			fmt.Fprintln(x.Out, x.Cwd.Path())
			return nil
		}},
		{Name: "info", Help: "show an object's details", Pos: []Param{pathParam}, Run: runInfo},
		{Name: "help", Help: "list this node's commands, or explain one", Pos: []Param{{Name: "command"}}, Run: runHelp},
		{Name: "exit", Help: "leave the shell", Run: func(x *Scope, n *Node, a Args) error { x.Exit = true; return nil }},
		{Name: "goto", Help: "cd to a bookmark", Pos: []Param{{Name: "bookmark", Required: true, Values: bookmarkNames}},
			Run: func(x *Scope, n *Node, a Args) error {
				p, ok := x.bookmarks()[a["bookmark"]]
				if !ok {
					return argErr("no bookmark %q (bookmarks: %s)", a["bookmark"], strings.Join(bookmarkNames(x), ", "))
				}
				to, err := Resolve(x.Root, p)
				if err != nil {
					return &APIError{Msg: fmt.Sprintf("bookmark %s: %v", a["bookmark"], err)}
				}
				x.NewCwd = to.Path()
				return nil
			}},
		{Name: "bookmarks", Help: "list bookmarks; add <name> [path] or delete <name>", Pos: []Param{
			{Name: "action", Values: fixed("add", "delete"), Strict: true}, {Name: "name", Values: bookmarkNames}, pathParam},
			Run: runBookmarks},
		{Name: "export", Help: "write the whole configuration as JSON (stdout, or file=); passwords show as <redacted> unless secrets=true",
			Keys:  []Param{{Name: "file"}, {Name: "secrets", Values: fixed("true", "false"), Strict: true, Help: "true: include the CHAP secrets in clear (for import elsewhere)"}},
			Kinds: []Kind{KindRoot},
			Run: func(x *Scope, n *Node, a Args) error {
				path := "/config"
				if a["secrets"] == "true" {
					// Said on stderr, so a redirected export is still clean JSON.
					fmt.Fprintln(cmp.Or(x.Err, x.Out), "warning: this export holds every CHAP secret in clear; keep it like a password file")
					path += "?secrets=true"
				}
				var raw json.RawMessage
				if err := x.Client.Do(x.Ctx, http.MethodGet, path, nil, &raw); err != nil {
					return err
				}
				if a["file"] == "" {
					return x.printJSON(raw)
				}
				if err := os.WriteFile(a["file"], append(raw, '\n'), 0o600); err != nil {
					return err
				}
				fmt.Fprintln(x.Out, "ok")
				return nil
			}},
		{Name: "import", Help: "load a configuration: gwcli's JSON export or a ceph-iscsi gateway.conf (key= RSA key for encrypted passwords)",
			Pos: []Param{{Name: "file", Required: true}}, Keys: []Param{{Name: "key", Help: "PEM RSA private key (ceph-iscsi's iscsi-gateway.key)"}},
			Kinds: []Kind{KindRoot}, Run: runImport},
	}
}

func runLs(x *Scope, n *Node, a Args) error {
	at := x.Cwd
	if a["path"] != "" {
		var err error
		if at, err = Resolve(x.Cwd, a["path"]); err != nil {
			return err
		}
	}
	depth := -1
	if a.Has("depth") {
		d, err := strconv.Atoi(a["depth"])
		if err != nil || d < 0 {
			return argErr("depth=%s: want a number >= 0", a["depth"])
		}
		depth = d
	}
	switch {
	case x.Cluster != nil:
	case at.Kind == KindRoot || at.Kind == KindCluster || at.Kind == KindClusterGateway:
		// Gateway states cost a probe each: only where they show.
		if err := x.Load(at.Path(), true); err != nil {
			return err
		}
		at, _ = Resolve(x.Root, at.Path())
	case x.Client != nil && (at.Kind == KindDisks || at.Kind == KindPool || at.Kind == KindDisk):
		// Disk owners are a courtesy: the disks list without them when the
		// cluster view cannot be had.
		if x.Load(at.Path(), true) == nil {
			at, _ = Resolve(x.Root, at.Path())
		}
	}
	if x.JSON {
		return x.printJSON(jsonTree(at, depth))
	}
	Render(x.Out, at, depth)
	return nil
}

// treeJSON is a node as `ls --json` shows it.
type treeJSON struct {
	Name     string      `json:"name"`
	Path     string      `json:"path"`
	State    string      `json:"state,omitempty"`
	Children []*treeJSON `json:"children,omitempty"`
}

func jsonTree(n *Node, depth int) *treeJSON {
	t := &treeJSON{Name: n.Name, Path: n.Path(), State: n.State}
	if depth != 0 {
		for _, c := range n.Children {
			t.Children = append(t.Children, jsonTree(c, depth-1))
		}
	}
	return t
}

// infoPath is the API resource that details a node, if any.
func infoPath(n *Node) string {
	switch n.Kind {
	case KindRoot:
		return "/health"
	case KindCluster, KindClusterGateway:
		return "/cluster"
	case KindDisk, KindTargetDisk:
		return diskPath(n.Ref)
	case KindTargets:
		return "/discovery-auth"
	case KindTarget:
		return targetPath(n.Target)
	case KindHost:
		return targetPath(n.Target) + "/hosts/" + PathEscape(n.Ref)
	case KindHostGroups:
		return targetPath(n.Target) + "/host-groups"
	case KindTargetGateways:
		return targetPath(n.Target) + "/gateways"
	case KindTargetGateway:
		return "/gateways"
	}
	return ""
}

func runInfo(x *Scope, n *Node, a Args) error {
	at := x.Cwd
	if a["path"] != "" {
		var err error
		if at, err = Resolve(x.Cwd, a["path"]); err != nil {
			return err
		}
	}
	p := infoPath(at)
	if p == "" {
		if x.JSON {
			return x.printJSON(jsonTree(at, 1))
		}
		Render(x.Out, at, 1)
		return nil
	}
	var raw json.RawMessage
	if err := x.Client.Do(x.Ctx, http.MethodGet, p, nil, &raw); err != nil {
		return err
	}
	if x.JSON {
		return x.printJSON(raw)
	}
	var v any
	json.Unmarshal(raw, &v)
	fmt.Fprintf(x.Out, "%s\n", at.Path())
	printInfo(x, v, "  ")
	return nil
}

// printInfo writes a JSON value as indented "key: value" lines.
func printInfo(x *Scope, v any, indent string) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			switch c := v[k].(type) {
			case map[string]any, []any:
				fmt.Fprintf(x.Out, "%s%s:\n", indent, k)
				printInfo(x, c, indent+"  ")
			default:
				fmt.Fprintf(x.Out, "%s%s: %v\n", indent, k, c)
			}
		}
	case []any:
		for _, e := range v {
			if m, ok := e.(map[string]any); ok {
				fmt.Fprintf(x.Out, "%s-\n", indent)
				printInfo(x, m, indent+"  ")
			} else {
				fmt.Fprintf(x.Out, "%s- %v\n", indent, e)
			}
		}
	default:
		fmt.Fprintf(x.Out, "%s%v\n", indent, v)
	}
}

func runHelp(x *Scope, n *Node, a Args) error {
	cmds := Commands(x.Cwd.Kind)
	if want := a["command"]; want != "" {
		for _, c := range cmds {
			if c.Name == want || strings.HasPrefix(c.Name, want+" ") {
				fmt.Fprintf(x.Out, "%s %s\n    %s\n", c.Name, c.usageArgs(x.Cwd), c.Help)
				for _, p := range append(slices.Clone(c.Pos), c.Keys...) {
					if p.Help != "" {
						fmt.Fprintf(x.Out, "    %-16s %s\n", p.Name, p.Help)
					}
				}
			}
		}
		return nil
	}
	fmt.Fprintf(x.Out, "Commands at %s:\n", x.Cwd.Path())
	for _, c := range cmds {
		fmt.Fprintf(x.Out, "  %-48s %s\n", strings.TrimSpace(c.Name+" "+c.usageArgs(x.Cwd)), c.Help)
	}
	return nil
}

func runBookmarks(x *Scope, n *Node, a Args) error {
	m := x.bookmarks()
	switch a["action"] {
	case "":
		for _, k := range bookmarkNames(x) {
			fmt.Fprintf(x.Out, "%s\t%s\n", k, m[k])
		}
		return nil
	case "add":
		if a["name"] == "" {
			return argErr("bookmarks add <name> [path]")
		}
		at := x.Cwd
		if a["path"] != "" {
			var err error
			if at, err = Resolve(x.Cwd, a["path"]); err != nil {
				return err
			}
		}
		m[a["name"]] = at.Path()
	case "delete":
		if _, ok := m[a["name"]]; !ok {
			return argErr("no bookmark %q", a["name"])
		}
		delete(m, a["name"])
	}
	if err := x.saveBookmarks(m); err != nil {
		return err
	}
	fmt.Fprintln(x.Out, "ok")
	return nil
}
