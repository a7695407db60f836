package proxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/testutil"

	"github.com/zmqmsg/zmqmsg/actors/proxy"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

var calcKey = directory.Key{Exchange: "ex", Topic: "calc"}

// roundTrip sends a valid CALL from c, checks what the server gets, answers
// it through the proxy and checks the reply c gets.
func roundTrip(t *testing.T, p *proxy.Proxy, c *client, srv *fakeServer) {
	t.Helper()
	id := envelope.NewID()
	payload := []byte(fmt.Sprintf("payload-%s", id))
	c.send(call(t, envelope.Message{ID: id, Exchange: calcKey.Exchange, Topic: calcKey.Topic, Method: "add", Payload: payload}))
	req := srv.next(t, 5*time.Second)
	if req == nil {
		t.Fatal("server got no request")
	}
	if len(req.Routing) != 1 || len(req.Routing[0]) == 0 {
		t.Fatalf("routing %q, want one identity frame", req.Routing)
	}
	if m := req.Msg; m.Kind != envelope.KindCall || m.ID != id || m.Topic != "calc" || m.Exchange != "ex" || m.Method != "add" || !bytes.Equal(m.Payload, payload) {
		t.Fatalf("server got %+v", m)
	}
	answer(t, p, req, []byte("result"))
	rep := c.reply()
	if rep.Kind != envelope.KindReply || rep.ID != id || string(rep.Payload) != "result" {
		t.Fatalf("client got %+v", rep)
	}
}

func answer(t *testing.T, p *proxy.Proxy, req *proxy.Request, payload []byte) {
	t.Helper()
	body := encode(t, envelope.Message{Kind: envelope.KindReply, ID: req.Msg.ID, Payload: payload})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Reply(ctx, req.Routing, time.Time{}, body); err != nil {
		t.Fatalf("reply: %v", err)
	}
}

type counters struct {
	Requests, Malformed, WrongKind, NoServers, Overloaded, Replies, SendFailed uint64
	Oversized                                                                  uint64 // of the loop
}

func snapshot(p *proxy.Proxy) counters {
	c := p.Counters()
	return counters{
		Requests:   c.Requests.Load(),
		Malformed:  c.Malformed.Load(),
		WrongKind:  c.WrongKind.Load(),
		NoServers:  c.NoServers.Load(),
		Overloaded: c.Overloaded.Load(),
		Replies:    c.Replies.Load(),
		SendFailed: c.SendFailed.Load(),
		Oversized:  p.LoopStats().Oversized,
	}
}

// expectCounters waits until the counters equal want. The loop counts a
// reply after handing it to libzmq, so the client may see it first.
func expectCounters(t *testing.T, p *proxy.Proxy, want counters) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := snapshot(p)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters %+v, want %+v", got, want)
		}
		<-time.After(time.Millisecond)
	}
}

func TestProxyCall(t *testing.T) {
	p, zctx := startProxy(t)
	srv := newFakeServer("s1")
	attach(t, p, calcKey, srv)
	c := newClient(t, zctx, p.Endpoint())
	roundTrip(t, p, c, srv)
	roundTrip(t, p, c, srv)
	expectCounters(t, p, counters{Requests: 2, Replies: 2})
}

// TestProxyRoutingFrames: frames the caller puts before the body (a REQ
// peer's empty delimiter, the identities of a chain of proxies) travel with
// the request and come back with the reply, up to envelope.MaxRoutingFrames
// in all.
func TestProxyRoutingFrames(t *testing.T) {
	p, zctx := startProxy(t)
	srv := newFakeServer("s1")
	attach(t, p, calcKey, srv)
	c := newClient(t, zctx, p.Endpoint())
	hops := make([][]byte, envelope.MaxRoutingFrames-1) // + the ROUTER's identity frame
	for i := range hops {
		hops[i] = []byte(fmt.Sprintf("hop-%d", i))
	}
	hops[len(hops)-1] = []byte{} // a REQ-style delimiter is just one more routing frame
	for _, prefix := range [][][]byte{{{}}, hops} {
		id := envelope.NewID()
		c.send(append(append([][]byte{}, prefix...), call(t, envelope.Message{ID: id, Exchange: "ex", Topic: "calc"}))...)
		req := srv.next(t, 5*time.Second)
		if req == nil {
			t.Fatalf("%d routing frames: server got no request", len(prefix)+1)
		}
		if len(req.Routing) != len(prefix)+1 || !bytes.Equal(req.Routing[1], prefix[0]) || !bytes.Equal(req.Routing[len(req.Routing)-1], prefix[len(prefix)-1]) {
			t.Fatalf("routing %q", req.Routing)
		}
		answer(t, p, req, []byte("ok"))
		m := c.recv(5 * time.Second)
		if len(m) != len(prefix)+1 {
			t.Fatalf("client got %d frames, want %d", len(m), len(prefix)+1)
		}
		for i, h := range prefix {
			if !bytes.Equal(m[i], h) {
				t.Fatalf("frame %d = %q, want %q", i, m[i], h)
			}
		}
		if rep, err := envelope.Decode(m[len(prefix)]); err != nil || rep.ID != id || string(rep.Payload) != "ok" {
			t.Fatalf("reply %+v, %v", rep, err)
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	b[0] = 0xFF // never the signature
	return b
}

func TestProxyHostileInput(t *testing.T) {
	p, zctx := startProxy(t)
	srv := newFakeServer("s1")
	attach(t, p, calcKey, srv)
	c := newClient(t, zctx, p.Endpoint())
	roundTrip(t, p, c, srv) // connected and serving
	before := counters{Requests: 1, Replies: 1}
	expectCounters(t, p, before)

	valid := call(t, envelope.Message{ID: envelope.NewID(), Exchange: "ex", Topic: "calc"}) // no payload: the body is the header
	mutate := func(f func(h []byte)) []byte {
		h := append([]byte(nil), valid...)
		f(h)
		return h
	}
	frames := func(n int, last []byte) [][]byte {
		m := make([][]byte, 0, n)
		for i := 0; i < n-1; i++ {
			m = append(m, []byte("r"))
		}
		return append(m, last)
	}
	malformed := []struct {
		name   string
		frames [][]byte
	}{
		{"random bytes", [][]byte{randomBytes(64)}},
		{"random frames", [][]byte{randomBytes(7), randomBytes(100), randomBytes(3)}},
		{"one random byte", [][]byte{randomBytes(1)}},
		{"empty message", [][]byte{{}}},
		{"empty frames", [][]byte{{}, {}, {}}},
		{"wrong signature", [][]byte{mutate(func(h []byte) { h[0], h[1] = 'X', 'Y' })}},
		{"wrong version", [][]byte{mutate(func(h []byte) { h[2] = 99 })}},
		{"kind zero", [][]byte{mutate(func(h []byte) { h[3] = 0 })}},
		{"unknown kind", [][]byte{mutate(func(h []byte) { h[3] = 200 })}},
		{"truncated in the fixed part", [][]byte{valid[:20]}},
		{"truncated in the strings", [][]byte{valid[:len(valid)-3]}},
		{"string length past the end", [][]byte{mutate(func(h []byte) { binary.BigEndian.PutUint16(h[32:], 0xFFFF) })}},
		{"meta count past the end", [][]byte{mutate(func(h []byte) { binary.BigEndian.PutUint16(h[len(h)-2:], 3) })}},
		{"meta count over the limit", [][]byte{mutate(func(h []byte) { binary.BigEndian.PutUint16(h[len(h)-2:], 0xFFFF) })}},
		{"one routing frame too many", frames(envelope.MaxRoutingFrames+1, valid)}, // + identity: 33 routing frames
		{"63 frames", frames(63, valid)},
	}
	oversized := [][][]byte{
		frames(64, valid), // 65 with the identity: over the loop's frame limit
		frames(200, randomBytes(10)),
	}
	wrongKind := [][]byte{
		encode(t, envelope.Message{Kind: envelope.KindReply, ID: envelope.NewID(), Topic: "calc", Exchange: "ex"}),
		encode(t, envelope.Message{Kind: envelope.KindError, ID: envelope.NewID(), Code: envelope.CodeRemote}),
		encode(t, envelope.Message{Kind: envelope.KindPing, ID: envelope.NewID()}),
	}
	for _, m := range malformed {
		c.send(m.frames...)
	}
	for _, m := range oversized {
		c.send(m...)
	}
	for _, m := range wrongKind {
		c.send(m)
	}
	want := before
	want.Malformed += uint64(len(malformed))
	want.Oversized += uint64(len(oversized))
	want.WrongKind += uint64(len(wrongKind))
	expectCounters(t, p, want)

	// The proxy still serves, and answered none of the garbage: the next
	// message the client gets is the reply to its valid call.
	roundTrip(t, p, c, srv)
	want.Requests++
	want.Replies++
	expectCounters(t, p, want)
	if m := c.recv(10 * time.Millisecond); m != nil {
		t.Fatalf("client got an unexpected message %q", m)
	}
}

func TestProxyErrors(t *testing.T) {
	p, zctx := startProxy(t)
	srv := newFakeServer("s1")
	attach(t, p, calcKey, srv)
	c := newClient(t, zctx, p.Endpoint())
	noServers := func(c counters) uint64 { return c.NoServers }
	overloaded := func(c counters) uint64 { return c.Overloaded }
	cases := []struct {
		name    string
		msg     envelope.Message
		answer  proxy.Offer // the server's answer; 0: accept
		code    envelope.Code
		counter func(counters) uint64
	}{
		{"unknown topic", envelope.Message{Exchange: "ex", Topic: "nope"}, 0, envelope.CodeNoServers, noServers},
		{"unknown exchange", envelope.Message{Exchange: "other", Topic: "calc"}, 0, envelope.CodeNoServers, noServers},
		{"unknown server", envelope.Message{Exchange: "ex", Topic: "calc", Server: "s2"}, 0, envelope.CodeNoServers, noServers},
		{"overloaded", envelope.Message{Exchange: "ex", Topic: "calc"}, proxy.Full, envelope.CodeOverloaded, overloaded},
		{"named server overloaded", envelope.Message{Exchange: "ex", Topic: "calc", Server: "s1"}, proxy.Full, envelope.CodeOverloaded, overloaded},
		{"only server stopping", envelope.Message{Exchange: "ex", Topic: "calc"}, proxy.Stopping, envelope.CodeShuttingDown, noServers},
		{"named server stopping", envelope.Message{Exchange: "ex", Topic: "calc", Server: "s1"}, proxy.Stopping, envelope.CodeShuttingDown, noServers},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv.answer.Store(int64(tc.answer))
			before := snapshot(p)
			tc.msg.ID = envelope.NewID()
			c.send(call(t, tc.msg))
			rep := c.reply()
			if rep.Kind != envelope.KindError || rep.Code != tc.code || rep.ID != tc.msg.ID {
				t.Fatalf("got %+v, want an ERROR %v for %s", rep, tc.code, tc.msg.ID)
			}
			if rep.ErrType != tc.code.String() || rep.ErrMsg == "" {
				t.Fatalf("error type %q, message %q", rep.ErrType, rep.ErrMsg)
			}
			after := snapshot(p)
			if tc.counter(after) != tc.counter(before)+1 || after.Requests != before.Requests {
				t.Fatalf("counters %+v -> %+v", before, after)
			}
			if r := srv.next(t, 0); r != nil {
				t.Fatalf("server got %+v", r.Msg)
			}
		})
	}
	srv.answer.Store(0)
	roundTrip(t, p, c, srv)
}

// TestProxyReroutesAwayFromStoppingServer: a server that answers Stopping is
// skipped and the request goes to another server of the topic.
func TestProxyReroutesAwayFromStoppingServer(t *testing.T) {
	p, zctx := startProxy(t)
	stopping, live := newFakeServer("a"), newFakeServer("b")
	stopping.answer.Store(int64(proxy.Stopping))
	for _, s := range []*fakeServer{stopping, live} {
		attach(t, p, calcKey, s)
	}
	c := newClient(t, zctx, p.Endpoint())
	for i := 0; i < 4; i++ {
		roundTrip(t, p, c, live)
	}
	// Round robin over [a, b]: every request picks a, is refused, picks b.
	if n := stopping.offers.Load(); n != 4 {
		t.Fatalf("the stopping server was offered %d requests, want 4", n)
	}
	if got := snapshot(p); got.Requests != 4 || got.NoServers != 0 {
		t.Fatalf("counters %+v", got)
	}
}

// TestProxyReplyToGoneCaller: a reply whose caller is not connected is
// refused by the ROUTER (ROUTER_MANDATORY) and counted.
func TestProxyReplyToGoneCaller(t *testing.T) {
	p, _ := startProxy(t)
	body := encode(t, envelope.Message{Kind: envelope.KindReply, ID: envelope.NewID()})
	if err := p.Reply(context.Background(), [][]byte{[]byte("nobody")}, time.Time{}, body); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "SendFailed", func() bool { return p.Counters().SendFailed.Load() == 1 })
	if n := p.Counters().Replies.Load(); n != 0 {
		t.Fatalf("Replies %d", n)
	}
}

// TestProxyRestartsAfterPanic: a server whose Offer panics kills the proxy
// loop; the supervisor restarts it on the same port and it serves again.
// Several cycles, because the rebind of the port races with libzmq's
// asynchronous close of the old listener.
func TestProxyRestartsAfterPanic(t *testing.T) {
	p, zctx := startProxy(t)
	srv := newFakeServer("s1")
	attach(t, p, calcKey, srv)
	endpoint := p.Endpoint()
	c := newClient(t, zctx, endpoint)
	roundTrip(t, p, c, srv)
	const cycles = 8
	for cycle := 1; cycle <= cycles; cycle++ {
		srv.panicky.Store(true)
		c.send(call(t, envelope.Message{ID: envelope.NewID(), Exchange: "ex", Topic: "calc"}))
		testutil.WaitFor(t, 5*time.Second, "the panic", func() bool { return !srv.panicky.Load() })
		recovered(t, p, c, srv, fmt.Sprintf("cycle %d", cycle))
	}
	if p.Endpoint() != endpoint {
		t.Fatalf("endpoint changed from %s to %s", endpoint, p.Endpoint())
	}
}

// recovered waits until the proxy serves c again after a restart, then
// leaves c and srv with nothing outstanding.
func recovered(t *testing.T, p *proxy.Proxy, c *client, srv *fakeServer, what string) {
	t.Helper()
	// Calls sent while the proxy restarts may be lost with the old socket;
	// retry until one goes through.
	deadline := time.Now().Add(3 * time.Second)
	for {
		c.send(call(t, envelope.Message{ID: envelope.NewID(), Exchange: "ex", Topic: "calc"}))
		if r := srv.next(t, 100*time.Millisecond); r != nil {
			answer(t, p, r, nil)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the proxy did not come back on %s after its loop panicked: loop stats %+v (all zero: no loop running), counters %+v",
				what, p.Endpoint(), p.LoopStats(), snapshot(p))
		}
	}
	// A last call on the new connection: earlier retries that made it are
	// ahead of it (one connection keeps order); answer them all.
	last := envelope.NewID()
	c.send(call(t, envelope.Message{ID: last, Exchange: "ex", Topic: "calc"}))
	for {
		r := srv.next(t, 5*time.Second)
		if r == nil {
			t.Fatalf("%s: the last call did not arrive", what)
		}
		answer(t, p, r, nil)
		if r.Msg.ID == last {
			break
		}
	}
	for {
		if rep := c.reply(); rep.ID == last {
			break
		}
	}
	roundTrip(t, p, c, srv)
}
