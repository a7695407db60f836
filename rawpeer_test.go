package zmqmsg

import (
	"bytes"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/envelope"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// rawPeer makes raw libzmq sockets that play a hostile or foreign peer of a
// node: whatever they send bypasses zmqmsg's encoder.
type rawPeer struct {
	t    *testing.T
	zctx *zmq.Context
}

func newRawPeer(t *testing.T) *rawPeer { return &rawPeer{t: t, zctx: testutil.ZMQ(t)} }

// connect returns a socket of type typ connected to endpoint, closed when
// the test ends.
func (p *rawPeer) connect(typ zmq.Type, endpoint string) *zmq.Socket {
	p.t.Helper()
	z, err := p.zctx.NewSocket(typ)
	if err != nil {
		p.t.Fatal(err)
	}
	_ = z.SetLinger(0)
	p.t.Cleanup(func() { _ = z.Close() })
	if err := z.Connect(endpoint); err != nil {
		p.t.Fatal(err)
	}
	return z
}

// send sends frames as one message.
func (p *rawPeer) send(z *zmq.Socket, frames ...[]byte) {
	p.t.Helper()
	if _, err := z.SendMessage(toAny(frames)...); err != nil {
		p.t.Fatal(err)
	}
}

// waitSubscription reads an XPUB's subscriptions until one to topic (an
// envelope.AppendFanoutTopic frame) arrives.
func (p *rawPeer) waitSubscription(xpub *zmq.Socket, topic []byte) {
	p.t.Helper()
	_ = xpub.SetRcvtimeo(5 * time.Second)
	for {
		sub, err := xpub.RecvBytes(0)
		if err != nil {
			p.t.Fatalf("no subscription to the topic: %v", err)
		}
		if len(sub) > 0 && sub[0] == 1 && bytes.Equal(sub[1:], topic) {
			return
		}
	}
}

// victimTopic is the fanout topic frame of the default exchange's "victim".
var victimTopic = envelope.AppendFanoutTopic(nil, "", "victim")
