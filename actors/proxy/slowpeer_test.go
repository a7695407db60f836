package proxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/testutil"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/proxy"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// inlineEcho is an InlineServer that answers every call at once with a
// large reply, so that a peer that does not read fills its pipe quickly.
type inlineEcho struct{ reply []byte }

func (s *inlineEcho) Name() string                     { return "echo" }
func (s *inlineEcho) Offer(*proxy.Request) proxy.Offer { return proxy.Full }
func (s *inlineEcho) Inline() bool                     { return true }
func (s *inlineEcho) HandleInline(r *proxy.Request) ([]byte, proxy.Offer) {
	body, err := envelope.AppendMessage(nil, &envelope.Message{Kind: envelope.KindReply, ID: r.Msg.ID, Payload: s.reply})
	if err != nil {
		panic(err)
	}
	return body, proxy.Accepted
}

// startEchoProxy starts a proxy with a send high-water mark of 4 (a pipe
// fills after a few replies) routing key to an inlineEcho of 16 KiB replies.
func startEchoProxy(t *testing.T, key directory.Key) (*proxy.Proxy, *zmq.Context) {
	t.Helper()
	zctx := testutil.ZMQ(t)
	sys := testutil.ActorSystem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := proxy.Start(ctx, sys.Root, "proxy", proxy.Config{
		ZMQ: zctx, Bind: "tcp://127.0.0.1:*", Options: socket.Options{SendHWM: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	attach(t, p, key, &inlineEcho{reply: make([]byte, 16<<10)})
	return p, zctx
}

// A caller that sends requests but never reads its replies fills its pipe;
// its replies are then dropped and counted, and the replies to every other
// caller keep flowing (no head-of-line blocking behind the deaf peer).
func TestDeafPeerDoesNotStallOthers(t *testing.T) {
	key := directory.Key{Topic: "deaf"}
	p, zctx := startEchoProxy(t, key)

	deaf, err := zctx.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deaf.Close() })
	for _, set := range []func() error{
		func() error { return deaf.SetLinger(0) },
		func() error { return deaf.SetRcvhwm(1) },
		func() error { return deaf.SetRcvbuf(4096) },
		func() error { return deaf.Connect(p.Endpoint()) },
	} {
		if err := set(); err != nil {
			t.Fatal(err)
		}
	}
	// The deaf peer's calls give up after 300 ms: until then their replies
	// wait in its own queue, then they are dropped and counted.
	req := call(t, envelope.Message{ID: envelope.NewID(), Topic: key.Topic, Deadline: time.Now().Add(300 * time.Millisecond).UnixNano()})
	for i := 0; i < 2000; i++ {
		if _, err := deaf.SendBytes(req, 0); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "replies to the deaf peer to wait", func() bool {
		return p.Counters().Waited.Load() > 0
	})

	good := newClient(t, zctx, p.Endpoint())
	for i := 0; i < 20; i++ {
		id := envelope.NewID()
		good.send(call(t, envelope.Message{ID: id, Topic: key.Topic}))
		if good.recvWait(5*time.Second) == nil {
			t.Fatalf("call %d: no reply; counters requests=%d replies=%d sendFailed=%d malformed=%d loop %+v",
				i, p.Counters().Requests.Load(), p.Counters().Replies.Load(), p.Counters().SendFailed.Load(),
				p.Counters().Malformed.Load(), p.LoopStats())
		}
		if m := good.last; m.ID != id || m.Kind != envelope.KindReply {
			t.Fatalf("reply %d: %+v", i, m)
		}
	}
	if b := p.LoopStats().Backlog; b != 0 {
		t.Fatalf("%d replies waited in the backlog behind the deaf peer", b)
	}
	testutil.WaitFor(t, 10*time.Second, "the deaf peer's expired replies to be dropped", func() bool {
		return p.Counters().SendFailed.Load() > 0
	})
}

// A healthy caller with many calls in flight fills its pipe for a moment:
// its replies wait in its queue and all arrive, in order; none is dropped.
func TestBusyPeerGetsEveryReply(t *testing.T) {
	key := directory.Key{Topic: "busy"}
	p, zctx := startEchoProxy(t, key)
	busy := newClient(t, zctx, p.Endpoint())
	const n = 500
	ids := make([]envelope.ID, n)
	for i := range ids {
		ids[i] = envelope.NewID()
		busy.send(call(t, envelope.Message{ID: ids[i], Topic: key.Topic}))
	}
	for i := range ids {
		m := busy.recvWait(5 * time.Second)
		if m == nil {
			t.Fatalf("reply %d of %d missing; counters waited=%d dropped=%d", i, n, p.Counters().Waited.Load(), p.Counters().SendFailed.Load())
		}
		if m.ID != ids[i] {
			t.Fatalf("reply %d out of order", i)
		}
	}
	if d := p.Counters().SendFailed.Load(); d != 0 {
		t.Fatalf("%d replies dropped for a caller that reads them all", d)
	}
	if p.Counters().Waited.Load() == 0 {
		t.Fatal("the pipe never filled: the test did not exercise the waiting queue")
	}
}
