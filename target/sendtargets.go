package target

import "strings"

// SendTargets answers a SendTargets text request (RFC 7143 12.3 and
// appendix D). value is "All" (every target this initiator may see, only
// in a discovery session: the connection engine checks that) or one target
// name; an empty value asks for the session's own target and is handled
// by the caller, who passes that target's name.
//
// Each target is reported as TargetName= followed by one TargetAddress=
// per portal ("host:port,tpgt"). Targets whose ACLs exclude the initiator
// are left out, so discovery does not reveal what the initiator cannot
// log in to. An unknown name yields no keys (an empty response).
func SendTargets(targets []*Target, initiatorName, value string) []KeyValue {
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
			// RFC 7143 13.8: TargetAddress=domainname[:port][,portal-group-tag]
			kvs = append(kvs, KeyValue{"TargetAddress", p.Address + "," + utoa(uint32(p.PortalGroupTag))})
		}
	}
	return kvs
}
