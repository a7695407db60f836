package proxy

import (
	"fmt"
	"time"

	"github.com/zmqmsg/zmqmsg/envelope"
)

// The first step of every loop of this package (the embedded proxy, a
// member, the daemon's broker) with what callers send: decode and validate,
// count and drop what does not pass.

// decodeRequest decodes a message from a call port: routing frames (the
// caller's identity first), then a body of kind CALL, CANCEL, CAST or NOTIFY, or
// STATS where the port answers it (stats). The body is decoded into m.
// Anything else is counted (Malformed, WrongKind) and ok is false.
func decodeRequest(c *Counters, frames [][]byte, m *envelope.Message, stats bool) (routing [][]byte, body []byte, ok bool) {
	routing, body, err := envelope.SplitRouting(frames)
	if err != nil || len(routing) == 0 || len(routing[0]) == 0 {
		c.Malformed.Add(1)
		return nil, nil, false
	}
	if err := envelope.DecodeInto(m, body); err != nil {
		c.Malformed.Add(1)
		return nil, nil, false
	}
	if m.Kind != envelope.KindCall && m.Kind != envelope.KindCancel && !OneWay(m.Kind) && (m.Kind != envelope.KindStats || !stats) {
		c.WrongKind.Add(1)
		return nil, nil, false
	}
	return routing, body, true
}

// decodeBody decodes a message of n frames whose last is a body of kind
// into m: a direct cast (one frame, CAST) or a fanout (the topic frame,
// then a FANOUT). Anything else is counted (Malformed, WrongKind) and ok
// is false.
func decodeBody(c *Counters, frames [][]byte, n int, kind envelope.Kind, m *envelope.Message) bool {
	if len(frames) != n {
		c.Malformed.Add(1)
		return false
	}
	if err := envelope.DecodeInto(m, frames[n-1]); err != nil {
		c.Malformed.Add(1)
		return false
	}
	if m.Kind != kind {
		c.WrongKind.Add(1)
		return false
	}
	return true
}

// answerFrames builds the answer to req behind its routing frames: a CAST
// or NOTIFY gets an ACK carrying code (CodeOK: the server has it), a CALL
// an ERROR frame with code. Nil when none is due (a cast sent without
// ACKs).
func answerFrames(routing [][]byte, req *envelope.Message, code envelope.Code, text string) [][]byte {
	reply := envelope.Message{Kind: envelope.KindError, ID: req.ID, Code: code}
	if OneWay(req.Kind) {
		if req.Flags&envelope.FlagNoAck != 0 {
			return nil
		}
		reply.Kind = envelope.KindAck
	}
	if code != envelope.CodeOK {
		reply.ErrType = code.String()
		reply.ErrMsg = fmt.Sprintf("%s (%s/%s server %q)", text, req.Exchange, req.Topic, req.Server)
	}
	body, err := envelope.AppendMessage(nil, &reply)
	if err != nil {
		return nil
	}
	return append(append(make([][]byte, 0, len(routing)+1), routing...), body)
}

// expiry is when the caller of m stops waiting for its answer.
func expiry(m *envelope.Message) time.Time {
	if m.Deadline != 0 {
		return time.Unix(0, m.Deadline)
	}
	return time.Time{}
}
