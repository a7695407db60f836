package envelope

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
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
	frames, err := Encode(&in)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if len(frames) != 2 {
		t.Fatalf("Encode returned %d frames", len(frames))
	}
	hdr, err := AppendHeader(nil, &in)
	if err != nil {
		t.Fatalf("AppendHeader: %v", err)
	}
	if !bytes.Equal(hdr, frames[0]) {
		t.Fatalf("AppendHeader and Encode disagree")
	}
	out, err := Decode(frames)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if want := normalize(in); !reflect.DeepEqual(out, want) {
		t.Fatalf("round trip mismatch:\n got %+v\nwant %+v", out, want)
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { roundTrip(t, tt.msg) })
	}
}

func TestEncodePayloadFrame(t *testing.T) {
	frames, err := Encode(&Message{Kind: KindCall})
	if err != nil {
		t.Fatal(err)
	}
	if frames[1] == nil || len(frames[1]) != 0 {
		t.Fatalf("nil payload: got %#v, want empty non-nil frame", frames[1])
	}
	p := []byte("abc")
	frames, err = Encode(&Message{Kind: KindCall, Payload: p})
	if err != nil {
		t.Fatal(err)
	}
	if &frames[1][0] != &p[0] {
		t.Fatal("payload frame does not alias Message.Payload")
	}
}

func TestDecodePayloadAliasing(t *testing.T) {
	frames, err := Encode(&Message{Kind: KindCall, Topic: "t", Payload: []byte("abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	frames[1] = append(make([]byte, 0, 64), frames[1]...)
	m, err := Decode(frames)
	if err != nil {
		t.Fatal(err)
	}
	if &m.Payload[0] != &frames[1][0] {
		t.Fatal("Payload does not alias the payload frame")
	}
	if cap(m.Payload) != len(m.Payload) {
		t.Fatalf("Payload capacity not clipped: cap %d len %d", cap(m.Payload), len(m.Payload))
	}
	// Strings are copies: clobbering the header must not change them.
	for i := range frames[0] {
		frames[0][i] = 0
	}
	if m.Topic != "t" {
		t.Fatalf("Topic aliases the header frame: %q", m.Topic)
	}
	// Empty payload frames decode to nil, whatever their representation.
	for _, p := range [][]byte{nil, {}, make([]byte, 0, 8)} {
		f, _ := Encode(&Message{Kind: KindPing})
		f[1] = p
		m, err := Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		if m.Payload != nil {
			t.Fatalf("empty payload frame %#v decoded to %#v, want nil", p, m.Payload)
		}
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
	// The reserved byte is ignored on decode.
	h[5] = 0x7f
	got, err := Decode([][]byte{h, nil})
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
		{"bad kind", Message{Kind: 9}, ErrKind},
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
			frames, err := Encode(&tt.msg)
			if !errors.Is(err, tt.want) || frames != nil {
				t.Fatalf("Encode = %v, %v; want nil, %v", frames, err, tt.want)
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
		frames [][]byte
		want   error
		field  string
		offset int
	}{
		{"no frames", nil, ErrFrameCount, "body", 0},
		{"one frame", [][]byte{valid}, ErrFrameCount, "body", 1},
		{"three frames", [][]byte{valid, nil, nil}, ErrFrameCount, "body", 3},
		{"empty header", [][]byte{nil, nil}, ErrTruncated, "signature", 0},
		{"one byte", [][]byte{{'Z'}, nil}, ErrTruncated, "signature", 0},
		{"bad signature", [][]byte{{'Z', 'Q', 1, 1}, nil}, ErrSignature, "signature", 0},
		{"no version", [][]byte{{'Z', 'M'}, nil}, ErrTruncated, "version", 2},
		{"version 0", [][]byte{{'Z', 'M', 0, 1}, nil}, ErrVersion, "version", 2},
		{"version 2", [][]byte{{'Z', 'M', 2}, nil}, ErrVersion, "version", 2},
		{"no kind", [][]byte{{'Z', 'M', 1}, nil}, ErrTruncated, "kind", 3},
		{"truncated id", [][]byte{valid[:10], nil}, ErrTruncated, "id", 6},
		{"truncated deadline", [][]byte{valid[:25], nil}, ErrTruncated, "deadline", 22},
		{"truncated code", [][]byte{valid[:31], nil}, ErrTruncated, "code", 30},
		{"kind 0", [][]byte{header(0, cat(emptyStrings, []byte{0, 0})...), nil}, ErrKind, "kind", 3},
		{"kind 9", [][]byte{header(9, cat(emptyStrings, []byte{0, 0})...), nil}, ErrKind, "kind", 3},
		{"no strings", [][]byte{valid[:32], nil}, ErrTruncated, "exchange", 32},
		{"half length", [][]byte{valid[:33], nil}, ErrTruncated, "exchange", 32},
		{"topic too short", [][]byte{topicTrunc, nil}, ErrTruncated, "topic", 34},
		{"no errmsg", [][]byte{valid[:42], nil}, ErrTruncated, "errmsg", 42},
		{"no meta count", [][]byte{valid[:44], nil}, ErrTruncated, "meta count", 44},
		{"meta count over limit", [][]byte{bigCount, nil}, ErrMalformed, "meta count", 44},
		{"meta count huge", [][]byte{hugeCount, nil}, ErrMalformed, "meta count", 44},
		{"missing meta entry", [][]byte{header(byte(KindCall), cat(emptyStrings, []byte{0, 1})...), nil}, ErrTruncated, "meta key", 46},
		{"truncated meta key", [][]byte{oneMeta[:48], nil}, ErrTruncated, "meta key", 46},
		{"missing meta value", [][]byte{oneMeta[:49], nil}, ErrTruncated, "meta value", 49},
		{"truncated meta value", [][]byte{oneMeta[:51], nil}, ErrTruncated, "meta value", 49},
		{"duplicate meta key", [][]byte{dupMeta, nil}, ErrMalformed, "meta key", 52},
		{"trailer", [][]byte{append(bytes.Clone(valid), 0), nil}, ErrMalformed, "trailer", 46},
		{"trailer after meta", [][]byte{append(bytes.Clone(oneMeta), 1, 2), nil}, ErrMalformed, "trailer", 52},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sentinel := Message{Kind: KindReply, Topic: "unchanged"}
			m := sentinel
			err := DecodeInto(&m, tt.frames)
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
			if _, err2 := Decode(tt.frames); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("Decode error %v differs from DecodeInto error %v", err2, err)
			}
		})
	}
	// Sanity: the valid headers used above decode.
	for _, h := range [][]byte{valid, oneMeta} {
		if _, err := Decode([][]byte{h, nil}); err != nil {
			t.Fatalf("valid header: %v", err)
		}
	}
}

func TestDecodeErrorText(t *testing.T) {
	tests := []struct {
		err  *DecodeError
		want string
	}{
		{&DecodeError{Err: ErrTruncated, Field: "topic", Offset: 34}, "envelope: truncated header: field topic at offset 34"},
		{&DecodeError{Err: ErrMalformed, Field: "trailer", Offset: 46}, "envelope: malformed message: field trailer at offset 46"},
		{&DecodeError{Err: ErrFrameCount, Field: "body", Offset: 3}, "envelope: wrong frame count: body (3 frames)"},
		{&DecodeError{Err: ErrNoDelimiter, Field: "routing", Offset: 2}, "envelope: no routing delimiter: routing (2 frames)"},
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
	h, p := []byte("header"), []byte("payload")
	many := func(n int) [][]byte {
		f := make([][]byte, 0, n+3)
		for i := range n {
			f = append(f, []byte("id"+strconv.Itoa(i)))
		}
		return append(f, nil, h, p)
	}
	tests := []struct {
		name    string
		frames  [][]byte
		routing int
		body    int
		want    error
	}{
		{"no routing", [][]byte{{}, h, p}, 0, 2, nil},
		{"one id", [][]byte{[]byte("a"), {}, h, p}, 1, 2, nil},
		{"several ids", [][]byte{[]byte("a"), []byte("b"), []byte("c"), {}, h, p}, 3, 2, nil},
		{"nil delimiter", [][]byte{[]byte("a"), nil, h, p}, 1, 2, nil},
		{"first delimiter wins", [][]byte{[]byte("a"), {}, h, {}}, 1, 2, nil},
		{"empty body", [][]byte{[]byte("a"), {}}, 1, 0, nil},
		{"max routing", many(MaxRoutingFrames), MaxRoutingFrames, 2, nil},
		{"no delimiter", [][]byte{[]byte("a"), h, p}, 0, 0, ErrNoDelimiter},
		{"no frames", nil, 0, 0, ErrNoDelimiter},
		{"too many", many(MaxRoutingFrames + 1), 0, 0, ErrFrameCount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			routing, body, err := SplitRouting(tt.frames)
			if tt.want != nil {
				if !errors.Is(err, tt.want) || !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want %v and ErrMalformed", err, tt.want)
				}
				var de *DecodeError
				if !errors.As(err, &de) || de.Field != "routing" {
					t.Fatalf("err = %#v, want *DecodeError for routing", err)
				}
				if routing != nil || body != nil {
					t.Fatal("non-nil results on error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(routing) != tt.routing || len(body) != tt.body {
				t.Fatalf("got %d routing, %d body frames; want %d, %d", len(routing), len(body), tt.routing, tt.body)
			}
			if cap(routing) != len(routing) {
				t.Fatal("routing capacity not clipped")
			}
			for i := range routing {
				if &routing[i] != &tt.frames[i] {
					t.Fatal("routing does not alias input")
				}
			}
			if tt.body > 0 && (&body[0][0] != &h[0]) {
				t.Fatal("body does not alias input")
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
	wire := append([][]byte{[]byte("peer-1"), []byte("peer-2"), {}}, body...)
	routing, b, err := SplitRouting(wire)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(routing) != 2 || string(routing[1]) != "peer-2" || !reflect.DeepEqual(out, in) {
		t.Fatalf("routing %q, message %+v", routing, out)
	}
}

func TestKindCodeStrings(t *testing.T) {
	kinds := map[Kind]string{
		KindCall: "CALL", KindReply: "REPLY", KindCast: "CAST", KindAck: "ACK",
		KindFanout: "FANOUT", KindNotify: "NOTIFY", KindError: "ERROR", KindPing: "PING",
		0: "Kind(0)", 9: "Kind(9)", 255: "Kind(255)",
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
		9: "Code(9)", 65535: "Code(65535)",
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
		f, err := Encode(&m)
		if err != nil {
			t.Fatal(err)
		}
		if len(f[0]) != minHeaderLen+n || cap(f[0]) != len(f[0]) {
			t.Fatalf("n=%d: len %d cap %d", n, len(f[0]), cap(f[0]))
		}
		if binary.BigEndian.Uint16(f[0][34:]) != uint16(n) {
			t.Fatal("bad topic length")
		}
	}
}
