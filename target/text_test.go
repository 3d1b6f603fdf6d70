package target

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseText(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []KeyValue
		wantErr bool
	}{
		{"empty", "", nil, false},
		{"one", "A=b\x00", []KeyValue{{"A", "b"}}, false},
		{"two padded", "InitiatorName=iqn.x\x00SessionType=Normal\x00\x00\x00", []KeyValue{{"InitiatorName", "iqn.x"}, {"SessionType", "Normal"}}, false},
		{"no final NUL", "A=b\x00C=d", []KeyValue{{"A", "b"}, {"C", "d"}}, false},
		{"empty value", "A=\x00", []KeyValue{{"A", ""}}, false},
		{"value with =", "A=b=c\x00", []KeyValue{{"A", "b=c"}}, false},
		{"x-hash key", "X#vendor=1\x00X-com.ex.k=2\x00", []KeyValue{{"X#vendor", "1"}, {"X-com.ex.k", "2"}}, false},
		{"key chars", "a.b-c+d@e_F9=v\x00", []KeyValue{{"a.b-c+d@e_F9", "v"}}, false},
		{"no equals", "Abc\x00", nil, true},
		{"empty key", "=v\x00", nil, true},
		{"key 63", strings.Repeat("k", 63) + "=v\x00", []KeyValue{{strings.Repeat("k", 63), "v"}}, false},
		{"key 64", strings.Repeat("k", 64) + "=v\x00", nil, true},
		{"bad char space", "A B=v\x00", nil, true},
		{"bad char hash mid", "AB#=v\x00", nil, true},
		{"hash not after X", "Y#=v\x00", nil, true},
		{"data after padding", "A=b\x00\x00C=d\x00", nil, true},
		{"value too long", "A=" + strings.Repeat("v", 8193) + "\x00", nil, true},
		{"leading NUL", "\x00A=b\x00", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseText([]byte(tc.in))
			if tc.wantErr {
				var te *TextError
				if !errors.As(err, &te) {
					t.Fatalf("ParseText(%q) = %v, %v; want TextError", tc.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseText(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseText(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestEncodeText(t *testing.T) {
	got := EncodeText([]KeyValue{{"TargetName", "iqn.a"}, {"TargetAddress", "127.0.0.1:3260,1"}})
	want := []byte("TargetName=iqn.a\x00TargetAddress=127.0.0.1:3260,1\x00")
	if !bytes.Equal(got, want) {
		t.Fatalf("EncodeText = %q, want %q", got, want)
	}
	if len(EncodeText(nil)) != 0 {
		t.Fatal("EncodeText(nil) not empty")
	}
}

func FuzzParseText(f *testing.F) {
	f.Add([]byte("InitiatorName=iqn.x\x00TargetName=iqn.y\x00\x00\x00"))
	f.Add([]byte("A=b"))
	f.Add([]byte("=\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		kvs, err := ParseText(data)
		if err != nil {
			return
		}
		// Whatever parses must survive a round trip unchanged.
		again, err := ParseText(EncodeText(kvs))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", EncodeText(kvs), err)
		}
		if len(kvs) != len(again) || (len(kvs) > 0 && !reflect.DeepEqual(kvs, again)) {
			t.Fatalf("round trip %q -> %q", kvs, again)
		}
	})
}
