package target

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
)

// chapInitiator plays the initiator side of CHAP, computing responses
// with the hash packages directly rather than through ChapResponse.
type chapInitiator struct {
	user, secret             string
	mutualUser, mutualSecret string // mutualUser non-empty: ask for mutual CHAP
	algos                    string // CHAP_A offer
	base64                   bool   // send CHAP_R as 0b base64
	reflect                  bool   // send the target's challenge back
	mutualChallenge          []byte
}

func digest(algo string, parts ...[]byte) []byte {
	var sum []byte
	switch algo {
	case "5":
		h := md5.New()
		for _, p := range parts {
			h.Write(p)
		}
		sum = h.Sum(nil)
	case "7":
		h := sha256.New()
		for _, p := range parts {
			h.Write(p)
		}
		sum = h.Sum(nil)
	}
	return sum
}

// login runs a CHAP login against tg and returns the final error, the
// selected algorithm and the reply to the response step.
func (ci *chapInitiator) login(t *testing.T, n *LoginNegotiator, first []KeyValue) (LoginReply, string, *LoginError) {
	t.Helper()
	r, err := n.Step(LoginStep{CSG: StageSecurity, NSG: StageOperational, Transit: true,
		Keys: append(first, KeyValue{"AuthMethod", "CHAP,None"})})
	if err != nil {
		return r, "", err
	}
	if v, _ := value(r.Keys, "AuthMethod"); v != "CHAP" || r.Transit {
		t.Fatalf("AuthMethod reply %+v", r)
	}
	r, err = n.Step(LoginStep{CSG: StageSecurity, NSG: StageOperational, Keys: pairs("CHAP_A=" + ci.algos)})
	if err != nil {
		return r, "", err
	}
	algo, _ := value(r.Keys, "CHAP_A")
	idStr, _ := value(r.Keys, "CHAP_I")
	chStr, _ := value(r.Keys, "CHAP_C")
	if r.Transit || !strings.HasPrefix(chStr, "0x") {
		t.Fatalf("challenge reply %+v", r)
	}
	id, err2 := strconv.Atoi(idStr)
	ch, err3 := hex.DecodeString(chStr[2:])
	if err2 != nil || err3 != nil || id < 0 || id > 255 {
		t.Fatalf("bad CHAP_I/CHAP_C %q %q", idStr, chStr)
	}
	wantLen := map[string]int{"5": 16, "7": 32}[algo]
	if len(ch) != wantLen {
		t.Fatalf("challenge of %d bytes for CHAP_A=%s, want %d", len(ch), algo, wantLen)
	}
	resp := digest(algo, []byte{byte(id)}, []byte(ci.secret), ch)
	rs := "0x" + strings.ToUpper(hex.EncodeToString(resp))
	if ci.base64 {
		rs = "0b" + base64.StdEncoding.EncodeToString(resp)
	}
	keys := pairs("CHAP_N="+ci.user, "CHAP_R="+rs)
	if ci.mutualUser != "" {
		ci.mutualChallenge = bytes.Repeat([]byte{0xA5}, 32)
		if ci.reflect {
			ci.mutualChallenge = ch
		}
		keys = append(keys, pairs("CHAP_I=77", "CHAP_C=0x"+hex.EncodeToString(ci.mutualChallenge))...)
	}
	r, err = n.Step(LoginStep{CSG: StageSecurity, NSG: StageOperational, Transit: true, Keys: keys})
	if err != nil {
		return r, algo, err
	}
	if ci.mutualUser != "" {
		name, _ := value(r.Keys, "CHAP_N")
		tr, _ := value(r.Keys, "CHAP_R")
		want := "0x" + hex.EncodeToString(digest(algo, []byte{77}, []byte(ci.mutualSecret), ci.mutualChallenge))
		if name != ci.mutualUser || !strings.EqualFold(tr, want) {
			t.Fatalf("mutual answer CHAP_N=%q CHAP_R=%q, want %q %q", name, tr, ci.mutualUser, want)
		}
	}
	return r, algo, nil
}

func TestCHAP(t *testing.T) {
	creds := &CHAP{Username: "user1", Secret: "secret123456", MutualUsername: "tgt1", MutualSecret: "tsecret654321"}
	oneWay := &CHAP{Username: "user1", Secret: "secret123456"}
	tests := []struct {
		name     string
		auth     *CHAP
		acl      *CHAP // per-initiator credentials, if any
		ci       chapInitiator
		wantAlgo string
		want     LoginStatus
	}{
		{"md5 one-way", oneWay, nil, chapInitiator{user: "user1", secret: "secret123456", algos: "5"}, "5", StatusSuccess},
		{"sha256 one-way", oneWay, nil, chapInitiator{user: "user1", secret: "secret123456", algos: "7"}, "7", StatusSuccess},
		{"strongest preferred", oneWay, nil, chapInitiator{user: "user1", secret: "secret123456", algos: "5,6,7,8"}, "7", StatusSuccess},
		{"unknown algos skipped", oneWay, nil, chapInitiator{user: "user1", secret: "secret123456", algos: "99,x,5"}, "5", StatusSuccess},
		{"base64 response", oneWay, nil, chapInitiator{user: "user1", secret: "secret123456", algos: "5", base64: true}, "5", StatusSuccess},
		{"md5 mutual", creds, nil, chapInitiator{user: "user1", secret: "secret123456", mutualUser: "tgt1", mutualSecret: "tsecret654321", algos: "5"}, "5", StatusSuccess},
		{"sha256 mutual", creds, nil, chapInitiator{user: "user1", secret: "secret123456", mutualUser: "tgt1", mutualSecret: "tsecret654321", algos: "7"}, "7", StatusSuccess},
		{"wrong secret", oneWay, nil, chapInitiator{user: "user1", secret: "wrongwrong12", algos: "5"}, "", StatusAuthenticationFailure},
		{"wrong name", oneWay, nil, chapInitiator{user: "user2", secret: "secret123456", algos: "7"}, "", StatusAuthenticationFailure},
		{"mutual not configured", oneWay, nil, chapInitiator{user: "user1", secret: "secret123456", mutualUser: "tgt1", mutualSecret: "x", algos: "5"}, "", StatusAuthenticationFailure},
		{"reflected challenge", creds, nil, chapInitiator{user: "user1", secret: "secret123456", mutualUser: "tgt1", mutualSecret: "tsecret654321", algos: "7", reflect: true}, "", StatusAuthenticationFailure},
		{"acl creds win", oneWay, &CHAP{Username: "acluser", Secret: "aclsecret1234"}, chapInitiator{user: "acluser", secret: "aclsecret1234", algos: "5"}, "5", StatusSuccess},
		{"target creds lose to acl", oneWay, &CHAP{Username: "acluser", Secret: "aclsecret1234"}, chapInitiator{user: "user1", secret: "secret123456", algos: "5"}, "", StatusAuthenticationFailure},
		{"acl creds without target creds", nil, &CHAP{Username: "acluser", Secret: "aclsecret1234"}, chapInitiator{user: "acluser", secret: "aclsecret1234", algos: "7"}, "7", StatusSuccess},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTestTarget()
			tg.Auth = tc.auth
			if tc.acl != nil {
				tg.ACLs = []ACL{{InitiatorName: testInitiator, Auth: tc.acl}}
			}
			n := newNeg(tg)
			ci := tc.ci
			r, algo, err := ci.login(t, n, identity())
			if tc.want != StatusSuccess {
				if err == nil || err.Status() != tc.want {
					t.Fatalf("got %v, want status %04x", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if algo != tc.wantAlgo || !r.Transit || r.NSG != StageOperational {
				t.Fatalf("algo %s reply %+v", algo, r)
			}
			r = mustStep(t, n, LoginStep{CSG: StageOperational, NSG: StageFullFeature, Transit: true,
				Keys: identity(libiscsiOpKeys...)}) // libiscsi repeats its identity keys here
			if !n.Done() {
				t.Fatalf("not done after operational stage: %+v", r)
			}
			if tc.acl != nil && n.Params().ACL == nil {
				t.Fatal("matched ACL not reported")
			}
		})
	}
}

func TestDiscoveryAuth(t *testing.T) {
	da := &CHAP{Username: "disc", Secret: "discsecret12"}
	disc := pairs("InitiatorName="+testInitiator, "SessionType=Discovery")
	n := NewLoginNegotiator(LoginConfig{Leading: true, DiscoveryAuth: da})
	ci := chapInitiator{user: "disc", secret: "discsecret12", algos: "5"}
	if _, _, err := ci.login(t, n, disc); err != nil {
		t.Fatal(err)
	}
	n = NewLoginNegotiator(LoginConfig{Leading: true, DiscoveryAuth: da})
	ci = chapInitiator{user: "disc", secret: "nope", algos: "5"}
	if _, _, err := ci.login(t, n, disc); err == nil || err.Status() != StatusAuthenticationFailure {
		t.Fatalf("wrong discovery secret: %v", err)
	}
	// Without discovery credentials, discovery needs no authentication.
	n = NewLoginNegotiator(LoginConfig{Leading: true})
	if _, err := n.Step(LoginStep{CSG: StageOperational, NSG: StageFullFeature, Transit: true, Keys: disc}); err != nil {
		t.Fatal(err)
	}
}

func TestCHAPMutualHalf(t *testing.T) {
	tg := newTestTarget()
	tg.Auth = &CHAP{Username: "u", Secret: "s", MutualUsername: "m", MutualSecret: "ms"}
	n := newNeg(tg)
	mustStep(t, n, LoginStep{CSG: StageSecurity, NSG: StageOperational, Transit: true, Keys: identity("AuthMethod=CHAP")})
	r := mustStep(t, n, LoginStep{CSG: StageSecurity, NSG: StageOperational, Keys: pairs("CHAP_A=5")})
	id, _ := value(r.Keys, "CHAP_I")
	c, _ := value(r.Keys, "CHAP_C")
	idn, _ := strconv.Atoi(id)
	ch, _ := hex.DecodeString(c[2:])
	resp := md5.Sum(append(append([]byte{byte(idn)}, "s"...), ch...))
	_, err := n.Step(LoginStep{CSG: StageSecurity, NSG: StageOperational, Transit: true,
		Keys: pairs("CHAP_N=u", "CHAP_R=0x"+hex.EncodeToString(resp[:]), "CHAP_I=1")})
	if err == nil || err.Status() != StatusAuthenticationFailure {
		t.Fatalf("CHAP_I without CHAP_C: %v", err)
	}
}

func TestDecodeBinary(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []byte
		ok   bool
	}{
		{"0x0102ff", []byte{1, 2, 0xff}, true},
		{"0XABcd", []byte{0xab, 0xcd}, true},
		{"0x123", []byte{0x01, 0x23}, true},
		{"0bAQL/", []byte{1, 2, 0xff}, true},
		{"0x", nil, false},
		{"0xzz", nil, false},
		{"0b!!", nil, false},
		{"1234", nil, false},
		{"", nil, false},
	} {
		got, err := decodeBinary(c.in)
		if (err == nil) != c.ok || !bytes.Equal(got, c.want) {
			t.Errorf("decodeBinary(%q) = %x, %v", c.in, got, err)
		}
	}
}
