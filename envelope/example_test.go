package envelope_test

import (
	"errors"
	"fmt"

	"github.com/zmqmsg/zmqmsg/envelope"
)

// A client encodes a call into one body frame; the server receives it on a
// ROUTER socket with the peer identity in front, splits off the routing
// frames, decodes the body and echoes the routing frames in front of its
// reply.
func ExampleEncode() {
	call := envelope.Message{
		Kind:    envelope.KindCall,
		ID:      envelope.NewID(),
		Topic:   "compute",
		Method:  "add",
		Payload: []byte(`[1,2]`),
	}
	body, err := envelope.Encode(&call)
	if err != nil {
		panic(err)
	}

	// What a ROUTER socket delivers for a DEALER client: [identity, body].
	received := [][]byte{[]byte("client-7"), body}

	routing, body, err := envelope.SplitRouting(received)
	if err != nil {
		panic(err)
	}
	m, err := envelope.Decode(body)
	if err != nil {
		panic(err)
	}
	fmt.Printf("from %s: %s %s.%s(%s) same id: %v\n",
		routing[0], m.Kind, m.Topic, m.Method, m.Payload, m.ID == call.ID)

	reply, err := envelope.Encode(&envelope.Message{Kind: envelope.KindReply, ID: m.ID, Payload: []byte("3")})
	if err != nil {
		panic(err)
	}
	out := append(routing, reply) // what the server sends on its ROUTER
	fmt.Printf("reply: %d frames, to %s\n", len(out), out[0])
	// Output:
	// from client-7: CALL compute.add([1,2]) same id: true
	// reply: 2 frames, to client-7
}

// AppendMessage encodes into a caller-owned buffer, which can be reused for
// the next message once the frame has been sent.
func ExampleAppendMessage() {
	buf := make([]byte, 0, 256)
	for _, method := range []string{"add", "sub"} {
		m := envelope.Message{Kind: envelope.KindCast, Topic: "compute", Method: method, Payload: []byte{1, 2}}
		var err error
		buf, err = envelope.AppendMessage(buf[:0], &m)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s: %d bytes = %d header + %d payload\n", method, len(buf), len(buf)-len(m.Payload), len(m.Payload))
	}
	// Output:
	// add: 58 bytes = 56 header + 2 payload
	// sub: 58 bytes = 56 header + 2 payload
}

func ExampleAppendHeader() {
	m := envelope.Message{Kind: envelope.KindPing}
	buf := make([]byte, 0, 128)
	buf, err := envelope.AppendHeader(buf, &m)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d bytes, starts with %q\n", len(buf), buf[:2])
	// Output:
	// 46 bytes, starts with "ZM"
}

func ExampleDecodeError() {
	_, err := envelope.Decode([]byte("ZM\x01\x01"))
	var de *envelope.DecodeError
	fmt.Println(err)
	fmt.Println(errors.Is(err, envelope.ErrMalformed), errors.Is(err, envelope.ErrTruncated), errors.As(err, &de), de.Field)
	// Output:
	// envelope: truncated header: field flags at offset 4
	// true true true flags
}

// Every frame but the last is a routing frame. A REQ peer's empty delimiter
// is one of them, so it is echoed back with the identities.
func ExampleSplitRouting() {
	frames := [][]byte{[]byte("proxy"), []byte("client"), {}, []byte("body")}
	routing, body, err := envelope.SplitRouting(frames)
	fmt.Printf("%q %q %v\n", routing, body, err)

	_, _, err = envelope.SplitRouting(nil)
	fmt.Println(err)
	// Output:
	// ["proxy" "client" ""] "body" <nil>
	// envelope: wrong frame count: body (0 frames)
}
