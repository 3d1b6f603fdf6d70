package api

import (
	"net/http"
	"slices"
	"strings"

	"github.com/rbdgw/rbdgw/config"
)

func (a *API) hostRoutes() {
	a.targetList("GET /targets/{iqn}/hosts", func(t *config.Target) any { return nonNil(t.Hosts) })
	a.change("POST /targets/{iqn}/hosts", http.StatusCreated, func(r *http.Request) (mutation, error) {
		var req struct {
			IQN string `json:"iqn"`
		}
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		if err := config.ValidateName(req.IQN); err != nil {
			return nil, badRequest("iqn", "host %q: %v", req.IQN, err)
		}
		return targetEdit(r, func(_ *config.Config, t *config.Target) (any, error) {
			if _, err := hostIndex(t, req.IQN); err == nil {
				return nil, conflict("host %s already exists on %s", req.IQN, t.IQN)
			}
			t.Hosts = append(t.Hosts, config.Host{IQN: req.IQN})
			return t.Hosts[len(t.Hosts)-1], nil
		}), nil
	})
	a.view("GET /targets/{iqn}/hosts/{host}", func(r *http.Request, c *config.Config, _ int64) (any, error) {
		t, err := findTarget(redacted(c), r.PathValue("iqn"))
		if err != nil {
			return nil, err
		}
		return findHost(t, r.PathValue("host"))
	})
	a.change("DELETE /targets/{iqn}/hosts/{host}", http.StatusOK, hostEdit(func(t *config.Target, i int) (any, error) {
		t.Hosts = slices.Delete(t.Hosts, i, i+1)
		return nil, nil
	}))
	a.change("PUT /targets/{iqn}/hosts/{host}/auth", http.StatusOK, func(r *http.Request) (mutation, error) {
		var auth config.CHAP
		if err := decode(r, &auth); err != nil {
			return nil, err
		}
		return hostEdit(func(t *config.Target, i int) (any, error) {
			t.Hosts[i].Auth = auth
			return auth.Redacted(), nil
		})(r)
	})
	a.change("POST /targets/{iqn}/hosts/{host}/luns", http.StatusCreated, func(r *http.Request) (mutation, error) {
		var req struct {
			Disk string `json:"disk"`
		}
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return hostEdit(func(t *config.Target, i int) (any, error) {
			j, err := lunIndex(t, req.Disk)
			if err != nil {
				return nil, conflict("disk %q is not a LUN of %s: add it to the target's disks first", req.Disk, t.IQN)
			}
			h := &t.Hosts[i]
			id := t.LUNs[j].LUNID
			if slices.Contains(h.LUNs, id) {
				return nil, conflict("host %s already has %s (LUN %d)", h.IQN, req.Disk, id)
			}
			h.LUNs = append(h.LUNs, id)
			return t.LUNs[j], nil
		})(r)
	})
	a.change("DELETE /targets/{iqn}/hosts/{host}/luns/{lun}", http.StatusOK, func(r *http.Request) (mutation, error) {
		key := r.PathValue("lun")
		return hostEdit(func(t *config.Target, i int) (any, error) {
			j, err := lunIndex(t, key)
			if err != nil {
				return nil, err
			}
			h := &t.Hosts[i]
			k := slices.Index(h.LUNs, t.LUNs[j].LUNID)
			if k < 0 {
				return nil, notFound("host %s does not have %s", h.IQN, key)
			}
			h.LUNs = slices.Delete(h.LUNs, k, k+1)
			return nil, nil
		})(r)
	})
}

// hostEdit builds the mutation for a change to one host of one target,
// named by the {iqn} and {host} path values.
func hostEdit(edit func(t *config.Target, i int) (any, error)) func(r *http.Request) (mutation, error) {
	return func(r *http.Request) (mutation, error) {
		host := r.PathValue("host")
		return targetEdit(r, func(_ *config.Config, t *config.Target) (any, error) {
			i, err := hostIndex(t, host)
			if err != nil {
				return nil, err
			}
			return edit(t, i)
		}), nil
	}
}

func hostIndex(t *config.Target, iqn string) (int, error) {
	for i := range t.Hosts {
		if strings.EqualFold(t.Hosts[i].IQN, iqn) {
			return i, nil
		}
	}
	return 0, notFound("target %s has no host %s", t.IQN, iqn)
}

func findHost(t *config.Target, iqn string) (*config.Host, error) {
	i, err := hostIndex(t, iqn)
	if err != nil {
		return nil, err
	}
	return &t.Hosts[i], nil
}
