package gwcli

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/rbdgw/rbdgw/config"
)

// targetCommands are those of /iscsi-targets and everything below it.
func targetCommands() []*Command {
	iqnParam := Param{Name: "iqn", Required: true, Help: "iqn.yyyy-mm.reversed.domain:name"}
	auth := func(name, help string, kinds []Kind, path func(n *Node) string) *Command {
		return &Command{Name: name, Help: help, Kinds: kinds, Pos: []Param{chapMode}, Keys: chapKeys,
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				c, err := chapFromArgs(a)
				return http.MethodPut, path(n), c, err
			})}
	}
	member := func(verb, what string, kinds []Kind, p Param, path func(n *Node, a Args) (string, string, any)) *Command {
		return &Command{Name: what + " " + verb, Help: verb + " a " + what, Kinds: kinds, Pos: []Param{p},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				m, pth, body := path(n, a)
				return m, pth, body, nil
			})}
	}
	host := func(n *Node) string { return targetPath(n.Target) + "/hosts/" + PathEscape(n.Ref) }
	group := func(n *Node) string { return targetPath(n.Target) + "/host-groups/" + PathEscape(n.Ref) }
	return []*Command{
		{Name: "create", Help: "create a target", Kinds: []Kind{KindTargets}, Pos: []Param{iqnParam},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				if err := config.ValidateName(a["iqn"]); err != nil {
					return "", "", nil, argErr("iqn %s: %v", a["iqn"], err)
				}
				return http.MethodPost, "/targets", map[string]string{"iqn": a["iqn"]}, nil
			})},
		{Name: "delete", Help: "delete a target", Kinds: []Kind{KindTargets}, Pos: []Param{{Name: "iqn", Required: true, Values: targetIQNs}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				return http.MethodDelete, targetPath(a["iqn"]), nil, nil
			})},
		auth("discovery_auth", "set CHAP for discovery sessions (nochap: off)", []Kind{KindTargets}, func(*Node) string { return "/discovery-auth" }),
		auth("auth", "set the target's CHAP credentials (nochap: off)", []Kind{KindTarget}, func(n *Node) string { return targetPath(n.Target) + "/auth" }),
		auth("auth", "set this host's CHAP credentials (nochap: off)", []Kind{KindHost}, func(n *Node) string { return host(n) + "/auth" }),
		{Name: "reconfigure", Help: "set a target control (cmdsn_depth, immediate_data, first_burst_length, ...)", Kinds: []Kind{KindTarget},
			Pos: []Param{{Name: "control", Required: true, Values: controlNames(config.DefaultTargetControls()), Strict: true}, {Name: "value", Required: true}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				return http.MethodPatch, targetPath(n.Target) + "/controls", map[string]any{a["control"]: controlValue(a["value"])}, nil
			})},
		{Name: "create", Help: "add a gateway to the target (new gateways need their portal IPs: ip[,ip])", Kinds: []Kind{KindTargetGateways},
			Pos: []Param{{Name: "name", Required: true, Values: gatewayNames, Help: "the gateway's --gateway-name"}, {Name: "ip", Help: "portal IPs, comma separated (ip or ip:port)"}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				body := map[string]any{"name": a["name"]}
				if a["ip"] != "" {
					body["portals"] = strings.Split(a["ip"], ",")
				}
				return http.MethodPost, targetPath(n.Target) + "/gateways", body, nil
			})},
		{Name: "delete", Help: "stop serving the target from a gateway", Kinds: []Kind{KindTargetGateways},
			Pos: []Param{{Name: "name", Required: true, Values: targetGateways}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				return http.MethodDelete, targetPath(n.Target) + "/gateways/" + PathEscape(a["name"]), nil, nil
			})},
		{Name: "add", Help: "map a disk to the target (lun_id: default the lowest free)", Kinds: []Kind{KindTargetDisks},
			Pos: []Param{{Name: "disk", Required: true, Values: unmappedDisks}, {Name: "lun_id"}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				body := map[string]any{"disk": a["disk"]}
				if a["lun_id"] != "" {
					id, err := strconv.ParseUint(a["lun_id"], 10, 64)
					if err != nil {
						return "", "", nil, argErr("lun_id %s: want a number 0..16383", a["lun_id"])
					}
					body["lun_id"] = id
				}
				return http.MethodPost, targetPath(n.Target) + "/luns", body, nil
			})},
		{Name: "delete", Help: "unmap a disk from the target", Kinds: []Kind{KindTargetDisks}, Pos: []Param{{Name: "disk", Required: true, Values: targetDisks}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				return http.MethodDelete, targetPath(n.Target) + "/luns/" + PathEscape(a["disk"]), nil, nil
			})},
		{Name: "create", Help: "allow an initiator", Kinds: []Kind{KindHosts}, Pos: []Param{iqnParam},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				if err := config.ValidateName(a["iqn"]); err != nil {
					return "", "", nil, argErr("iqn %s: %v", a["iqn"], err)
				}
				return http.MethodPost, targetPath(n.Target) + "/hosts", map[string]string{"iqn": a["iqn"]}, nil
			})},
		{Name: "delete", Help: "remove an initiator", Kinds: []Kind{KindHosts}, Pos: []Param{{Name: "iqn", Required: true, Values: targetHosts}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				return http.MethodDelete, targetPath(n.Target) + "/hosts/" + PathEscape(a["iqn"]), nil, nil
			})},
		member("add", "disk", []Kind{KindHost}, Param{Name: "disk", Required: true, Values: targetDisks}, func(n *Node, a Args) (string, string, any) {
			return http.MethodPost, host(n) + "/luns", map[string]string{"disk": a["disk"]}
		}),
		member("remove", "disk", []Kind{KindHost}, Param{Name: "disk", Required: true, Values: targetDisks}, func(n *Node, a Args) (string, string, any) {
			return http.MethodDelete, host(n) + "/luns/" + PathEscape(a["disk"]), nil
		}),
		{Name: "create", Help: "create a host group", Kinds: []Kind{KindHostGroups}, Pos: []Param{{Name: "name", Required: true}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				return http.MethodPost, targetPath(n.Target) + "/host-groups", map[string]string{"name": a["name"]}, nil
			})},
		{Name: "delete", Help: "delete a host group", Kinds: []Kind{KindHostGroups}, Pos: []Param{{Name: "name", Required: true, Values: targetGroups}},
			Run: request(func(x *Scope, n *Node, a Args) (string, string, any, error) {
				return http.MethodDelete, targetPath(n.Target) + "/host-groups/" + PathEscape(a["name"]), nil, nil
			})},
		member("add", "host", []Kind{KindHostGroup}, Param{Name: "iqn", Required: true, Values: targetHosts}, func(n *Node, a Args) (string, string, any) {
			return http.MethodPost, group(n) + "/hosts", map[string]string{"iqn": a["iqn"]}
		}),
		member("remove", "host", []Kind{KindHostGroup}, Param{Name: "iqn", Required: true, Values: targetHosts}, func(n *Node, a Args) (string, string, any) {
			return http.MethodDelete, group(n) + "/hosts/" + PathEscape(a["iqn"]), nil
		}),
		member("add", "disk", []Kind{KindHostGroup}, Param{Name: "disk", Required: true, Values: targetDisks}, func(n *Node, a Args) (string, string, any) {
			return http.MethodPost, group(n) + "/disks", map[string]string{"disk": a["disk"]}
		}),
		member("remove", "disk", []Kind{KindHostGroup}, Param{Name: "disk", Required: true, Values: targetDisks}, func(n *Node, a Args) (string, string, any) {
			return http.MethodDelete, group(n) + "/disks/" + PathEscape(a["disk"]), nil
		}),
	}
}
