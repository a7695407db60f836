package engine

import (
	"errors"
	"strings"
	"testing"

	"github.com/zmqmsg/zmqmsg/envelope"
)

// Every final ACK code ends a cast with a clear error, and only OK with
// success. The ACK goes through the wire (encoded, decoded) as a caster gets
// it. A code this version does not know (as REMOTE was to the version before
// it) is "cast refused: <code>: <errmsg>": an error, never a success, and
// not one that sends the cast to another server.
func TestAckErrorMapsEveryCode(t *testing.T) {
	codes := []envelope.Code{envelope.CodeMalformed, envelope.CodeTooLarge, envelope.CodeExpired, envelope.CodeConflict, 99, 0xffff}
	for c := envelope.Code(0); c < 100; c++ {
		if !strings.HasPrefix(c.String(), "Code(") && c != envelope.CodeInProgress {
			codes = append(codes, c)
		}
	}
	for _, c := range codes {
		body, err := envelope.Encode(&envelope.Message{Kind: envelope.KindAck, ID: envelope.NewID(), Code: c, ErrType: "ValueError", ErrMsg: "bad value"})
		if err != nil {
			t.Fatal(err)
		}
		m, err := envelope.Decode(body)
		if err != nil {
			t.Fatal(err)
		}
		err = ackError(&m, "10.0.0.7:9501")
		resent := errors.Is(err, ErrNodeDown) || errors.Is(err, ErrNotAcked) || errors.Is(err, ErrUnavailable)
		var re *RemoteError
		switch c {
		case envelope.CodeOK:
			if err != nil {
				t.Errorf("OK: %v", err)
			}
			continue
		case envelope.CodeRemote:
			if !errors.As(err, &re) || re.Type != "ValueError" || re.Message != "bad value" || errors.Is(err, ErrNoSuchMethod) {
				t.Errorf("REMOTE: %#v, want a RemoteError ValueError: bad value", err)
			}
		case envelope.CodeNoSuchMethod:
			m.ErrType = "NoSuchMethod"
			if err := ackError(&m, ""); !errors.Is(err, ErrNoSuchMethod) || !errors.As(err, &re) {
				t.Errorf("NO_SUCH_METHOD: %#v, want a RemoteError matching ErrNoSuchMethod", err)
			}
		case envelope.CodeNoServers, envelope.CodeShuttingDown:
			if !errors.Is(err, ErrNoServers) {
				t.Errorf("%v: %v, want ErrNoServers", c, err)
			}
		case envelope.CodeOverloaded:
			if !errors.Is(err, ErrOverloaded) {
				t.Errorf("%v: %v, want ErrOverloaded", c, err)
			}
		case envelope.CodeServerLost:
			if !errors.Is(err, ErrNodeDown) {
				t.Errorf("%v: %v, want ErrNodeDown", c, err)
			}
			resent = false // the one code a topic cast is sent elsewhere for
		default:
			if want := "zmqmsg: cast refused: " + c.String() + ": bad value"; err == nil || err.Error() != want {
				t.Errorf("%v: %v, want %q", c, err, want)
			}
		}
		if err == nil || resent {
			t.Errorf("%v: %v: a failure must end the cast, and not send it elsewhere", c, err)
		}
	}
}
