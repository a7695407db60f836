package envelope_test

import (
	"errors"
	"fmt"

	"github.com/zmqmsg/zmqmsg/envelope"
)

// A client encodes a call; the server receives it on a ROUTER socket with
// the peer identity and delimiter in front, splits off the routing frames
// and decodes the body.
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

	// What a ROUTER socket delivers: [identity, "", header, payload].
	received := append([][]byte{[]byte("client-7"), {}}, body...)

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
	// Output:
	// from client-7: CALL compute.add([1,2]) same id: true
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
	_, err := envelope.Decode([][]byte{[]byte("ZM\x01\x01"), nil})
	var de *envelope.DecodeError
	fmt.Println(err)
	fmt.Println(errors.Is(err, envelope.ErrMalformed), errors.Is(err, envelope.ErrTruncated), errors.As(err, &de), de.Field)
	// Output:
	// envelope: truncated header: field flags at offset 4
	// true true true flags
}

func ExampleSplitRouting() {
	frames := [][]byte{[]byte("proxy"), []byte("client"), {}, []byte("header"), []byte("payload")}
	routing, body, err := envelope.SplitRouting(frames)
	fmt.Printf("%q %q %v\n", routing, body, err)
	// Output:
	// ["proxy" "client"] ["header" "payload"] <nil>
}
