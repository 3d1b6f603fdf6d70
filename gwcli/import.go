package gwcli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"

	"github.com/rbdgw/rbdgw/config"
)

// runImport loads a gwcli export or a ceph-iscsi gateway.conf and
// replaces the configuration with it in one write (PUT /config): the API
// validates the whole and writes nothing if any of it is wrong.
func runImport(x *Scope, n *Node, a Args) error {
	raw, err := os.ReadFile(a["file"])
	if err != nil {
		return argErr("import: %v", err)
	}
	var next config.Config
	if IsCephISCSI(raw) {
		o := ImportOptions{ImageSize: func(pool, image string) (config.Size, error) {
			var info struct {
				Size int64 `json:"size"`
			}
			err := x.Client.Do(x.Ctx, http.MethodGet, "/images/"+PathEscape(pool)+"/"+PathEscape(image), nil, &info)
			return config.Size(info.Size), err
		}}
		if a["key"] != "" {
			pemBytes, err := os.ReadFile(a["key"])
			if err != nil {
				return argErr("key: %v", err)
			}
			if o.Key, err = ParseRSAKey(pemBytes); err != nil {
				return argErr("key %s: %v", a["key"], err)
			}
		}
		var warnings []string
		if next, warnings, err = FromCephISCSI(raw, o); err != nil {
			return err
		}
		for _, w := range warnings {
			fmt.Fprintln(x.Out, "warning:", w)
		}
		// gateway.conf knows nothing of how gateways reach Ceph.
		next.Ceph = x.Config.Ceph
	} else {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&next); err != nil {
			return argErr("import %s: neither a gwcli export nor a ceph-iscsi gateway.conf: %v", a["file"], err)
		}
	}
	return x.call(http.MethodPut, "/config", next)
}
