package zmqmsg

import (
	"context"
	"errors"
	"github.com/zmqmsg/zmqmsg/internal/config"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// deadNode is a raw ROUTER registered in the directory as a node serving
// key: it takes requests and never answers, until the test kills it.
type deadNode struct {
	node directory.Node
	got  chan struct{} // a request arrived
	stop chan struct{} // closed by kill
	once sync.Once
	done chan struct{} // the socket is closed
}

func startDeadNode(t *testing.T, dir directory.Directory, key directory.Key, server string) *deadNode {
	t.Helper()
	zctx := testutil.ZMQ(t)
	z, err := zctx.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	_ = z.SetLinger(0)
	if err := z.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := z.GetLastEndpoint()
	_, port, _ := net.SplitHostPort(ep[len("tcp://"):])
	p, _ := strconv.Atoi(port)
	d := &deadNode{node: directory.Node{Host: "127.0.0.1", CallPort: p}, got: make(chan struct{}, 100), stop: make(chan struct{}), done: make(chan struct{})}
	if err := dir.Register(testCtx(t, 5*time.Second), directory.Registration{Key: key, Server: server, Node: d.node}, time.Minute); err != nil {
		t.Fatal(err)
	}
	go func() { // the socket's only goroutine until kill
		defer close(d.done)
		_ = z.SetRcvtimeo(50 * time.Millisecond)
		for {
			if _, err := z.RecvMessageBytes(0); err == nil {
				d.got <- struct{}{}
				continue
			}
			select {
			case <-d.stop:
				_ = z.Close()
				return
			default:
			}
		}
	}()
	t.Cleanup(d.kill)
	return d
}

// kill closes the ROUTER, as a crashed process's kernel would: the client's
// TCP connection is closed.
func (d *deadNode) kill() {
	d.once.Do(func() { close(d.stop) })
	<-d.done
}

// A call waiting on a node whose connection drops fails at once with
// ErrNodeDown, not at its deadline; new calls avoid the node.
func TestNodeDownFailsPendingCallsAndIsAvoided(t *testing.T) {
	dir := newDir(t)
	key := directory.Key{Topic: "svc"}
	dead := startDeadNode(t, dir, key, "dead")
	var hits sync.Map
	live := newNode(t, dir)
	serve(t, live, Target{Topic: "svc", Server: "live"}, whoAmI("live", &hits))
	client := newNode(t, dir)
	ctx := testCtx(t, 30*time.Second)
	res := make(chan error, 1)
	go func() {
		res <- client.Client(Target{Topic: "svc", Server: "dead"}).Call(ctx, "who", 1, nil)
	}()
	select {
	case <-dead.got: // the request is on the dead node, waiting for a reply
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the node")
	}
	dead.kill()
	var err error
	select {
	case err = <-res:
	case <-ctx.Done():
		t.Fatal("the call waited for its deadline")
	}
	var nd *NodeDownError
	if !errors.Is(err, ErrNodeDown) || !errors.As(err, &nd) || nd.Node != dead.node.ID() {
		t.Fatalf("call on a node that died: %v, want a *NodeDownError for %s", err, dead.node.ID())
	}
	testutil.WaitFor(t, 5*time.Second, "the node to be marked down", func() bool { return client.Stats().NodesDown == 1 })
	// Round robin now skips the dead node: every call goes to the live one.
	c := client.Client(Target{Topic: "svc"})
	for i := 0; i < 20; i++ {
		var got echoed
		if err := c.Call(ctx, "who", i, &got); err != nil || got.Server != "live" {
			t.Fatalf("call %d after the node died: %+v, %v", i, got, err)
		}
	}
	st := client.Stats()
	if st.NodeDisconnects < 1 || st.FailedNodeDown != 1 {
		t.Fatalf("stats %+v: want the disconnect and the one failed call counted", st)
	}
}

// An acknowledged cast to a topic whose node goes down before it
// acknowledged is sent again to another server of the topic.
func TestNodeDownResendsTopicCasts(t *testing.T) {
	dir := newDir(t)
	key := directory.Key{Topic: "jobs"}
	dead := startDeadNode(t, dir, key, "dead")
	ran := make(chan int, 10)
	live := newNode(t, dir)
	serve(t, live, Target{Topic: "jobs", Server: "live"}, Endpoints{
		"run": Method(func(_ context.Context, i int) (struct{}, error) { ran <- i; return struct{}{}, nil }),
	})
	client := newNode(t, dir)
	ctx := testCtx(t, 30*time.Second)
	c := client.Client(Target{Topic: "jobs"})
	// Two casts at once: round robin sends one to each node.
	errs := make(chan error, 2)
	for i := 1; i <= 2; i++ {
		go func() { errs <- c.Cast(ctx, "run", i) }()
	}
	select {
	case <-dead.got:
	case <-time.After(10 * time.Second):
		t.Fatal("no cast reached the dead node")
	}
	dead.kill()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("cast: %v", err)
		}
	}
	got := map[int]bool{<-ran: true, <-ran: true}
	if !got[1] || !got[2] {
		t.Fatalf("the live server ran %v, want both casts", got)
	}
	if st := client.Stats(); st.CastsResent != 1 || st.Casts != 2 {
		t.Fatalf("stats %+v: want 2 casts, 1 resent", st)
	}
}

// A topic cast whose server never acknowledges (every ACK lost) is sent to
// a server on another node once its retries are spent: the caster gets nil,
// and the message ran at least once.
func TestUnackedTopicCastsGoToAnotherNode(t *testing.T) {
	dir := newDir(t)
	var deaf, heard atomic.Int64
	mute := newNode(t, dir, func(c *Config) { config.EditTestHooks(c).DropAck = func(envelope.ID) bool { return true } })
	serve(t, mute, Target{Topic: "jobs", Server: "mute"}, Endpoints{
		"run": func(context.Context, Args) (any, error) { deaf.Add(1); return nil, nil },
	})
	ok := newNode(t, dir)
	serve(t, ok, Target{Topic: "jobs", Server: "ok"}, Endpoints{
		"run": func(context.Context, Args) (any, error) { heard.Add(1); return nil, nil },
	})
	client := newNode(t, dir, func(c *Config) { c.Acks = AckPolicy{Timeout: 20 * time.Millisecond, Multiplier: 1, Retries: 1} })
	c := client.Client(Target{Topic: "jobs"})
	ctx := testCtx(t, 20*time.Second)
	const n = 6
	for i := 0; i < n; i++ {
		if err := c.Cast(ctx, "run", i); err != nil {
			t.Fatalf("cast %d: %v", i, err)
		}
	}
	st := client.Stats()
	testutil.WaitFor(t, 5*time.Second, "every cast to run on the acknowledging server", func() bool { return heard.Load() == n })
	if st.CastsResent == 0 || st.CastsResent != uint64(deaf.Load()) {
		t.Fatalf("resent %d, the mute server ran %d: want every cast it took resent", st.CastsResent, deaf.Load())
	}
}

// Sockets to a node that left the directory are closed once idle for a
// sweep period; sockets to nodes still in use stay.
func TestIdleSocketsToDepartedNodesAreClosed(t *testing.T) {
	dir := newDir(t)
	var hits sync.Map
	stay := newNode(t, dir)
	serve(t, stay, Target{Topic: "svc", Server: "stay"}, whoAmI("stay", &hits))
	leaving, err := New(Config{Directory: dir, Ports: Ports{Call: AnyPort}})
	if err != nil {
		t.Fatal(err)
	}
	defer leaving.Close()
	serve(t, leaving, Target{Topic: "svc", Server: "leaving"}, whoAmI("leaving", &hits))
	client := newNode(t, dir, func(c *Config) { config.EditTestHooks(c).IdleSweep = 20 * time.Millisecond })
	ctx := testCtx(t, 20*time.Second)
	for _, name := range []string{"stay", "leaving"} {
		if err := client.Client(Target{Topic: "svc", Server: name}).Call(ctx, "who", 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := client.Stats().OpenSockets; n != 2 {
		t.Fatalf("%d sockets open, want 2 (one DEALER per node)", n)
	}
	if err := leaving.Close(); err != nil {
		t.Fatal(err)
	}
	// Its node, down when it closed, is forgotten too.
	testutil.WaitFor(t, 10*time.Second, "the idle socket to the departed node to close", func() bool {
		st := client.Stats()
		return st.IdleSocketsClosed == 1 && st.OpenSockets == 1 && st.NodesDown == 0
	})
	// The remaining node still answers through its socket.
	if err := client.Client(Target{Topic: "svc"}).Call(ctx, "who", 2, nil); err != nil {
		t.Fatal(err)
	}
	if st := client.Stats(); st.OpenSockets != 1 || st.IdleSocketsClosed != 1 {
		t.Fatalf("stats %+v: want the live node's socket kept", st)
	}
}

// A plaintext node whose connections drop during the greeting is a node
// down, not a refused key: libzmq reports such a drop as a failed
// handshake too.
func TestGreetingDropIsNodeDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close() // before any greeting
		}
	}()
	defer func() {
		ln.Close()
		wg.Wait()
	}()
	dir := newDir(t)
	ctx := testCtx(t, 20*time.Second)
	node := directory.Node{Host: "127.0.0.1", CallPort: ln.Addr().(*net.TCPAddr).Port}
	if err := dir.Register(ctx, directory.Registration{Key: directory.Key{Topic: "flaky"}, Server: "f", Node: node}, time.Minute); err != nil {
		t.Fatal(err)
	}
	client := newNode(t, dir)
	err = client.Client(Target{Topic: "flaky"}).Call(ctx, "who", 1, nil)
	// libzmq may take the call into the connection's pipe before the
	// greeting (then it may have been sent: ErrNodeDown) or keep it back
	// (not sent: ErrUnavailable); never a refusal.
	if errors.Is(err, ErrUnauthorized) || !(errors.Is(err, ErrNodeDown) || errors.Is(err, ErrUnavailable)) {
		t.Fatalf("call to a node that drops its connections: %v, want ErrNodeDown or ErrUnavailable", err)
	}
	if st := client.Stats(); st.NodesDown != 1 {
		t.Fatalf("stats %+v: want the node down", st)
	}
}
