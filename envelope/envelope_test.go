package envelope

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testID() ID {
	var id ID
	for i := range id {
		id[i] = byte(i + 1)
	}
	return id
}

// normalize maps an empty Meta / Payload to nil, the decoded form.
func normalize(m Message) Message {
	if len(m.Meta) == 0 {
		m.Meta = nil
	}
	if len(m.Payload) == 0 {
		m.Payload = nil
	}
	return m
}

func roundTrip(t *testing.T, in Message) Message {
	t.Helper()
	frame, err := Encode(&in)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if cap(frame) != len(frame) {
		t.Fatalf("Encode: len %d cap %d, want an exactly sized frame", len(frame), cap(frame))
	}
	hdr, err := AppendHeader(nil, &in)
	if err != nil {
		t.Fatalf("AppendHeader: %v", err)
	}
	if !bytes.Equal(cat(hdr, in.Payload), frame) {
		t.Fatalf("Encode is not AppendHeader followed by the payload")
	}
	appended, err := AppendMessage([]byte("prefix"), &in)
	if err != nil {
		t.Fatalf("AppendMessage: %v", err)
	}
	if string(appended[:6]) != "prefix" || !bytes.Equal(appended[6:], frame) {
		t.Fatalf("AppendMessage and Encode disagree")
	}
	out, err := Decode(frame)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if want := normalize(in); !reflect.DeepEqual(out, want) {
		t.Fatalf("round trip mismatch:\n got %+v\nwant %+v", out, want)
	}
	if len(out.Payload) > 0 && &out.Payload[0] != &frame[len(hdr)] {
		t.Fatal("Payload does not alias the bytes after the header")
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	huge := strings.Repeat("x", MaxStringLen)
	bigMeta := make(map[string]string, MaxMetaEntries)
	for i := range MaxMetaEntries {
		bigMeta["k"+strconv.Itoa(i)] = strconv.Itoa(i)
	}
	tests := []struct {
		name string
		msg  Message
	}{
		{"empty call", Message{Kind: KindCall}},
		{"call", Message{Kind: KindCall, ID: testID(), Topic: "compute", Method: "add", Payload: []byte{1, 2, 3}}},
		{"reply", Message{Kind: KindReply, ID: testID(), Payload: []byte("result")}},
		{"cast", Message{Kind: KindCast, Exchange: "ex", Topic: "t", Server: "srv1", Method: "m"}},
		{"ack", Message{Kind: KindAck, ID: testID(), Code: CodeOK}},
		{"fanout", Message{Kind: KindFanout, Topic: "t", Method: "m", Flags: FlagRaw, Payload: []byte("raw")}},
		{"notify", Message{Kind: KindNotify, Exchange: "ex", Topic: "events.info", Meta: map[string]string{"priority": "info"}}},
		{"error", Message{Kind: KindError, Code: CodeNoSuchMethod, ErrType: "NoSuchMethod", ErrMsg: "no method \"x\""}},
		{"ping", Message{Kind: KindPing, ID: testID()}},
		{"unknown flags kept", Message{Kind: KindCall, Flags: 0xff}},
		{"unknown code kept", Message{Kind: KindError, Code: 0xffff}},
		{"deadline", Message{Kind: KindCall, Deadline: 1_700_000_000_123_456_789}},
		{"negative deadline", Message{Kind: KindCall, Deadline: -1}},
		{"huge strings", Message{Kind: KindError, Exchange: huge, Topic: huge, Server: huge, Method: huge, ErrType: huge, ErrMsg: huge}},
		{"unicode", Message{Kind: KindCall, Topic: "héllo", Method: "日本", Meta: map[string]string{"ключ": "значение"}}},
		{"meta", Message{Kind: KindCall, Meta: map[string]string{"b": "2", "a": "1", "": "empty key", "c": ""}}},
		{"meta many", Message{Kind: KindCall, Meta: bigMeta}},
		{"meta huge", Message{Kind: KindCall, Meta: map[string]string{huge: huge}}},
		{"empty meta map", Message{Kind: KindCall, Meta: map[string]string{}}},
		{"nil payload", Message{Kind: KindCall, Payload: nil}},
		{"empty payload", Message{Kind: KindCall, Payload: []byte{}}},
		{"big payload", Message{Kind: KindReply, Payload: bytes.Repeat([]byte{0xab}, 1<<20)}},
		{"payload looks like a header", Message{Kind: KindCall, Topic: "t", Payload: header(byte(KindCall), cat(emptyStrings, []byte{0, 0})...)}},
		{"payload with meta", Message{Kind: KindCall, Meta: map[string]string{"k": "v"}, Payload: []byte{0, 0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { roundTrip(t, tt.msg) })
	}
}

func TestEncodeBody(t *testing.T) {
	// A nil or empty payload: the body frame is just the header.
	for _, p := range [][]byte{nil, {}} {
		m := Message{Kind: KindCall, Topic: "t", Payload: p}
		frame, err := Encode(&m)
		if err != nil {
			t.Fatal(err)
		}
		hdr, _ := AppendHeader(nil, &m)
		if !bytes.Equal(frame, hdr) || len(frame) != minHeaderLen+1 {
			t.Fatalf("payload %#v: frame %v, want header %v", p, frame, hdr)
		}
	}
	// The payload is copied, never aliased.
	p := []byte("abc")
	m := Message{Kind: KindCall, Payload: p}
	frame, err := Encode(&m)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := AppendMessage(make([]byte, 0, 128), &m)
	if err != nil {
		t.Fatal(err)
	}
	p[0] = 'X'
	if string(frame[minHeaderLen:]) != "abc" || string(buf[minHeaderLen:]) != "abc" {
		t.Fatal("encoded body aliases Message.Payload")
	}
	// AppendMessage appends to a buffer with room in place.
	dst := make([]byte, 2, 256)
	out, err := AppendMessage(dst, &m)
	if err != nil {
		t.Fatal(err)
	}
	if &out[0] != &dst[0] || len(out) != 2+minHeaderLen+3 {
		t.Fatalf("AppendMessage reallocated a large enough buffer (len %d)", len(out))
	}
}

func TestAllocations(t *testing.T) {
	m := typicalCall()
	buf := make([]byte, 0, 256)
	if a := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = AppendMessage(buf[:0], &m); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("AppendMessage into a reused buffer: %v allocs, want 0", a)
	}
	if a := testing.AllocsPerRun(100, func() {
		if _, err := Encode(&m); err != nil {
			t.Fatal(err)
		}
	}); a != 1 {
		t.Errorf("Encode: %v allocs, want 1", a)
	}
	frame, _ := Encode(&m)
	var out Message
	if a := testing.AllocsPerRun(100, func() {
		if err := DecodeInto(&out, frame); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("DecodeInto with a reused Message: %v allocs, want 0", a)
	}
	if a := testing.AllocsPerRun(100, func() {
		if _, err := Decode(frame); err != nil {
			t.Fatal(err)
		}
	}); a != 1 {
		t.Errorf("Decode: %v allocs, want 1 (shared strings)", a)
	}
}

func TestDecodePayloadAliasing(t *testing.T) {
	in := Message{Kind: KindCall, Topic: "t", Payload: []byte("abcdef")}
	enc, err := Encode(&in)
	if err != nil {
		t.Fatal(err)
	}
	frame := append(make([]byte, 0, 256), enc...)
	m, err := Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	hlen := len(frame) - len(in.Payload)
	if &m.Payload[0] != &frame[hlen] || string(m.Payload) != "abcdef" {
		t.Fatal("Payload does not alias the bytes after the header")
	}
	if cap(m.Payload) != len(m.Payload) {
		t.Fatalf("Payload capacity not clipped: cap %d len %d", cap(m.Payload), len(m.Payload))
	}
	// Strings are copies: clobbering the header must not change them.
	for i := range frame[:hlen] {
		frame[i] = 0
	}
	if m.Topic != "t" {
		t.Fatalf("Topic aliases the body frame: %q", m.Topic)
	}
	// A frame that is just a header decodes to a nil Payload, whatever its
	// capacity.
	hdr, _ := AppendHeader(make([]byte, 0, 128), &Message{Kind: KindPing})
	m, err = Decode(hdr)
	if err != nil {
		t.Fatal(err)
	}
	if m.Payload != nil {
		t.Fatalf("empty payload decoded to %#v, want nil", m.Payload)
	}
}

func TestSharedStringsExcludePayload(t *testing.T) {
	// The shared string allocation covers the header only: decoding a small
	// header in front of a big payload must not copy the payload.
	frame, err := Encode(&Message{Kind: KindReply, Topic: "t", Payload: make([]byte, 1<<20)})
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		m, err := Decode(frame)
		if err != nil || m.Topic != "t" {
			t.Fatal(m, err)
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Fatalf("10 decodes allocated %d bytes: the payload is being copied", d)
	}
}

func TestDeterministicMeta(t *testing.T) {
	meta := map[string]string{}
	for i := range 100 {
		meta["key"+strconv.Itoa(i)] = "v"
	}
	m := Message{Kind: KindCall, Meta: meta}
	first, err := AppendHeader(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, _ := AppendHeader(nil, &m)
		if !bytes.Equal(first, again) {
			t.Fatal("encoding is not deterministic")
		}
	}
	// Keys must appear sorted on the wire.
	m = Message{Kind: KindCall, Meta: map[string]string{"b": "2", "a": "1", "c": "3"}}
	h, _ := AppendHeader(nil, &m)
	tail := h[minHeaderLen-2:]
	want := []byte{0, 3, 0, 1, 'a', 0, 1, '1', 0, 1, 'b', 0, 1, '2', 0, 1, 'c', 0, 1, '3'}
	if !bytes.Equal(tail, want) {
		t.Fatalf("meta section = %v, want %v", tail, want)
	}
}

func TestWireLayout(t *testing.T) {
	m := Message{
		Kind: KindError, Flags: FlagRaw, ID: testID(), Deadline: 0x0102030405060708,
		Code: CodeExpired, Exchange: "e", Topic: "to", Server: "s", Method: "m",
		ErrType: "T", ErrMsg: "msg",
	}
	h, err := AppendHeader([]byte("prefix"), &m)
	if err != nil {
		t.Fatal(err)
	}
	if string(h[:6]) != "prefix" {
		t.Fatal("AppendHeader clobbered dst")
	}
	h = h[6:]
	want := []byte{'Z', 'M', 1, byte(KindError), byte(FlagRaw), 0}
	id := testID()
	want = append(want, id[:]...)
	want = append(want, 1, 2, 3, 4, 5, 6, 7, 8, 0, byte(CodeExpired))
	want = append(want, 0, 1, 'e', 0, 2, 't', 'o', 0, 1, 's', 0, 1, 'm', 0, 1, 'T', 0, 3, 'm', 's', 'g', 0, 0)
	if !bytes.Equal(h, want) {
		t.Fatalf("header\n got %v\nwant %v", h, want)
	}
	// The body frame is the header immediately followed by the payload.
	m.Payload = []byte{0xde, 0xad}
	body, err := AppendMessage(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, cat(want, []byte{0xde, 0xad})) {
		t.Fatalf("body\n got %v\nwant %v", body, cat(want, []byte{0xde, 0xad}))
	}
	// The reserved byte is ignored on decode.
	body[5] = 0x7f
	got, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("got %+v, want %+v", got, m)
	}
}

func TestEncodeErrors(t *testing.T) {
	long := strings.Repeat("x", MaxStringLen+1)
	tooMany := make(map[string]string, MaxMetaEntries+1)
	for i := range MaxMetaEntries + 1 {
		tooMany[strconv.Itoa(i)] = ""
	}
	tests := []struct {
		name string
		msg  Message
		want error
	}{
		{"exchange", Message{Kind: KindCall, Exchange: long}, ErrTooLong},
		{"topic", Message{Kind: KindCall, Topic: long}, ErrTooLong},
		{"server", Message{Kind: KindCall, Server: long}, ErrTooLong},
		{"method", Message{Kind: KindCall, Method: long}, ErrTooLong},
		{"errtype", Message{Kind: KindError, ErrType: long}, ErrTooLong},
		{"errmsg", Message{Kind: KindError, ErrMsg: long}, ErrTooLong},
		{"meta key", Message{Kind: KindCall, Meta: map[string]string{long: ""}}, ErrTooLong},
		{"meta value", Message{Kind: KindCall, Meta: map[string]string{"k": long}}, ErrTooLong},
		{"meta entries", Message{Kind: KindCall, Meta: tooMany}, ErrTooLong},
		{"zero kind", Message{}, ErrKind},
		{"bad kind", Message{Kind: 13}, ErrKind},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			out, err := AppendHeader(dst, &tt.msg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("AppendHeader error = %v, want %v", err, tt.want)
			}
			if string(out) != "keep" {
				t.Fatalf("AppendHeader modified dst on error: %q", out)
			}
			out, err = AppendMessage(dst, &tt.msg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("AppendMessage error = %v, want %v", err, tt.want)
			}
			if string(out) != "keep" {
				t.Fatalf("AppendMessage modified dst on error: %q", out)
			}
			frame, err := Encode(&tt.msg)
			if !errors.Is(err, tt.want) || frame != nil {
				t.Fatalf("Encode = %v, %v; want nil, %v", frame, err, tt.want)
			}
			if errors.Is(err, ErrMalformed) {
				t.Fatal("encode error matches ErrMalformed")
			}
			var de *DecodeError
			if errors.As(err, &de) {
				t.Fatal("encode error is a *DecodeError")
			}
			if !strings.HasPrefix(err.Error(), "envelope: ") {
				t.Fatalf("error text %q", err)
			}
		})
	}
}

func TestNilMessage(t *testing.T) {
	if _, err := Encode(nil); err == nil {
		t.Fatal("Encode(nil) succeeded")
	}
	if _, err := AppendHeader(nil, nil); err == nil {
		t.Fatal("AppendHeader(nil, nil) succeeded")
	}
	if out, err := AppendMessage([]byte("keep"), nil); err == nil || string(out) != "keep" {
		t.Fatal("AppendMessage(dst, nil) succeeded or modified dst")
	}
	f, _ := Encode(&Message{Kind: KindPing})
	if err := DecodeInto(nil, f); err == nil {
		t.Fatal("DecodeInto(nil) succeeded")
	}
}

// header builds a raw header for decode error tests.
func header(kind byte, tail ...byte) []byte {
	h := []byte{'Z', 'M', Version, kind, 0, 0}
	h = append(h, make([]byte, 26)...)
	return append(h, tail...)
}

var emptyStrings = []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestDecodeErrors(t *testing.T) {
	valid := header(byte(KindCall), cat(emptyStrings, []byte{0, 0})...)
	oneMeta := header(byte(KindCall), cat(emptyStrings, []byte{0, 1, 0, 1, 'k', 0, 1, 'v'})...)
	dupMeta := header(byte(KindCall), cat(emptyStrings, []byte{0, 2, 0, 1, 'k', 0, 1, 'v', 0, 1, 'k', 0, 1, 'w'})...)
	bigCount := header(byte(KindCall), cat(emptyStrings, []byte{0x04, 0x01})...)
	hugeCount := header(byte(KindCall), cat(emptyStrings, []byte{0xff, 0xff})...)
	topicTrunc := header(byte(KindCall), 0, 0, 0, 10, 'a', 'b')

	tests := []struct {
		name   string
		frame  []byte
		want   error
		field  string
		offset int
	}{
		{"nil frame", nil, ErrTruncated, "signature", 0},
		{"empty frame", []byte{}, ErrTruncated, "signature", 0},
		{"one byte", []byte{'Z'}, ErrTruncated, "signature", 0},
		{"bad signature", []byte{'Z', 'Q', 1, 1}, ErrSignature, "signature", 0},
		{"no version", []byte{'Z', 'M'}, ErrTruncated, "version", 2},
		{"version 0", []byte{'Z', 'M', 0, 1}, ErrVersion, "version", 2},
		{"version 2", []byte{'Z', 'M', 2}, ErrVersion, "version", 2},
		{"no kind", []byte{'Z', 'M', 1}, ErrTruncated, "kind", 3},
		{"truncated id", valid[:10], ErrTruncated, "id", 6},
		{"truncated deadline", valid[:25], ErrTruncated, "deadline", 22},
		{"truncated code", valid[:31], ErrTruncated, "code", 30},
		{"kind 0", header(0, cat(emptyStrings, []byte{0, 0})...), ErrKind, "kind", 3},
		{"kind 13", header(13, cat(emptyStrings, []byte{0, 0})...), ErrKind, "kind", 3},
		{"no strings", valid[:32], ErrTruncated, "exchange", 32},
		{"half length", valid[:33], ErrTruncated, "exchange", 32},
		{"topic too short", topicTrunc, ErrTruncated, "topic", 34},
		{"no errmsg", valid[:42], ErrTruncated, "errmsg", 42},
		{"no meta count", valid[:44], ErrTruncated, "meta count", 44},
		{"meta count over limit", bigCount, ErrMalformed, "meta count", 44},
		{"meta count huge", hugeCount, ErrMalformed, "meta count", 44},
		{"missing meta entry", header(byte(KindCall), cat(emptyStrings, []byte{0, 1})...), ErrTruncated, "meta key", 46},
		{"truncated meta key", oneMeta[:48], ErrTruncated, "meta key", 46},
		{"missing meta value", oneMeta[:49], ErrTruncated, "meta value", 49},
		{"truncated meta value", oneMeta[:51], ErrTruncated, "meta value", 49},
		{"duplicate meta key", dupMeta, ErrMalformed, "meta key", 52},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sentinel := Message{Kind: KindReply, Topic: "unchanged"}
			m := sentinel
			err := DecodeInto(&m, tt.frame)
			if err == nil {
				t.Fatal("decode succeeded")
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("errors.Is(%v, ErrMalformed) = false", err)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.want)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("errors.As(%v, *DecodeError) = false", err)
			}
			if de.Err != tt.want || de.Field != tt.field || de.Offset != tt.offset {
				t.Errorf("got {%v %q %d}, want {%v %q %d}", de.Err, de.Field, de.Offset, tt.want, tt.field, tt.offset)
			}
			if !reflect.DeepEqual(m, sentinel) {
				t.Errorf("message modified on error: %+v", m)
			}
			if _, err2 := Decode(tt.frame); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("Decode error %v differs from DecodeInto error %v", err2, err)
			}
		})
	}
	// Sanity: the valid headers used above decode, and anything after the
	// header is payload, never a "trailing bytes" error.
	for _, h := range [][]byte{valid, oneMeta} {
		for _, p := range [][]byte{nil, {0}, {1, 2}, h} {
			m, err := Decode(cat(h, p))
			if err != nil {
				t.Fatalf("valid header + %v: %v", p, err)
			}
			if !bytes.Equal(m.Payload, p) || (len(p) == 0) != (m.Payload == nil) {
				t.Fatalf("payload %v decoded as %#v", p, m.Payload)
			}
		}
	}
}

func TestDecodeErrorText(t *testing.T) {
	tests := []struct {
		err  *DecodeError
		want string
	}{
		{&DecodeError{Err: ErrTruncated, Field: "topic", Offset: 34}, "envelope: truncated header: field topic at offset 34"},
		{&DecodeError{Err: ErrMalformed, Field: "meta count", Offset: 44}, "envelope: malformed message: field meta count at offset 44"},
		{&DecodeError{Err: ErrFrameCount, Field: "body", Offset: 0}, "envelope: wrong frame count: body (0 frames)"},
		{&DecodeError{Err: ErrFrameCount, Field: "routing", Offset: 33}, "envelope: wrong frame count: routing (33 frames)"},
		{&DecodeError{}, "envelope: malformed message at offset 0"},
		{nil, "<nil>"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	if got := (&DecodeError{}).Unwrap(); len(got) != 1 || got[0] != ErrMalformed {
		t.Errorf("zero DecodeError Unwrap = %v", got)
	}
	if got := (&DecodeError{Err: ErrKind}).Unwrap(); len(got) != 2 || got[0] != ErrKind || got[1] != ErrMalformed {
		t.Errorf("Unwrap = %v", got)
	}
}

func TestDecodeIntoReuse(t *testing.T) {
	a := Message{Kind: KindCall, ID: NewID(), Topic: "compute", Method: "add", Meta: map[string]string{"a": "1"}, Payload: []byte("p")}
	b := Message{Kind: KindCast, ID: NewID(), Topic: "compute", Method: "sub", Deadline: 5}
	fa, _ := Encode(&a)
	fb, _ := Encode(&b)
	var m Message
	for range 3 {
		if err := DecodeInto(&m, fa); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(m, a) {
			t.Fatalf("got %+v, want %+v", m, a)
		}
		saved := m.Meta
		if err := DecodeInto(&m, fb); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(m, normalize(b)) {
			t.Fatalf("got %+v, want %+v", m, b)
		}
		if !reflect.DeepEqual(saved, a.Meta) {
			t.Fatal("previous Meta map was modified by reuse")
		}
	}
	// Same message again: unchanged strings are kept and nothing is allocated.
	fc, _ := Encode(&Message{Kind: KindCall, Topic: "compute", Method: "sub"})
	allocs := testing.AllocsPerRun(100, func() {
		if err := DecodeInto(&m, fc); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("DecodeInto with unchanged strings allocated %v times", allocs)
	}
}

func TestLargeHeaderStringsAreIndependent(t *testing.T) {
	// Headers above shareLimit are copied field by field.
	in := Message{Kind: KindError, Topic: "t", ErrMsg: strings.Repeat("e", 4*shareLimit), Meta: map[string]string{"k": "v"}}
	roundTrip(t, in)
}

func TestSplitRouting(t *testing.T) {
	body := []byte("body")
	many := func(n int) [][]byte {
		f := make([][]byte, 0, n+1)
		for i := range n {
			f = append(f, []byte("id"+strconv.Itoa(i)))
		}
		return append(f, body)
	}
	tests := []struct {
		name    string
		frames  [][]byte
		routing []string
		want    error
		field   string
		offset  int
	}{
		{"body only", [][]byte{body}, []string{}, nil, "", 0},
		{"one id", [][]byte{[]byte("a"), body}, []string{"a"}, nil, "", 0},
		{"several ids", [][]byte{[]byte("a"), []byte("b"), []byte("c"), body}, []string{"a", "b", "c"}, nil, "", 0},
		{"REQ delimiter kept", [][]byte{[]byte("a"), {}, body}, []string{"a", ""}, nil, "", 0},
		{"nil delimiter kept", [][]byte{[]byte("a"), nil, body}, []string{"a", ""}, nil, "", 0},
		{"delimiter only", [][]byte{{}, body}, []string{""}, nil, "", 0},
		{"empty frames are not special", [][]byte{{}, []byte("a"), {}, body}, []string{"", "a", ""}, nil, "", 0},
		{"max routing", many(MaxRoutingFrames), nil, nil, "", 0},
		{"no frames", nil, nil, ErrFrameCount, "body", 0},
		{"empty list", [][]byte{}, nil, ErrFrameCount, "body", 0},
		{"too many", many(MaxRoutingFrames + 1), nil, ErrFrameCount, "routing", MaxRoutingFrames + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			routing, b, err := SplitRouting(tt.frames)
			if tt.want != nil {
				if !errors.Is(err, tt.want) || !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want %v and ErrMalformed", err, tt.want)
				}
				var de *DecodeError
				if !errors.As(err, &de) || de.Field != tt.field || de.Offset != tt.offset {
					t.Fatalf("err = %#v, want *DecodeError{Field: %q, Offset: %d}", err, tt.field, tt.offset)
				}
				if routing != nil || b != nil {
					t.Fatal("non-nil results on error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(routing) != len(tt.frames)-1 {
				t.Fatalf("got %d routing frames, want %d", len(routing), len(tt.frames)-1)
			}
			if tt.routing != nil {
				got := make([]string, len(routing))
				for i, r := range routing {
					got[i] = string(r)
				}
				if !reflect.DeepEqual(got, tt.routing) {
					t.Fatalf("routing = %q, want %q", got, tt.routing)
				}
			}
			if routing == nil || cap(routing) != len(routing) {
				t.Fatal("routing nil or capacity not clipped")
			}
			for i := range routing {
				if &routing[i] != &tt.frames[i] {
					t.Fatal("routing does not alias input")
				}
			}
			if &b[0] != &body[0] {
				t.Fatal("body does not alias the last frame")
			}
			// Appending the reply body to routing must not clobber the input.
			_ = append(routing, []byte("reply"))
			if &tt.frames[len(tt.frames)-1][0] != &body[0] {
				t.Fatal("appending to routing overwrote the body frame")
			}
		})
	}
}

func TestSplitRoutingDecode(t *testing.T) {
	in := Message{Kind: KindCall, ID: NewID(), Topic: "compute", Method: "add", Payload: []byte{42}}
	body, err := Encode(&in)
	if err != nil {
		t.Fatal(err)
	}
	// A REQ client behind a ROUTER proxy: the delimiter is a routing frame.
	wire := [][]byte{[]byte("peer-1"), []byte("peer-2"), {}, body}
	routing, b, err := SplitRouting(wire)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(routing) != 3 || string(routing[1]) != "peer-2" || len(routing[2]) != 0 || !reflect.DeepEqual(out, in) {
		t.Fatalf("routing %q, message %+v", routing, out)
	}
	// The reply echoes the routing frames, delimiter included.
	reply, err := Encode(&Message{Kind: KindReply, ID: out.ID, Payload: []byte{3}})
	if err != nil {
		t.Fatal(err)
	}
	back := append(routing, reply)
	if len(back) != 4 || string(back[0]) != "peer-1" || len(back[2]) != 0 || !bytes.Equal(back[3], reply) {
		t.Fatalf("reply frames %q", back)
	}
	if !bytes.Equal(wire[3], body) {
		t.Fatal("building the reply clobbered the request")
	}
}

func TestKindCodeStrings(t *testing.T) {
	kinds := map[Kind]string{
		KindCall: "CALL", KindReply: "REPLY", KindCast: "CAST", KindAck: "ACK",
		KindFanout: "FANOUT", KindNotify: "NOTIFY", KindError: "ERROR", KindPing: "PING",
		KindAttach: "ATTACH", KindDetach: "DETACH", KindStats: "STATS", KindCancel: "CANCEL",
		0: "Kind(0)", 13: "Kind(13)", 255: "Kind(255)",
	}
	for k, want := range kinds {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(k), got, want)
		}
		if valid := !strings.HasPrefix(want, "Kind("); k.Valid() != valid {
			t.Errorf("Kind(%d).Valid() = %v", uint8(k), k.Valid())
		}
	}
	codes := map[Code]string{
		CodeOK: "OK", CodeRemote: "REMOTE", CodeNoSuchMethod: "NO_SUCH_METHOD",
		CodeNoServers: "NO_SERVERS", CodeMalformed: "MALFORMED", CodeTooLarge: "TOO_LARGE",
		CodeOverloaded: "OVERLOADED", CodeShuttingDown: "SHUTTING_DOWN", CodeExpired: "EXPIRED",
		CodeConflict: "CONFLICT", CodeInProgress: "IN_PROGRESS", CodeServerLost: "SERVER_LOST", 12: "Code(12)", 65535: "Code(65535)",
	}
	for c, want := range codes {
		if got := c.String(); got != want {
			t.Errorf("Code(%d).String() = %q, want %q", uint16(c), got, want)
		}
	}
}

func TestID(t *testing.T) {
	var zero ID
	if !zero.IsZero() {
		t.Fatal("zero ID not IsZero")
	}
	a, b := NewID(), NewID()
	if a.IsZero() || a == b {
		t.Fatalf("NewID: %v %v", a, b)
	}
	if a[6]>>4 != 4 || a[8]&0xc0 != 0x80 {
		t.Fatalf("NewID is not a v4 RFC 4122 UUID: %v", a)
	}
	if got := testID().String(); got != "01020304-0506-0708-090a-0b0c0d0e0f10" {
		t.Fatalf("String = %q", got)
	}
}

func TestHeaderSizeExact(t *testing.T) {
	// Encode must size its buffer exactly, whichever path it takes.
	for _, n := range []int{0, 10, 34, 35, 100, 162, 163, 500} {
		m := Message{Kind: KindCall, Topic: strings.Repeat("t", n)}
		for _, p := range []int{0, 1, 64, 1000} {
			m.Payload = bytes.Repeat([]byte{7}, p)
			f, err := Encode(&m)
			if err != nil {
				t.Fatal(err)
			}
			if len(f) != minHeaderLen+n+p || cap(f) != len(f) {
				t.Fatalf("n=%d p=%d: len %d cap %d", n, p, len(f), cap(f))
			}
			if binary.BigEndian.Uint16(f[34:]) != uint16(n) {
				t.Fatal("bad topic length")
			}
		}
	}
}

// No fanout topic frame is a strict prefix of another's: subscriptions
// (prefix matches in ZeroMQ) are exact.
func TestFanoutTopicIsPrefixFree(t *testing.T) {
	pairs := [][2]string{{"", "fan"}, {"", "fanx"}, {"", "fa"}, {"e", "fan"}, {"", "efan"}, {"ef", "an"}, {"", ""}, {"x", ""}}
	for _, a := range pairs {
		for _, b := range pairs {
			fa, fb := FanoutTopic(a[0], a[1]), FanoutTopic(b[0], b[1])
			if a != b && bytes.HasPrefix(fb, fa) {
				t.Fatalf("topic frame of %q is a prefix of %q's", a, b)
			}
		}
	}
}

func TestPeekID(t *testing.T) {
	m := Message{Kind: KindReply, ID: testID(), Topic: "t", Payload: []byte("p")}
	f, err := Encode(&m)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := PeekID(f); !ok || id != m.ID {
		t.Fatalf("PeekID = %v, %v; want %v, true", id, ok, m.ID)
	}
	for _, bad := range [][]byte{nil, f[:21], append([]byte("XM"), f[2:]...), append([]byte{'Z', 'M', 9}, f[3:]...)} {
		if _, ok := PeekID(bad); ok {
			t.Errorf("PeekID(%q) ok", bad)
		}
	}
}

// PeekAck reads an ACK's code without decoding, and refuses anything else.
func TestPeekAck(t *testing.T) {
	for _, c := range []Code{CodeOK, CodeInProgress, CodeNoServers} {
		b, err := Encode(&Message{Kind: KindAck, ID: NewID(), Code: c, ErrMsg: "x", Topic: "some.topic"})
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := PeekAck(b); !ok || got != c {
			t.Fatalf("PeekAck of an ACK with %v: %v, %v", c, got, ok)
		}
	}
	reply, _ := Encode(&Message{Kind: KindReply, ID: NewID(), Code: CodeInProgress})
	if _, ok := PeekAck(reply); ok {
		t.Fatal("PeekAck took a REPLY for an ACK")
	}
	if _, ok := PeekAck([]byte("ZM")); ok {
		t.Fatal("PeekAck took a short frame")
	}
}

// NewID gives version 4 UUIDs, distinct across a refill of its pool, and
// costs no allocation.
func TestNewIDIsV4AndUnique(t *testing.T) {
	seen := make(map[ID]bool, 1000)
	for i := 0; i < 1000; i++ {
		id := NewID()
		if id[6]>>4 != 4 || id[8]>>6 != 2 {
			t.Fatalf("%s is not a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("%s twice", id)
		}
		seen[id] = true
	}
	if n := testing.AllocsPerRun(100, func() { _ = NewID() }); n != 0 {
		t.Fatalf("NewID allocates %v times", n)
	}
}
