package target

import (
	"fmt"
	"strconv"
	"strings"
)

// Stage is a login stage (RFC 7143 11.12.3, CSG/NSG encoding).
type Stage uint8

const (
	StageSecurity    Stage = 0
	StageOperational Stage = 1
	StageFullFeature Stage = 3
)

// SessionType is the SessionType key (RFC 7143 13.21).
type SessionType uint8

const (
	SessionNormal SessionType = iota
	SessionDiscovery
)

func (t SessionType) String() string {
	if t == SessionDiscovery {
		return "Discovery"
	}
	return "Normal"
}

// SessionParams is the outcome of a login.
type SessionParams struct {
	SessionType                          SessionType
	InitiatorName, InitiatorAlias        string
	TargetName                           string
	Target                               *Target // nil for discovery
	ACL                                  *ACL    // matched ACL entry, if any
	HeaderDigest, DataDigest             bool    // CRC32C negotiated
	MaxConnections                       uint32
	InitialR2T, ImmediateData            bool
	MaxRecvDataSegmentLength             uint32 // the initiator's: the most the target may send in one PDU (already capped by Operational.MaxXmitDataSegmentLength)
	TargetMaxRecvDataSegmentLength       uint32 // what the target declared it accepts
	MaxBurstLength, FirstBurstLength     uint32
	DefaultTime2Wait, DefaultTime2Retain uint32
	MaxOutstandingR2T                    uint32
	DataPDUInOrder, DataSequenceInOrder  bool
	ErrorRecoveryLevel                   uint8
}

// defaultParams holds the RFC 7143 section 13 defaults: a key nobody
// negotiates keeps its default value.
func defaultParams() SessionParams {
	return SessionParams{
		MaxConnections:                 1,
		InitialR2T:                     true,
		ImmediateData:                  true,
		MaxRecvDataSegmentLength:       8192,
		TargetMaxRecvDataSegmentLength: 8192,
		MaxBurstLength:                 262144,
		FirstBurstLength:               65536,
		DefaultTime2Wait:               2,
		DefaultTime2Retain:             20,
		MaxOutstandingR2T:              1,
		DataPDUInOrder:                 true,
		DataSequenceInOrder:            true,
	}
}

// LoginStatus is a Login Response Status-Class and Status-Detail pair
// (RFC 7143 11.13.5), class in the high byte.
type LoginStatus uint16

// Login Response statuses, RFC 7143 11.13.5.
const (
	StatusSuccess                 LoginStatus = 0x0000
	StatusTargetMovedTemporarily  LoginStatus = 0x0101
	StatusTargetMovedPermanently  LoginStatus = 0x0102
	StatusInitiatorError          LoginStatus = 0x0200
	StatusAuthenticationFailure   LoginStatus = 0x0201
	StatusAuthorizationFailure    LoginStatus = 0x0202
	StatusTargetNotFound          LoginStatus = 0x0203
	StatusTargetRemoved           LoginStatus = 0x0204
	StatusUnsupportedVersion      LoginStatus = 0x0205
	StatusTooManyConnections      LoginStatus = 0x0206
	StatusMissingParameter        LoginStatus = 0x0207
	StatusCantIncludeInSession    LoginStatus = 0x0208
	StatusSessionTypeNotSupported LoginStatus = 0x0209
	StatusSessionDoesNotExist     LoginStatus = 0x020A
	StatusInvalidDuringLogin      LoginStatus = 0x020B
	StatusTargetError             LoginStatus = 0x0300
	StatusServiceUnavailable      LoginStatus = 0x0301
	StatusOutOfResources          LoginStatus = 0x0302
)

// Class returns the Status-Class byte.
func (s LoginStatus) Class() uint8 { return uint8(s >> 8) }

// Detail returns the Status-Detail byte.
func (s LoginStatus) Detail() uint8 { return uint8(s) }

// LoginError is a refusal: the Login Response status class/detail
// (RFC 7143 11.13.5).
type LoginError struct {
	Class, Detail uint8
	Reason        string
}

func (e *LoginError) Error() string {
	return fmt.Sprintf("iscsi login refused (status 0x%02x%02x): %s", e.Class, e.Detail, e.Reason)
}

// Status returns the class/detail pair as one value.
func (e *LoginError) Status() LoginStatus {
	return LoginStatus(uint16(e.Class)<<8 | uint16(e.Detail))
}

// NewLoginError returns a refusal with the given status.
func NewLoginError(s LoginStatus, reason string) *LoginError {
	return &LoginError{Class: s.Class(), Detail: s.Detail(), Reason: reason}
}

// Constructors for each refusal of RFC 7143 11.13.5. Redirection (class 1)
// needs a TargetAddress key and is built with NewLoginError by its user.
func ErrInitiatorError(r string) *LoginError { return NewLoginError(StatusInitiatorError, r) }
func ErrAuthFailure(r string) *LoginError    { return NewLoginError(StatusAuthenticationFailure, r) }
func ErrAuthorizationFailure(r string) *LoginError {
	return NewLoginError(StatusAuthorizationFailure, r)
}
func ErrTargetNotFound(r string) *LoginError     { return NewLoginError(StatusTargetNotFound, r) }
func ErrTargetRemoved(r string) *LoginError      { return NewLoginError(StatusTargetRemoved, r) }
func ErrUnsupportedVersion(r string) *LoginError { return NewLoginError(StatusUnsupportedVersion, r) }
func ErrTooManyConnections(r string) *LoginError { return NewLoginError(StatusTooManyConnections, r) }
func ErrMissingParameter(r string) *LoginError   { return NewLoginError(StatusMissingParameter, r) }
func ErrCantIncludeInSession(r string) *LoginError {
	return NewLoginError(StatusCantIncludeInSession, r)
}
func ErrSessionTypeNotSupported(r string) *LoginError {
	return NewLoginError(StatusSessionTypeNotSupported, r)
}
func ErrSessionDoesNotExist(r string) *LoginError { return NewLoginError(StatusSessionDoesNotExist, r) }
func ErrInvalidDuringLogin(r string) *LoginError  { return NewLoginError(StatusInvalidDuringLogin, r) }
func ErrTargetError(r string) *LoginError         { return NewLoginError(StatusTargetError, r) }
func ErrServiceUnavailable(r string) *LoginError  { return NewLoginError(StatusServiceUnavailable, r) }
func ErrOutOfResources(r string) *LoginError      { return NewLoginError(StatusOutOfResources, r) }

// LoginConfig configures one login negotiation.
type LoginConfig struct {
	LookupTarget  func(name string) *Target // nil if no such target
	DiscoveryAuth *CHAP
	Leading       bool // first connection of a new session (TSIH 0)
}

// LoginStep is one complete Login Request (continuations already joined).
type LoginStep struct {
	CSG, NSG Stage
	Transit  bool
	Keys     []KeyValue
}

// LoginReply is what the target answers to one step. NSG is meaningful only
// when Transit is set (RFC 7143 11.13.3: otherwise reserved) and is then
// zero; the response's CSG is the request's.
type LoginReply struct {
	Keys    []KeyValue
	Transit bool
	NSG     Stage
}

// Special values (RFC 7143 6.2).
const (
	valReject        = "Reject"
	valNotUnderstood = "NotUnderstood"
	valIrrelevant    = "Irrelevant"
)

// Caps on what one login may make us remember; a peer beyond them is
// broken or hostile.
const (
	maxLoginSteps = 64
	maxLoginKeys  = 256
	// RFC 7143 4.2.7.1: "iSCSI names ... [are] up to a maximum length of
	// 223 bytes."
	maxNameLen = 223
)

// LoginNegotiator runs the target side of one connection's login phase as
// a pure state machine: requests in, responses out, no I/O.
// It is not safe for concurrent use: the connection's goroutine owns it.
type LoginNegotiator struct {
	cfg LoginConfig

	steps   int
	stage   Stage // the stage the next request must name as CSG
	started bool
	done    bool
	err     *LoginError // sticky: a refused login stays refused

	params SessionParams
	op     Operational // the target's offer, normalized
	auth   *CHAP       // credentials the initiator must prove, nil if none

	authMethod string // agreed AuthMethod, "" until negotiated
	chap       chapServer

	seen           map[string]string // keys the initiator sent, across steps
	declaredMRDSL  bool
	offersComputed bool
	offered        map[string]string // target's offers awaiting an answer
}

// NewLoginNegotiator starts a login negotiation.
func NewLoginNegotiator(cfg LoginConfig) *LoginNegotiator {
	return &LoginNegotiator{
		cfg:     cfg,
		params:  defaultParams(),
		seen:    map[string]string{},
		offered: map[string]string{},
	}
}

// Done reports that the target answered a transit to StageFullFeature.
func (n *LoginNegotiator) Done() bool { return n.done }

// Params returns the negotiated session parameters; complete once Done.
func (n *LoginNegotiator) Params() SessionParams {
	p := n.params
	// RFC 7143 13.14: "FirstBurstLength MUST NOT exceed MaxBurstLength."
	if p.FirstBurstLength > p.MaxBurstLength {
		p.FirstBurstLength = p.MaxBurstLength
	}
	if x := n.op.MaxXmitDataSegmentLength; x != 0 && p.MaxRecvDataSegmentLength > x {
		p.MaxRecvDataSegmentLength = x
	}
	return p
}

// Step consumes one request; a *LoginError ends the login with that status.
func (n *LoginNegotiator) Step(s LoginStep) (LoginReply, *LoginError) {
	if n.err != nil {
		return LoginReply{}, n.err
	}
	r, err := n.step(s)
	if err != nil {
		n.err = err
		return LoginReply{}, err
	}
	return r, nil
}

func (n *LoginNegotiator) step(s LoginStep) (LoginReply, *LoginError) {
	if n.done {
		return LoginReply{}, ErrInitiatorError("login request after login completed")
	}
	n.steps++
	if n.steps > maxLoginSteps {
		return LoginReply{}, ErrInitiatorError("too many login requests")
	}
	if err := n.checkStages(s); err != nil {
		return LoginReply{}, err
	}
	first := !n.started
	if first {
		// RFC 7143 6.3: the first request names the stage the login
		// starts in (security, or operational when skipping security).
		n.stage = s.CSG
	}
	n.started = true
	if first {
		if err := n.identify(s); err != nil {
			return LoginReply{}, err
		}
	}

	var reply []KeyValue
	// Keys of this step, to catch repeats within it.
	inStep := map[string]bool{}
	fblIndex, fblValue := -1, ""
	for _, kv := range s.Keys {
		if inStep[kv.Key] {
			// RFC 7143 6.2: "Neither the initiator nor the target should
			// attempt to declare or negotiate a parameter more than once
			// during login"; a target detecting it MUST answer with a
			// Login reject (initiator error).
			return LoginReply{}, ErrInitiatorError("key " + kv.Key + " sent twice")
		}
		inStep[kv.Key] = true
		if len(n.seen) >= maxLoginKeys {
			return LoginReply{}, ErrInitiatorError("too many keys in login")
		}

		if isIdentityKey(kv.Key) {
			out, err := n.identityKey(kv, first)
			if err != nil {
				return LoginReply{}, err
			}
			reply = append(reply, out...)
			continue
		}
		if _, dup := n.seen[kv.Key]; dup {
			// RFC 7143 6.2, as above, across the requests of the login.
			return LoginReply{}, ErrInitiatorError("key " + kv.Key + " negotiated twice")
		}
		n.seen[kv.Key] = kv.Value

		switch {
		case isTargetOnlyKey(kv.Key):
			// RFC 7143 13.7, 13.8, 13.9: TargetAlias, TargetAddress and
			// TargetPortalGroupTag have "Senders: Target".
			return LoginReply{}, ErrInitiatorError(kv.Key + " is sent by targets only")
		case kv.Key == "SendTargets":
			// RFC 7143 13.3: "Use: FFPO" (full feature phase only).
			return LoginReply{}, ErrInitiatorError("SendTargets during login")
		case isSecurityKey(kv.Key):
			// RFC 7143 6.3 and 12: security keys belong to the
			// SecurityNegotiation stage.
			if s.CSG != StageSecurity {
				return LoginReply{}, ErrInitiatorError(kv.Key + " outside the security stage")
			}
			out, err := n.securityKey(kv, s.Keys)
			if err != nil {
				return LoginReply{}, err
			}
			reply = append(reply, out...)
		default:
			def, known := opKeys[kv.Key]
			if !known {
				// RFC 7143 6.2: a key the responder does not understand,
				// X- and X# extension keys included, is answered
				// key=NotUnderstood.
				delete(n.seen, kv.Key)
				reply = append(reply, KeyValue{kv.Key, valNotUnderstood})
				continue
			}
			// RFC 7143 6.3: operational parameters are negotiated in the
			// LoginOperationalNegotiation stage; LIO and this target
			// refuse them during security negotiation.
			if s.CSG != StageOperational {
				return LoginReply{}, ErrInitiatorError(kv.Key + " outside the operational stage")
			}
			if kv.Key == "FirstBurstLength" {
				// Its relevance and bound depend on InitialR2T,
				// ImmediateData and MaxBurstLength, which may come later
				// in the same request: answer it last, in place.
				fblIndex, fblValue = len(reply), kv.Value
				reply = append(reply, KeyValue{})
				continue
			}
			if out, ok := n.opKey(kv, def); ok {
				reply = append(reply, out)
			}
		}
	}
	if fblIndex >= 0 {
		out, ok := n.opKey(KeyValue{"FirstBurstLength", fblValue}, opKeys["FirstBurstLength"])
		if ok {
			reply[fblIndex] = out
		} else {
			reply = append(reply[:fblIndex], reply[fblIndex+1:]...)
		}
	}

	// Declarations the target makes on its own.
	if first && n.params.SessionType == SessionNormal {
		// RFC 7143 13.9 and the SSID definition of section 2.2: the
		// TargetPortalGroupTag key "must also be returned by the target as
		// a confirmation during connection establishment when TargetName
		// is given"; we send it in the first Login Response.
		reply = append(reply, KeyValue{"TargetPortalGroupTag", strconv.Itoa(int(n.params.Target.PortalGroupTag))})
		if a := n.params.Target.Alias; a != "" {
			reply = append(reply, KeyValue{"TargetAlias", a})
		}
	}
	if s.CSG == StageOperational && !n.declaredMRDSL {
		// RFC 7143 13.12: each side declares the largest data segment it
		// can receive; without this the initiator assumes 8192.
		n.declaredMRDSL = true
		n.params.TargetMaxRecvDataSegmentLength = n.op.MaxRecvDataSegmentLength
		reply = append(reply, KeyValue{"MaxRecvDataSegmentLength", strconv.FormatUint(uint64(n.op.MaxRecvDataSegmentLength), 10)})
	}
	if s.CSG == StageOperational && !n.offersComputed {
		n.offersComputed = true
		reply = append(reply, n.targetOffers()...)
	}

	transit, err := n.mayTransit(s)
	if err != nil {
		return LoginReply{}, err
	}
	out := LoginReply{Keys: reply}
	if transit {
		out.Transit, out.NSG = true, s.NSG
		n.stage = s.NSG
		if s.NSG == StageFullFeature {
			n.done = true
		}
	}
	return out, nil
}

// checkStages enforces the CSG/NSG rules of RFC 7143 6.3 and 11.12.3.
func (n *LoginNegotiator) checkStages(s LoginStep) *LoginError {
	// RFC 7143 11.12.3: CSG is 0 (SecurityNegotiation) or 1
	// (LoginOperationalNegotiation) in a Login Request; 2 is reserved and
	// 3 (FullFeaturePhase) is where login ends, not a stage to negotiate in.
	if s.CSG != StageSecurity && s.CSG != StageOperational {
		return ErrInitiatorError(fmt.Sprintf("invalid CSG %d", s.CSG))
	}
	// RFC 7143 6.3: the stages progress only when the target answers with
	// the T bit; the next request's CSG is the stage the target agreed to.
	if n.started && s.CSG != n.stage {
		return ErrInitiatorError(fmt.Sprintf("CSG %d, expected %d", s.CSG, n.stage))
	}
	if s.Transit {
		// RFC 7143 6.3: transitions go forward only, to
		// LoginOperationalNegotiation or FullFeaturePhase; 2 is reserved.
		if (s.NSG != StageOperational && s.NSG != StageFullFeature) || s.NSG <= s.CSG {
			return ErrInitiatorError(fmt.Sprintf("invalid transition %d -> %d", s.CSG, s.NSG))
		}
	}
	return nil
}

// identify processes the identity keys of the first request: who the
// initiator is, which session it wants and, for a normal session, which
// target, and whether that target admits it.
func (n *LoginNegotiator) identify(s LoginStep) *LoginError {
	var name, stype, tname string
	var hasName, hasTarget bool
	for _, kv := range s.Keys {
		switch kv.Key {
		case "InitiatorName":
			name, hasName = kv.Value, true
		case "SessionType":
			stype = kv.Value
		case "TargetName":
			tname, hasTarget = kv.Value, true
		}
	}
	// RFC 7143 13.6: the initiator "MUST provide this key to the remote
	// endpoint at the first login of the Login Phase for every
	// connection"; 11.13.5: 0207, missing parameter.
	if !hasName || name == "" {
		return ErrMissingParameter("InitiatorName missing from the first login request")
	}
	if len(name) > maxNameLen {
		return ErrInitiatorError("InitiatorName longer than 223 bytes")
	}
	n.params.InitiatorName = name
	// RFC 7143 13.21: SessionType is Discovery or Normal, default Normal;
	// 11.13.5: 0209, session type not supported.
	switch stype {
	case "", "Normal":
		n.params.SessionType = SessionNormal
	case "Discovery":
		n.params.SessionType = SessionDiscovery
	default:
		return ErrSessionTypeNotSupported("SessionType=" + stype)
	}

	if n.params.SessionType == SessionDiscovery {
		n.op = normalizeOp(DefaultOperational())
		if n.cfg.DiscoveryAuth.Enabled() {
			n.auth = n.cfg.DiscoveryAuth
		}
	} else {
		// RFC 7143 13.4: the initiator "MUST provide this key to the
		// remote endpoint in the first Login Request if the initiator is
		// not establishing a Discovery session"; 11.13.5: 0207, missing
		// parameter.
		if !hasTarget || tname == "" {
			return ErrMissingParameter("TargetName missing from the first login request")
		}
		if len(tname) > maxNameLen {
			return ErrInitiatorError("TargetName longer than 223 bytes")
		}
		var t *Target
		if n.cfg.LookupTarget != nil {
			t = n.cfg.LookupTarget(tname)
		}
		// RFC 7143 11.13.5: 0203, target not found: no such target
		// name at this address.
		if t == nil {
			return ErrTargetNotFound("no target " + tname)
		}
		n.params.TargetName, n.params.Target = tname, t
		acl, ok := matchACL(t, name)
		// RFC 7143 11.13.5: 0202, authorization failure: the initiator
		// is not allowed access to the given target.
		if !ok {
			return ErrAuthorizationFailure(name + " is not in the ACL of " + tname)
		}
		n.params.ACL = acl
		switch {
		case acl != nil && acl.Auth.Enabled():
			n.auth = acl.Auth // per-initiator credentials win
		case t.Auth.Enabled():
			n.auth = t.Auth
		}
		n.op = normalizeOp(t.Op)
	}
	n.chap.creds = n.auth
	// RFC 7143 6.3: the initiator may skip the SecurityNegotiation stage
	// (start with CSG=1) only when the target does not require
	// authentication; otherwise 11.13.5 0201, authentication failure.
	if s.CSG == StageOperational && n.auth != nil {
		return ErrAuthFailure("authentication required, security stage skipped")
	}
	return nil
}

// matchACL finds the initiator's ACL entry. Access is denied by default:
// an empty list admits an initiator only when the target requires its
// own CHAP (whoever holds the secret) or was explicitly opened
// (Target.OpenACL). iSCSI names compare case-insensitively (RFC 7143
// 4.2.7.2: names are normalized to lower case).
func matchACL(t *Target, initiator string) (*ACL, bool) {
	if len(t.ACLs) == 0 {
		return nil, t.OpenACL || t.Auth.Enabled()
	}
	for i := range t.ACLs {
		if strings.EqualFold(t.ACLs[i].InitiatorName, initiator) {
			return &t.ACLs[i], true
		}
	}
	return nil, false
}

func isIdentityKey(k string) bool {
	switch k {
	case "InitiatorName", "InitiatorAlias", "TargetName", "SessionType":
		return true
	}
	return false
}

func isTargetOnlyKey(k string) bool {
	switch k {
	case "TargetAlias", "TargetAddress", "TargetPortalGroupTag":
		return true
	}
	return false
}

func isSecurityKey(k string) bool {
	switch k {
	case "AuthMethod", "CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R":
		return true
	}
	return false
}

// identityKey handles the declarative identity keys. The first request's
// values were taken by identify; libiscsi repeats them in its first
// operational-stage request, so an identical repeat is accepted, while a
// change of identity mid-login is an initiator error.
func (n *LoginNegotiator) identityKey(kv KeyValue, first bool) ([]KeyValue, *LoginError) {
	switch kv.Key {
	case "InitiatorAlias":
		// RFC 7143 13.6.1 declarative, any stage; keep the first one.
		if prev, ok := n.seen[kv.Key]; ok && prev != kv.Value {
			return nil, ErrInitiatorError("InitiatorAlias changed during login")
		}
		n.seen[kv.Key] = kv.Value
		n.params.InitiatorAlias = kv.Value
		return nil, nil
	case "TargetName":
		// RFC 7143 13.4: TargetName is irrelevant to discovery sessions.
		if n.params.SessionType == SessionDiscovery {
			if _, ok := n.seen[kv.Key]; ok {
				return nil, nil
			}
			n.seen[kv.Key] = kv.Value
			return []KeyValue{{kv.Key, valIrrelevant}}, nil
		}
		if kv.Value != n.params.TargetName {
			return nil, ErrInitiatorError("TargetName changed during login")
		}
	case "InitiatorName":
		if kv.Value != n.params.InitiatorName {
			return nil, ErrInitiatorError("InitiatorName changed during login")
		}
	case "SessionType":
		if kv.Value != n.params.SessionType.String() {
			return nil, ErrInitiatorError("SessionType changed during login")
		}
	}
	return nil, nil
}

// securityKey handles AuthMethod and the CHAP keys (RFC 7143 12.1.3).
// CHAP_N, CHAP_R, CHAP_I and CHAP_C are verified together when the first
// of them is met; all is the whole request.
func (n *LoginNegotiator) securityKey(kv KeyValue, all []KeyValue) ([]KeyValue, *LoginError) {
	switch kv.Key {
	case "AuthMethod":
		return n.authMethodKey(kv.Value)
	case "CHAP_A":
		// RFC 7143 12.1.3: CHAP_A follows the agreement on AuthMethod=CHAP.
		if n.authMethod != "CHAP" || n.chap.state != chapWaitAlgo {
			return nil, ErrInitiatorError("CHAP_A out of sequence")
		}
		out, err := n.chap.selectAlgo(kv.Value)
		n.chap.challengeStep = n.steps
		return out, err
	}
	// CHAP_N, CHAP_R, CHAP_I, CHAP_C: RFC 7143 12.1.3, the initiator's
	// answer to the challenge.
	if n.chap.state != chapWaitReply {
		if n.chap.state == chapDone {
			// Already verified along with an earlier key of this request.
			return nil, nil
		}
		return nil, ErrInitiatorError(kv.Key + " out of sequence")
	}
	var name, resp, id, ch string
	var hasI, hasC bool
	for _, k := range all {
		switch k.Key {
		case "CHAP_N":
			name = k.Value
		case "CHAP_R":
			resp = k.Value
		case "CHAP_I":
			id, hasI = k.Value, true
		case "CHAP_C":
			ch, hasC = k.Value, true
		}
	}
	return n.chap.verify(name, resp, id, ch, hasI, hasC)
}

// authMethodKey answers AuthMethod, list selection (RFC 7143 12.1): CHAP
// when credentials are required, None otherwise.
func (n *LoginNegotiator) authMethodKey(v string) ([]KeyValue, *LoginError) {
	offered, ok := parseList(v)
	if !ok {
		return []KeyValue{{"AuthMethod", valReject}}, nil
	}
	want := "None"
	if n.auth != nil {
		want = "CHAP"
	}
	for _, o := range offered {
		if o == want {
			n.authMethod = want
			if want == "CHAP" {
				n.chap.state = chapWaitAlgo
			}
			return []KeyValue{{"AuthMethod", want}}, nil
		}
	}
	// RFC 7143 11.13.5: 0201, authentication failure: this target will
	// not admit the initiator without CHAP.
	if n.auth != nil {
		return nil, ErrAuthFailure("CHAP required, initiator offered AuthMethod=" + v)
	}
	// RFC 7143 6.2: no acceptable value in a list: Reject.
	return []KeyValue{{"AuthMethod", valReject}}, nil
}

// mayTransit decides whether the target answers with T=1 (RFC 7143 6.3:
// the target transits only when the initiator asked to and the target has
// nothing left to negotiate in the current stage).
func (n *LoginNegotiator) mayTransit(s LoginStep) (bool, *LoginError) {
	switch s.CSG {
	case StageSecurity:
		if n.auth == nil || n.chap.state == chapDone {
			return s.Transit, nil
		}
		switch n.chap.state {
		case chapIdle:
			// RFC 7143 12: with authentication required the initiator
			// may not leave the security stage unauthenticated.
			if s.Transit {
				return false, ErrAuthFailure("transit requested without authentication")
			}
		case chapWaitReply:
			// The challenge went out in an earlier answer; this request
			// had to carry the response.
			if n.chap.challengeStep < n.steps {
				return false, ErrAuthFailure("CHAP_N/CHAP_R missing")
			}
		}
		return false, nil
	case StageOperational:
		return s.Transit && len(n.offered) == 0, nil
	}
	return false, nil
}

// keyKind is a key's type and result function (RFC 7143 6.2, 13).
type keyKind uint8

const (
	kindDeclarative keyKind = iota // no answer; records the sender's value
	kindAnd                        // boolean, result is AND
	kindOr                         // boolean, result is OR
	kindMin                        // numerical, result is the minimum
	kindMax                        // numerical, result is the maximum
	kindList                       // list, the responder picks the first value it supports
	kindObsolete                   // RFC 3720 keys retired by RFC 7143 13.25
)

// opKey is one operational key of RFC 7143 section 13.
type opKey struct {
	kind                keyKind
	lo, hi              uint64 // numerical range
	leadingOnly         bool   // "LO": negotiated on the leading connection only
	discoveryIrrelevant bool   // "Irrelevant when: SessionType=Discovery"
	def                 string // the RFC default, compared with our value for offers
	ours                func(n *LoginNegotiator) string
	set                 func(p *SessionParams, v string)
}

const max24 = 1<<24 - 1

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

func u32(v string) uint32 { x, _ := parseNumber(v); return uint32(x) }

// opKeys is the declarative table of operational keys, RFC 7143 13.1-13.24.
var opKeys = map[string]opKey{
	// 13.1: HeaderDigest/DataDigest, list of CRC32C and None, per connection.
	"HeaderDigest": {kind: kindList, def: "None",
		ours: func(n *LoginNegotiator) string {
			if n.op.HeaderDigest {
				return "CRC32C,None"
			}
			return "None"
		},
		set: func(p *SessionParams, v string) { p.HeaderDigest = v == "CRC32C" }},
	"DataDigest": {kind: kindList, def: "None",
		ours: func(n *LoginNegotiator) string {
			if n.op.DataDigest {
				return "CRC32C,None"
			}
			return "None"
		},
		set: func(p *SessionParams, v string) { p.DataDigest = v == "CRC32C" }},
	// 13.2: MaxConnections 1..65535, minimum; we run one connection per
	// session.
	"MaxConnections": {kind: kindMin, lo: 1, hi: 65535, leadingOnly: true, discoveryIrrelevant: true, def: "1",
		ours: func(*LoginNegotiator) string { return "1" },
		set:  func(p *SessionParams, v string) { p.MaxConnections = u32(v) }},
	// 13.10: InitialR2T, OR.
	"InitialR2T": {kind: kindOr, leadingOnly: true, discoveryIrrelevant: true, def: "Yes",
		ours: func(n *LoginNegotiator) string { return yesNo(n.op.InitialR2T) },
		set:  func(p *SessionParams, v string) { p.InitialR2T = v == "Yes" }},
	// 13.11: ImmediateData, AND.
	"ImmediateData": {kind: kindAnd, leadingOnly: true, discoveryIrrelevant: true, def: "Yes",
		ours: func(n *LoginNegotiator) string { return yesNo(n.op.ImmediateData) },
		set:  func(p *SessionParams, v string) { p.ImmediateData = v == "Yes" }},
	// 13.12: MaxRecvDataSegmentLength, declarative, 512..2^24-1.
	"MaxRecvDataSegmentLength": {kind: kindDeclarative, lo: 512, hi: max24,
		set: func(p *SessionParams, v string) { p.MaxRecvDataSegmentLength = u32(v) }},
	// 13.13: MaxBurstLength 512..2^24-1, minimum.
	"MaxBurstLength": {kind: kindMin, lo: 512, hi: max24, leadingOnly: true, discoveryIrrelevant: true, def: "262144",
		ours: func(n *LoginNegotiator) string { return utoa(n.op.MaxBurstLength) },
		set:  func(p *SessionParams, v string) { p.MaxBurstLength = u32(v) }},
	// 13.14: FirstBurstLength 512..2^24-1, minimum, not above
	// MaxBurstLength.
	"FirstBurstLength": {kind: kindMin, lo: 512, hi: max24, leadingOnly: true, discoveryIrrelevant: true, def: "65536",
		ours: func(n *LoginNegotiator) string {
			return utoa(min(n.op.FirstBurstLength, n.params.MaxBurstLength))
		},
		set: func(p *SessionParams, v string) { p.FirstBurstLength = u32(v) }},
	// 13.15: DefaultTime2Wait 0..3600, maximum.
	"DefaultTime2Wait": {kind: kindMax, lo: 0, hi: 3600, leadingOnly: true, def: "2",
		ours: func(n *LoginNegotiator) string { return utoa(n.op.DefaultTime2Wait) },
		set:  func(p *SessionParams, v string) { p.DefaultTime2Wait = u32(v) }},
	// 13.16: DefaultTime2Retain 0..3600, minimum.
	"DefaultTime2Retain": {kind: kindMin, lo: 0, hi: 3600, leadingOnly: true, def: "20",
		ours: func(n *LoginNegotiator) string { return utoa(n.op.DefaultTime2Retain) },
		set:  func(p *SessionParams, v string) { p.DefaultTime2Retain = u32(v) }},
	// 13.17: MaxOutstandingR2T 1..65535, minimum.
	"MaxOutstandingR2T": {kind: kindMin, lo: 1, hi: 65535, leadingOnly: true, discoveryIrrelevant: true, def: "1",
		ours: func(n *LoginNegotiator) string { return utoa(n.op.MaxOutstandingR2T) },
		set:  func(p *SessionParams, v string) { p.MaxOutstandingR2T = u32(v) }},
	// 13.18, 13.19: DataPDUInOrder, DataSequenceInOrder, OR. We deliver
	// and expect data in order, so ours is Yes and the result always Yes.
	"DataPDUInOrder": {kind: kindOr, leadingOnly: true, discoveryIrrelevant: true, def: "Yes",
		ours: func(*LoginNegotiator) string { return "Yes" },
		set:  func(p *SessionParams, v string) { p.DataPDUInOrder = v == "Yes" }},
	"DataSequenceInOrder": {kind: kindOr, leadingOnly: true, discoveryIrrelevant: true, def: "Yes",
		ours: func(*LoginNegotiator) string { return "Yes" },
		set:  func(p *SessionParams, v string) { p.DataSequenceInOrder = v == "Yes" }},
	// 13.20: ErrorRecoveryLevel 0..2, minimum; we implement level 0.
	"ErrorRecoveryLevel": {kind: kindMin, lo: 0, hi: 2, leadingOnly: true, def: "0",
		ours: func(*LoginNegotiator) string { return "0" },
		set:  func(p *SessionParams, v string) { p.ErrorRecoveryLevel = uint8(u32(v)) }},
	// 13.23: TaskReporting, list of RFC3720, ResponseFence, FastAbort.
	"TaskReporting": {kind: kindList, leadingOnly: true, discoveryIrrelevant: true, def: "RFC3720",
		ours: func(*LoginNegotiator) string { return "RFC3720" },
		set:  func(*SessionParams, string) {}},
	// 13.24: iSCSIProtocolLevel 0..31, minimum; RFC 7143
	// is level 1.
	"iSCSIProtocolLevel": {kind: kindMin, lo: 0, hi: 31, leadingOnly: true, def: "0",
		ours: func(*LoginNegotiator) string { return "1" },
		set:  func(*SessionParams, string) {}},
	// 13.25 (obsoleted keys): "When an IFMarker or OFMarker key is received, a compliant
	// iSCSI implementation SHOULD respond with the constant "Reject"
	// value. The implementation MAY alternatively respond with a "No"
	// value." We answer No, which RFC 3720 initiators also understand.
	"IFMarker": {kind: kindObsolete, ours: func(*LoginNegotiator) string { return "No" }},
	"OFMarker": {kind: kindObsolete, ours: func(*LoginNegotiator) string { return "No" }},
	// "when an OFMarkInt or IFMarkInt key is received, a compliant iSCSI
	// implementation MUST respond with the constant "Reject" value."
	"IFMarkInt": {kind: kindObsolete, ours: func(*LoginNegotiator) string { return valReject }},
	"OFMarkInt": {kind: kindObsolete, ours: func(*LoginNegotiator) string { return valReject }},
}

func utoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

// opKey negotiates one operational key; ok is false when nothing is to be
// answered.
func (n *LoginNegotiator) opKey(kv KeyValue, def opKey) (KeyValue, bool) {
	if def.kind == kindObsolete {
		return KeyValue{kv.Key, def.ours(n)}, true
	}
	if def.discoveryIrrelevant && n.params.SessionType == SessionDiscovery {
		return KeyValue{kv.Key, valIrrelevant}, true
	}
	// RFC 7143 13.14: "Irrelevant when: ( InitialR2T=Yes and
	// ImmediateData=No )".
	if kv.Key == "FirstBurstLength" && n.params.InitialR2T && !n.params.ImmediateData {
		return KeyValue{kv.Key, valIrrelevant}, true
	}
	// RFC 7143 13: "LO (Leading Only) - the key can be negotiated only on
	// the leading connection"; on another it cannot take effect.
	if def.leadingOnly && !n.cfg.Leading {
		return KeyValue{kv.Key, valReject}, true
	}
	if ours, isAnswer := n.offered[kv.Key]; isAnswer {
		// The initiator answers the target's offer (RFC 7143 6.2): its
		// value is the result, to be checked, not answered again.
		delete(n.offered, kv.Key)
		if res, ok := resolve(def, kv.Value, ours); ok && res == kv.Value {
			def.set(&n.params, res)
		}
		return KeyValue{}, false
	}
	if def.kind == kindDeclarative {
		// RFC 7143 13.12: a value outside 512..2^24-1 is out of range.
		v, ok := parseNumber(kv.Value)
		if !ok || v < def.lo || v > def.hi {
			return KeyValue{kv.Key, valReject}, true
		}
		def.set(&n.params, kv.Value)
		return KeyValue{}, false
	}
	res, ok := resolve(def, kv.Value, def.ours(n))
	// RFC 7143 6.2: a responder that finds the offered value out of
	// range or unacceptable answers key=Reject; the key keeps its default.
	if !ok {
		return KeyValue{kv.Key, valReject}, true
	}
	def.set(&n.params, res)
	return KeyValue{kv.Key, res}, true
}

// resolve applies a key's result function to the two sides' values.
func resolve(def opKey, theirs, ours string) (string, bool) {
	switch def.kind {
	case kindAnd, kindOr:
		if (theirs != "Yes" && theirs != "No") || (ours != "Yes" && ours != "No") {
			return "", false
		}
		a, b := theirs == "Yes", ours == "Yes"
		if def.kind == kindAnd {
			return yesNo(a && b), true
		}
		return yesNo(a || b), true
	case kindMin, kindMax:
		a, ok := parseNumber(theirs)
		if !ok || a < def.lo || a > def.hi {
			return "", false
		}
		b, ok := parseNumber(ours)
		if !ok {
			return "", false
		}
		if (def.kind == kindMin) == (a < b) {
			return strconv.FormatUint(a, 10), true
		}
		return strconv.FormatUint(b, 10), true
	case kindList:
		offered, ok := parseList(theirs)
		if !ok {
			return "", false
		}
		supported := strings.Split(ours, ",")
		for _, o := range offered {
			for _, s := range supported {
				if o == s {
					return o, true
				}
			}
		}
	}
	return "", false
}

// parseList splits a list-of-values (RFC 7143 6.1: comma-separated,
// no empty members).
func parseList(v string) ([]string, bool) {
	if v == "" {
		return nil, false
	}
	parts := strings.Split(v, ",")
	for _, p := range parts {
		if p == "" {
			return nil, false
		}
	}
	return parts, true
}

// targetOffers proposes, in the first operational answer, the keys the
// initiator has not sent where the RFC default would exceed what this
// target is configured to allow (RFC 7143 6.2: either side may originate a
// negotiation). The initiator must answer them before the target transits.
func (n *LoginNegotiator) targetOffers() []KeyValue {
	if !n.cfg.Leading {
		return nil
	}
	var out []KeyValue
	for _, k := range offerOrder {
		def := opKeys[k]
		if _, sent := n.seen[k]; sent {
			continue
		}
		if def.discoveryIrrelevant && n.params.SessionType == SessionDiscovery {
			continue
		}
		ours := def.ours(n)
		if res, ok := resolve(def, def.def, ours); !ok || res == def.def {
			continue
		}
		n.offered[k] = ours
		out = append(out, KeyValue{k, ours})
	}
	return out
}

// offerOrder lists the keys the target may originate, in a stable order.
var offerOrder = []string{
	"ImmediateData", "MaxBurstLength", "FirstBurstLength",
	"DefaultTime2Wait", "DefaultTime2Retain",
}

// normalizeOp fills unset numeric fields of an Operational with the
// defaults and clamps them to the RFC 7143 section 13 ranges, so a zero
// config cannot make the target offer an illegal value.
func normalizeOp(op Operational) Operational {
	d := DefaultOperational()
	if op.MaxRecvDataSegmentLength == 0 {
		op.MaxRecvDataSegmentLength = d.MaxRecvDataSegmentLength
	}
	if op.MaxBurstLength == 0 {
		op.MaxBurstLength = d.MaxBurstLength
	}
	if op.FirstBurstLength == 0 {
		op.FirstBurstLength = d.FirstBurstLength
	}
	if op.MaxOutstandingR2T == 0 {
		op.MaxOutstandingR2T = d.MaxOutstandingR2T
	}
	op.MaxRecvDataSegmentLength = clamp(op.MaxRecvDataSegmentLength, 512, max24)
	op.MaxBurstLength = clamp(op.MaxBurstLength, 512, max24)
	op.FirstBurstLength = clamp(op.FirstBurstLength, 512, op.MaxBurstLength)
	op.MaxOutstandingR2T = clamp(op.MaxOutstandingR2T, 1, 65535)
	op.DefaultTime2Wait = clamp(op.DefaultTime2Wait, 0, 3600)
	op.DefaultTime2Retain = clamp(op.DefaultTime2Retain, 0, 3600)
	return op
}

func clamp(v, lo, hi uint32) uint32 { return max(lo, min(v, hi)) }
