package target

import (
	"bytes"
	"strings"
	"testing"
)

const (
	testIQN       = "iqn.2024-01.io.rbdgw:disk1"
	testInitiator = "iqn.1994-05.com.example:client"
)

// pairs builds key=value pairs from "k=v" strings.
func pairs(s ...string) []KeyValue {
	var kvs []KeyValue
	for _, p := range s {
		k, v, _ := strings.Cut(p, "=")
		kvs = append(kvs, KeyValue{k, v})
	}
	return kvs
}

func value(kvs []KeyValue, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

func newTestTarget() *Target {
	return &Target{Name: testIQN, Alias: "disk1", PortalGroupTag: 7, Op: DefaultOperational(), OpenACL: true,
		Portals: []Portal{{Address: "127.0.0.1:3260", PortalGroupTag: 7}}}
}

func lookupOf(ts ...*Target) func(string) *Target {
	return func(name string) *Target {
		for _, t := range ts {
			if t.Name == name {
				return t
			}
		}
		return nil
	}
}

func newNeg(t *Target) *LoginNegotiator {
	return NewLoginNegotiator(LoginConfig{LookupTarget: lookupOf(t), Leading: true})
}

// identity is what every first request carries.
func identity(extra ...string) []KeyValue {
	return append(pairs("InitiatorName="+testInitiator, "TargetName="+testIQN, "SessionType=Normal"), pairs(extra...)...)
}

func mustStep(t *testing.T, n *LoginNegotiator, s LoginStep) LoginReply {
	t.Helper()
	r, err := n.Step(s)
	if err != nil {
		t.Fatalf("Step(%+v): %v", s, err)
	}
	return r
}

// libiscsiOpKeys is the operational set libiscsi sends (lib/login.c).
var libiscsiOpKeys = []string{"HeaderDigest=None,CRC32C", "DataDigest=None", "InitialR2T=Yes",
	"ImmediateData=Yes", "MaxBurstLength=262144", "FirstBurstLength=262144", "DefaultTime2Wait=2",
	"DefaultTime2Retain=0", "MaxOutstandingR2T=1", "ErrorRecoveryLevel=0", "IFMarker=No", "OFMarker=No",
	"MaxConnections=1", "MaxRecvDataSegmentLength=262144", "DataPDUInOrder=Yes", "DataSequenceInOrder=Yes"}

// libiscsi without credentials logs in with one request in the
// operational stage.
func TestLoginOperationalOnly(t *testing.T) {
	tg := newTestTarget()
	n := newNeg(tg)
	r := mustStep(t, n, LoginStep{CSG: StageOperational, NSG: StageFullFeature, Transit: true,
		Keys: identity(libiscsiOpKeys...)})
	if !r.Transit || r.NSG != StageFullFeature || !n.Done() {
		t.Fatalf("reply %+v done=%v, want transit to full feature", r, n.Done())
	}
	for k, want := range map[string]string{"TargetPortalGroupTag": "7", "TargetAlias": "disk1",
		"MaxRecvDataSegmentLength": "262144", "HeaderDigest": "None", "IFMarker": "No",
		"DefaultTime2Retain": "0", "FirstBurstLength": "262144", "MaxConnections": "1"} {
		if got, _ := value(r.Keys, k); got != want {
			t.Errorf("%s = %q, want %q (reply %v)", k, got, want, r.Keys)
		}
	}
	p := n.Params()
	if p.Target != tg || p.TargetName != testIQN || p.InitiatorName != testInitiator || p.SessionType != SessionNormal {
		t.Errorf("identity params wrong: %+v", p)
	}
	if p.FirstBurstLength != 262144 || p.MaxBurstLength != 262144 || p.DefaultTime2Retain != 0 ||
		p.TargetMaxRecvDataSegmentLength != 262144 || p.MaxRecvDataSegmentLength != 262144 || p.HeaderDigest {
		t.Errorf("operational params wrong: %+v", p)
	}
	if _, err := n.Step(LoginStep{CSG: StageOperational}); err == nil || err.Status() != StatusInitiatorError {
		t.Errorf("step after done: %v, want initiator error", err)
	}
}

// open-iscsi style: security stage with AuthMethod=None, then operational.
func TestLoginSecurityNoneThenOperational(t *testing.T) {
	tg := newTestTarget()
	n := newNeg(tg)
	r := mustStep(t, n, LoginStep{CSG: StageSecurity, NSG: StageOperational, Transit: true,
		Keys: identity("AuthMethod=CHAP,None", "InitiatorAlias=client")})
	if v, _ := value(r.Keys, "AuthMethod"); v != "None" || !r.Transit || r.NSG != StageOperational {
		t.Fatalf("security reply %+v", r)
	}
	if _, ok := value(r.Keys, "TargetPortalGroupTag"); !ok {
		t.Fatalf("no TargetPortalGroupTag in first reply: %v", r.Keys)
	}
	r = mustStep(t, n, LoginStep{CSG: StageOperational, NSG: StageFullFeature, Transit: true,
		Keys: pairs("HeaderDigest=CRC32C,None", "DataDigest=CRC32C", "MaxRecvDataSegmentLength=65536")})
	if _, ok := value(r.Keys, "TargetPortalGroupTag"); ok {
		t.Errorf("TargetPortalGroupTag repeated: %v", r.Keys)
	}
	if !n.Done() {
		t.Fatalf("not done: %+v", r)
	}
	p := n.Params()
	if !p.HeaderDigest || !p.DataDigest || p.MaxRecvDataSegmentLength != 65536 || p.InitiatorAlias != "client" {
		t.Errorf("params %+v", p)
	}
}

// Each operational key, its result function, range checks and special
// answers (RFC 7143 section 13).
func TestOperationalKeys(t *testing.T) {
	noDigest := func(o *Operational) { o.HeaderDigest, o.DataDigest = false, false }
	tests := []struct {
		name  string
		op    func(*Operational)
		keys  []string
		key   string
		want  string // "" means: no answer expected
		check func(SessionParams) bool
	}{
		{"hd crc first", nil, []string{"HeaderDigest=CRC32C,None"}, "HeaderDigest", "CRC32C", func(p SessionParams) bool { return p.HeaderDigest }},
		{"hd none first", nil, []string{"HeaderDigest=None,CRC32C"}, "HeaderDigest", "None", func(p SessionParams) bool { return !p.HeaderDigest }},
		{"hd crc not allowed", noDigest, []string{"HeaderDigest=CRC32C,None"}, "HeaderDigest", "None", func(p SessionParams) bool { return !p.HeaderDigest }},
		{"hd only crc not allowed", noDigest, []string{"HeaderDigest=CRC32C"}, "HeaderDigest", "Reject", nil},
		{"hd unknown value skipped", nil, []string{"HeaderDigest=MD5,CRC32C"}, "HeaderDigest", "CRC32C", nil},
		{"hd empty member", nil, []string{"HeaderDigest=CRC32C,,None"}, "HeaderDigest", "Reject", nil},
		{"dd crc", nil, []string{"DataDigest=CRC32C"}, "DataDigest", "CRC32C", func(p SessionParams) bool { return p.DataDigest }},
		{"maxconn to 1", nil, []string{"MaxConnections=4"}, "MaxConnections", "1", func(p SessionParams) bool { return p.MaxConnections == 1 }},
		{"maxconn zero", nil, []string{"MaxConnections=0"}, "MaxConnections", "Reject", nil},
		{"maxconn too big", nil, []string{"MaxConnections=65536"}, "MaxConnections", "Reject", nil},
		{"maxconn junk", nil, []string{"MaxConnections=1a"}, "MaxConnections", "Reject", nil},
		{"initialr2t or yes", nil, []string{"InitialR2T=No"}, "InitialR2T", "Yes", func(p SessionParams) bool { return p.InitialR2T }},
		{"initialr2t or no", func(o *Operational) { o.InitialR2T = false }, []string{"InitialR2T=No"}, "InitialR2T", "No", func(p SessionParams) bool { return !p.InitialR2T }},
		{"initialr2t junk", nil, []string{"InitialR2T=yes"}, "InitialR2T", "Reject", nil},
		{"immediate and", func(o *Operational) { o.ImmediateData = false }, []string{"ImmediateData=Yes"}, "ImmediateData", "No", func(p SessionParams) bool { return !p.ImmediateData }},
		{"immediate yes", nil, []string{"ImmediateData=Yes"}, "ImmediateData", "Yes", func(p SessionParams) bool { return p.ImmediateData }},
		{"mbl min ours", nil, []string{"MaxBurstLength=1048576"}, "MaxBurstLength", "524288", func(p SessionParams) bool { return p.MaxBurstLength == 524288 }},
		{"mbl min theirs hex", nil, []string{"MaxBurstLength=0x1000", "FirstBurstLength=4096"}, "MaxBurstLength", "4096", func(p SessionParams) bool { return p.MaxBurstLength == 4096 }},
		{"mbl too small", nil, []string{"MaxBurstLength=511"}, "MaxBurstLength", "Reject", func(p SessionParams) bool { return p.MaxBurstLength == 262144 }},
		{"mbl too big", nil, []string{"MaxBurstLength=16777216"}, "MaxBurstLength", "Reject", nil},
		{"mbl negative", nil, []string{"MaxBurstLength=-1"}, "MaxBurstLength", "Reject", nil},
		{"fbl min", nil, []string{"FirstBurstLength=1048576"}, "FirstBurstLength", "262144", func(p SessionParams) bool { return p.FirstBurstLength == 262144 }},
		{"fbl capped by mbl", nil, []string{"FirstBurstLength=262144", "MaxBurstLength=8192"}, "FirstBurstLength", "8192", func(p SessionParams) bool { return p.FirstBurstLength == 8192 }},
		{"fbl irrelevant", nil, []string{"FirstBurstLength=65536", "InitialR2T=Yes", "ImmediateData=No"}, "FirstBurstLength", "Irrelevant", nil},
		{"t2w max", nil, []string{"DefaultTime2Wait=0"}, "DefaultTime2Wait", "2", func(p SessionParams) bool { return p.DefaultTime2Wait == 2 }},
		{"t2w range", nil, []string{"DefaultTime2Wait=3601"}, "DefaultTime2Wait", "Reject", nil},
		{"t2r min", nil, []string{"DefaultTime2Retain=0"}, "DefaultTime2Retain", "0", func(p SessionParams) bool { return p.DefaultTime2Retain == 0 }},
		{"mor2t min", nil, []string{"MaxOutstandingR2T=8"}, "MaxOutstandingR2T", "1", func(p SessionParams) bool { return p.MaxOutstandingR2T == 1 }},
		{"pdu in order or", nil, []string{"DataPDUInOrder=No"}, "DataPDUInOrder", "Yes", func(p SessionParams) bool { return p.DataPDUInOrder }},
		{"seq in order or", nil, []string{"DataSequenceInOrder=No"}, "DataSequenceInOrder", "Yes", func(p SessionParams) bool { return p.DataSequenceInOrder }},
		{"erl to 0", nil, []string{"ErrorRecoveryLevel=2"}, "ErrorRecoveryLevel", "0", func(p SessionParams) bool { return p.ErrorRecoveryLevel == 0 }},
		{"erl range", nil, []string{"ErrorRecoveryLevel=3"}, "ErrorRecoveryLevel", "Reject", nil},
		{"taskreporting", nil, []string{"TaskReporting=ResponseFence,RFC3720"}, "TaskReporting", "RFC3720", nil},
		{"taskreporting none", nil, []string{"TaskReporting=FastAbort"}, "TaskReporting", "Reject", nil},
		{"protocol level", nil, []string{"iSCSIProtocolLevel=2"}, "iSCSIProtocolLevel", "1", nil},
		{"ifmarker", nil, []string{"IFMarker=Yes"}, "IFMarker", "No", nil},
		{"ofmarkint", nil, []string{"OFMarkInt=1~65535"}, "OFMarkInt", "Reject", nil},
		{"x- key", nil, []string{"X-com.example.opt=1"}, "X-com.example.opt", "NotUnderstood", nil},
		{"x# key", nil, []string{"X#foo=1"}, "X#foo", "NotUnderstood", nil},
		{"unknown key", nil, []string{"FooBar=1"}, "FooBar", "NotUnderstood", nil},
		{"mrdsl declared", nil, []string{"MaxRecvDataSegmentLength=16384"}, "", "", func(p SessionParams) bool { return p.MaxRecvDataSegmentLength == 16384 }},
		{"mrdsl capped by xmit", func(o *Operational) { o.MaxXmitDataSegmentLength = 65536 }, []string{"MaxRecvDataSegmentLength=1048576"}, "", "", func(p SessionParams) bool { return p.MaxRecvDataSegmentLength == 65536 }},
		{"mrdsl default", nil, nil, "", "", func(p SessionParams) bool { return p.MaxRecvDataSegmentLength == 8192 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTestTarget()
			if tc.op != nil {
				tc.op(&tg.Op)
			}
			n := newNeg(tg)
			r, err := n.Step(LoginStep{CSG: StageOperational, NSG: StageFullFeature, Transit: true, Keys: identity(tc.keys...)})
			if err != nil {
				t.Fatal(err)
			}
			if tc.key != "" {
				if got, ok := value(r.Keys, tc.key); !ok || got != tc.want {
					t.Fatalf("%s answered %q (present %v), want %q; reply %v", tc.key, got, ok, tc.want, r.Keys)
				}
			}
			if tc.check != nil && !tc.check(n.Params()) {
				t.Fatalf("params check failed: %+v", n.Params())
			}
			if !n.Done() {
				t.Fatalf("login not done: %+v", r)
			}
		})
	}
}

func TestDiscoverySession(t *testing.T) {
	n := NewLoginNegotiator(LoginConfig{Leading: true})
	r := mustStep(t, n, LoginStep{CSG: StageOperational, NSG: StageFullFeature, Transit: true,
		Keys: pairs("InitiatorName="+testInitiator, "SessionType=Discovery", "TargetName=iqn.whatever",
			"HeaderDigest=CRC32C,None", "MaxBurstLength=4096", "InitialR2T=No", "MaxConnections=2",
			"DefaultTime2Wait=5", "MaxRecvDataSegmentLength=32768")})
	for k, want := range map[string]string{"TargetName": "Irrelevant", "MaxBurstLength": "Irrelevant",
		"InitialR2T": "Irrelevant", "MaxConnections": "Irrelevant", "HeaderDigest": "CRC32C", "DefaultTime2Wait": "5"} {
		if got, _ := value(r.Keys, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if _, ok := value(r.Keys, "TargetPortalGroupTag"); ok {
		t.Errorf("TargetPortalGroupTag in discovery: %v", r.Keys)
	}
	p := n.Params()
	if !n.Done() || p.SessionType != SessionDiscovery || p.Target != nil || p.MaxRecvDataSegmentLength != 32768 {
		t.Fatalf("done=%v params %+v", n.Done(), p)
	}
}

// Every refusal the negotiator produces, with its status (RFC 7143 11.13.5).
func TestLoginRefusals(t *testing.T) {
	chapTarget := func() *Target {
		tg := newTestTarget()
		tg.Auth = &CHAP{Username: "user", Secret: "secretsecret"}
		return tg
	}
	aclTarget := func() *Target {
		tg := newTestTarget()
		tg.ACLs = []ACL{{InitiatorName: "iqn.other"}}
		return tg
	}
	// Deny by default: no hosts, no target CHAP, not opened.
	closedTarget := func() *Target {
		tg := newTestTarget()
		tg.OpenACL = false
		return tg
	}
	sec := func(t bool, keys ...KeyValue) LoginStep {
		return LoginStep{CSG: StageSecurity, NSG: StageOperational, Transit: t, Keys: keys}
	}
	op := func(keys ...KeyValue) LoginStep {
		return LoginStep{CSG: StageOperational, NSG: StageFullFeature, Transit: true, Keys: keys}
	}
	tests := []struct {
		name   string
		target func() *Target
		steps  []LoginStep
		want   LoginStatus
	}{
		{"missing initiator name", newTestTarget, []LoginStep{op(pairs("TargetName=" + testIQN)...)}, StatusMissingParameter},
		{"empty initiator name", newTestTarget, []LoginStep{op(pairs("InitiatorName=", "TargetName="+testIQN)...)}, StatusMissingParameter},
		{"missing target name", newTestTarget, []LoginStep{op(pairs("InitiatorName=" + testInitiator)...)}, StatusMissingParameter},
		{"long initiator name", newTestTarget, []LoginStep{op(pairs("InitiatorName=iqn."+strings.Repeat("a", 230), "TargetName="+testIQN)...)}, StatusInitiatorError},
		{"unknown target", newTestTarget, []LoginStep{op(pairs("InitiatorName="+testInitiator, "TargetName=iqn.nope")...)}, StatusTargetNotFound},
		{"acl refusal", aclTarget, []LoginStep{op(identity()...)}, StatusAuthorizationFailure},
		{"target without hosts admits nobody", closedTarget, []LoginStep{op(identity()...)}, StatusAuthorizationFailure},
		{"target without hosts, AuthMethod=None", closedTarget, []LoginStep{sec(true, identity("AuthMethod=None")...)}, StatusAuthorizationFailure},
		{"bad session type", newTestTarget, []LoginStep{op(pairs("InitiatorName="+testInitiator, "SessionType=Bogus")...)}, StatusSessionTypeNotSupported},
		{"chap required, None offered", chapTarget, []LoginStep{sec(true, identity("AuthMethod=None")...)}, StatusAuthenticationFailure},
		{"chap required, security skipped", chapTarget, []LoginStep{op(identity()...)}, StatusAuthenticationFailure},
		{"chap required, transit without AuthMethod", chapTarget, []LoginStep{sec(true, identity()...)}, StatusAuthenticationFailure},
		{"chap required, unsupported CHAP_A", chapTarget, []LoginStep{sec(true, identity("AuthMethod=CHAP")...), sec(false, pairs("CHAP_A=6,8")...)}, StatusAuthenticationFailure},
		{"chap response missing", chapTarget, []LoginStep{sec(true, identity("AuthMethod=CHAP")...), sec(false, pairs("CHAP_A=5")...), sec(true)}, StatusAuthenticationFailure},
		{"chap_a before AuthMethod", chapTarget, []LoginStep{sec(false, identity("CHAP_A=5")...)}, StatusInitiatorError},
		{"chap_n without challenge", newTestTarget, []LoginStep{sec(false, identity("AuthMethod=None", "CHAP_N=x")...)}, StatusInitiatorError},
		{"csg full feature", newTestTarget, []LoginStep{{CSG: StageFullFeature, Keys: identity()}}, StatusInitiatorError},
		{"csg reserved", newTestTarget, []LoginStep{{CSG: 2, Keys: identity()}}, StatusInitiatorError},
		{"nsg reserved", newTestTarget, []LoginStep{{CSG: StageSecurity, NSG: 2, Transit: true, Keys: identity()}}, StatusInitiatorError},
		{"nsg backwards", newTestTarget, []LoginStep{{CSG: StageOperational, NSG: StageSecurity, Transit: true, Keys: identity()}}, StatusInitiatorError},
		{"nsg same", newTestTarget, []LoginStep{{CSG: StageOperational, NSG: StageOperational, Transit: true, Keys: identity()}}, StatusInitiatorError},
		{"csg jumps without target transit", newTestTarget, []LoginStep{sec(false, identity("AuthMethod=None")...), op()}, StatusInitiatorError},
		{"duplicate key in step", newTestTarget, []LoginStep{op(identity("MaxBurstLength=4096", "MaxBurstLength=8192")...)}, StatusInitiatorError},
		{"duplicate key across steps", newTestTarget, []LoginStep{{CSG: StageOperational, Keys: identity("MaxBurstLength=4096")}, op(pairs("MaxBurstLength=4096")...)}, StatusInitiatorError},
		{"operational key in security stage", newTestTarget, []LoginStep{sec(true, identity("MaxBurstLength=4096")...)}, StatusInitiatorError},
		{"security key in operational stage", newTestTarget, []LoginStep{op(identity("AuthMethod=None")...)}, StatusInitiatorError},
		{"target-only key", newTestTarget, []LoginStep{op(identity("TargetAlias=x")...)}, StatusInitiatorError},
		{"SendTargets in login", newTestTarget, []LoginStep{op(identity("SendTargets=All")...)}, StatusInitiatorError},
		{"initiator name changes", newTestTarget, []LoginStep{sec(true, identity("AuthMethod=None")...), op(pairs("InitiatorName=iqn.other")...)}, StatusInitiatorError},
		{"target name changes", newTestTarget, []LoginStep{sec(true, identity("AuthMethod=None")...), op(pairs("TargetName=iqn.other")...)}, StatusInitiatorError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newNeg(tc.target())
			var err *LoginError
			for i, s := range tc.steps {
				_, err = n.Step(s)
				if err != nil && i != len(tc.steps)-1 {
					t.Fatalf("step %d refused early: %v", i, err)
				}
			}
			if err == nil {
				t.Fatalf("login accepted, want status %04x", tc.want)
			}
			if err.Status() != tc.want || err.Class != tc.want.Class() || err.Detail != tc.want.Detail() {
				t.Fatalf("status %04x (%v), want %04x", err.Status(), err, tc.want)
			}
			// A refused login stays refused.
			if _, again := n.Step(LoginStep{CSG: StageSecurity}); again != err {
				t.Fatalf("error not sticky: %v", again)
			}
		})
	}
}

func TestLoginErrorStatuses(t *testing.T) {
	for _, c := range []struct {
		err  *LoginError
		want uint16
	}{
		{ErrInitiatorError(""), 0x0200}, {ErrAuthFailure(""), 0x0201}, {ErrAuthorizationFailure(""), 0x0202},
		{ErrTargetNotFound(""), 0x0203}, {ErrTargetRemoved(""), 0x0204}, {ErrUnsupportedVersion(""), 0x0205},
		{ErrTooManyConnections(""), 0x0206}, {ErrMissingParameter(""), 0x0207}, {ErrCantIncludeInSession(""), 0x0208},
		{ErrSessionTypeNotSupported(""), 0x0209}, {ErrSessionDoesNotExist(""), 0x020A}, {ErrInvalidDuringLogin(""), 0x020B},
		{ErrTargetError(""), 0x0300}, {ErrServiceUnavailable(""), 0x0301}, {ErrOutOfResources(""), 0x0302},
	} {
		if got := uint16(c.err.Class)<<8 | uint16(c.err.Detail); got != c.want {
			t.Errorf("%v: %04x, want %04x", c.err, got, c.want)
		}
	}
	if !strings.Contains(ErrTargetNotFound("x").Error(), "0x0203") {
		t.Errorf("Error() lacks status: %s", ErrTargetNotFound("x").Error())
	}
}

// A target stricter than the RFC defaults offers its values for keys the
// initiator did not send, and transits only once they are answered.
func TestTargetOffers(t *testing.T) {
	tg := newTestTarget()
	tg.Op.ImmediateData = false
	tg.Op.MaxBurstLength = 65536
	n := newNeg(tg)
	r := mustStep(t, n, LoginStep{CSG: StageOperational, NSG: StageFullFeature, Transit: true, Keys: identity()})
	if r.Transit {
		t.Fatalf("transited with offers outstanding: %+v", r)
	}
	if v, _ := value(r.Keys, "ImmediateData"); v != "No" {
		t.Fatalf("ImmediateData offer %q in %v", v, r.Keys)
	}
	if v, _ := value(r.Keys, "MaxBurstLength"); v != "65536" {
		t.Fatalf("MaxBurstLength offer %q in %v", v, r.Keys)
	}
	r = mustStep(t, n, LoginStep{CSG: StageOperational, NSG: StageFullFeature, Transit: true,
		Keys: pairs("ImmediateData=No", "MaxBurstLength=32768")})
	if !r.Transit || !n.Done() || len(r.Keys) != 0 {
		t.Fatalf("answer to offers: %+v", r)
	}
	p := n.Params()
	if p.ImmediateData || p.MaxBurstLength != 32768 {
		t.Fatalf("params %+v", p)
	}
}

func TestNonLeadingConnection(t *testing.T) {
	tg := newTestTarget()
	n := NewLoginNegotiator(LoginConfig{LookupTarget: lookupOf(tg)})
	r := mustStep(t, n, LoginStep{CSG: StageOperational, NSG: StageFullFeature, Transit: true,
		Keys: identity("MaxBurstLength=4096", "HeaderDigest=CRC32C")})
	if v, _ := value(r.Keys, "MaxBurstLength"); v != "Reject" {
		t.Errorf("LO key on non-leading connection answered %q", v)
	}
	if v, _ := value(r.Keys, "HeaderDigest"); v != "CRC32C" {
		t.Errorf("HeaderDigest answered %q", v)
	}
}

// Security straight to full feature: the target never declared its
// MaxRecvDataSegmentLength, so the RFC default of 8192 applies to it.
func TestSecurityToFullFeature(t *testing.T) {
	n := newNeg(newTestTarget())
	r := mustStep(t, n, LoginStep{CSG: StageSecurity, NSG: StageFullFeature, Transit: true, Keys: identity("AuthMethod=None")})
	if !r.Transit || r.NSG != StageFullFeature || !n.Done() {
		t.Fatalf("reply %+v", r)
	}
	if p := n.Params(); p.TargetMaxRecvDataSegmentLength != 8192 || p.MaxRecvDataSegmentLength != 8192 {
		t.Fatalf("params %+v", p)
	}
}

// The target does not transit when the initiator did not ask to.
func TestNoTransitWithoutT(t *testing.T) {
	n := newNeg(newTestTarget())
	r := mustStep(t, n, LoginStep{CSG: StageOperational, Keys: identity("MaxBurstLength=131072")})
	if r.Transit || n.Done() {
		t.Fatalf("reply %+v", r)
	}
	r = mustStep(t, n, LoginStep{CSG: StageOperational, NSG: StageFullFeature, Transit: true})
	if !r.Transit || !n.Done() || n.Params().MaxBurstLength != 131072 {
		t.Fatalf("reply %+v params %+v", r, n.Params())
	}
}

// FuzzLoginNegotiator feeds random request sequences: the negotiator must
// never panic, and a completed login must have consistent parameters.
// Input: requests separated by 0xFF; each request's first byte holds
// T (0x80), CSG (bits 2-3) and NSG (bits 0-1), the rest is a text segment.
func FuzzLoginNegotiator(f *testing.F) {
	f.Add([]byte("\x87InitiatorName=iqn.i\x00TargetName=" + testIQN + "\x00MaxBurstLength=4096\x00"))
	f.Add([]byte("\x81InitiatorName=iqn.i\x00TargetName=" + testIQN + "\x00AuthMethod=CHAP,None\x00\xff\x01CHAP_A=5,7\x00\xff\x81CHAP_N=u\x00CHAP_R=0x00\x00"))
	f.Add([]byte("\x87InitiatorName=iqn.i\x00SessionType=Discovery\x00HeaderDigest=CRC32C\x00"))
	f.Add([]byte("\x81InitiatorName=iqn.i\x00TargetName=" + testIQN + "\x00AuthMethod=None\x00\xff\x87FirstBurstLength=512\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		open := newTestTarget()
		chap := newTestTarget()
		chap.Name = "iqn.chap"
		chap.Auth = &CHAP{Username: "u", Secret: "s", MutualUsername: "m", MutualSecret: "ms"}
		n := NewLoginNegotiator(LoginConfig{LookupTarget: lookupOf(open, chap), Leading: len(data)%2 == 0,
			DiscoveryAuth: &CHAP{Username: "d", Secret: "ds"}})
		for _, req := range bytes.Split(data, []byte{0xff}) {
			if len(req) == 0 {
				continue
			}
			kvs, err := ParseText(req[1:])
			if err != nil {
				continue
			}
			s := LoginStep{Transit: req[0]&0x80 != 0, CSG: Stage(req[0]>>2) & 3, NSG: Stage(req[0]) & 3, Keys: kvs}
			r, lerr := n.Step(s)
			if lerr != nil {
				if lerr.Class == 0 {
					t.Fatalf("refusal with success class: %v", lerr)
				}
				return
			}
			if r.Transit && r.NSG <= s.CSG {
				t.Fatalf("target transited backwards: %+v for %+v", r, s)
			}
			for _, kv := range r.Keys {
				if kv.Key == "" {
					t.Fatalf("empty key in reply %v", r.Keys)
				}
			}
		}
		if n.Done() {
			p := n.Params()
			if p.FirstBurstLength > p.MaxBurstLength || p.MaxConnections != 1 || p.ErrorRecoveryLevel != 0 ||
				p.MaxRecvDataSegmentLength < 512 || p.TargetMaxRecvDataSegmentLength < 512 ||
				(p.SessionType == SessionNormal && p.Target == nil) || (p.Target == chap && n.chap.state != chapDone) {
				t.Fatalf("inconsistent params %+v", p)
			}
		}
	})
}
