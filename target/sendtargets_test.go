package target

import (
	"reflect"
	"testing"
)

func TestSendTargets(t *testing.T) {
	open := &Target{Name: "iqn.2024-01.io.rbdgw:open", Portals: []Portal{
		{Address: "127.0.0.1:3260", PortalGroupTag: 1}, {Address: "[::1]:3260", PortalGroupTag: 2}}}
	restricted := &Target{Name: "iqn.2024-01.io.rbdgw:restricted", Portals: []Portal{{Address: "10.0.0.1:3260", PortalGroupTag: 1}},
		ACLs: []ACL{{InitiatorName: "iqn.allowed"}}}
	all := []*Target{open, restricted, nil}
	openKeys := pairs("TargetName=iqn.2024-01.io.rbdgw:open", "TargetAddress=127.0.0.1:3260,1", "TargetAddress=[::1]:3260,2")
	restrictedKeys := pairs("TargetName=iqn.2024-01.io.rbdgw:restricted", "TargetAddress=10.0.0.1:3260,1")
	tests := []struct {
		name, initiator, value string
		want                   []KeyValue
	}{
		{"all, acl excludes", "iqn.someone", "All", openKeys},
		{"all, acl admits", "iqn.allowed", "All", append(append([]KeyValue{}, openKeys...), restrictedKeys...)},
		{"all, acl case-insensitive", "IQN.Allowed", "All", append(append([]KeyValue{}, openKeys...), restrictedKeys...)},
		{"by name", "iqn.someone", "iqn.2024-01.io.rbdgw:open", openKeys},
		{"by name, not admitted", "iqn.someone", "iqn.2024-01.io.rbdgw:restricted", nil},
		{"unknown name", "iqn.allowed", "iqn.nope", nil},
		{"lower-case all is a name", "iqn.allowed", "all", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := SendTargets(all, tc.initiator, tc.value)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("SendTargets = %v, want %v", got, tc.want)
			}
		})
	}
}
