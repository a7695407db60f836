package proxy_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/testutil"

	zmq "github.com/pebbe/zmq4"
	"go.uber.org/goleak"

	"github.com/zmqmsg/zmqmsg/actors/proxy"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startProxy starts a proxy on a free port; it is stopped when the test ends.
func startProxy(t *testing.T) (*proxy.Proxy, *zmq.Context) {
	t.Helper()
	zctx := testutil.ZMQ(t)
	sys := testutil.ActorSystem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := proxy.Start(ctx, sys.Root, "proxy", proxy.Config{ZMQ: zctx, Bind: "tcp://127.0.0.1:*"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stop proxy: %v", err)
		}
	})
	return p, zctx
}

// attach routes key to srv through p.
func attach(t *testing.T, p *proxy.Proxy, key directory.Key, srv proxy.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Attach(ctx, key, srv); err != nil {
		t.Fatal(err)
	}
}

// client is a raw DEALER used only by the test goroutine.
type client struct {
	last envelope.Message
	t    *testing.T
	z    *zmq.Socket
	p    *zmq.Poller
}

func newClient(t *testing.T, zctx *zmq.Context, endpoint string) *client {
	t.Helper()
	z, err := zctx.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = z.Close() })
	if err := z.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if err := z.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	p := zmq.NewPoller()
	p.Add(z, zmq.POLLIN)
	return &client{t: t, z: z, p: p}
}

func (c *client) send(frames ...[]byte) {
	c.t.Helper()
	if _, err := c.z.SendMessage(frames); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// recv returns the next message, or nil after timeout.
func (c *client) recv(timeout time.Duration) [][]byte {
	c.t.Helper()
	polled, err := c.p.Poll(timeout)
	if err != nil {
		c.t.Fatalf("poll: %v", err)
	}
	if len(polled) == 0 {
		return nil
	}
	m, err := c.z.RecvMessageBytes(0)
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return m
}

// reply returns the next message, which must be a single body frame,
// decoded.
func (c *client) reply() envelope.Message {
	c.t.Helper()
	m := c.recv(5 * time.Second)
	if m == nil {
		c.t.Fatal("no reply")
	}
	if len(m) != 1 {
		c.t.Fatalf("reply frames %q, want [body]", m)
	}
	msg, err := envelope.Decode(m[0])
	if err != nil {
		c.t.Fatalf("decode reply: %v", err)
	}
	return msg
}

// fakeServer is a proxy.Server whose queue is a channel.
type fakeServer struct {
	name    string
	ch      chan *proxy.Request
	answer  atomic.Int64 // when not 0, the proxy.Offer every Offer returns
	offers  atomic.Int64 // Offer calls
	panicky atomic.Bool  // the next Offer panics
}

func newFakeServer(name string) *fakeServer {
	return &fakeServer{name: name, ch: make(chan *proxy.Request, 64)}
}

func (s *fakeServer) Name() string { return s.name }
func (s *fakeServer) Offer(r *proxy.Request) proxy.Offer {
	s.offers.Add(1)
	if s.panicky.CompareAndSwap(true, false) {
		panic("fake server: Offer panicked")
	}
	if a := s.answer.Load(); a != 0 {
		return proxy.Offer(a)
	}
	select {
	case s.ch <- r:
		return proxy.Accepted
	default:
		return proxy.Full
	}
}

func (s *fakeServer) next(t *testing.T, timeout time.Duration) *proxy.Request {
	t.Helper()
	select {
	case r := <-s.ch:
		return r
	case <-time.After(timeout):
		return nil
	}
}

// call encodes m as a CALL body frame.
func call(t *testing.T, m envelope.Message) []byte {
	t.Helper()
	m.Kind = envelope.KindCall
	return encode(t, m)
}

func encode(t *testing.T, m envelope.Message) []byte {
	t.Helper()
	body, err := envelope.Encode(&m)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// recvWait receives one single-frame reply into c.last, or returns nil.
func (c *client) recvWait(timeout time.Duration) *envelope.Message {
	c.t.Helper()
	m := c.recv(timeout)
	if m == nil {
		return nil
	}
	msg, err := envelope.Decode(m[len(m)-1])
	if err != nil {
		c.t.Fatalf("decode reply: %v", err)
	}
	c.last = msg
	return &c.last
}
