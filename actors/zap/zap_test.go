package zap_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"go.uber.org/goleak"

	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/actors/zap"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type pair struct{ pub, sec string }

func newPair(t *testing.T) pair {
	t.Helper()
	pub, sec, err := zmq.NewCurveKeypair()
	if err != nil {
		t.Fatal(err)
	}
	return pair{pub, sec}
}

func binKey(t *testing.T, z85 string) zap.Key {
	t.Helper()
	var k zap.Key
	b := zmq.Z85decode(z85)
	if len(b) != zap.KeySize {
		t.Fatalf("bad key length %d", len(b))
	}
	copy(k[:], b)
	return k
}

// TestZAP: in a context of its own (where pebbe's AuthStart would not
// answer), a CURVE server ROUTER accepts the listed client key and refuses
// an unknown key and a client without CURVE, and the handler counts both.
func TestZAP(t *testing.T) {
	if !zmq.HasCurve() {
		t.Skip("libzmq built without CURVE")
	}
	zctx := testutil.ZMQ(t)
	sys := testutil.ActorSystem(t)
	server, listed, stranger := newPair(t), newPair(t), newPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := zap.Start(ctx, sys.Root, "zap", zap.Config{ZMQ: zctx, Allowed: []zap.Key{binKey(t, listed.pub)}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := h.Stop(); err != nil {
			t.Error(err)
		}
	}()

	// The CURVE server, owned by this test goroutine.
	srv, err := zctx.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_ = srv.SetLinger(0)
	if err := (socket.Options{Curve: &socket.Curve{PublicKey: server.pub, SecretKey: server.sec}}).Apply(srv); err != nil {
		t.Fatal(err)
	}
	if err := srv.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := srv.GetLastEndpoint()
	_ = srv.SetRcvtimeo(5 * time.Second)

	dial := func(c *socket.Curve) *zmq.Socket {
		d, err := zctx.NewSocket(zmq.DEALER)
		if err != nil {
			t.Fatal(err)
		}
		_ = d.SetLinger(0)
		if err := (socket.Options{Curve: c}).Apply(d); err != nil {
			t.Fatal(err)
		}
		if err := d.Connect(ep); err != nil {
			t.Fatal(err)
		}
		return d
	}

	// A listed key: a message goes through.
	good := dial(&socket.Curve{PublicKey: listed.pub, SecretKey: listed.sec, ServerKey: server.pub})
	defer good.Close()
	if _, err := good.SendMessage("hello"); err != nil {
		t.Fatal(err)
	}
	msg, err := srv.RecvMessageBytes(0)
	if err != nil || len(msg) != 2 || string(msg[1]) != "hello" {
		t.Fatalf("listed key: got %q, %v", msg, err)
	}
	if n := h.Counters().Allowed.Load(); n != 1 {
		t.Fatalf("allowed = %d, want 1", n)
	}

	// An unknown key: refused by the handler; the message never arrives.
	bad := dial(&socket.Curve{PublicKey: stranger.pub, SecretKey: stranger.sec, ServerKey: server.pub})
	defer bad.Close()
	_, _ = bad.SendMessageDontwait("unknown key")
	testutil.WaitFor(t, 5*time.Second, "the unknown key refused", func() bool { return h.Counters().Denied.Load() >= 1 })

	// No CURVE at all: libzmq refuses the mechanism before asking ZAP. The
	// server's monitor sees the failed handshake.
	mon, err := zctx.NewSocket(zmq.PAIR)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	_ = mon.SetLinger(0)
	if err := srv.Monitor("inproc://zap-test-monitor", socket.HandshakeFailedEvents); err != nil {
		t.Fatal(err)
	}
	if err := mon.Connect("inproc://zap-test-monitor"); err != nil {
		t.Fatal(err)
	}
	_ = mon.SetRcvtimeo(5 * time.Second)
	plain := dial(nil)
	defer plain.Close()
	_, _ = plain.SendMessageDontwait("no key")
	ev, err := mon.RecvMessageBytes(0)
	if err != nil {
		t.Fatalf("no handshake failure reported for a plain peer: %v", err)
	}
	if e, _, _, ok := socket.ParseEvent(ev); !ok || e&socket.HandshakeFailedEvents == 0 {
		t.Fatalf("monitor event %v, want a handshake failure", e)
	}

	// Nothing from the refused peers reached the server.
	if m, err := srv.RecvMessageBytes(zmq.DONTWAIT); zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
		t.Fatalf("a refused peer's message arrived: %q, %v", m, err)
	}
	if n := h.Counters().Allowed.Load(); n != 1 {
		t.Fatalf("allowed = %d after the refusals, want 1", n)
	}
	_ = srv.Monitor("", 0)
}

// Why each Transport runs its own handler: libzmq asks the handler of the
// socket's own context. With the handler in another context, a CURVE
// server accepts a key nobody listed (libzmq 4.3 without the draft
// ZAP_ENFORCE_DOMAIN). If this test ever fails, libzmq has changed that.
func TestZAPOtherContextLetsAnyKeyIn(t *testing.T) {
	if !zmq.HasCurve() {
		t.Skip("libzmq built without CURVE")
	}
	zctx, other := testutil.ZMQ(t), testutil.ZMQ(t)
	sys := testutil.ActorSystem(t)
	server, stranger := newPair(t), newPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := zap.Start(ctx, sys.Root, "zap", zap.Config{ZMQ: other}) // lists nobody
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := h.Stop(); err != nil {
			t.Error(err)
		}
	}()
	srv, err := zctx.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_ = srv.SetLinger(0)
	if err := (socket.Options{Curve: &socket.Curve{PublicKey: server.pub, SecretKey: server.sec}}).Apply(srv); err != nil {
		t.Fatal(err)
	}
	if err := srv.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := srv.GetLastEndpoint()
	_ = srv.SetRcvtimeo(5 * time.Second)
	d, err := zctx.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_ = d.SetLinger(0)
	if err := (socket.Options{Curve: &socket.Curve{PublicKey: stranger.pub, SecretKey: stranger.sec, ServerKey: server.pub}}).Apply(d); err != nil {
		t.Fatal(err)
	}
	if err := d.Connect(ep); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SendMessage("in"); err != nil {
		t.Fatal(err)
	}
	if msg, err := srv.RecvMessageBytes(0); err != nil || len(msg) != 2 || string(msg[1]) != "in" {
		t.Fatalf("an unlisted key with the handler in another context: %q, %v; libzmq refused it (has it changed?)", msg, err)
	}
	if n := h.Counters().Allowed.Load() + h.Counters().Denied.Load(); n != 0 {
		t.Fatalf("the other context's handler was asked %d times", n)
	}
}
