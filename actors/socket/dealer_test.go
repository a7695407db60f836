package socket_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/testutil"

	"github.com/asynkron/protoactor-go/actor"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/reply"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/envelope"
)

func encode(t testing.TB, m envelope.Message) []byte {
	t.Helper()
	body, err := envelope.Encode(&m)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func result(t testing.TB, ch <-chan reply.Result) reply.Result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no result")
		return reply.Result{}
	}
}

func spawnDealer(parent actor.SpawnerContext, zctx *zmq.Context, d func() *socket.Dealer) (*socket.Handle[socket.DealerCmd], error) {
	return socket.Spawn(parent, socket.Spec[socket.DealerCmd]{
		Name:       "dealer",
		ZMQ:        zctx,
		NewHandler: func() poller.Handler[socket.DealerCmd] { return d() },
	})
}

// TestDealerRoundTrip: a Request submitted through the Handle reaches a
// ROUTER as [identity, body]; the ROUTER's answer reaches the reply table.
// Replies that do not decode or are of the wrong kind are counted and
// dropped.
func TestDealerRoundTrip(t *testing.T) {
	zctx := testutil.ZMQ(t)
	sys := testutil.ActorSystem(t)
	router := startRouter(t, zctx)
	table := reply.NewTable()
	counters := &socket.DealerCounters{}
	h, err := spawnDealer(sys.Root, zctx, func() *socket.Dealer {
		return &socket.Dealer{Endpoint: router.endpoint, Tag: "node", Table: table, Counters: counters}
	})
	if err != nil {
		t.Fatal(err)
	}
	stopActor(t, sys, h.PID())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id := envelope.NewID()
	req := encode(t, envelope.Message{Kind: envelope.KindCall, ID: id, Topic: "calc", Method: "add", Payload: []byte("1+2")})
	ch, err := table.Register(id, "node")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Submit(ctx, &socket.Request{ID: id, Body: req}); err != nil {
		t.Fatal(err)
	}

	got := router.next(t)
	if len(got) != 2 {
		t.Fatalf("router got %d frames %q, want [identity, body]", len(got), got)
	}
	identity := got[0]
	if len(identity) == 0 || !bytes.Equal(got[1], req) {
		t.Fatalf("router got %q", got)
	}
	if m, err := envelope.Decode(got[1]); err != nil || m.ID != id || string(m.Payload) != "1+2" {
		t.Fatalf("router decoded %+v, %v", m, err)
	}

	// Garbage first: undecodable bodies, a CALL (wrong kind), a reply
	// nobody waits for. Then the real reply, behind a routing frame the
	// dealer ignores: the dealer handles them in order, so once the real
	// one arrives the others were counted.
	router.send(identity, []byte("garbage"))
	router.send(identity, []byte{})
	router.send(identity, encode(t, envelope.Message{Kind: envelope.KindReply, ID: id})[:20])
	router.send(identity, encode(t, envelope.Message{Kind: envelope.KindCall, ID: id}))
	router.send(identity, encode(t, envelope.Message{Kind: envelope.KindReply, ID: envelope.NewID()}))
	router.send(identity, []byte{}, encode(t, envelope.Message{Kind: envelope.KindReply, ID: id, Payload: []byte("3")}))

	r := result(t, ch)
	if r.Err != nil || r.Msg.Kind != envelope.KindReply || r.Msg.ID != id || string(r.Msg.Payload) != "3" {
		t.Fatalf("result %+v", r)
	}
	if m, w := counters.Malformed.Load(), counters.WrongKind.Load(); m != 3 || w != 1 {
		t.Fatalf("dealer counters: malformed %d (want 3), wrong kind %d (want 1)", m, w)
	}
	if st := table.Stats(); st.Delivered != 1 || st.Unmatched != 1 || st.Pending != 0 {
		t.Fatalf("table stats %+v", st)
	}
	select {
	case err := <-router.sendErrs:
		t.Fatalf("router send: %v", err)
	default:
	}
}

// panicTable is a reply table whose Deliver panics for one id, to make a
// real Dealer's loop fail.
type panicTable struct {
	*reply.Table
	poison envelope.ID
}

func (p *panicTable) Deliver(m envelope.Message) bool {
	if m.ID == p.poison {
		panic("poisoned reply")
	}
	return p.Table.Deliver(m)
}

// TestDealerRestartFailsInFlightCalls: when a dealer's loop fails, the calls
// it had sent are failed with the loop's error (their replies would come back
// to a socket that no longer exists), the table survives, and the restarted
// dealer serves new calls on a new connection.
func TestDealerRestartFailsInFlightCalls(t *testing.T) {
	zctx := testutil.ZMQ(t)
	sys := testutil.ActorSystem(t)
	router := startRouter(t, zctx)
	table := &panicTable{Table: reply.NewTable(), poison: envelope.NewID()}
	counters := &socket.DealerCounters{}
	parent, err := socket.SpawnParent(sys.Root, "replies", socket.NewStrategy(5, time.Minute), nil)
	if err != nil {
		t.Fatal(err)
	}
	stopActor(t, sys, parent)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var h *socket.Handle[socket.DealerCmd]
	err = socket.SpawnUnder(ctx, sys.Root, parent, func(pc actor.SpawnerContext) error {
		var err error
		h, err = spawnDealer(pc, zctx, func() *socket.Dealer {
			return &socket.Dealer{Endpoint: router.endpoint, Tag: "node", Table: table, Counters: counters}
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	inflight := envelope.NewID()
	other := envelope.NewID()
	chIn, _ := table.Register(inflight, "node")
	chOther, _ := table.Register(other, "other-node")
	if err := h.Submit(ctx, &socket.Request{ID: inflight, Body: encode(t, envelope.Message{Kind: envelope.KindCall, ID: inflight, Topic: "t"})}); err != nil {
		t.Fatal(err)
	}
	identity := router.next(t)[0]
	router.send(identity, encode(t, envelope.Message{Kind: envelope.KindReply, ID: table.poison}))

	r := result(t, chIn)
	var pe *poller.PanicError
	if !errors.As(r.Err, &pe) {
		t.Fatalf("in-flight call failed with %v, want a *poller.PanicError", r.Err)
	}
	select {
	case r := <-chOther:
		t.Fatalf("a call to another node was failed: %+v", r)
	default:
	}
	testutil.WaitFor(t, 5*time.Second, "restart", func() bool { return h.Restarts() == 1 })

	id := envelope.NewID()
	ch, _ := table.Register(id, "node")
	req := &socket.Request{ID: id, Body: encode(t, envelope.Message{Kind: envelope.KindCall, ID: id, Topic: "t"})}
	testutil.WaitFor(t, 5*time.Second, "the restarted dealer", func() bool {
		err := h.Submit(ctx, req)
		if err != nil && !errors.Is(err, socket.ErrUnavailable) {
			t.Fatal(err)
		}
		return err == nil
	})
	got := router.next(t)
	if bytes.Equal(got[0], identity) {
		t.Fatal("the restarted dealer has the old socket's identity")
	}
	router.send(got[0], encode(t, envelope.Message{Kind: envelope.KindReply, ID: id}))
	if r := result(t, ch); r.Err != nil || r.Msg.ID != id {
		t.Fatalf("after restart: %+v", r)
	}
	table.Fail(other, errors.New("done"))
	<-chOther
}
