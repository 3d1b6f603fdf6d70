package api

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rbdgw/rbdgw/config"
)

// modelRoutes are the cluster's gateways, a target's gateways and its
// host groups.
func (a *API) modelRoutes() {
	a.mux.HandleFunc("GET "+prefix+"/gateways", func(w http.ResponseWriter, r *http.Request) {
		c, _, err := a.opts.Store.Get(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, a.gatewayStates(r.Context(), &c))
	})
	a.change("POST /gateways", http.StatusCreated, func(r *http.Request) (mutation, error) {
		g, err := decodeGateway(r, true)
		if err != nil {
			return nil, err
		}
		return func(c *config.Config) (any, error) {
			if _, ok := c.Gateway(g.Name); ok {
				return nil, conflict("gateway %s already exists", g.Name)
			}
			c.Gateways = append(c.Gateways, g)
			return gatewayReadBack(g.Name), nil
		}, nil
	})
	a.change("DELETE /gateways/{name}", http.StatusOK, func(r *http.Request) (mutation, error) {
		name := r.PathValue("name")
		return func(c *config.Config) (any, error) {
			i := slices.IndexFunc(c.Gateways, func(g config.Gateway) bool { return g.Name == name })
			if i < 0 {
				return nil, notFound("no gateway %s", name)
			}
			for _, t := range c.Targets {
				if slices.Contains(t.Gateways, name) {
					return nil, conflict("gateway %s serves target %s; delete it from the target's gateways first", name, t.IQN)
				}
			}
			c.Gateways = slices.Delete(c.Gateways, i, i+1)
			return nil, nil
		}, nil
	})
	a.targetList("GET /targets/{iqn}/gateways", func(t *config.Target) any { return nonNil(t.Gateways) })
	a.change("POST /targets/{iqn}/gateways", http.StatusCreated, addTargetGateway)
	a.change("DELETE /targets/{iqn}/gateways/{name}", http.StatusOK, func(r *http.Request) (mutation, error) {
		name := r.PathValue("name")
		return targetEdit(r, func(_ *config.Config, t *config.Target) (any, error) {
			i := slices.Index(t.Gateways, name)
			if i < 0 {
				return nil, notFound("target %s is not served by gateway %s", t.IQN, name)
			}
			if len(t.Gateways) == 1 {
				// An empty list means "every gateway": removing the last
				// one would spread the target, not withdraw it.
				return nil, conflict("%s is the last gateway of %s (an empty list means every gateway); add another or delete the target", name, t.IQN)
			}
			t.Gateways = slices.Delete(t.Gateways, i, i+1)
			return nil, nil
		}), nil
	})
	a.hostGroupRoutes()
}

// decodeGateway reads {"name", "portals", "tpg_id"}; portals may be bare
// IPs (port 3260 added).
func decodeGateway(r *http.Request, needPortals bool) (config.Gateway, error) {
	var g config.Gateway
	if err := decode(r, &g); err != nil {
		return g, err
	}
	if g.Name == "" {
		return g, badRequest("name", "a gateway needs a name (the --gateway-name it runs with)")
	}
	if needPortals && len(g.Portals) == 0 {
		return g, badRequest("portals", "gateway %s needs at least one portal IP", g.Name)
	}
	for i, p := range g.Portals {
		g.Portals[i] = WithDefaultPort(p)
	}
	return g, nil
}

// WithDefaultPort adds the iSCSI port 3260 to a bare IP address.
func WithDefaultPort(p string) string {
	if _, _, err := net.SplitHostPort(p); err == nil {
		return p
	}
	return net.JoinHostPort(strings.Trim(p, "[]"), "3260")
}

// addTargetGateway is POST /targets/{iqn}/gateways {"name", "portals"}:
// ceph-iscsi's `gateways create <name> <ip>`. A new gateway is created
// with its portals; a known one is added as it is (portals, if given,
// must match).
func addTargetGateway(r *http.Request) (mutation, error) {
	g, err := decodeGateway(r, false)
	if err != nil {
		return nil, err
	}
	iqn := r.PathValue("iqn")
	return targetEdit(r, func(c *config.Config, t *config.Target) (any, error) {
		if slices.Contains(t.Gateways, g.Name) {
			return nil, conflict("gateway %s already serves %s", g.Name, t.IQN)
		}
		if have, ok := c.Gateway(g.Name); ok {
			if len(g.Portals) > 0 && !slices.Equal(have.Portals, g.Portals) {
				return nil, conflict("gateway %s exists with portals %s", g.Name, strings.Join(have.Portals, ","))
			}
			g = *have
		} else {
			if len(g.Portals) == 0 {
				return nil, badRequest("portals", "gateway %s is new: give its portal IPs", g.Name)
			}
			c.Gateways = append(c.Gateways, g)
			t, _ = findTarget(c, iqn)
		}
		t.Gateways = append(t.Gateways, g.Name)
		return gatewayReadBack(g.Name), nil
	}), nil
}

// gatewayReadBack answers with the gateway as stored, tpg_id assigned.
func gatewayReadBack(name string) readBack {
	return func(c *config.Config) (any, error) {
		g, ok := c.Gateway(name)
		if !ok {
			return nil, conflict("gateway %s was removed meanwhile", name)
		}
		return g, nil
	}
}

// GatewayState is a gateway as /gateways and /cluster show it.
type GatewayState struct {
	config.Gateway
	// State is "up" when its first portal accepts a TCP connection,
	// else "down: <why>".
	State string `json:"state"`
}

// portalProbeTimeout bounds the reachability check of one gateway.
const portalProbeTimeout = time.Second

// gatewayStates probes every gateway's first portal in parallel.
func (a *API) gatewayStates(ctx context.Context, c *config.Config) []GatewayState {
	out := make([]GatewayState, len(c.Gateways))
	var wg sync.WaitGroup
	for i, g := range c.Gateways {
		out[i] = GatewayState{Gateway: g, State: "down: no portal"}
		if len(g.Portals) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: portalProbeTimeout}
			conn, err := d.DialContext(ctx, "tcp", g.Portals[0])
			if err != nil {
				out[i].State = "down: " + err.Error()
				return
			}
			conn.Close()
			out[i].State = "up"
		}()
	}
	wg.Wait()
	return out
}

func (a *API) hostGroupRoutes() {
	a.targetList("GET /targets/{iqn}/host-groups", func(t *config.Target) any { return nonNil(t.HostGroups) })
	a.change("POST /targets/{iqn}/host-groups", http.StatusCreated, func(r *http.Request) (mutation, error) {
		var req struct {
			Name string `json:"name"`
		}
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		if req.Name == "" || strings.ContainsAny(req.Name, "/ \t\n") {
			return nil, badRequest("name", "group name %q: want a non-empty name without '/' or spaces", req.Name)
		}
		return targetEdit(r, func(_ *config.Config, t *config.Target) (any, error) {
			if groupIndex(t, req.Name) >= 0 {
				return nil, conflict("group %s already exists on %s", req.Name, t.IQN)
			}
			t.HostGroups = append(t.HostGroups, config.HostGroup{Name: req.Name})
			return t.HostGroups[len(t.HostGroups)-1], nil
		}), nil
	})
	a.change("DELETE /targets/{iqn}/host-groups/{group}", http.StatusOK, groupEdit(func(t *config.Target, i int) (any, error) {
		t.HostGroups = slices.Delete(t.HostGroups, i, i+1)
		return nil, nil
	}))
	member := func(add bool, kind string) func(r *http.Request) (mutation, error) {
		return func(r *http.Request) (mutation, error) {
			var item string
			if add {
				var req struct {
					IQN  string `json:"iqn,omitempty"`
					Disk string `json:"disk,omitempty"`
				}
				if err := decode(r, &req); err != nil {
					return nil, err
				}
				item = req.IQN + req.Disk
			} else {
				item = r.PathValue("item")
			}
			return groupEdit(func(t *config.Target, i int) (any, error) {
				g := &t.HostGroups[i]
				list := &g.Members
				if kind == "disk" {
					list = &g.Disks
					if add {
						if _, err := lunIndex(t, item); err != nil {
							return nil, conflict("disk %q is not a LUN of %s: add it to the target's disks first", item, t.IQN)
						}
					}
				} else if add {
					if _, err := hostIndex(t, item); err != nil {
						return nil, notFound("target %s has no host %s: create it under hosts first", t.IQN, item)
					}
				}
				k := slices.IndexFunc(*list, func(s string) bool { return strings.EqualFold(s, item) })
				switch {
				case add && k >= 0:
					return nil, conflict("group %s already has %s %s", g.Name, kind, item)
				case add:
					*list = append(*list, item)
				case k < 0:
					return nil, notFound("group %s has no %s %s", g.Name, kind, item)
				default:
					*list = slices.Delete(*list, k, k+1)
				}
				return *g, nil
			})(r)
		}
	}
	a.change("POST /targets/{iqn}/host-groups/{group}/hosts", http.StatusOK, member(true, "host"))
	a.change("DELETE /targets/{iqn}/host-groups/{group}/hosts/{item}", http.StatusOK, member(false, "host"))
	a.change("POST /targets/{iqn}/host-groups/{group}/disks", http.StatusOK, member(true, "disk"))
	a.change("DELETE /targets/{iqn}/host-groups/{group}/disks/{item}", http.StatusOK, member(false, "disk"))
}

func groupIndex(t *config.Target, name string) int {
	return slices.IndexFunc(t.HostGroups, func(g config.HostGroup) bool { return g.Name == name })
}

// groupEdit builds the mutation for a change to one host group, named by
// the {iqn} and {group} path values.
func groupEdit(edit func(t *config.Target, i int) (any, error)) func(r *http.Request) (mutation, error) {
	return func(r *http.Request) (mutation, error) {
		group := r.PathValue("group")
		return targetEdit(r, func(_ *config.Config, t *config.Target) (any, error) {
			i := groupIndex(t, group)
			if i < 0 {
				return nil, notFound("target %s has no group %s", t.IQN, group)
			}
			return edit(t, i)
		}), nil
	}
}
