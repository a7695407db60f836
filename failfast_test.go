package zmqmsg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// Issue 10, item 1: a node that cannot be connected to never stalls a call.

// closedNode returns a node on 127.0.0.1 whose call port nothing listens
// on, as a killed process leaves it: connecting is refused. The port is
// bound (without listen) until the test ends, so that no other process
// can take it meanwhile.
func closedNode(t *testing.T) directory.Node {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return directory.Node{Host: "127.0.0.1", CallPort: sa.(*syscall.SockaddrInet4).Port}
}

// A directory entry that still lists a server on a dead node, beside a
// live server: calls and acknowledged casts from fresh Transports and from
// a long-lived one all succeed, each before its deadline (the ones sent to
// the dead node's socket are taken back and go to the live server); a call
// or cast for the dead server by name fails at once with an
// UnavailableError naming its node, not at its deadline.
func TestDeadNodeNeverStallsCalls(t *testing.T) {
	dir := newDir(t)
	live := newNode(t, dir)
	var hits sync.Map
	eps := whoAmI("live", &hits)
	for name, ep := range counting("live", &hits, nil) {
		eps[name] = ep
	}
	serve(t, live, Target{Topic: "svc"}, eps)
	dead := closedNode(t)
	reg := directory.Registration{Key: directory.Key{Topic: "svc"}, Server: "doomed", Node: dead}
	if err := dir.Register(context.Background(), reg, time.Minute); err != nil {
		t.Fatal(err)
	}

	// Every call and cast here has 10 s; today's behaviour (the request
	// waits in the dead node's socket) fails them at that deadline.
	check := func(tr *Transport, what string, n int) {
		t.Helper()
		ctx := testCtx(t, 10*time.Second)
		c := tr.Client(Target{Topic: "svc"})
		for i := range n {
			var got echoed
			if err := c.Call(ctx, "who", i, &got); err != nil || got.Server != "live" || got.Seq != i {
				t.Fatalf("%s: call %d: %+v, %v", what, i, got, err)
			}
			if err := c.Cast(ctx, "note", i); err != nil {
				t.Fatalf("%s: cast %d: %v", what, i, err)
			}
		}
	}
	for i := range 4 {
		check(newNode(t, dir), "fresh transport "+string(rune('0'+i)), 2)
	}
	long := newNode(t, dir)
	check(long, "long-lived transport", 20)
	st := long.Stats()
	if st.ConnectFailures == 0 || st.NodesDown != 1 || st.Rerouted == 0 || st.NotSent == 0 {
		t.Fatalf("stats %+v: want failed connects, the dead node down, and its requests rerouted", st)
	}
	if st.CallErrors != 0 || st.Timeouts != 0 {
		t.Fatalf("stats %+v: no call may fail", st)
	}

	named := long.Client(Target{Topic: "svc", Server: "doomed"})
	ctx := testCtx(t, 10*time.Second)
	for what, err := range map[string]error{
		"call": named.Call(ctx, "who", 1, nil),
		"cast": named.Cast(ctx, "note", 1),
	} {
		var ue *UnavailableError
		if !errors.As(err, &ue) || ue.Node != dead.ID() || !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTimeout) {
			t.Fatalf("%s to the dead server by name: %v, want an UnavailableError naming %s", what, err, dead.ID())
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the named requests waited for their deadline")
	}
}

// A fresh Transport whose only server of a topic is on a dead node fails
// its call with ErrUnavailable, not ErrTimeout and not ErrNoServers.
func TestDeadOnlyServerIsUnavailable(t *testing.T) {
	dir := newDir(t)
	dead := closedNode(t)
	reg := directory.Registration{Key: directory.Key{Topic: "gone"}, Server: "g", Node: dead}
	if err := dir.Register(context.Background(), reg, time.Minute); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 10*time.Second)
	err := newNode(t, dir).Client(Target{Topic: "gone"}).Call(ctx, "who", 1, nil)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoServers) || ctx.Err() != nil {
		t.Fatalf("call to a topic served only on a dead node: %v (ctx %v), want ErrUnavailable before the deadline", err, ctx.Err())
	}
}

// A call that a node proxy daemon relayed to a service process that then
// died fails at once with ErrNodeDown (the daemon answers SERVER_LOST when
// it sees the process's connection drop and probes its members), not at
// its deadline; also when the process had detached its last server first
// (killed while stopping). The daemon's MemberTTL is a minute, longer than
// the call's deadline, so only the probe can answer in time.
func TestProxyDaemonFailsRequestsOfLostMember(t *testing.T) {
	for _, detachFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("detachFirst=%v", detachFirst), func(t *testing.T) {
			dir := newDir(t)
			ipc := filepath.Join(t.TempDir(), "zmqmsg")
			px := startProxy(t, ipc, func(c *ProxyConfig) { c.MemberTTL = time.Minute })
			client := newNode(t, dir)
			// A fake member: a raw DEALER that attaches the only server of
			// the topic, takes a request, and dies without answering.
			zctx := testutil.ZMQ(t)
			fake, err := zctx.NewSocket(zmq.DEALER)
			if err != nil {
				t.Fatal(err)
			}
			_ = fake.SetLinger(0)
			call, _ := engineJoinEndpoints(ipc)
			if err := fake.Connect(call); err != nil {
				t.Fatal(err)
			}
			send := func(kind envelope.Kind, id envelope.ID) {
				t.Helper()
				b, err := envelope.Encode(&envelope.Message{Kind: kind, ID: id, Topic: "lonely", Server: "ghost"})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := fake.SendBytes(b, 0); err != nil {
					t.Fatal(err)
				}
			}
			send(envelope.KindAttach, envelope.NewID())
			if _, err := fake.RecvMessageBytes(0); err != nil { // the ACK
				t.Fatal(err)
			}
			reg := directory.Registration{Key: directory.Key{Topic: "lonely"}, Server: "ghost", Node: px.Node()}
			if err := dir.Register(context.Background(), reg, time.Minute); err != nil {
				t.Fatal(err)
			}
			ctx := testCtx(t, 20*time.Second)
			done := make(chan error, 1)
			go func() { done <- client.Client(Target{Topic: "lonely"}).Call(ctx, "who", 1, nil) }()
			if err := fake.SetRcvtimeo(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			if _, err := fake.RecvMessageBytes(0); err != nil { // the relayed call
				t.Fatalf("the fake member got no request: %v", err)
			}
			if detachFirst {
				send(envelope.KindDetach, envelope.NewID())
				if _, err := fake.RecvMessageBytes(0); err != nil { // the DETACH's ACK
					t.Fatal(err)
				}
			}
			_ = fake.Close()
			err = <-done
			var nd *NodeDownError
			if !errors.As(err, &nd) || ctx.Err() != nil {
				t.Fatalf("call whose service process died: %v (ctx %v), want a NodeDownError before the deadline", err, ctx.Err())
			}
			// The daemon's loop counts after it answered.
			testutil.WaitFor(t, 5*time.Second, "the daemon to count the lost member and its request", func() bool {
				st := px.Stats()
				return st.MembersLost == 1 && st.FailedLost == 1
			})
			st, err := client.NodeStats(ctx, px.Node())
			if err != nil || st.Counters["failed_lost"] != 1 || st.Counters["members_lost"] != 1 {
				t.Fatalf("the daemon's stats over the wire: %+v, %v: want the lost member and its request", st, err)
			}
		})
	}
}

// flakyDir is an in-memory directory whose lookups fail while down is set.
type flakyDir struct {
	*directory.Memory
	down    atomic.Bool
	lookups atomic.Int64
}

var errDirDown = errors.New("test directory down")

func (d *flakyDir) Lookup(ctx context.Context, k directory.Key) ([]directory.Entry, error) {
	d.lookups.Add(1)
	if d.down.Load() {
		return nil, errDirDown
	}
	return d.Memory.Lookup(ctx, k)
}

// Issue 10, item 3: a directory that cannot be read while nothing is
// cached is ErrDirectoryUnavailable (after one lookup), not ErrNoServers;
// a notification then fails the same way instead of being "unheard"; once
// the key is cached, an outage is served from the cache.
func TestDirectoryOutageIsNotNoServers(t *testing.T) {
	dir := &flakyDir{Memory: newDir(t)}
	srv := newNode(t, dir)
	var hits sync.Map
	serve(t, srv, Target{Topic: "svc"}, whoAmI("s", &hits))
	client := newNode(t, dir)
	dir.down.Store(true)
	before := dir.lookups.Load()
	ctx := testCtx(t, 10*time.Second)
	err := client.Client(Target{Topic: "svc"}).Call(ctx, "who", 1, nil)
	if !errors.Is(err, ErrDirectoryUnavailable) || errors.Is(err, ErrNoServers) || !errors.Is(err, errDirDown) {
		t.Fatalf("call while the directory is down: %v, want ErrDirectoryUnavailable wrapping the cause", err)
	}
	if n := dir.lookups.Load() - before; n != 1 {
		t.Fatalf("%d lookups for one call, want 1", n)
	}
	if err := client.Notifier("p").Info(ctx, "ev", 1); !errors.Is(err, ErrDirectoryUnavailable) {
		t.Fatalf("notify while the directory is down: %v, want ErrDirectoryUnavailable", err)
	}
	if st := client.Stats(); st.NotificationsUnheard != 0 {
		t.Fatalf("stats %+v: a notification the directory could not place is not unheard", st)
	}
	dir.down.Store(false)
	if err := client.Client(Target{Topic: "svc"}).Call(ctx, "who", 2, nil); err != nil {
		t.Fatalf("call once the directory is back: %v", err)
	}
	dir.down.Store(true)
	for i := range 3 {
		if err := client.Client(Target{Topic: "svc"}).Call(ctx, "who", i, nil); err != nil {
			t.Fatalf("call %d served from the cache during an outage: %v", i, err)
		}
	}
}

// A call whose own deadline passes while it waits for a first server is a
// timeout, not ErrNoServers.
func TestDeadlineWhileWaitingForServersIsTimeout(t *testing.T) {
	client := newNode(t, newDir(t), func(c *Config) { c.WaitForServers = 10 * time.Second })
	ctx := testCtx(t, 50*time.Millisecond)
	err := client.Client(Target{Topic: "nobody"}).Call(ctx, "m", 1, nil)
	if !errors.Is(err, ErrTimeout) || errors.Is(err, ErrNoServers) {
		t.Fatalf("call past its deadline while no server is known: %v, want ErrTimeout", err)
	}
	// The same with the Transport's own CallTimeout, without a ctx deadline.
	client = newNode(t, newDir(t), func(c *Config) { c.WaitForServers, c.CallTimeout = 10*time.Second, 50*time.Millisecond })
	if err := client.Client(Target{Topic: "nobody"}).Call(context.Background(), "m", 1, nil); !errors.Is(err, ErrTimeout) {
		t.Fatalf("call past its CallTimeout while no server is known: %v, want ErrTimeout", err)
	}
	ctx = testCtx(t, 10*time.Second)
	client = newNode(t, newDir(t), func(c *Config) { c.WaitForServers = 50 * time.Millisecond })
	if err := client.Client(Target{Topic: "nobody"}).Call(ctx, "m", 1, nil); !errors.Is(err, ErrNoServers) {
		t.Fatalf("call with time left when WaitForServers ends: %v, want ErrNoServers", err)
	}
}

// A taken port is named in New's error: the one that failed, not the call
// port.
func TestTakenPortIsNamed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	_, err = New(Config{Directory: newDir(t), Ports: Ports{Call: AnyPort, Cast: taken}})
	want := fmt.Sprintf("127.0.0.1:%d", taken)
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "call port") {
		t.Fatalf("New with the cast port taken: %v, want an error naming %s", err, want)
	}
}

// A topic cast whose first server took it without acknowledging (it may
// have run) and whose only other server cannot be connected to fails with
// ErrNotAcked, never with "not sent" (ErrUnavailable): one copy left.
func TestCastThatMayHaveRunIsNotReportedNotSent(t *testing.T) {
	dir := newDir(t)
	zctx := testutil.ZMQ(t)
	mute, err := zctx.NewSocket(zmq.ROUTER) // takes casts, never answers
	if err != nil {
		t.Fatal(err)
	}
	_ = mute.SetLinger(0)
	t.Cleanup(func() { _ = mute.Close() })
	if err := mute.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := mute.GetLastEndpoint()
	port, _ := strconv.Atoi(ep[strings.LastIndex(ep, ":")+1:])
	for server, node := range map[string]directory.Node{"mute": {Host: "127.0.0.1", CallPort: port}, "dead": closedNode(t)} {
		if err := dir.Register(context.Background(), directory.Registration{Key: directory.Key{Topic: "t"}, Server: server, Node: node}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// Fresh Transports start their round robin at random: both orders
	// (mute first, dead first) come up in 8 runs but with odds of 1/128.
	for i := range 8 {
		client := newNode(t, dir, func(c *Config) { c.Acks = AckPolicy{Timeout: 20 * time.Millisecond, Multiplier: 1, Retries: 1} })
		err := client.Client(Target{Topic: "t"}).Cast(testCtx(t, 10*time.Second), "m", i)
		if !errors.Is(err, ErrNotAcked) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("run %d: %v, want ErrNotAcked (a copy went to the mute server)", i, err)
		}
	}
}

// With acks off, a cast that its node never had (it could not be
// connected to) is counted (DirectCastFailed), not dropped silently.
func TestUnackedCastToDeadNodeIsCounted(t *testing.T) {
	dir := newDir(t)
	live := newNode(t, dir)
	var hits sync.Map
	serve(t, live, Target{Topic: "svc"}, counting("live", &hits, nil))
	reg := directory.Registration{Key: directory.Key{Topic: "svc"}, Server: "doomed", Node: closedNode(t)}
	if err := dir.Register(context.Background(), reg, time.Minute); err != nil {
		t.Fatal(err)
	}
	client := newNode(t, dir, func(c *Config) { c.Acks.Disabled = true })
	ctx := testCtx(t, 10*time.Second)
	for i := range 10 {
		if err := client.Client(Target{Topic: "svc"}).Cast(ctx, "note", i); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 5*time.Second, "every cast run or counted as failed", func() bool {
		return hitsOf(&hits, "live")+int64(client.Stats().DirectCastFailed) == 10
	})
	if st := client.Stats(); st.DirectCastFailed == 0 || st.NotSent != 0 {
		t.Fatalf("stats %+v: want the casts sent to the dead node counted as failed (and none as a waiting caller's)", st)
	}
}
