package envelope

import "testing"

// typicalCall is a typical CALL: topic "compute", method "add", 64-byte
// payload, a deadline, no Meta.
func typicalCall() Message {
	return Message{
		Kind:     KindCall,
		ID:       testID(),
		Deadline: 1_700_000_000_000_000_000,
		Topic:    "compute",
		Method:   "add",
		Payload:  make([]byte, 64),
	}
}

func BenchmarkEncode(b *testing.B) {
	m := typicalCall()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(&m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendMessage(b *testing.B) {
	m := typicalCall()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendMessage(buf[:0], &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendHeader(b *testing.B) {
	m := typicalCall()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendHeader(buf[:0], &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	m := typicalCall()
	frame, err := Encode(&m)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeIntoReuse(b *testing.B) {
	m := typicalCall()
	frame, err := Encode(&m)
	if err != nil {
		b.Fatal(err)
	}
	var out Message
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeInto(&out, frame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeMeta(b *testing.B) {
	m := typicalCall()
	m.Meta = map[string]string{"trace-id": "abc123", "user": "alice", "tenant": "t1"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(&m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeMeta(b *testing.B) {
	m := typicalCall()
	m.Meta = map[string]string{"trace-id": "abc123", "user": "alice", "tenant": "t1"}
	frame, err := Encode(&m)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(frame); err != nil {
			b.Fatal(err)
		}
	}
}
