package envelope

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func FuzzDecode(f *testing.F) {
	seeds := []Message{
		{Kind: KindCall, ID: testID(), Topic: "compute", Method: "add", Payload: []byte("payload")},
		{Kind: KindError, Code: CodeRemote, ErrType: "ValueError", ErrMsg: "boom"},
		{Kind: KindNotify, Exchange: "ex", Topic: "t", Meta: map[string]string{"a": "1", "b": "2"}},
		{Kind: KindPing, Deadline: 123456789, Flags: FlagRaw},
	}
	for _, m := range seeds {
		fr, err := Encode(&m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(fr[0], fr[1])
	}
	f.Add([]byte{}, []byte{})
	f.Add([]byte("ZM"), []byte("x"))
	f.Add([]byte("ZM\x01\x01garbage"), []byte(nil))
	f.Add(header(byte(KindCall), cat(emptyStrings, []byte{0xff, 0xff})...), []byte{})
	f.Add(header(byte(KindCall), 0xff, 0xff), []byte{})

	f.Fuzz(func(t *testing.T, h, p []byte) {
		m, err := Decode([][]byte{h, p})
		if err != nil {
			var de *DecodeError
			if !errors.Is(err, ErrMalformed) || !errors.As(err, &de) {
				t.Fatalf("decode error %v is not a *DecodeError matching ErrMalformed", err)
			}
			_ = de.Error()
			return
		}
		fr, err := Encode(&m)
		if err != nil {
			t.Fatalf("re-encode of decoded message failed: %v", err)
		}
		m2, err := Decode(fr)
		if err != nil {
			t.Fatalf("decode of re-encoded message failed: %v", err)
		}
		if !reflect.DeepEqual(normalize(m), normalize(m2)) {
			t.Fatalf("round trip mismatch:\n%+v\n%+v", m, m2)
		}
		// Encoding is canonical: a second re-encode gives identical bytes.
		fr2, err := Encode(&m2)
		if err != nil || !bytes.Equal(fr[0], fr2[0]) {
			t.Fatalf("encoding not deterministic: %v", err)
		}
		// SplitRouting on arbitrary input must not panic either.
		_, _, _ = SplitRouting([][]byte{h, p, {}, h, p})
	})
}
