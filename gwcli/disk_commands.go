package gwcli

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/rbdgw/rbdgw/config"
)

// diskCommands are /disks's (and a pool's or disk's, with the pool or
// disk taken from the node).
func diskCommands() []*Command {
	disks := []Kind{KindDisks, KindPool, KindDisk}
	poolParam := Param{Name: "pool", Required: true, Values: pools, FromNode: []Kind{KindPool}}
	cmds := []*Command{
		{Name: "create", Help: "create an RBD image and its disk (clone=pool/image@snap clones; backend=file:<path> makes a file disk)",
			Kinds: []Kind{KindDisks, KindPool},
			Keys: []Param{poolParam, {Name: "image", Required: true}, {Name: "size", Help: "90G, 512M, 1T (a clone: default its parent's)"},
				{Name: "count", Help: "create image1..imageN"}, {Name: "wwn"}, {Name: "clone", Help: "pool/image@snap"},
				{Name: "backend", Help: "file:<path> for a file-backed disk"}},
			Run: request(createDiskRequest)},
		{Name: "resize", Help: "grow a disk (shrink an RBD one with allow_shrink=true)", Kinds: disks,
			Pos: []Param{diskParam, {Name: "size", Required: true}}, Keys: []Param{{Name: "allow_shrink", Values: fixed("true", "false")}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				size, err := sizeArg(a, "size")
				if err != nil {
					return "", "", nil, err
				}
				shrink, err := boolArg(a, "allow_shrink")
				return http.MethodPatch, diskPath(a["disk"]), map[string]any{"size": size, "allow_shrink": shrink}, err
			})},
		{Name: "delete", Help: "delete a disk and its RBD image (keep_image=true keeps the image)", Kinds: []Kind{KindDisks, KindPool},
			Pos: []Param{diskParam}, Keys: []Param{{Name: "keep_image", Values: fixed("true", "false")}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				keep, err := boolArg(a, "keep_image")
				return http.MethodDelete, diskPath(a["disk"]) + "?keep_image=" + strconv.FormatBool(keep), nil, err
			})},
		{Name: "reconfigure", Help: "set a disk control (max_data_area_mb, qfull_timeout, osd_op_timeout, hw_max_sectors)", Kinds: disks,
			Pos: []Param{diskParam, {Name: "control", Required: true, Values: controlNames(config.DefaultDiskControls()), Strict: true},
				{Name: "value", Required: true}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				return http.MethodPatch, diskPath(a["disk"]) + "/controls", map[string]any{a["control"]: controlValue(a["value"])}, nil
			})},
		{Name: "failback", Help: "where the disk's LU lives with several gateways: policy=none|preferred, gateway=<preferred gateway>",
			Kinds: disks, Pos: []Param{diskParam},
			Keys: []Param{{Name: "policy", Values: fixed(config.FailbackNone, config.FailbackPreferred), Help: "preferred: move the LU back to gateway= once it is up again"},
				{Name: "gateway", Values: gatewayNames, Help: "the preferred gateway (empty: none)"}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				return http.MethodPut, diskPath(a["disk"]) + "/failback", map[string]string{"failback": a["policy"], "preferred_gateway": a["gateway"]}, nil
			})},
		{Name: "flatten", Help: "copy a clone's data from its parent, so the parent snapshot can go", Kinds: disks, Pos: []Param{diskParam},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				return http.MethodPost, diskPath(a["disk"]) + "/flatten", struct{}{}, nil
			})},
		{Name: "snapshot list", Help: "list a disk's snapshots", Kinds: disks, Pos: []Param{diskParam},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				return http.MethodGet, diskPath(a["disk"]) + "/snapshots", nil, nil
			})},
		{Name: "trash move", Help: "move a disk's image to the pool's trash (delay= keeps it from purging)", Kinds: []Kind{KindDisks, KindPool},
			Pos: []Param{diskParam}, Keys: []Param{{Name: "delay", Help: "a duration such as 24h"}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				return http.MethodPost, diskPath(a["disk"]) + "/trash", map[string]string{"delay": a["delay"]}, nil
			})},
		{Name: "trash list", Help: "list a pool's trash", Kinds: []Kind{KindDisks, KindPool}, Pos: []Param{poolParam},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				return http.MethodGet, "/trash/" + PathEscape(a["pool"]), nil, nil
			})},
		{Name: "trash restore", Help: "bring an image back from the trash (name= renames it)", Kinds: []Kind{KindDisks, KindPool},
			Pos: []Param{poolParam, {Name: "id", Required: true}}, Keys: []Param{{Name: "name"}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				return http.MethodPost, "/trash/" + PathEscape(a["pool"]) + "/" + PathEscape(a["id"]) + "/restore", map[string]string{"name": a["name"]}, nil
			})},
		{Name: "trash purge", Help: "delete an image from the trash for good", Kinds: []Kind{KindDisks, KindPool},
			Pos: []Param{poolParam, {Name: "id", Required: true}}, Keys: []Param{{Name: "force", Values: fixed("true", "false")}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				force, err := boolArg(a, "force")
				return http.MethodDelete, "/trash/" + PathEscape(a["pool"]) + "/" + PathEscape(a["id"]) + "?force=" + strconv.FormatBool(force), nil, err
			})},
	}
	for _, op := range []string{"create", "delete", "rollback", "protect", "unprotect"} {
		cmds = append(cmds, &Command{Name: "snapshot " + op, Help: op + " a snapshot of a disk", Kinds: disks,
			Pos: []Param{diskParam, {Name: "name", Required: true, Help: "snapshot name"}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				base := diskPath(a["disk"]) + "/snapshots"
				snap := "/" + url.PathEscape(a["name"])
				switch op {
				case "create":
					return http.MethodPost, base, map[string]string{"name": a["name"]}, nil
				case "delete":
					return http.MethodDelete, base + snap, nil, nil
				}
				return http.MethodPost, base + snap + "/" + op, struct{}{}, nil
			})})
	}
	return cmds
}

// createDiskRequest checks `create` arguments and builds POST /disks.
func createDiskRequest(x *Scope, n *Node, a Args) (string, string, any, error) {
	body := map[string]any{"pool": a["pool"], "image": a["image"]}
	if a.Has("size") {
		size, err := sizeArg(a, "size")
		if err != nil {
			return "", "", nil, err
		}
		body["size"] = size
	} else if a["clone"] == "" {
		return "", "", nil, argErr("create: size= is required (a clone takes its parent's)")
	}
	if a.Has("count") {
		c, err := strconv.Atoi(a["count"])
		if err != nil || c < 1 {
			return "", "", nil, argErr("count=%s: want a number >= 1", a["count"])
		}
		body["count"] = c
	}
	if w := a["wwn"]; w != "" {
		if _, err := config.ParseWWN(w); err != nil {
			return "", "", nil, argErr("wwn=%s: %v", w, err)
		}
		body["wwn"] = w
	}
	for _, k := range []string{"clone", "backend"} {
		if a[k] != "" {
			body[k] = a[k]
		}
	}
	if b := a["backend"]; b != "" {
		if _, err := config.ParseBackend(b); err != nil {
			return "", "", nil, argErr("backend=%s: %v", b, err)
		}
	}
	return http.MethodPost, "/disks", body, nil
}
