package target

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestSendTargets(t *testing.T) {
	open := &Target{Name: "iqn.2024-01.io.rbdgw:open", OpenACL: true, Portals: []Portal{
		{Address: "127.0.0.1:3260", PortalGroupTag: 1}, {Address: "[::1]:3260", PortalGroupTag: 2}}}
	restricted := &Target{Name: "iqn.2024-01.io.rbdgw:restricted", Portals: []Portal{{Address: "10.0.0.1:3260", PortalGroupTag: 1}},
		ACLs: []ACL{{InitiatorName: "iqn.allowed"}}}
	closed := &Target{Name: "iqn.2024-01.io.rbdgw:closed", Portals: []Portal{{Address: "10.0.0.2:3260", PortalGroupTag: 1}}}
	all := []*Target{open, restricted, closed, nil}
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
		{"no hosts, no CHAP: listed to nobody", "iqn.allowed", "iqn.2024-01.io.rbdgw:closed", nil},
		{"lower-case all is a name", "iqn.allowed", "all", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := SendTargets(all, tc.initiator, tc.value, netip.MustParseAddr("127.0.0.1"))
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("SendTargets = %v, want %v", got, tc.want)
			}
		})
	}
}

// Every gateway advertises every gateway's portals, each with its own
// portal group tag, whichever gateway the initiator asked.
func TestSendTargetsListsEveryGateway(t *testing.T) {
	portals := []Portal{
		{Address: "192.0.2.1:3260", PortalGroupTag: 1}, {Address: "[2001:db8::1]:3260", PortalGroupTag: 1},
		{Address: "192.0.2.2:3260", PortalGroupTag: 2},
		{Address: "gw3.example:3261", PortalGroupTag: 3},
	}
	want := pairs("TargetName=iqn.2024-01.io.rbdgw:ha",
		"TargetAddress=192.0.2.1:3260,1", "TargetAddress=[2001:db8::1]:3260,1",
		"TargetAddress=192.0.2.2:3260,2", "TargetAddress=gw3.example:3261,3")
	for own, local := range map[uint16]string{1: "192.0.2.1", 2: "192.0.2.2", 3: "198.51.100.3"} {
		tg := &Target{Name: "iqn.2024-01.io.rbdgw:ha", OpenACL: true, PortalGroupTag: own, Portals: portals}
		if got := SendTargets([]*Target{tg}, "iqn.i", "All", netip.MustParseAddr(local)); !reflect.DeepEqual(got, want) {
			t.Fatalf("gateway %d: %v, want %v", own, got, want)
		}
	}
}

func TestSendTargetsWildcardPortal(t *testing.T) {
	tests := []struct {
		name    string
		portals []Portal
		local   string // "" unknown
		want    []string
	}{
		{"ipv4 wildcard", []Portal{{"0.0.0.0:3260", 1}}, "10.1.2.3", []string{"10.1.2.3:3260,1"}},
		{"ipv6 wildcard, ipv6 connection", []Portal{{"[::]:3260", 1}}, "2001:db8::7", []string{"[2001:db8::7]:3260,1"}},
		{"ipv6 wildcard, ipv4 client on a dual-stack socket", []Portal{{"[::]:3260", 1}}, "::ffff:10.1.2.3", []string{"10.1.2.3:3260,1"}},
		{"empty host", []Portal{{":3270", 1}}, "127.0.0.2", []string{"127.0.0.2:3270,1"}},
		{"link-local keeps its zone", []Portal{{"[::]:3260", 1}}, "fe80::1%eth0", []string{"[fe80::1%eth0]:3260,1"}},
		{"another gateway's wildcard is left out", []Portal{{"0.0.0.0:3260", 1}, {"0.0.0.0:3260", 2}, {"192.0.2.2:3260", 2}},
			"10.1.2.3", []string{"10.1.2.3:3260,1", "192.0.2.2:3260,2"}},
		{"unknown local address: no wildcard leaks", []Portal{{"0.0.0.0:3260", 1}, {"192.0.2.9:3260", 1}}, "", []string{"192.0.2.9:3260,1"}},
		{"explicit addresses untouched", []Portal{{"127.0.0.1:3260", 1}, {"[::1]:3260", 1}}, "10.1.2.3", []string{"127.0.0.1:3260,1", "[::1]:3260,1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var local netip.Addr
			if tc.local != "" {
				local = netip.MustParseAddr(tc.local)
			}
			tg := &Target{Name: "iqn.t", OpenACL: true, PortalGroupTag: 1, Portals: tc.portals}
			var got []string
			for _, kv := range SendTargets([]*Target{tg}, "iqn.i", "All", local) {
				if kv.Key == "TargetAddress" {
					got = append(got, kv.Value)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("TargetAddress %v, want %v", got, tc.want)
			}
			for _, a := range got {
				if strings.HasPrefix(a, "0.0.0.0") || strings.HasPrefix(a, "[::]") {
					t.Fatalf("wildcard leaked: %s", a)
				}
			}
		})
	}
}

// Over a real connection: a portal configured as 0.0.0.0:<port> is
// advertised as the address the initiator connected to.
func TestDiscoveryAdvertisesLocalAddressForWildcard(t *testing.T) {
	env := startServer(t, nil)
	_, port, _ := strings.Cut(env.addr, ":")
	tg := *env.tgt
	tg.Portals = []Portal{{Address: "0.0.0.0:" + port, PortalGroupTag: 1}, {Address: "127.0.0.9:3260", PortalGroupTag: 2}}
	env.srv.SetTargets([]*Target{&tg})
	i := dial(t, env.addr)
	if r := i.login(loginOpts{discovery: true}); r.StatusClass != 0 {
		t.Fatalf("discovery login %d/%d", r.StatusClass, r.StatusDetail)
	}
	i.send(&TextReq{Immediate: true, Final: true, ITT: 0x60, TTT: reservedTag, CmdSN: i.cmdSN, Data: []byte("SendTargets=All\x00")})
	got := string(i.recv().(*TextResp).Data)
	want := "TargetName=" + engineIQN + "\x00TargetAddress=" + env.addr + ",1\x00TargetAddress=127.0.0.9:3260,2\x00"
	if got != want {
		t.Fatalf("SendTargets answer %q, want %q", got, want)
	}
}
