package target

// SendTargets answers a SendTargets text request (RFC 7143 12.3 and
// appendix D): value is "All" or a target name.
func SendTargets(targets []*Target, initiatorName, value string) []KeyValue {
	var kvs []KeyValue
	for _, t := range targets {
		if value != "All" && value != t.Name {
			continue
		}
		kvs = append(kvs, KeyValue{"TargetName", t.Name})
	}
	return kvs
}
