package envelope

import "encoding/binary"

// shareLimit is the largest string section (header bytes after the fixed
// part) decoded into one shared string allocation. Larger sections are
// copied field by field so that a small retained string cannot pin a large
// header in memory.
const shareLimit = 1024

// stringFields names the six header strings, in wire order.
var stringFields = [6]string{"exchange", "topic", "server", "method", "errtype", "errmsg"}

// fixedFields lists the fields of the fixed part and their offsets, in
// wire order.
var fixedFields = [...]struct {
	name string
	off  int
}{
	{"signature", 0}, {"version", 2}, {"kind", 3}, {"flags", 4},
	{"reserved", 5}, {"id", 6}, {"deadline", 22}, {"code", 30},
}

// fixedField returns the name and offset of the fixed-part field that
// contains byte offset off (off < fixedLen).
func fixedField(off int) (string, int) {
	f := fixedFields[0]
	for _, g := range fixedFields[1:] {
		if off < g.off {
			break
		}
		f = g
	}
	return f.name, f.off
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

// Decode parses a body frame (header followed by payload; see SplitRouting
// to separate it from the routing frames first). It is DecodeInto on a new
// Message; the same aliasing rules apply: strings are copied, Payload
// aliases the bytes of frame after the header.
func Decode(frame []byte) (Message, error) {
	var m Message
	err := DecodeInto(&m, frame)
	return m, err
}

// DecodeInto parses a body frame into *m, overwriting every field.
//
// The header's length is determined by parsing it (fixed part, six
// strings, Meta section); every byte after the last Meta entry is the
// payload, so there is no "trailing bytes" error.
//
// Strings and Meta are copied out of the frame and never alias it.
// m.Payload, however, aliases the payload bytes frame[headerLen:], with its
// capacity clipped to its length: frame must not be modified or reused while
// m.Payload is in use. An empty payload decodes to a nil Payload, so the wire
// cannot distinguish nil from empty payloads; test len(m.Payload) == 0. A
// header without Meta entries decodes to a nil Meta.
//
// When reusing a Message, string fields whose value is unchanged keep their
// existing string, so decoding a stream of similar messages into the same
// Message may not allocate at all. Meta is always a fresh map (or nil),
// never the previous one cleared.
//
// On failure *m is left unchanged and the error is a *DecodeError matching
// ErrMalformed. m must not be nil (a nil m yields a plain, non-DecodeError
// error rather than a panic).
func DecodeInto(m *Message, frame []byte) error {
	if m == nil {
		return errNilMessage
	}
	// Pass 1: validate every length against the bytes actually present and
	// find the end of the header. Nothing is allocated and *m is not
	// touched.
	kind, err := checkFixed(frame)
	if err != nil {
		return err
	}
	var spans [6][2]int
	if err := scanStrings(frame, &spans); err != nil {
		return err
	}
	metaAt := spans[len(spans)-1][1]
	count, end, err := scanMeta(frame, metaAt)
	if err != nil {
		return err
	}

	// Pass 2: materialise strings and Meta. Lengths are known to be in
	// bounds.
	changed := count > 0 || stringsChanged(m, frame, &spans)
	var shared string
	if changed && end-fixedLen <= shareLimit {
		// Only the header's string section is shared, never the payload.
		shared = string(frame[fixedLen:end])
	}
	var meta map[string]string
	if count > 0 {
		if meta, err = decodeMeta(frame, shared, metaAt, count); err != nil {
			return err
		}
	}

	m.Kind = kind
	m.Flags = Flags(frame[4])
	copy(m.ID[:], frame[6:22])
	m.Deadline = int64(binary.BigEndian.Uint64(frame[22:30]))
	m.Code = Code(binary.BigEndian.Uint16(frame[30:32]))
	if changed {
		for i, p := range stringPtrs(m) {
			*p = substr(frame, shared, spans[i][0], spans[i][1])
		}
	}
	m.Meta = meta
	if end < len(frame) {
		m.Payload = frame[end:len(frame):len(frame)]
	} else {
		m.Payload = nil
	}
	return nil
}

// checkFixed validates the fixed part of header h and returns its kind.
func checkFixed(h []byte) (Kind, error) {
	if len(h) >= 2 && (h[0] != Signature[0] || h[1] != Signature[1]) {
		return 0, decodeErr(ErrSignature, "signature", 0)
	}
	if len(h) >= 3 && h[2] != Version {
		return 0, decodeErr(ErrVersion, "version", 2)
	}
	if len(h) < fixedLen {
		field, off := fixedField(len(h))
		return 0, decodeErr(ErrTruncated, field, off)
	}
	kind := Kind(h[3])
	if !kind.Valid() {
		return 0, decodeErr(ErrKind, "kind", 3)
	}
	return kind, nil
}

// scanStrings validates the six strings after the fixed part of h and
// stores the bounds of their bytes in spans.
func scanStrings(h []byte, spans *[6][2]int) error {
	off := fixedLen
	for i := range spans {
		a, b, err := readString(h, off, stringFields[i])
		if err != nil {
			return err
		}
		spans[i] = [2]int{a, b}
		off = b
	}
	return nil
}

// scanMeta validates the Meta section of h, which starts at off, and
// returns its entry count and where it ends (the header's length).
func scanMeta(h []byte, off int) (count, end int, err error) {
	if len(h)-off < 2 {
		return 0, 0, decodeErr(ErrTruncated, "meta count", off)
	}
	count = int(binary.BigEndian.Uint16(h[off:]))
	if count > MaxMetaEntries {
		return 0, 0, decodeErr(ErrMalformed, "meta count", off)
	}
	off += 2
	for range count {
		_, kb, err := readString(h, off, "meta key")
		if err != nil {
			return 0, 0, err
		}
		_, vb, err := readString(h, kb, "meta value")
		if err != nil {
			return 0, 0, err
		}
		off = vb
	}
	return count, off, nil
}

// stringPtrs returns m's six header strings, in wire order.
func stringPtrs(m *Message) [6]*string {
	return [6]*string{&m.Exchange, &m.Topic, &m.Server, &m.Method, &m.ErrType, &m.ErrMsg}
}

// stringsChanged reports whether any of m's strings differs from its span
// in h.
func stringsChanged(m *Message, h []byte, spans *[6][2]int) bool {
	for i, p := range stringPtrs(m) {
		if string(h[spans[i][0]:spans[i][1]]) != *p {
			return true
		}
	}
	return false
}

// decodeMeta builds the Meta map of a header whose Meta section, starting
// at off and holding count > 0 entries, scanMeta has validated.
func decodeMeta(h []byte, shared string, off, count int) (map[string]string, error) {
	// count <= MaxMetaEntries and every entry was checked to be present.
	meta := make(map[string]string, count)
	off += 2
	for range count {
		ka, kb, _ := readString(h, off, "meta key")
		va, vb, _ := readString(h, kb, "meta value")
		k := substr(h, shared, ka, kb)
		if _, dup := meta[k]; dup {
			return nil, decodeErr(ErrMalformed, "meta key", off)
		}
		meta[k] = substr(h, shared, va, vb)
		off = vb
	}
	return meta, nil
}

// substr returns h[a:b] as a string, sliced from shared when it is set
// (shared holds h[fixedLen:headerEnd]) and copied otherwise.
func substr(h []byte, shared string, a, b int) string {
	if a == b {
		return ""
	}
	if shared != "" {
		return shared[a-fixedLen : b-fixedLen]
	}
	return string(h[a:b])
}

// SplitRouting splits a multipart message received on a ROUTER or DEALER
// socket into its routing frames and its body frame. The body is always the
// last frame; every frame before it is a routing frame (peer identities
// added by ROUTER sockets, and the empty delimiter frame when the peer is a
// REQ socket), to be sent back unchanged in front of the reply's body:
//
//	[id1, id2, body]     -> routing=[id1, id2],     body=body
//	[id, "", body]       -> routing=[id, ""],       body=body  (REQ peer)
//	[body]               -> routing=[] (empty),     body=body
//
// Both results alias frames (routing has its capacity clipped so appending
// to it cannot overwrite the body). The body is not validated; Decode does
// that. It fails with ErrFrameCount if frames is empty (Field "body") or if
// more than MaxRoutingFrames frames precede the body (Field "routing").
func SplitRouting(frames [][]byte) (routing [][]byte, body []byte, err error) {
	n := len(frames) - 1
	if n < 0 {
		return nil, nil, decodeErr(ErrFrameCount, "body", 0)
	}
	if n > MaxRoutingFrames {
		return nil, nil, decodeErr(ErrFrameCount, "routing", n)
	}
	return frames[:n:n], frames[n], nil
}

// peekable reports whether frame starts with the signature and this
// version and holds at least n bytes: what every Peek function reads.
func peekable(frame []byte, n int) bool {
	return len(frame) >= n && frame[0] == 'Z' && frame[1] == 'M' && frame[2] == Version
}

// PeekID returns the message id of a body frame without decoding the rest
// of its header: a relay that only correlates messages (the node proxy
// daemon) reads 22 bytes instead of six strings. ok is false if the frame
// is too short or does not start with the signature and version.
func PeekID(frame []byte) (id ID, ok bool) {
	if !peekable(frame, 22) {
		return id, false
	}
	copy(id[:], frame[6:22])
	return id, true
}

// PeekFlags returns a body frame's flags without decoding the rest of it;
// ok is false for anything that is not a message of this version.
func PeekFlags(frame []byte) (flags Flags, ok bool) {
	if !peekable(frame, 6) {
		return 0, false
	}
	return Flags(frame[4]), true
}

// PeekAck returns the code of an ACK without decoding the rest of the
// frame (the code sits at a fixed offset); ok is false for anything that is
// not an ACK of this version.
func PeekAck(frame []byte) (code Code, ok bool) {
	if !peekable(frame, 32) || Kind(frame[3]) != KindAck {
		return 0, false
	}
	return Code(binary.BigEndian.Uint16(frame[30:32])), true
}
