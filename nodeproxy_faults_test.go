package zmqmsg

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/engine"
	"github.com/zmqmsg/zmqmsg/envelope"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// A second daemon refused by the lock does not touch the running daemon's
// directory mode (it used to chmod before it tried the lock).
func TestProxyDaemonSecondDaemonLeavesTheModeAlone(t *testing.T) {
	ipc := filepath.Join(t.TempDir(), "zmqmsg")
	startProxy(t, ipc, func(c *ProxyConfig) { c.DirMode = 0o770 })
	if _, err := StartProxy(ProxyConfig{Dir: ipc, Ports: Ports{Call: AnyPort}}); !errors.Is(err, ErrProxyRunning) {
		t.Fatalf("second daemon: %v", err)
	}
	st, err := os.Stat(ipc)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o770 {
		t.Fatalf("running daemon's IPC dir mode is now %#o, want 0770", st.Mode().Perm())
	}
}

// An ATTACH whose Serve gave up (the daemon was restarting) still waits in
// the member's DEALER pipe and reaches the next daemon; it must not leave a
// phantom route that refuses the name to every other process. The DETACH
// sent behind it cancels it (and the daemon would drop an ATTACH that no
// heartbeat repeats after MemberTTL anyway).
func TestProxyDaemonNoPhantomRouteAfterAttachTimeout(t *testing.T) {
	dir := newDir(t)
	ipc := filepath.Join(t.TempDir(), "zmqmsg")
	p, err := StartProxy(ProxyConfig{Dir: ipc, Ports: Ports{Call: AnyPort}})
	if err != nil {
		t.Fatal(err)
	}
	m := member(t, dir, ipc)
	var hits sync.Map
	serve(t, m, Target{Topic: "keep"}, whoAmI("m", &hits)) // keeps m heartbeating
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err = m.e.Serve(ctx, directory.Key{Topic: "svc"}, "alpha", engine.Service{},
		func(context.Context, *engine.Request) (engine.Reply, error) { return engine.Reply{}, nil }, false)
	cancel()
	if !errors.Is(err, ErrNoProxy) {
		t.Fatalf("Serve with no daemon: %v, want ErrNoProxy", err)
	}
	p2 := startProxy(t, ipc)
	testutil.WaitFor(t, 10*time.Second, "m to re-attach", func() bool { return p2.Stats().Members == 1 })
	m2 := member(t, dir, ipc)
	if _, err := m2.Serve(Target{Topic: "svc", Server: "alpha"}, whoAmI("m2", &hits)); err != nil {
		t.Fatalf("no process serves svc/alpha, yet: %v (daemon %+v)", err, p2.Stats())
	}
}

// Serve with a context without a deadline returns (ErrNoProxy) when the
// daemon does not answer, instead of waiting forever.
func TestProxyDaemonServeWithoutDeadlineReturns(t *testing.T) {
	dir := newDir(t)
	ipc := filepath.Join(t.TempDir(), "zmqmsg")
	p, err := StartProxy(ProxyConfig{Dir: ipc, Ports: Ports{Call: AnyPort}})
	if err != nil {
		t.Fatal(err)
	}
	m := member(t, dir, ipc)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := m.e.Serve(context.Background(), directory.Key{Topic: "svc"}, "beta", engine.Service{},
			func(context.Context, *engine.Request) (engine.Reply, error) { return engine.Reply{}, nil }, false)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNoProxy) {
			t.Fatalf("Serve: %v, want ErrNoProxy", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve(ctx without deadline) still blocked after 10 s with no daemon")
	}
}

// ACCEPTANCE row 28 against the daemon: hostile messages on its public call
// port, its direct-cast port, its fanout port and its IPC socket are
// dropped and counted, and the daemon keeps serving.
func TestProxyDaemonRejectsHostileInput(t *testing.T) {
	d := newDaemonNode(t)
	var hits sync.Map
	serve(t, d.members[0], Target{Topic: "victim"}, whoAmI("victim", &hits))
	raw := newRawPeer(t)
	node := d.proxy.Node()
	garbage := make([]byte, 100)
	_, _ = rand.Read(garbage)
	many := make([][]byte, 200)
	for i := range many {
		many[i] = []byte("x")
	}
	reply, err := envelope.Encode(&envelope.Message{Kind: envelope.KindReply, ID: envelope.NewID(), Topic: "victim"})
	if err != nil {
		t.Fatal(err)
	}
	malformed, wrongKind := 0, 0
	// Public call port (a ROUTER: it prepends the sender's identity).
	call := raw.connect(zmq.DEALER, node.CallEndpoint())
	for _, msg := range [][][]byte{{garbage}, {{}}, {[]byte("XX\x01\x01")}, {reply[:20]}, many, {garbage, garbage}} {
		raw.send(call, msg...)
		malformed++
	}
	raw.send(call, reply) // a REPLY sent to the call port
	wrongKind++
	// Direct-cast port (PULL).
	push := raw.connect(zmq.PUSH, node.CastEndpoint())
	raw.send(push, garbage)
	raw.send(push, garbage, garbage)
	malformed += 2
	raw.send(push, reply)
	wrongKind++
	// The IPC socket, as a rogue local process: bad control messages and
	// a "reply" whose body is not an envelope.
	call2, _ := engine.JoinEndpoints(d.ipc)
	rogue := raw.connect(zmq.DEALER, call2)
	raw.send(rogue, garbage)
	raw.send(rogue, []byte("caller"), garbage)
	malformed += 2
	raw.send(rogue, reply)
	wrongKind++
	// Fanout port (XSUB): a raw XPUB waits for the daemon's subscription
	// to the served topic, then publishes garbage under it.
	xpub := raw.connect(zmq.XPUB, node.FanoutEndpoint())
	topic := victimTopic
	raw.waitSubscription(xpub, topic)
	raw.send(xpub, topic, garbage)
	raw.send(xpub, topic, reply)
	malformed++
	wrongKind++
	testutil.WaitFor(t, 5*time.Second, "every hostile message to be counted", func() bool {
		st := d.proxy.Stats()
		return st.Malformed == uint64(malformed) && st.WrongKind == uint64(wrongKind)
	})
	var got echoed
	if err := d.client.Client(Target{Topic: "victim"}).Call(testCtx(t, 10*time.Second), "who", 1, &got); err != nil || got.Server != "victim" {
		t.Fatalf("after hostile input: %+v, %v (daemon %+v)", got, err, d.proxy.Stats())
	}
}
