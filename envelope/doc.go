// Package envelope is the wire codec of the zmqmsg RPC library.
//
// It is pure: it does not import any ZeroMQ binding and works on frames
// represented as []byte (one frame) and [][]byte (a multipart message). It
// is on the hot path of every RPC, so encoding is append-style, no
// reflection is used, [AppendMessage] into a reused buffer does not
// allocate, [Encode] makes one allocation, and [Decode] allocates one buffer
// shared by all strings of a typical header (headers over 1 KiB of strings
// copy each field separately), plus the Meta map when present.
//
// # Frames
//
// A message is one ZeroMQ multipart message: zero or more routing frames
// followed by exactly ONE body frame, always the last frame. The body frame
// is the header immediately followed by the payload, with no separator and
// no payload length (the payload is everything after the header):
//
//	+-----------+-----+-----------+----------------------------+
//	| routing 1 | ... | routing N | body = header | payload    |
//	+-----------+-----+-----------+----------------------------+
//	 \___ routing frames (0..N) _/ \____ last frame __________/
//
// Routing frames are every frame before the last one. They are whatever the
// ZeroMQ sockets on the path put there (identities prepended by ROUTER
// sockets), are opaque to this package, and are sent back unchanged, in the
// same order, in front of the reply's body frame. No empty delimiter frame
// is required. If a peer uses one, it is simply one more routing frame and
// is echoed back with the others: a REQ socket sends ["", body], so a
// ROUTER sees [identity, "", body], SplitRouting returns routing
// [identity, ""], and the reply [identity, "", body] reaches the REQ socket,
// which strips the delimiter. A DEALER peer sends just [body] and a ROUTER
// sees [identity, body].
//
// [SplitRouting] separates the routing frames (0 to [MaxRoutingFrames])
// from the body frame. [AppendMessage] and [Encode] produce a body frame and
// [Decode] / [DecodeInto] parse one. [AppendHeader] produces the header
// alone, for callers that append the payload themselves.
//
// The payload is opaque (codec-encoded unless [FlagRaw] is set) and may be
// empty, in which case the body frame is just the header.
//
// # Header
//
// All integers are big-endian. Strings are a u16 byte length followed by the
// bytes (no terminator), so no string can be longer than [MaxStringLen].
// Offsets are from the start of the body frame.
//
//	off  size  field
//	0    2     signature 'Z' 'M'
//	2    1     version (1)
//	3    1     kind (1..11, see Kind)
//	4    1     flags (bit 0: FlagRaw; other bits carried unchanged)
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
//	           (keys are written in sorted byte order, duplicates are rejected)
//	     ...   payload: every remaining byte of the frame
//
//	 0       2   3   4   5   6                22        30     32
//	 +---+---+---+---+---+---+-------- ... ---+--- ... --+------+---------+------+---------
//	 | Z | M |ver|knd|flg|rsv|    id (16)     | deadline | code | strings | meta | payload
//	 +---+---+---+---+---+---+-------- ... ---+--- ... --+------+---------+------+---------
//	  \________________________________ header _________________________________/
//
// The header's length is not stored: a decoder finds it by walking the
// fixed part, the six strings and the meta entries, and the header ends
// exactly after the last meta entry (right after the meta count if it is
// 0). The payload is the rest of the frame. Every length must fit in the
// frame; a string or meta entry running past the end of the frame is a
// decode error. The smallest valid body frame is 46 bytes (32 fixed bytes,
// six empty strings and a zero meta count, no payload).
//
// # Errors
//
// Every decoding failure is a [*DecodeError] whose Err is one of the
// sentinels ([ErrSignature], [ErrVersion], [ErrTruncated], [ErrFrameCount],
// [ErrKind], or [ErrMalformed] itself); errors.Is(err, ErrMalformed) is
// true for all of them. Encoding failures wrap [ErrTooLong] (a field over
// its limit) or [ErrKind] (an invalid Kind) and never match ErrMalformed.
//
// # Aliasing
//
// Decoded strings (including Meta keys and values) are copied and never
// alias the body frame; they may share one backing allocation (which never
// includes the payload). Message.Payload, however, aliases the payload bytes
// of the body frame (the bytes after the header, capacity clipped): the
// caller must not reuse or modify that frame's buffer while the Message's
// Payload is in use. An empty payload decodes as nil. The routing frames
// returned by [SplitRouting] alias its input. The encoders never alias
// Message.Payload: [Encode] and [AppendMessage] copy it into the body frame.
package envelope
