package config

import (
	"encoding/json"
	"testing"
)

// FuzzParse feeds arbitrary YAML and JSON to the loader. Nothing may panic;
// a document that parses and validates must survive a Marshal/Parse round
// trip unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte("portals: [127.0.0.1:3260]\n"), false)
	f.Add([]byte(`{"disks":[{"name":"a","backend":"file:a","size":"1G"}]}`), true)
	f.Fuzz(func(t *testing.T, in []byte, isJSON bool) {
		format := FormatYAML
		if isJSON {
			format = FormatJSON
		}
		c, err := Parse(in, format)
		if err != nil {
			return
		}
		if c.Validate() != nil {
			return
		}
		for _, f2 := range []Format{FormatYAML, FormatJSON} {
			b, err := Marshal(c, f2)
			if err != nil {
				t.Fatalf("marshal a valid config: %v", err)
			}
			c2, err := Parse(b, f2)
			if err != nil {
				t.Fatalf("reparse: %v\n%s", err, b)
			}
			if err := c2.Validate(); err != nil {
				t.Fatalf("revalidate: %v", err)
			}
			j1, _ := json.Marshal(c)
			j2, _ := json.Marshal(c2)
			if string(j1) != string(j2) {
				t.Fatalf("round trip differs:\n%s\n%s", j1, j2)
			}
		}
	})
}

// FuzzStoreKeys feeds arbitrary keys and values, as a hand edit with
// etcdctl could leave them, to the store's decoder next to a valid target.
// Nothing may panic; what decodes and validates must encode back to the
// same keys (the diff of an unchanged configuration is empty).
func FuzzStoreKeys(f *testing.F) {
	f.Add("targets/iqn.2026-11.io.rbdgw:x/luns/0", `{"lun_id":0,"disk":"d"}`)
	f.Add("targets/iqn.2026-11.io.rbdgw:x/hosts/iqn.2026-11.io.rbdgw:h", `{"iqn":"iqn.2026-11.io.rbdgw:h","auth":{}}`)
	f.Add("targets/iqn.2026-11.io.rbdgw:x/groups/g", `{"name":"g","members":["iqn.2026-11.io.rbdgw:h"]}`)
	f.Add("gateways/gw-a", `{"name":"gw-a","portals":["127.0.0.1:3260"],"tpg_id":1}`)
	f.Add("discovery_auth", `{"username":"discovery","password":"`+sealedPrefix+`AAAA"}`)
	f.Add("last_tpg_id", `7`)
	f.Add("targets/x/y", `{}`)
	f.Fuzz(func(t *testing.T, key, value string) {
		var d keyDecoder
		kvs := map[string][]byte{
			"disks/d":                        []byte(`{"name":"d","backend":"file:d.img","size":1048576}`),
			"targets/iqn.2026-11.io.rbdgw:x": []byte(`{"iqn":"iqn.2026-11.io.rbdgw:x"}`),
			key:                              []byte(value),
		}
		c, err := d.decode(kvs)
		if err != nil || c.ValidateCluster() != nil {
			return
		}
		enc, err := encodeKeys(&c, nil)
		if err != nil {
			return // two objects of one name, e.g. a disk key whose value names another disk
		}
		again, err := d.decode(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		enc2, _ := encodeKeys(&again, nil)
		if put, del := keyDiff(enc, enc2); len(put)+len(del) > 0 {
			t.Fatalf("unchanged configuration diffs: put %v del %v", put, del)
		}
	})
}
