package envelope

import "encoding/binary"

// FanoutTopic returns the topic frame of a FANOUT for exchange and topic:
//
//	u16 len(exchange) | exchange | u16 len(topic) | topic
//
// A FANOUT travels on PUB/SUB sockets as [topic frame, body], and a node
// subscribes to the topic frames of the topics its servers serve. ZeroMQ
// matches subscriptions by prefix; because both strings carry their length,
// the frame of one (exchange, topic) is never a prefix of another's, so
// matching is exact: "fan" never receives "fanx". Both strings must be at
// most MaxStringLen bytes (longer ones are cut there; a target that long is
// refused before it gets here).
func FanoutTopic(exchange, topic string) []byte {
	return AppendFanoutTopic(make([]byte, 0, 4+len(exchange)+len(topic)), exchange, topic)
}

// AppendFanoutTopic appends the topic frame of exchange and topic to dst.
func AppendFanoutTopic(dst []byte, exchange, topic string) []byte {
	for _, s := range []string{exchange, topic} {
		if len(s) > MaxStringLen {
			s = s[:MaxStringLen]
		}
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
		dst = append(dst, s...)
	}
	return dst
}
