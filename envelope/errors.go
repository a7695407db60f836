package envelope

import (
	"errors"
	"strconv"
)

// Sentinel errors. Every error returned by Decode, DecodeInto (with a
// non-nil *Message) and SplitRouting is a *DecodeError matching ErrMalformed and one of the more
// specific sentinels via errors.Is. Encoding errors wrap ErrTooLong or
// ErrKind and never match ErrMalformed.
var (
	// ErrMalformed is matched by every decoding error.
	ErrMalformed = errors.New("envelope: malformed message")
	// ErrSignature means the header does not start with Signature.
	ErrSignature = errors.New("envelope: bad signature")
	// ErrVersion means the header version is not Version.
	ErrVersion = errors.New("envelope: unsupported version")
	// ErrTruncated means the header ends inside a field.
	ErrTruncated = errors.New("envelope: truncated header")
	// ErrFrameCount means a received message has no frames at all, or more
	// than MaxRoutingFrames routing frames before its body.
	ErrFrameCount = errors.New("envelope: wrong frame count")
	// ErrKind means the kind byte is not a valid Kind (when decoding), or
	// Message.Kind is not valid (when encoding).
	ErrKind = errors.New("envelope: unknown kind")
	// ErrTooLong is wrapped by encoding errors when a string, Meta key,
	// Meta value or the Meta map itself exceeds its limit. It is not a
	// decoding error and does not match ErrMalformed.
	ErrTooLong = errors.New("envelope: field exceeds its limit")
)

// errNilMessage is returned when a nil *Message is passed in.
var errNilMessage = errors.New("envelope: nil *Message")

// DecodeError describes why a message could not be decoded.
//
// For header errors, Field names the header field being read ("signature",
// "version", "kind", "id", "topic", "meta count", "meta key", ...) and
// Offset is the byte offset of that field in the body frame. For
// frame-level errors from SplitRouting (Err is ErrFrameCount), Field is
// "body" (no frames at all, Offset 0) or "routing" (Offset is the number of
// routing frames that preceded the body).
type DecodeError struct {
	Err    error  // ErrMalformed or one of the more specific sentinels
	Offset int    // byte offset in the body frame, or a frame count (see above)
	Field  string // the field or frame group being decoded
}

// Error returns, for example,
// "envelope: truncated header: field topic at offset 34".
func (e *DecodeError) Error() string {
	if e == nil {
		return "<nil>"
	}
	err := e.Err
	if err == nil {
		err = ErrMalformed
	}
	s := err.Error()
	if err == ErrFrameCount {
		if e.Field != "" {
			s += ": " + e.Field
		}
		return s + " (" + strconv.Itoa(e.Offset) + " frames)"
	}
	if e.Field != "" {
		s += ": field " + e.Field
	}
	return s + " at offset " + strconv.Itoa(e.Offset)
}

// Unwrap returns {e.Err, ErrMalformed}, so that errors.Is matches both the
// specific sentinel and ErrMalformed.
func (e *DecodeError) Unwrap() []error {
	if e == nil || e.Err == nil || e.Err == ErrMalformed {
		return []error{ErrMalformed}
	}
	return []error{e.Err, ErrMalformed}
}

// tooLongError is the error returned when an encoded field exceeds its limit.
type tooLongError struct {
	field string
	size  int
	limit int
}

func (e *tooLongError) Error() string {
	return ErrTooLong.Error() + ": " + e.field + " is " + strconv.Itoa(e.size) +
		" (max " + strconv.Itoa(e.limit) + ")"
}

func (e *tooLongError) Unwrap() error { return ErrTooLong }

// kindError is the error returned when encoding a message with an invalid Kind.
type kindError struct{ kind Kind }

func (e *kindError) Error() string {
	return ErrKind.Error() + ": cannot encode " + e.kind.String()
}

func (e *kindError) Unwrap() error { return ErrKind }
