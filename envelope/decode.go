package envelope

import "encoding/binary"

// shareLimit is the largest string section (header bytes after the fixed
// part) decoded into one shared string allocation. Larger sections are
// copied field by field so that a small retained string cannot pin a large
// header in memory.
const shareLimit = 1024

// stringFields names the six header strings, in wire order.
var stringFields = [6]string{"exchange", "topic", "server", "method", "errtype", "errmsg"}

// fixedField returns the name and offset of the fixed-part field that
// contains byte offset off (off < fixedLen).
func fixedField(off int) (string, int) {
	switch {
	case off < 2:
		return "signature", 0
	case off < 3:
		return "version", 2
	case off < 4:
		return "kind", 3
	case off < 5:
		return "flags", 4
	case off < 6:
		return "reserved", 5
	case off < 22:
		return "id", 6
	case off < 30:
		return "deadline", 22
	default:
		return "code", 30
	}
}

func decodeErr(err error, field string, off int) *DecodeError {
	return &DecodeError{Err: err, Offset: off, Field: field}
}

// readString validates the string starting at off in h and returns the
// bounds of its bytes.
func readString(h []byte, off int, field string) (start, end int, err error) {
	if len(h)-off < 2 {
		return 0, 0, decodeErr(ErrTruncated, field, off)
	}
	n := int(binary.BigEndian.Uint16(h[off:]))
	if len(h)-off-2 < n {
		return 0, 0, decodeErr(ErrTruncated, field, off)
	}
	return off + 2, off + 2 + n, nil
}

// Decode parses the two body frames [header, payload] of a message (see
// SplitRouting to strip routing frames first). It is DecodeInto on a new
// Message; the same aliasing rules apply: strings are copied, Payload
// aliases frames[1].
func Decode(frames [][]byte) (Message, error) {
	var m Message
	err := DecodeInto(&m, frames)
	return m, err
}

// DecodeInto parses the two body frames [header, payload] into *m,
// overwriting every field.
//
// Strings and Meta are copied out of the header frame, which may be reused
// as soon as DecodeInto returns. m.Payload aliases frames[1] (with its
// capacity clipped to its length): the payload frame must stay untouched as
// long as m.Payload is in use. An empty payload frame decodes to a nil
// Payload, so the wire cannot distinguish nil from empty payloads; test
// len(m.Payload) == 0. A header without Meta entries decodes to a nil Meta.
//
// When reusing a Message, string fields whose value is unchanged keep their
// existing string, so decoding a stream of similar messages into the same
// Message may not allocate at all. Meta is always a fresh map (or nil),
// never the previous one cleared.
//
// On failure *m is left unchanged and the error is a *DecodeError matching
// ErrMalformed. m must not be nil (a nil m yields a plain, non-DecodeError
// error rather than a panic).
func DecodeInto(m *Message, frames [][]byte) error {
	if m == nil {
		return errNilMessage
	}
	if len(frames) != 2 {
		return decodeErr(ErrFrameCount, "body", len(frames))
	}
	h := frames[0]
	if len(h) < 2 {
		return decodeErr(ErrTruncated, "signature", 0)
	}
	if h[0] != Signature[0] || h[1] != Signature[1] {
		return decodeErr(ErrSignature, "signature", 0)
	}
	if len(h) < 3 {
		return decodeErr(ErrTruncated, "version", 2)
	}
	if h[2] != Version {
		return decodeErr(ErrVersion, "version", 2)
	}
	if len(h) < fixedLen {
		field, off := fixedField(len(h))
		return decodeErr(ErrTruncated, field, off)
	}
	kind := Kind(h[3])
	if !kind.Valid() {
		return decodeErr(ErrKind, "kind", 3)
	}

	// Pass 1: validate every length against the bytes actually present.
	// Nothing is allocated and *m is not touched.
	var spans [6][2]int
	off := fixedLen
	for i := range spans {
		if len(h)-off < 2 {
			return decodeErr(ErrTruncated, stringFields[i], off)
		}
		a := off + 2
		b := a + int(binary.BigEndian.Uint16(h[off:]))
		if b > len(h) {
			return decodeErr(ErrTruncated, stringFields[i], off)
		}
		spans[i] = [2]int{a, b}
		off = b
	}
	if len(h)-off < 2 {
		return decodeErr(ErrTruncated, "meta count", off)
	}
	count := int(binary.BigEndian.Uint16(h[off:]))
	if count > MaxMetaEntries {
		return decodeErr(ErrMalformed, "meta count", off)
	}
	metaOff := off + 2
	off = metaOff
	for range count {
		_, kb, err := readString(h, off, "meta key")
		if err != nil {
			return err
		}
		_, vb, err := readString(h, kb, "meta value")
		if err != nil {
			return err
		}
		off = vb
	}
	if off != len(h) {
		return decodeErr(ErrMalformed, "trailer", off)
	}

	// Pass 2: materialise strings. Lengths are known to be in bounds.
	cur := [6]*string{&m.Exchange, &m.Topic, &m.Server, &m.Method, &m.ErrType, &m.ErrMsg}
	var strs [6]string
	changed := count > 0
	for i, sp := range spans {
		if string(h[sp[0]:sp[1]]) != *cur[i] {
			changed = true
			break
		}
	}
	var shared string
	if changed {
		if len(h)-fixedLen <= shareLimit {
			shared = string(h[fixedLen:])
		}
		for i, sp := range spans {
			strs[i] = substr(h, shared, sp[0], sp[1])
		}
	}
	var meta map[string]string
	if count > 0 {
		// count <= MaxMetaEntries and every entry was checked to be present.
		meta = make(map[string]string, count)
		off = metaOff
		for range count {
			ka, kb, _ := readString(h, off, "meta key")
			va, vb, _ := readString(h, kb, "meta value")
			k := substr(h, shared, ka, kb)
			if _, dup := meta[k]; dup {
				return decodeErr(ErrMalformed, "meta key", off)
			}
			meta[k] = substr(h, shared, va, vb)
			off = vb
		}
	}

	m.Kind = kind
	m.Flags = Flags(h[4])
	copy(m.ID[:], h[6:22])
	m.Deadline = int64(binary.BigEndian.Uint64(h[22:30]))
	m.Code = Code(binary.BigEndian.Uint16(h[30:32]))
	if changed {
		for i, p := range cur {
			*p = strs[i]
		}
	}
	m.Meta = meta
	if p := frames[1]; len(p) > 0 {
		m.Payload = p[:len(p):len(p)]
	} else {
		m.Payload = nil
	}
	return nil
}

// substr returns h[a:b] as a string, sliced from shared when it is set
// (shared holds h[fixedLen:]) and copied otherwise.
func substr(h []byte, shared string, a, b int) string {
	if a == b {
		return ""
	}
	if shared != "" {
		return shared[a-fixedLen : b-fixedLen]
	}
	return string(h[a:b])
}

// SplitRouting splits a message received on a ROUTER or DEALER socket into
// its routing frames (peer identities) and its body, at the first empty
// delimiter frame (the REQ/REP convention):
//
//	[id1, id2, "", header, payload] -> routing=[id1, id2], body=[header, payload]
//	["", header, payload]           -> routing=[],         body=[header, payload]
//
// Both results alias frames (routing has its capacity clipped so appending
// to it cannot overwrite the delimiter). The body is not validated; Decode
// does that. It fails with ErrNoDelimiter if no frame is empty, and with
// ErrFrameCount if more than MaxRoutingFrames frames precede the delimiter.
func SplitRouting(frames [][]byte) (routing, body [][]byte, err error) {
	for i, f := range frames {
		if len(f) != 0 {
			continue
		}
		if i > MaxRoutingFrames {
			return nil, nil, decodeErr(ErrFrameCount, "routing", i)
		}
		return frames[:i:i], frames[i+1:], nil
	}
	return nil, nil, decodeErr(ErrNoDelimiter, "routing", len(frames))
}
