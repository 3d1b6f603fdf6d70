package target

import (
	"net"
	"net/netip"
	"strings"
)

// SendTargets answers a SendTargets text request (RFC 7143 12.3 and
// appendix D). value is "All" (every target this initiator may see, only
// in a discovery session: the connection engine checks that) or one target
// name; an empty value asks for the session's own target and is handled
// by the caller, who passes that target's name. local is the address the
// request arrived on (the connection's local address; invalid if unknown).
//
// Each target is reported as TargetName= followed by one TargetAddress=
// per portal ("host:port,tpgt"): with several gateways Target.Portals holds
// every gateway's portals, each with its gateway's portal group tag, so an
// initiator discovering through any gateway learns every path. Targets
// whose ACLs exclude the initiator are left out, so discovery does not
// reveal what the initiator cannot log in to. An unknown name yields no
// keys (an empty response).
func SendTargets(targets []*Target, initiatorName, value string, local netip.Addr) []KeyValue {
	var kvs []KeyValue
	for _, t := range targets {
		if t == nil {
			continue
		}
		// RFC 7143 12.3: "SendTargets=<iSCSI-target-name>" reports only
		// the named target; iSCSI names compare case-insensitively.
		if value != "All" && !strings.EqualFold(value, t.Name) {
			continue
		}
		if _, ok := matchACL(t, initiatorName); !ok {
			continue
		}
		kvs = append(kvs, KeyValue{"TargetName", t.Name})
		for _, p := range t.Portals {
			addr, ok := advertisedAddress(p, t.PortalGroupTag, local)
			if !ok {
				continue
			}
			// RFC 7143 13.8: TargetAddress=domainname[:port][,portal-group-tag]
			kvs = append(kvs, KeyValue{"TargetAddress", addr + "," + utoa(uint32(p.PortalGroupTag))})
		}
	}
	return kvs
}

// advertisedAddress is what an initiator is told to connect to for portal
// p. A wildcard portal (0.0.0.0:3260, [::]:3260, :3260) is an address to
// listen on, not one to connect to: one of this gateway's (its portal
// group tag is own) is advertised as the address the request arrived on,
// which the initiator demonstrably reaches; another gateway's wildcard
// cannot be resolved from here and is left out rather than leaked.
func advertisedAddress(p Portal, own uint16, local netip.Addr) (string, bool) {
	host, port, err := net.SplitHostPort(p.Address)
	if err != nil {
		return p.Address, true // no port: a name or address as configured
	}
	if host != "" {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.IsUnspecified() {
			return p.Address, true
		}
	}
	if p.PortalGroupTag != own || !local.IsValid() || local.IsUnspecified() {
		return "", false
	}
	// An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d.
	return net.JoinHostPort(local.Unmap().String(), port), true
}

// localIP is the IP address of a connection's local end, or the invalid
// address when it has none (a pipe in tests).
func localIP(nc net.Conn) netip.Addr {
	if a, ok := nc.LocalAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.WithZone(a.Zone)
		}
	}
	return netip.Addr{}
}
