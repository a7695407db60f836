package envelope

import (
	"crypto/rand"
	"strconv"
	"sync"

	"github.com/google/uuid"
)

// Version is the header format version written by this package and the only
// one it accepts (header offset 2).
const Version uint8 = 1

// Signature is the first two bytes of every header, hence of every body
// frame (header offset 0).
var Signature = [2]byte{'Z', 'M'}

// Limits of the wire format.
const (
	// MaxStringLen is the maximum length in bytes of any single string
	// field, Meta key or Meta value (they are prefixed by a u16 length).
	MaxStringLen = 65535
	// MaxMetaEntries is the maximum number of Meta entries in one header.
	MaxMetaEntries = 1024
	// MaxRoutingFrames is the maximum number of routing frames (identities,
	// plus a REQ peer's empty delimiter) SplitRouting accepts before the
	// body frame.
	MaxRoutingFrames = 32
)

// Kind is the type of a message (header offset 3).
type Kind uint8

// Message kinds. The zero Kind is invalid.
const (
	KindCall   Kind = iota + 1 // request expecting a reply
	KindReply                  // successful reply to a call
	KindCast                   // one-way message to one server (acked)
	KindAck                    // acknowledgement of a cast
	KindFanout                 // one-way to every server of a topic
	KindNotify                 // notification to listener pools
	KindError                  // failure reply: Code + ErrType + ErrMsg
	KindPing                   // liveness probe / its answer
	// KindAttach: a service process tells its node proxy daemon that it
	// serves Exchange/Topic as Server (an empty Topic only asks for the
	// daemon's node); the daemon answers with a KindAck. Sent again on
	// every member heartbeat. See docs/design.md, "The proxy daemon".
	KindAttach
	KindDetach // a service process stops serving Exchange/Topic as Server
	// KindStats asks a node's call port for its counters; the answer is a
	// KindReply with the same id and a JSON payload (docs/design.md §5).
	KindStats
	// KindCancel: the caller of a CALL gave up before its answer (its ctx
	// was cancelled); the server cancels the handler's ctx. No answer.
	KindCancel

	kindMax = KindCancel
)

var kindNames = [...]string{
	KindCall:   "CALL",
	KindReply:  "REPLY",
	KindCast:   "CAST",
	KindAck:    "ACK",
	KindFanout: "FANOUT",
	KindNotify: "NOTIFY",
	KindError:  "ERROR",
	KindPing:   "PING",
	KindAttach: "ATTACH",
	KindDetach: "DETACH",
	KindStats:  "STATS",
	KindCancel: "CANCEL",
}

// String returns the upper-case name of k ("CALL", "REPLY", ...), or
// "Kind(N)" for an unknown kind.
func (k Kind) String() string {
	if k.Valid() {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool { return k >= KindCall && k <= kindMax }

// ID is a message id, a random (version 4) UUID (header offset 6).
type ID [16]byte

// NewID returns a new random (version 4) UUID. The random bytes come from
// crypto/rand 4 KiB at a time, so an id costs no allocation.
func NewID() ID {
	idPool.mu.Lock()
	if idPool.next == len(idPool.buf) {
		if _, err := rand.Read(idPool.buf[:]); err != nil {
			idPool.mu.Unlock()
			return ID(uuid.New()) // crypto/rand does not fail on Linux; uuid panics if it does
		}
		idPool.next = 0
	}
	var id ID
	copy(id[:], idPool.buf[idPool.next:])
	idPool.next += len(id)
	idPool.mu.Unlock()
	id[6] = id[6]&0x0f | 0x40 // version 4
	id[8] = id[8]&0x3f | 0x80 // variant RFC 4122
	return id
}

// idPool holds random bytes for NewID.
var idPool struct {
	mu   sync.Mutex
	buf  [4096]byte
	next int
}

func init() { idPool.next = len(idPool.buf) }

// String returns the canonical textual form of id,
// xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx.
func (id ID) String() string { return uuid.UUID(id).String() }

// IsZero reports whether id is the all-zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// Flags is a bit set of message options (header offset 4). Unknown bits are
// carried through encoding and decoding unchanged.
type Flags uint8

// Flag bits (header offset 4).
const (
	// FlagRaw marks a payload made of raw bytes rather than codec-encoded data.
	FlagRaw Flags = 1 << 0
	// FlagNoAck marks a CAST whose sender wants no ACK (acks disabled).
	FlagNoAck Flags = 1 << 1
)

// Code is the status carried by KindError (and KindAck) messages (header
// offset 30).
type Code uint16

// Status codes.
const (
	CodeOK           Code = iota // 0: success (acks)
	CodeRemote                   // the handler returned an error
	CodeNoSuchMethod             // the server has no such method
	CodeNoServers                // this node serves no server for the target
	CodeMalformed                // the request could not be decoded
	CodeTooLarge                 // over the size limit
	CodeOverloaded               // the server cannot take more work
	CodeShuttingDown             // the server is stopping
	CodeExpired                  // the request's deadline passed before it ran
	CodeConflict                 // an ATTACH names a server another process already serves
	CodeInProgress               // an ACK: the server has the CAST and is running it; the final ACK (OK) follows
	CodeServerLost               // the process that had the request was lost before it answered: it may have run

	codeMax = CodeServerLost
)

var codeNames = [...]string{
	CodeOK:           "OK",
	CodeRemote:       "REMOTE",
	CodeNoSuchMethod: "NO_SUCH_METHOD",
	CodeNoServers:    "NO_SERVERS",
	CodeMalformed:    "MALFORMED",
	CodeTooLarge:     "TOO_LARGE",
	CodeOverloaded:   "OVERLOADED",
	CodeShuttingDown: "SHUTTING_DOWN",
	CodeExpired:      "EXPIRED",
	CodeConflict:     "CONFLICT",
	CodeInProgress:   "IN_PROGRESS",
	CodeServerLost:   "SERVER_LOST",
}

// String returns the upper-case name of c ("OK", "REMOTE",
// "NO_SUCH_METHOD", ...), or "Code(N)" for an unknown code.
func (c Code) String() string {
	if c <= codeMax {
		return codeNames[c]
	}
	return "Code(" + strconv.Itoa(int(c)) + ")"
}

// Message is one decoded RPC message: the header fields plus the payload.
//
// After decoding, the string fields and Meta are copies independent of the
// body frame, but Payload aliases the payload bytes of that frame (see
// [DecodeInto]).
type Message struct {
	Kind     Kind
	Flags    Flags
	ID       ID
	Deadline int64             // unix nanoseconds; 0 = none
	Exchange string            // at most MaxStringLen bytes
	Topic    string            // at most MaxStringLen bytes
	Server   string            // at most MaxStringLen bytes
	Method   string            // at most MaxStringLen bytes
	Code     Code              // status for KindError / KindAck
	ErrType  string            // error type name for KindError
	ErrMsg   string            // error text for KindError
	Meta     map[string]string // nil when empty; at most MaxMetaEntries entries
	Payload  []byte            // the bytes after the header; nil when empty after decoding
}
