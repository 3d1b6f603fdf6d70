package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/rbdgw/rbdgw/config"
)

func (a *API) targetRoutes() {
	a.view("GET /targets", func(_ *http.Request, c *config.Config, _ int64) (any, error) {
		return nonNil(redacted(c).Targets), nil
	})
	a.change("POST /targets", http.StatusCreated, createTarget)
	a.view("GET /targets/{iqn}", func(r *http.Request, c *config.Config, _ int64) (any, error) {
		t, err := findTarget(redacted(c), r.PathValue("iqn"))
		if err != nil {
			return nil, err
		}
		return t, nil
	})
	a.change("DELETE /targets/{iqn}", http.StatusOK, func(r *http.Request) (mutation, error) {
		iqn := r.PathValue("iqn")
		return func(c *config.Config) (any, error) {
			i, err := targetIndex(c, iqn)
			if err != nil {
				return nil, err
			}
			c.Targets = slices.Delete(c.Targets, i, i+1)
			return nil, nil
		}, nil
	})
	a.change("PATCH /targets/{iqn}/controls", http.StatusOK, func(r *http.Request) (mutation, error) {
		patch, err := decodePatch(r)
		if err != nil {
			return nil, err
		}
		return targetEdit(r, func(_ *config.Config, t *config.Target) (any, error) {
			if err := applyPatch(&t.Controls, patch, "controls"); err != nil {
				return nil, err
			}
			return t.Controls, nil
		}), nil
	})
	a.change("PUT /targets/{iqn}/auth", http.StatusOK, func(r *http.Request) (mutation, error) {
		var auth config.CHAP
		if err := decode(r, &auth); err != nil {
			return nil, err
		}
		return targetEdit(r, func(_ *config.Config, t *config.Target) (any, error) {
			t.Auth = auth
			return auth.Redacted(), nil
		}), nil
	})
	a.targetList("GET /targets/{iqn}/luns", func(t *config.Target) any { return nonNil(t.LUNs) })
	a.change("POST /targets/{iqn}/luns", http.StatusCreated, addTargetLUN)
	a.change("DELETE /targets/{iqn}/luns/{lun}", http.StatusOK, removeTargetLUN)
}

// createTargetRequest is POST /targets.
type createTargetRequest struct {
	IQN      string                     `json:"iqn"`
	Alias    string                     `json:"alias,omitempty"`
	Controls map[string]json.RawMessage `json:"controls,omitempty"`
}

func createTarget(r *http.Request) (mutation, error) {
	var req createTargetRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if err := config.ValidateName(req.IQN); err != nil {
		return nil, badRequest("iqn", "target %q: %v", req.IQN, err)
	}
	t := config.NewTarget(req.IQN)
	t.Alias = req.Alias
	if err := applyPatch(&t.Controls, req.Controls, "controls"); err != nil {
		return nil, err
	}
	return func(c *config.Config) (any, error) {
		if _, err := targetIndex(c, req.IQN); err == nil {
			return nil, conflict("target %s already exists", req.IQN)
		}
		c.Targets = append(c.Targets, t)
		return t, nil
	}, nil
}

// lunRequest is POST /targets/{iqn}/luns: a disk and, optionally, the LUN
// id to give it (default: the lowest free one).
type lunRequest struct {
	Disk  string  `json:"disk"`
	LUNID *uint64 `json:"lun_id,omitempty"`
}

func addTargetLUN(r *http.Request) (mutation, error) {
	var req lunRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	return targetEdit(r, func(c *config.Config, t *config.Target) (any, error) {
		if _, ok := c.Disk(req.Disk); !ok {
			return nil, notFound("no disk %q (create it under /disks first)", req.Disk)
		}
		for _, m := range t.LUNs {
			if m.Disk == req.Disk {
				return nil, conflict("disk %s is already LUN %d of %s", req.Disk, m.LUNID, t.IQN)
			}
		}
		m := config.LUNMap{Disk: req.Disk, LUNID: lowestFreeLUN(t.LUNs)}
		if req.LUNID != nil {
			m.LUNID = *req.LUNID
		}
		t.LUNs = append(t.LUNs, m)
		return m, nil
	}), nil
}

func removeTargetLUN(r *http.Request) (mutation, error) {
	key := r.PathValue("lun")
	return targetEdit(r, func(_ *config.Config, t *config.Target) (any, error) {
		i, err := lunIndex(t, key)
		if err != nil {
			return nil, err
		}
		id := t.LUNs[i].LUNID
		// A host's LUN list naming this id would no longer validate; and
		// taking the id out of the host's list silently could leave it
		// empty, which means "every LUN".
		for _, h := range t.Hosts {
			if slices.Contains(h.LUNs, id) {
				return nil, conflict("LUN %d (%s) is mapped to host %s; remove it from the host first", id, t.LUNs[i].Disk, h.IQN)
			}
		}
		t.LUNs = slices.Delete(t.LUNs, i, i+1)
		return nil, nil
	}), nil
}

// lunIndex finds a target LUN by id ("3") or by disk name ("rbd/disk_1",
// URL-escaped in the path).
func lunIndex(t *config.Target, key string) (int, error) {
	for i, m := range t.LUNs {
		if m.Disk == key || strconv.FormatUint(m.LUNID, 10) == key {
			return i, nil
		}
	}
	return 0, notFound("target %s has no LUN %q", t.IQN, key)
}

func lowestFreeLUN(luns []config.LUNMap) uint64 {
	ids := make([]uint64, 0, len(luns))
	for _, m := range luns {
		ids = append(ids, m.LUNID)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var next uint64
	for _, id := range ids {
		if id == next {
			next++
		} else if id > next {
			break
		}
	}
	return next
}

// targetEdit is the mutation of a change to the {iqn} target.
func targetEdit(r *http.Request, edit func(c *config.Config, t *config.Target) (any, error)) mutation {
	iqn := r.PathValue("iqn")
	return func(c *config.Config) (any, error) {
		t, err := findTarget(c, iqn)
		if err != nil {
			return nil, err
		}
		return edit(c, t)
	}
}

// targetList answers GET of one of a target's lists.
func (a *API) targetList(pattern string, list func(t *config.Target) any) {
	a.view(pattern, func(r *http.Request, c *config.Config, _ int64) (any, error) {
		t, err := findTarget(redacted(c), r.PathValue("iqn"))
		if err != nil {
			return nil, err
		}
		return list(t), nil
	})
}

// targetIndex finds a target; IQNs compare case-insensitively (RFC 3722).
func targetIndex(c *config.Config, iqn string) (int, error) {
	for i := range c.Targets {
		if strings.EqualFold(c.Targets[i].IQN, iqn) {
			return i, nil
		}
	}
	return 0, notFound("no target %s", iqn)
}

func findTarget(c *config.Config, iqn string) (*config.Target, error) {
	i, err := targetIndex(c, iqn)
	if err != nil {
		return nil, err
	}
	return &c.Targets[i], nil
}

// decodePatch reads a {"key": value, ...} body.
func decodePatch(r *http.Request) (map[string]json.RawMessage, error) {
	var patch map[string]json.RawMessage
	if err := decode(r, &patch); err != nil {
		return nil, err
	}
	if len(patch) == 0 {
		return nil, badRequest("", "nothing to change: send {\"<control>\": <value>, ...}")
	}
	return patch, nil
}

// applyPatch sets the named JSON fields of dst (a controls struct),
// refusing names dst does not have and values of the wrong type. Ranges
// are config validation's business.
func applyPatch(dst any, patch map[string]json.RawMessage, field string) error {
	if len(patch) == 0 {
		return nil
	}
	cur, err := json.Marshal(dst)
	if err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(cur, &fields); err != nil {
		return err
	}
	for k, v := range patch {
		if _, ok := fields[k]; !ok {
			names := make([]string, 0, len(fields))
			for n := range fields {
				names = append(names, n)
			}
			sort.Strings(names)
			return badRequest(field+"."+k, "unknown control %q; known: %s", k, strings.Join(names, ", "))
		}
		// Checked one by one to name the bad key; applied below all at
		// once, because the controls' UnmarshalJSON fills absent keys
		// with defaults.
		one, _ := json.Marshal(map[string]json.RawMessage{k: v})
		scratch := reflect.New(reflect.TypeOf(dst).Elem()).Interface()
		if err := json.Unmarshal(one, scratch); err != nil {
			return badRequest(field+"."+k, "%s: %s is not a valid value", k, v)
		}
		fields[k] = v
	}
	merged, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	return json.Unmarshal(merged, dst)
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// redacted is a copy of c without passwords, for reads that show them.
func redacted(c *config.Config) *config.Config {
	r := c.Redacted()
	return &r
}
