// Package envelope is the wire codec of the zmqmsg RPC library.
//
// It is pure: it does not import any ZeroMQ binding and works on frames
// represented as [][]byte. It is on the hot path of every RPC, so encoding is
// append-style, no reflection is used, Encode makes one allocation for a
// typical message, and Decode allocates one buffer shared by all strings of a
// typical header (headers over 1 KiB of strings copy each field separately),
// plus the Meta map when present.
//
// # Frames
//
// A message on a ROUTER/DEALER socket is a list of frames:
//
//	+-----------+-----+-----------+----+--------+---------+
//	| identity1 | ... | identityN | "" | header | payload |
//	+-----------+-----+-----------+----+--------+---------+
//	 \____ routing frames ______/  delim  \__ body frames __/
//
// [SplitRouting] separates the routing frames (0 to [MaxRoutingFrames]
// identities) from the body at the first empty delimiter frame. The body is
// always exactly two frames: the header produced by [AppendHeader] and the
// opaque payload (codec-encoded unless [FlagRaw] is set). [Encode] returns
// the body frames and [Decode] parses them.
//
// # Header frame
//
// All integers are big-endian. Strings are a u16 byte length followed by the
// bytes (no terminator), so no string can be longer than [MaxStringLen].
//
//	off  size  field
//	0    2     signature 'Z' 'M'
//	2    1     version (1)
//	3    1     kind
//	4    1     flags
//	5    1     reserved, 0 on encode, ignored on decode
//	6    16    message id (random v4 UUID)
//	22   8     deadline, int64 unix nanoseconds (0 = none)
//	30   2     code, u16
//	32   ...   exchange  (u16 len + bytes)
//	           topic     (u16 len + bytes)
//	           server    (u16 len + bytes)
//	           method    (u16 len + bytes)
//	           errtype   (u16 len + bytes)
//	           errmsg    (u16 len + bytes)
//	     2     meta count, u16 (at most MaxMetaEntries)
//	     ...   per entry: u16 klen, key, u16 vlen, value
//	           (keys are written in sorted order, duplicates are rejected)
//
//	 0       2   3   4   5   6                22        30     32
//	 +---+---+---+---+---+---+-------- ... ---+--- ... --+------+---------
//	 | Z | M |ver|knd|flg|rsv|    id (16)     | deadline | code | strings,
//	 +---+---+---+---+---+---+-------- ... ---+--- ... --+------+ meta ...
//
// The header ends exactly after the last meta entry: trailing bytes are a
// decode error. The smallest valid header is 46 bytes (32 fixed bytes, six
// empty strings and a zero meta count).
//
// # Errors
//
// Every decoding failure is a [*DecodeError] whose Err is one of the
// sentinels ([ErrSignature], [ErrVersion], [ErrTruncated], [ErrFrameCount],
// [ErrKind], [ErrNoDelimiter], or [ErrMalformed] itself); errors.Is(err,
// ErrMalformed) is true for all of them. Encoding failures wrap [ErrTooLong]
// (a field over its limit) or [ErrKind] (an invalid Kind) and never match
// ErrMalformed.
//
// # Aliasing
//
// Decoded strings (including Meta keys and values) are copied and never
// alias the input frames; they may share one backing allocation.
// Message.Payload, however, aliases the payload frame: the caller must not
// reuse or modify that frame's buffer while the Message is in use. Likewise
// the payload frame returned by [Encode] aliases Message.Payload.
package envelope
