package zmqmsg

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/engine"
	"github.com/zmqmsg/zmqmsg/envelope"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

var engineJoinEndpoints = engine.JoinEndpoints

// Tests of the node proxy daemon (StartProxy, Config.ProxyDir): service
// Transports join it over IPC, clients reach them through its TCP ports.

// startProxy starts a daemon on free ports with its IPC sockets in dir.
func startProxy(t *testing.T, dir string, mod ...func(*ProxyConfig)) *Proxy {
	t.Helper()
	cfg := ProxyConfig{Dir: dir, Ports: Ports{Call: AnyPort}}
	for _, m := range mod {
		m(&cfg)
	}
	p, err := StartProxy(cfg)
	if err != nil {
		t.Fatalf("StartProxy: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("proxy Close: %v", err)
		}
	})
	return p
}

// member starts a Transport that joins the daemon of ipcDir.
func member(t *testing.T, dir directory.Directory, ipcDir string) *Transport {
	t.Helper()
	return newNode(t, dir, func(c *Config) { c.ProxyDir = ipcDir })
}

// daemonNode is a daemon with two joined service Transports and an
// embedded client node.
type daemonNode struct {
	dir     *directory.Memory
	ipc     string
	proxy   *Proxy
	members [2]*Transport
	client  *Transport
}

func newDaemonNode(t *testing.T) *daemonNode {
	d := &daemonNode{dir: newDir(t), ipc: filepath.Join(t.TempDir(), "zmqmsg")}
	d.proxy = startProxy(t, d.ipc)
	for i := range d.members {
		d.members[i] = member(t, d.dir, d.ipc)
	}
	d.client = newNode(t, d.dir)
	return d
}

func TestProxyDaemonCallsReachEveryMember(t *testing.T) {
	d := newDaemonNode(t)
	if d.members[0].Node() != d.proxy.Node() || d.members[1].Node() != d.proxy.Node() {
		t.Fatalf("members' nodes %v, %v; want the daemon's %v", d.members[0].Node(), d.members[1].Node(), d.proxy.Node())
	}
	var hits sync.Map
	s0 := serve(t, d.members[0], Target{Topic: "svc"}, whoAmI("m0", &hits))
	s1 := serve(t, d.members[1], Target{Topic: "svc"}, whoAmI("m1", &hits))
	if s0.Name() == s1.Name() {
		t.Fatalf("two processes on one node generated the same server name %q", s0.Name())
	}
	ctx := testCtx(t, 20*time.Second)
	c := d.client.Client(Target{Topic: "svc"})
	for i := 0; i < 40; i++ {
		var got echoed
		if err := c.Call(ctx, "who", i, &got); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got.Seq != i {
			t.Fatalf("call %d got the reply of %d", i, got.Seq)
		}
	}
	for _, name := range []string{"m0", "m1"} {
		n, ok := hits.Load(name)
		if !ok || n.(*atomic.Int64).Load() == 0 {
			t.Fatalf("member %s got no call", name)
		}
	}
	// A named server is reached on its own process.
	var got echoed
	if err := d.client.Client(Target{Topic: "svc", Server: s1.Name()}).Call(ctx, "who", 7, &got); err != nil || got.Server != "m1" {
		t.Fatalf("named call: %+v, %v", got, err)
	}
	// The daemon counts a reply just after handing it to libzmq: wait.
	testutil.WaitFor(t, 5*time.Second, "the daemon's counters", func() bool {
		st := d.proxy.Stats()
		return st.Members == 2 && st.Relayed == 41 && st.Replies == 41
	})
}

func TestProxyDaemonCastFanoutNotify(t *testing.T) {
	d := newDaemonNode(t)
	ctx := testCtx(t, 20*time.Second)
	rec := newRecorder()
	serve(t, d.members[0], Target{Topic: "all", Server: "a"}, rec.endpoints("a"))
	serve(t, d.members[1], Target{Topic: "all", Server: "b"}, rec.endpoints("b"))
	serve(t, d.members[1], Target{Topic: "all", Server: "c"}, rec.endpoints("c"))

	// Acked casts: every one is acknowledged and runs once.
	casts := d.client.Client(Target{Topic: "all"})
	for i := 0; i < 30; i++ {
		if err := casts.Cast(ctx, "seq", i); err != nil {
			t.Fatalf("cast %d: %v", i, err)
		}
	}
	rec.wait(t, 30)
	// Direct casts to a named server arrive in order.
	direct := d.client.Client(Target{Topic: "all", Server: "c"}, DirectCast())
	for i := 100; i < 150; i++ {
		if err := direct.Cast(ctx, "seq", i); err != nil {
			t.Fatalf("direct cast %d: %v", i, err)
		}
	}
	rec.wait(t, 50)
	// Fanouts reach all three servers on both processes, in order.
	fan := d.client.Client(Target{Topic: "all", Fanout: true})
	for i := 1000; i < 1020; i++ {
		if err := fan.Cast(ctx, "seq", i); err != nil {
			t.Fatalf("fanout %d: %v", i, err)
		}
	}
	rec.wait(t, 60)
	total := 0
	for _, name := range []string{"a", "b", "c"} {
		var fanouts, directs []int
		for _, v := range rec.of(name) {
			switch {
			case v >= 1000:
				fanouts = append(fanouts, v)
			case v >= 100:
				directs = append(directs, v)
			}
			total++
		}
		if len(fanouts) != 20 || fanouts[0] != 1000 || fanouts[19] != 1019 {
			t.Fatalf("server %s got fanouts %v", name, fanouts)
		}
		for i := 1; i < len(fanouts); i++ {
			if fanouts[i] != fanouts[i-1]+1 {
				t.Fatalf("server %s: fanouts out of order: %v", name, fanouts)
			}
		}
		if name == "c" {
			for i, v := range directs {
				if v != 100+i {
					t.Fatalf("direct casts out of order or lost: %v", directs)
				}
			}
			if len(directs) != 50 {
				t.Fatalf("server c got %d direct casts, want 50", len(directs))
			}
		}
	}
	if total != 30+50+60 {
		t.Fatalf("%d deliveries, want %d", total, 30+50+60)
	}

	// Notifications: pool "p" has a listener in each process, pool "q" one;
	// each pool gets every notification once.
	box := newInbox()
	listen(t, d.members[0], []string{"events"}, "p", box.handler("p0"))
	listen(t, d.members[1], []string{"events"}, "p", box.handler("p1"))
	listen(t, d.members[1], []string{"events"}, "q", box.handler("q"))
	n := d.client.Notifier("test", "events")
	for i := 0; i < 20; i++ {
		if err := n.Info(ctx, "ping", i); err != nil {
			t.Fatalf("notify %d: %v", i, err)
		}
	}
	box.wait(t, 40)
	if p, q := len(box.of("p0"))+len(box.of("p1")), len(box.of("q")); p != 20 || q != 20 {
		t.Fatalf("pool p got %d, pool q %d; want 20 each", p, q)
	}
}

func TestProxyDaemonMemberLeaves(t *testing.T) {
	d := newDaemonNode(t)
	var hits sync.Map
	serve(t, d.members[0], Target{Topic: "svc"}, whoAmI("m0", &hits))
	serve(t, d.members[1], Target{Topic: "svc"}, whoAmI("m1", &hits))
	ctx := testCtx(t, 20*time.Second)
	c := d.client.Client(Target{Topic: "svc"})
	if err := c.Call(ctx, "who", 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.members[0].Close(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "the daemon to drop the closed member", func() bool {
		return d.proxy.Stats().Members == 1
	})
	for i := 0; i < 20; i++ {
		var got echoed
		if err := c.Call(ctx, "who", i, &got); err != nil {
			t.Fatalf("call %d after a member left: %v", i, err)
		}
		if got.Server != "m1" {
			t.Fatalf("call %d answered by %s", i, got.Server)
		}
	}
}

// A restarted daemon is joined again by its members without restarting
// them, and a client reaches them again.
func TestProxyDaemonRestart(t *testing.T) {
	dir := newDir(t)
	ipc := filepath.Join(t.TempDir(), "zmqmsg")
	p, err := StartProxy(ProxyConfig{Dir: ipc, Ports: Ports{Call: AnyPort}})
	if err != nil {
		t.Fatal(err)
	}
	node := p.Node()
	m := member(t, dir, ipc)
	var hits sync.Map
	serve(t, m, Target{Topic: "svc"}, whoAmI("m", &hits))
	c := newNode(t, dir).Client(Target{Topic: "svc"})
	ctx := testCtx(t, 30*time.Second)
	if err := c.Call(ctx, "who", 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p2 := startProxy(t, ipc, func(c *ProxyConfig) {
		c.Ports = Ports{Call: node.CallPort, Fanout: node.FanoutPort, Notify: node.NotifyPort, Cast: node.CastPort}
	})
	testutil.WaitFor(t, 10*time.Second, "the member to attach to the new daemon", func() bool {
		return p2.Stats().Members == 1
	})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Call(cctx, "who", 2, nil); err != nil {
		t.Fatalf("call through the restarted daemon: %v", err)
	}
}

func TestProxyDaemonConflictAndDrain(t *testing.T) {
	d := newDaemonNode(t)
	serve(t, d.members[0], Target{Topic: "svc", Server: "alpha"}, Endpoints{
		"slow": func(ctx context.Context, a Args) (any, error) {
			select {
			case <-time.After(300 * time.Millisecond):
				return "done", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	})
	if _, err := d.members[1].Serve(Target{Topic: "svc", Server: "alpha"}, Endpoints{"x": func(context.Context, Args) (any, error) { return nil, nil }}); err == nil {
		t.Fatal("a second process served the same server name")
	}
	if got := d.proxy.Stats().Conflicts; got != 1 {
		t.Fatalf("Conflicts = %d, want 1", got)
	}
	ctx := testCtx(t, 20*time.Second)
	c := d.client.Client(Target{Topic: "svc"})
	slow := make(chan error, 1)
	go func() {
		var s string
		err := c.Call(ctx, "slow", nil, &s)
		if err == nil && s != "done" {
			err = errors.New("wrong reply " + s)
		}
		slow <- err
	}()
	testutil.WaitFor(t, 5*time.Second, "the slow call to be relayed", func() bool {
		select {
		case err := <-slow:
			t.Fatalf("the slow call ended early: %v (daemon %+v)", err, d.proxy.Stats())
		default:
		}
		return d.proxy.Stats().Relayed >= 1
	})
	drained := make(chan error, 1)
	go func() { drained <- d.proxy.Drain(ctx) }()
	testutil.WaitFor(t, 5*time.Second, "the drain to start", func() bool { return d.proxy.Stats().Draining })
	// While draining, a new call fails at once instead of timing out.
	if err := c.Call(ctx, "slow", nil, nil); err == nil {
		t.Fatal("a call during the drain succeeded")
	}
	if err := <-slow; err != nil {
		t.Fatalf("the call in flight during the drain: %v", err)
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
}

func TestProxyDaemonSetup(t *testing.T) {
	base := t.TempDir()
	ipc := filepath.Join(base, "run", "zmqmsg")
	p := startProxy(t, ipc)
	for _, f := range []string{"", "call", "notify"} {
		st, err := os.Stat(filepath.Join(ipc, f))
		if err != nil {
			t.Fatal(err)
		}
		if perm := st.Mode().Perm(); perm != 0o700 {
			t.Errorf("%s mode %#o, want 0700", filepath.Join(ipc, f), perm)
		}
	}
	// A second daemon on the same directory is refused...
	if _, err := StartProxy(ProxyConfig{Dir: ipc, Ports: Ports{Call: AnyPort}}); !errors.Is(err, ErrProxyRunning) {
		t.Fatalf("second daemon on one directory: %v, want ErrProxyRunning", err)
	}
	// ...and so is one on a taken port.
	if _, err := StartProxy(ProxyConfig{Dir: filepath.Join(base, "other"), Ports: Ports{Call: p.Node().CallPort, Fanout: AnyPort, Notify: AnyPort, Cast: AnyPort}}); err == nil {
		t.Fatal("a daemon bound a taken port")
	}
	for _, bad := range []ProxyConfig{{}, {Dir: ipc, MemberTTL: -1}, {Dir: ipc, DirMode: os.ModeDir | 0o700}, {Dir: ipc, Ports: Ports{Call: 70000}}} {
		if _, err := StartProxy(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("StartProxy(%+v) = %v, want ErrInvalidConfig", bad, err)
		}
	}
	// A Transport whose daemon is not there fails clearly.
	_, err := New(Config{Directory: newDir(t), ProxyDir: filepath.Join(base, "nobody")})
	if !errors.Is(err, ErrNoProxy) {
		t.Fatalf("joining a daemon that does not exist: %v, want ErrNoProxy", err)
	}
	t.Logf("no daemon: %v", err)
}

// A service process that dies without a word (its IPC pipe vanishes) is
// dropped at the daemon's next send to it, and the request goes to another
// member: no caller waits for a dead process.
func TestProxyDaemonDropsVanishedMember(t *testing.T) {
	d := newDaemonNode(t)
	var hits sync.Map
	serve(t, d.members[0], Target{Topic: "svc"}, whoAmI("live", &hits))
	// A fake member: a raw DEALER that attaches a server of the topic, then
	// closes its socket, as a killed process's kernel would.
	zctx := testutil.ZMQ(t)
	fake, err := zctx.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	_ = fake.SetLinger(0)
	call, _ := engineJoinEndpoints(d.ipc)
	if err := fake.Connect(call); err != nil {
		t.Fatal(err)
	}
	attach, err := envelope.Encode(&envelope.Message{Kind: envelope.KindAttach, ID: envelope.NewID(), Topic: "svc", Server: "ghost"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fake.SendBytes(attach, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.RecvMessageBytes(0); err != nil { // the ACK
		t.Fatal(err)
	}
	if got := d.proxy.Stats().Members; got != 2 {
		t.Fatalf("members %d, want 2", got)
	}
	_ = fake.Close()
	ctx := testCtx(t, 20*time.Second)
	c := d.client.Client(Target{Topic: "svc"})
	for i := 0; i < 10; i++ {
		var got echoed
		if err := c.Call(ctx, "who", i, &got); err != nil || got.Server != "live" {
			t.Fatalf("call %d: %+v, %v", i, got, err)
		}
	}
	st := d.proxy.Stats()
	if st.MembersLost != 1 || st.Members != 1 {
		t.Fatalf("stats %+v: want the ghost lost", st)
	}
}

// A daemon's Drain waits for a cast that its member is still running, and
// relays that cast's resends to the member meanwhile: the caster gets its
// ACK, not "draining", and the cast runs once.
func TestProxyDaemonDrainWaitsForRunningCast(t *testing.T) {
	dir := newDir(t)
	ipc := filepath.Join(t.TempDir(), "zmqmsg")
	px := startProxy(t, ipc)
	m := member(t, dir, ipc)
	_, runs, started, release := slowCastServer(t, m, "slow")
	client := newNode(t, dir, func(c *Config) {
		c.Acks = AckPolicy{Timeout: 20 * time.Millisecond, Multiplier: 1, Retries: 2}
	})
	cast := make(chan error, 1)
	go func() { cast <- client.Client(Target{Topic: "slow"}).Cast(testCtx(t, 20*time.Second), "work", 1) }()
	<-started
	drained := make(chan error, 1)
	go func() { drained <- px.Drain(testCtx(t, 20*time.Second)) }()
	testutil.WaitFor(t, 5*time.Second, "the daemon to drain", func() bool { return px.Stats().Draining })
	before := m.Stats().DuplicateCasts
	testutil.WaitFor(t, 5*time.Second, "resends relayed while draining", func() bool { return m.Stats().DuplicateCasts >= before+3 })
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) while a relayed cast was still running", err)
	default:
	}
	close(release)
	if err := <-cast; err != nil {
		t.Fatalf("cast through a draining daemon: %v, want its ACK", err)
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
}
