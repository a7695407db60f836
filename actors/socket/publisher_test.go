package socket_test

import (
	"context"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// rawXSUB is a node's fanout port: an XSUB owned by its own goroutine,
// which sends the subscription frames it is given and passes on what it
// receives.
type rawXSUB struct {
	endpoint string
	subs     chan []byte   // subscription frames to send
	in       chan [][]byte // messages received
	stop     chan struct{}
	done     chan struct{}
}

func startXSUB(t testing.TB, zctx *zmq.Context) *rawXSUB {
	t.Helper()
	z, err := zctx.NewSocket(zmq.XSUB)
	if err == nil {
		err = z.SetLinger(0)
	}
	if err == nil {
		err = z.Bind("tcp://127.0.0.1:*")
	}
	var ep string
	if err == nil {
		ep, err = z.GetLastEndpoint()
	}
	if err != nil {
		if z != nil {
			z.Close()
		}
		t.Fatalf("raw xsub: %v", err)
	}
	x := &rawXSUB{endpoint: ep, subs: make(chan []byte, 8), in: make(chan [][]byte, 64), stop: make(chan struct{}), done: make(chan struct{})}
	go x.run(t, z)
	t.Cleanup(func() {
		close(x.stop)
		<-x.done
	})
	return x
}

// run owns the socket: it polls in short turns so that it sees x.subs
// and x.stop.
func (x *rawXSUB) run(t testing.TB, z *zmq.Socket) {
	defer close(x.done)
	defer z.Close()
	poll := zmq.NewPoller()
	poll.Add(z, zmq.POLLIN)
	for {
		select {
		case <-x.stop:
			return
		case f := <-x.subs:
			if _, err := z.SendBytes(f, 0); err != nil {
				t.Errorf("xsub send: %v", err)
				return
			}
		default:
		}
		ready, err := poll.Poll(10 * time.Millisecond)
		if err != nil {
			t.Errorf("xsub poll: %v", err)
			return
		}
		if len(ready) > 0 {
			m, err := z.RecvMessageBytes(0)
			if err != nil {
				t.Errorf("xsub recv: %v", err)
				return
			}
			x.in <- m
		}
	}
}

func (x *rawXSUB) next(t *testing.T) [][]byte {
	t.Helper()
	select {
	case m := <-x.in:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("the xsub received nothing")
		return nil
	}
}

// TestPublisherSubscriptions: a fanout waits for the node's subscription;
// the publisher publishes what the node subscribed to, so that a caller
// needs no answer for a node known to be subscribed; fanouts without a
// waiter that fail are counted, and a stopped loop forgets the
// subscriptions.
func TestPublisherSubscriptions(t *testing.T) {
	zctx := testutil.ZMQ(t)
	sys := testutil.ActorSystem(t)
	xsub := startXSUB(t, zctx)
	counters, subs := &socket.PublisherCounters{}, &socket.Subscriptions{}
	h, err := socket.Spawn(sys.Root, socket.Spec[socket.PubCmd]{
		Name: "xpub", ZMQ: zctx,
		NewHandler: func() poller.Handler[socket.PubCmd] {
			return &socket.Publisher{Endpoint: xsub.endpoint, Counters: counters, Subs: subs}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topic := []byte("topic")
	submit := func(body string, deadline time.Time, done chan error) {
		t.Helper()
		if err := h.Submit(ctx, socket.NewPublish(topic, []byte(body), deadline, done)); err != nil {
			t.Fatal(err)
		}
	}
	if subs.Has(topic) {
		t.Fatal("subscribed before the node subscribed")
	}
	done := make(chan error, 1)
	submit("first", time.Now().Add(5*time.Second), done) // parks
	xsub.subs <- append([]byte{1}, topic...)
	if err := <-done; err != nil {
		t.Fatalf("parked fanout: %v", err)
	}
	if !subs.Has(topic) || subs.Has([]byte("top")) {
		t.Fatal("the subscription was not published, or matched a prefix")
	}
	submit("second", time.Now().Add(5*time.Second), nil)
	for _, want := range []string{"first", "second"} {
		if m := xsub.next(t); len(m) != 2 || string(m[0]) != "topic" || string(m[1]) != want {
			t.Fatalf("xsub got %q, want [topic %s]", m, want)
		}
	}

	xsub.subs <- append([]byte{0}, topic...)
	testutil.WaitFor(t, 5*time.Second, "the unsubscription", func() bool { return !subs.Has(topic) })
	submit("late", time.Now(), nil) // not subscribed, deadline passed
	testutil.WaitFor(t, 5*time.Second, "a failure counted", func() bool { return counters.NotSubscribed.Load() == 1 })
	xsub.subs <- append([]byte{1}, topic...)
	testutil.WaitFor(t, 5*time.Second, "the subscription again", func() bool { return subs.Has(topic) })
	xsub.subs <- append([]byte{0}, topic...)
	testutil.WaitFor(t, 5*time.Second, "the unsubscription again", func() bool { return !subs.Has(topic) })
	submit("parked", time.Now().Add(time.Minute), nil)
	if err := sys.Root.PoisonFuture(h.PID()).Wait(); err != nil {
		t.Fatal(err)
	}
	if n := counters.Lost.Load(); n != 1 {
		t.Fatalf("Lost = %d after stopping with a parked fanout, want 1", n)
	}
	if subs.Has(topic) || counters.Sent.Load() != 2 {
		t.Fatalf("after stop: subscribed %v, sent %d", subs.Has(topic), counters.Sent.Load())
	}
	if err := h.Submit(ctx, socket.NewPublish(topic, nil, time.Now(), nil)); err == nil {
		t.Fatal("a stopped publisher took a fanout")
	}
}
