package envelope

import (
	"encoding/binary"
	"slices"
)

// fixedLen is the size of the fixed part of the header, before the strings.
const fixedLen = 32

// minHeaderLen is the size of a header with six empty strings and no meta.
const minHeaderLen = fixedLen + 6*2 + 2

// stackKeys is how many Meta keys are sorted without a heap allocation.
const stackKeys = 16

// headerSize validates m for encoding and returns the size of its header.
func headerSize(m *Message) (int, error) {
	if m == nil {
		return 0, errNilMessage
	}
	if !m.Kind.Valid() {
		return 0, &kindError{m.Kind}
	}
	le, lt, ls, lm, ly, lg := len(m.Exchange), len(m.Topic), len(m.Server), len(m.Method), len(m.ErrType), len(m.ErrMsg)
	if max(le, lt, ls, lm, ly, lg) > MaxStringLen {
		for i, l := range [...]int{le, lt, ls, lm, ly, lg} {
			if l > MaxStringLen {
				return 0, &tooLongError{stringFields[i], l, MaxStringLen}
			}
		}
	}
	n := minHeaderLen + le + lt + ls + lm + ly + lg
	if len(m.Meta) == 0 {
		return n, nil
	}
	if len(m.Meta) > MaxMetaEntries {
		return 0, &tooLongError{"meta", len(m.Meta), MaxMetaEntries}
	}
	for k, v := range m.Meta {
		if len(k) > MaxStringLen {
			return 0, &tooLongError{"meta key", len(k), MaxStringLen}
		}
		if len(v) > MaxStringLen {
			return 0, &tooLongError{"meta value", len(v), MaxStringLen}
		}
		n += 4 + len(k) + len(v)
	}
	return n, nil
}

// AppendHeader appends the encoded header of m to dst and returns the
// extended slice. The payload is not included (see AppendMessage for the
// whole body frame). The layout is described in the package documentation;
// Meta keys are written in sorted order, so the encoding of a given Message
// is deterministic.
//
// It fails, returning dst unchanged, if m.Kind is not valid (the error
// wraps ErrKind) or if a string, Meta key or Meta value is longer than
// MaxStringLen or Meta has more than MaxMetaEntries entries (the error wraps
// ErrTooLong).
func AppendHeader(dst []byte, m *Message) ([]byte, error) {
	n, err := headerSize(m)
	if err != nil {
		return dst, err
	}
	return appendHeader(slices.Grow(dst, n), m), nil
}

// AppendMessage appends the whole body frame of m to dst, its header (see
// AppendHeader) immediately followed by the bytes of m.Payload, and returns
// the extended slice. It grows dst at most once, so appending into a reused
// buffer of sufficient capacity does not allocate.
//
// It fails like AppendHeader, returning dst unchanged.
func AppendMessage(dst []byte, m *Message) ([]byte, error) {
	n, err := headerSize(m)
	if err != nil {
		return dst, err
	}
	dst = appendHeader(slices.Grow(dst, n+len(m.Payload)), m)
	return append(dst, m.Payload...), nil
}

// Encode returns the body frame of m, its header followed by its payload,
// in a new slice of exactly that length and capacity (it never aliases
// m.Payload). It fails like AppendHeader.
//
// Encode makes a single allocation.
func Encode(m *Message) ([]byte, error) {
	n, err := headerSize(m)
	if err != nil {
		return nil, err
	}
	buf := appendHeader(make([]byte, 0, n+len(m.Payload)), m)
	return append(buf, m.Payload...), nil
}

// appendHeader appends the header of an already validated m to dst.
func appendHeader(dst []byte, m *Message) []byte {
	dst = append(dst, Signature[0], Signature[1], Version, byte(m.Kind), byte(m.Flags), 0)
	dst = append(dst, m.ID[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.Deadline))
	dst = binary.BigEndian.AppendUint16(dst, uint16(m.Code))
	dst = appendString(dst, m.Exchange)
	dst = appendString(dst, m.Topic)
	dst = appendString(dst, m.Server)
	dst = appendString(dst, m.Method)
	dst = appendString(dst, m.ErrType)
	dst = appendString(dst, m.ErrMsg)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Meta)))
	switch len(m.Meta) {
	case 0:
	case 1:
		for k, v := range m.Meta {
			dst = appendString(dst, k)
			dst = appendString(dst, v)
		}
	default:
		var arr [stackKeys]string
		keys := arr[:0]
		for k := range m.Meta {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			dst = appendString(dst, k)
			dst = appendString(dst, m.Meta[k])
		}
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}
