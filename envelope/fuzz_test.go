package envelope

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// canonicalMeta reports whether the meta section of a successfully decoded
// frame, starting at off, lists its keys in strictly increasing order (the
// order the encoder writes them in).
func canonicalMeta(frame []byte, off int) bool {
	count := int(binary.BigEndian.Uint16(frame[off:]))
	off += 2
	var prev []byte
	for i := range count {
		kl := int(binary.BigEndian.Uint16(frame[off:]))
		key := frame[off+2 : off+2+kl]
		if i > 0 && bytes.Compare(prev, key) >= 0 {
			return false
		}
		prev = key
		off += 2 + kl
		off += 2 + int(binary.BigEndian.Uint16(frame[off:]))
	}
	return true
}

func FuzzDecode(f *testing.F) {
	seeds := []Message{
		{Kind: KindCall, ID: testID(), Topic: "compute", Method: "add", Payload: []byte("payload")},
		{Kind: KindReply, ID: testID(), Payload: make([]byte, 64)},
		{Kind: KindError, Code: CodeRemote, ErrType: "ValueError", ErrMsg: "boom"},
		{Kind: KindNotify, Exchange: "ex", Topic: "t", Meta: map[string]string{"a": "1", "b": "2"}, Payload: []byte{0, 1}},
		{Kind: KindPing, Deadline: 123456789, Flags: FlagRaw},
	}
	for _, m := range seeds {
		fr, err := Encode(&m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(fr)
	}
	f.Add([]byte{})
	f.Add([]byte("ZM"))
	f.Add([]byte("ZM\x01\x01garbage"))
	f.Add(header(byte(KindCall), cat(emptyStrings, []byte{0xff, 0xff})...))
	f.Add(header(byte(KindCall), 0xff, 0xff))
	// Unsorted meta keys and a non-zero reserved byte: valid, not canonical.
	unsorted := header(byte(KindCall), cat(emptyStrings, []byte{0, 2, 0, 1, 'b', 0, 0, 0, 1, 'a', 0, 0, 'p'})...)
	unsorted[5] = 9
	f.Add(unsorted)

	f.Fuzz(func(t *testing.T, frame []byte) {
		// SplitRouting on arbitrary input must not panic either.
		_, _, _ = SplitRouting([][]byte{frame, {}, frame})

		m, err := Decode(frame)
		if err != nil {
			var de *DecodeError
			if !errors.Is(err, ErrMalformed) || !errors.As(err, &de) {
				t.Fatalf("decode error %v is not a *DecodeError matching ErrMalformed", err)
			}
			_ = de.Error()
			return
		}
		hlen := len(frame) - len(m.Payload)
		if hlen < minHeaderLen || !bytes.Equal(frame[hlen:], m.Payload) {
			t.Fatalf("payload is not the tail of the frame (header %d bytes)", hlen)
		}
		enc, err := Encode(&m)
		if err != nil {
			t.Fatalf("re-encode of decoded message failed: %v", err)
		}
		// Re-encoding gives back the input, byte for byte, except that the
		// reserved byte is written as 0 and meta keys in sorted order.
		metaOff := minHeaderLen - 2 + len(m.Exchange) + len(m.Topic) + len(m.Server) + len(m.Method) + len(m.ErrType) + len(m.ErrMsg)
		want := bytes.Clone(frame)
		want[5] = 0
		if !canonicalMeta(frame, metaOff) {
			copy(want[metaOff:hlen], enc[metaOff:hlen])
		}
		if !bytes.Equal(enc, want) {
			t.Fatalf("re-encoding differs:\n got %v\nwant %v", enc, want)
		}
		// The canonical encoding is a fixed point.
		m2, err := Decode(enc)
		if err != nil {
			t.Fatalf("decode of re-encoded message failed: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip mismatch:\n%+v\n%+v", m, m2)
		}
		enc2, err := AppendMessage(nil, &m2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not deterministic: %v", err)
		}
	})
}
