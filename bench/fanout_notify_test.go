package bench

// FANOUT and NOTIFY benchmarks, next to their baselines (raw XPUB/SUB and
// NATS fan-out for FANOUT; NATS queue groups for NOTIFY), so that one
// `go test -bench` run shows them side by side.
//
// FANOUT topology: one caster Transport, and the subscribers are servers of
// topic bench.fanout spread over server Transports (subs=1: one server on
// one node; subs=8: four servers on each of two nodes). 16 goroutines share
// one fanout Client; the measured time ends when every server has RUN all n.
//
//	Client.Cast (Fanout) -> PUB --tcp--> node's fanout SUB -> each server's in-order lane -> handler
//	                     <-- node took it --
//
// NOTIFY topology: one notifier Transport and two listener Transports; pool
// "a" has one member on each listener node, pool "b" one member (on the
// first listener node). 16 goroutines share one Notifier; the measured time
// ends when pool a's members together ran n and pool b ran n.
//
// Like the cast scenarios, the senders share one cancellable ctx (cancelled
// when the runs make no progress for stallTimeout or a sender fails); each
// Cast/Info is bounded by the library's ack policy.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
)

const (
	fanoutTopic   = "bench.fanout"
	fanoutMethod  = "count"
	fanoutSenders = 16

	notifyTopic   = "bench.notify"
	notifyEvent   = "bench.event"
	notifySenders = 16
)

// fanoutLayout says how many server nodes and servers per node a subs
// count uses.
func fanoutLayout(subs int) (nodes, perNode int) {
	if subs == 1 {
		return 1, 1
	}
	if subs%2 != 0 {
		panic(fmt.Sprintf("fanout subs=%d: want 1 or an even count", subs))
	}
	return 2, subs / 2
}

// runCounter is a counter the handlers increment; swapped for each round.
type runCounter struct {
	cur atomic.Pointer[counter]
}

func newRunCounter() *runCounter {
	r := &runCounter{}
	r.cur.Store(newCounter(0))
	return r
}

// waitAll waits until every counter reached its target; it gives up when
// failed is closed, lost (asked every tick) reports messages that will never
// run, or the counters together make no progress for stallTimeout.
func waitAll(cs []*counter, failed <-chan struct{}, lost func() error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	total := func() (s int64) {
		for _, c := range cs {
			s += c.n.Load()
		}
		return s
	}
	var want int64
	for _, c := range cs {
		want += c.target
	}
	last, lastChange := total(), time.Now()
	for _, c := range cs {
		if c.target == 0 {
			continue
		}
	wait:
		for {
			select {
			case <-c.done:
				break wait
			case <-failed:
				return fmt.Errorf("a sender failed after %d of %d runs", total(), want)
			case <-tick.C:
				if err := lost(); err != nil {
					return fmt.Errorf("%d of %d runs: %w", total(), want, err)
				}
				if t := total(); t != last {
					last, lastChange = t, time.Now()
				} else if time.Since(lastChange) > stallTimeout {
					return fmt.Errorf("stalled: %d of %d runs after %v without progress", t, want, stallTimeout)
				}
			}
		}
	}
	return nil
}

// sendAll has `senders` goroutines call send n times in total (split
// evenly), sharing one cancellable ctx, and waits until the counters reached
// their targets and every sender returned. Returns the time from the first
// send to then.
func sendAll(tb testing.TB, tm timer, n, senders int, cs []*counter, lost func() error,
	send func(ctx context.Context) error) time.Duration {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	per := split(n, senders)
	failed := make(chan struct{})
	var failOnce sync.Once
	var errs errSink
	var wg sync.WaitGroup
	tm.ResetTimer()
	start := time.Now()
	for i := range senders {
		wg.Go(func() {
			for j := range per[i] {
				if err := send(ctx); err != nil {
					errs.add(fmt.Errorf("send %d/%d of sender %d: %w", j, per[i], i, err))
					failOnce.Do(func() { close(failed) })
					return
				}
			}
		})
	}
	err := waitAll(cs, failed, lost)
	if err != nil {
		cancel() // unblocks the senders
	}
	wg.Wait() // bounded: the ack policy, or ctx once cancelled
	elapsed := time.Since(start)
	tm.StopTimer()
	errs.report(tb)
	if err != nil {
		tb.Fatal(err)
	}
	return elapsed
}

// ---------------------------------------------------------------------------
// FANOUT

type fanoutEnv struct {
	dir      *directory.Memory
	caster   *zmqmsg.Transport
	cli      *zmqmsg.Client
	nodes    []*zmqmsg.Transport
	perNode  [][]*zmqmsg.Server // servers of each node
	counters []*runCounter      // one per server
	bad      atomic.Int64       // runs that got the wrong payload
}

func startFanout(tb testing.TB, subs int) *fanoutEnv {
	tb.Helper()
	env := &fanoutEnv{dir: directory.NewMemory()}
	ok := false
	defer func() {
		if !ok {
			env.close(tb)
		}
	}()
	nodes, perNode := fanoutLayout(subs)
	for i := range nodes {
		cfg := zmqmsgConfig(env.dir, zmqmsg.WaitNetpoll)
		tr := newZmqmsgTransport(tb, cfg)
		env.nodes = append(env.nodes, tr)
		env.perNode = append(env.perNode, nil)
		for j := range perNode {
			rc := newRunCounter()
			env.counters = append(env.counters, rc)
			srv, err := tr.Serve(zmqmsg.Target{Topic: fanoutTopic, Server: fmt.Sprintf("srv-%d-%d", i, j)},
				zmqmsg.Endpoints{fanoutMethod: func(_ context.Context, a zmqmsg.Args) (any, error) {
					if len(a.Raw()) != payloadSize {
						env.bad.Add(1)
					}
					rc.cur.Load().inc()
					return nil, nil
				}})
			if err != nil {
				tb.Fatalf("serve: %v", err)
			}
			env.perNode[i] = append(env.perNode[i], srv)
		}
	}
	env.caster = newZmqmsgTransport(tb, zmqmsgConfig(env.dir, zmqmsg.WaitNetpoll))
	env.cli = env.caster.Client(zmqmsg.Target{Topic: fanoutTopic, Fanout: true})
	ok = true
	return env
}

// close stops the caster first, then each node's servers and the node.
func (env *fanoutEnv) close(tb testing.TB) {
	tb.Helper()
	if env.caster != nil {
		if err := env.caster.Close(); err != nil {
			tb.Errorf("close caster transport: %v", err)
		}
	}
	for i, tr := range env.nodes {
		for _, srv := range env.perNode[i] {
			ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			if err := srv.Stop(ctx); err != nil {
				tb.Errorf("stop server: %v", err)
			}
			cancel()
		}
		if err := tr.Close(); err != nil {
			tb.Errorf("close server transport: %v", err)
		}
	}
	if err := env.dir.Close(); err != nil {
		tb.Errorf("close directory: %v", err)
	}
}

// lost reports fanouts that will never run: dropped by a server node, or
// not taken by one (the caster reports those).
func (env *fanoutEnv) lost() error {
	var dropped, unreached uint64
	for _, tr := range append([]*zmqmsg.Transport{env.caster}, env.nodes...) {
		st := tr.Stats()
		dropped += st.FanoutDropped
		unreached += st.FanoutUnreached
	}
	if dropped+unreached != 0 {
		return fmt.Errorf("fanouts lost: %d dropped (FanoutDropped), %d unreached (FanoutUnreached)", dropped, unreached)
	}
	return nil
}

// run starts a fresh count of n runs on every server and has `senders`
// goroutines fan out n messages; returns the time until every server ran
// all n (and every Cast returned).
func (env *fanoutEnv) run(tb testing.TB, tm timer, n, senders int) time.Duration {
	tb.Helper()
	cs := make([]*counter, len(env.counters))
	for i, rc := range env.counters {
		cs[i] = newCounter(n)
		rc.cur.Store(cs[i]) // every earlier fanout has run already
	}
	return sendAll(tb, tm, n, senders, cs, env.lost, func(ctx context.Context) error {
		return env.cli.Cast(ctx, fanoutMethod, payload)
	})
}

// checkStats fails on any error or drop, and checks that every fanout sent
// (total, warm-up included) ran exactly once on every server.
func (env *fanoutEnv) checkStats(tb testing.TB, total int) {
	tb.Helper()
	if b := env.bad.Load(); b != 0 {
		tb.Errorf("%d fanouts ran with a payload that is not %d bytes", b, payloadSize)
	}
	if err := env.lost(); err != nil {
		tb.Error(err)
	}
	want := uint64(total)
	cs := env.caster.Stats()
	if cs.Fanouts != want || cs.FanoutsSent != want*uint64(len(env.nodes)) {
		tb.Errorf("caster sent %d fanouts (%d node messages), want %d (%d)",
			cs.Fanouts, cs.FanoutsSent, want, want*uint64(len(env.nodes)))
	}
	for i, tr := range append([]*zmqmsg.Transport{env.caster}, env.nodes...) {
		st := tr.Stats()
		if st.HandlerErrors+st.HandlerPanics+st.CastErrors+st.SendFailures+st.MalformedFrames+st.WrongKind != 0 {
			tb.Errorf("transport %d: handler errors=%d panics=%d cast errors=%d send failures=%d malformed=%d wrong kind=%d",
				i, st.HandlerErrors, st.HandlerPanics, st.CastErrors, st.SendFailures, st.MalformedFrames, st.WrongKind)
		}
		if i == 0 {
			continue
		}
		if servers := uint64(len(env.perNode[i-1])); st.FanoutsRun != want*servers {
			tb.Errorf("server node %d ran %d fanouts, want %d (%d servers × %d)",
				i-1, st.FanoutsRun, want*servers, servers, want)
		}
	}
}

// zmqmsgFanout: `senders` goroutines sharing ONE fanout Client, n fanouts
// to subs servers; returns the time until every server ran all n.
func zmqmsgFanout(tb testing.TB, tm timer, n, subs, senders int) time.Duration {
	env := startFanout(tb, subs)
	defer env.close(tb)
	env.run(tb, noTimer{}, zmqmsgWarmup, 1) // directory lookup, PUB spawn, subscriptions
	elapsed := env.run(tb, tm, n, senders)
	env.checkStats(tb, zmqmsgWarmup+n)
	return elapsed
}

// ---------------------------------------------------------------------------
// NOTIFY

type notifyEnv struct {
	dir       *directory.Memory
	notifier  *zmqmsg.Transport
	ntf       *zmqmsg.Notifier
	listeners []*zmqmsg.Transport
	ls        []*zmqmsg.Listener
	poolA     runCounter // shared by pool a's members
	poolB     runCounter
	bad       atomic.Int64
}

func startNotify(tb testing.TB) *notifyEnv {
	tb.Helper()
	env := &notifyEnv{dir: directory.NewMemory()}
	env.poolA.cur.Store(newCounter(0))
	env.poolB.cur.Store(newCounter(0))
	ok := false
	defer func() {
		if !ok {
			env.close(tb)
		}
	}()
	handler := func(rc *runCounter) func(context.Context, zmqmsg.Notification) error {
		return func(_ context.Context, n zmqmsg.Notification) error {
			if len(n.Payload()) != payloadSize || n.EventType != notifyEvent {
				env.bad.Add(1)
			}
			rc.cur.Load().inc()
			return nil
		}
	}
	for range 2 {
		env.listeners = append(env.listeners, newZmqmsgTransport(tb, zmqmsgConfig(env.dir, zmqmsg.WaitNetpoll)))
	}
	listen := func(tr *zmqmsg.Transport, pool string, rc *runCounter) {
		l, err := tr.Listen([]string{notifyTopic}, pool, handler(rc))
		if err != nil {
			tb.Fatalf("listen pool %q: %v", pool, err)
		}
		env.ls = append(env.ls, l)
	}
	listen(env.listeners[0], "a", &env.poolA)
	listen(env.listeners[1], "a", &env.poolA)
	listen(env.listeners[0], "b", &env.poolB)
	env.notifier = newZmqmsgTransport(tb, zmqmsgConfig(env.dir, zmqmsg.WaitNetpoll))
	env.ntf = env.notifier.Notifier("bench-publisher", notifyTopic)
	ok = true
	return env
}

func (env *notifyEnv) close(tb testing.TB) {
	tb.Helper()
	if env.notifier != nil {
		if err := env.notifier.Close(); err != nil {
			tb.Errorf("close notifier transport: %v", err)
		}
	}
	for _, l := range env.ls {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if err := l.Stop(ctx); err != nil {
			tb.Errorf("stop listener: %v", err)
		}
		cancel()
	}
	for _, tr := range env.listeners {
		if err := tr.Close(); err != nil {
			tb.Errorf("close listener transport: %v", err)
		}
	}
	if err := env.dir.Close(); err != nil {
		tb.Errorf("close directory: %v", err)
	}
}

// lost reports notifications that will never run.
func (env *notifyEnv) lost() error {
	st := env.notifier.Stats()
	if st.NotifyFailures+st.NotificationsUnheard != 0 {
		return fmt.Errorf("notifications lost: %d pool deliveries not acknowledged (NotifyFailures), %d unheard",
			st.NotifyFailures, st.NotificationsUnheard)
	}
	return nil
}

// run starts fresh counts of n for pool a (both members together) and pool
// b, and has `senders` goroutines sharing the Notifier send n notifications.
func (env *notifyEnv) run(tb testing.TB, tm timer, n, senders int) time.Duration {
	tb.Helper()
	a, b := newCounter(n), newCounter(n)
	env.poolA.cur.Store(a)
	env.poolB.cur.Store(b)
	return sendAll(tb, tm, n, senders, []*counter{a, b}, env.lost, func(ctx context.Context) error {
		return env.ntf.Info(ctx, notifyEvent, payload)
	})
}

// checkStats fails on any error or loss, and checks that every notification
// (total, warm-up included) ran exactly once per pool.
func (env *notifyEnv) checkStats(tb testing.TB, total int) {
	tb.Helper()
	if b := env.bad.Load(); b != 0 {
		tb.Errorf("%d notifications ran with a wrong payload or event type", b)
	}
	if err := env.lost(); err != nil {
		tb.Error(err)
	}
	want := uint64(total)
	ns := env.notifier.Stats()
	if ns.Notifications != want {
		tb.Errorf("notifier sent %d notifications, want %d", ns.Notifications, want)
	}
	var run uint64
	for i, tr := range append([]*zmqmsg.Transport{env.notifier}, env.listeners...) {
		st := tr.Stats()
		run += st.NotificationsRun
		if st.HandlerErrors+st.HandlerPanics+st.CastErrors+st.CastRetries+st.CastsNotAcked+
			st.DuplicateCasts+st.SendFailures+st.MalformedFrames+st.WrongKind+st.NotificationsFiltered != 0 {
			tb.Errorf("transport %d stats show errors/retries/drops: %+v", i, st)
		}
	}
	if run != 2*want {
		tb.Errorf("listeners ran %d notifications, want %d (2 pools × %d)", run, 2*want, want)
	}
}

// zmqmsgNotify: `senders` goroutines sharing ONE Notifier, n notifications
// to two pools; returns the time until both pools ran all n.
func zmqmsgNotify(tb testing.TB, tm timer, n, senders int) time.Duration {
	env := startNotify(tb)
	defer env.close(tb)
	env.run(tb, noTimer{}, zmqmsgWarmup, 1)
	elapsed := env.run(tb, tm, n, senders)
	env.checkStats(tb, zmqmsgWarmup+n)
	return elapsed
}

// natsNotify: the NOTIFY baseline. A subject with two queue groups (two
// subscribers in group a, one in group b, each on its own connection); one
// publisher connection shared by `senders` goroutines publishes n messages;
// returns the time until group a (summed) and group b each received n.
func natsNotify(tb testing.TB, tm timer, n, senders int) time.Duration {
	const subject = "bench.notify"
	srv := startNATSServer(tb)
	defer stopNATSServer(tb, srv)

	a, b := newCounter(n), newCounter(n)
	for i, m := range []struct {
		queue string
		c     *counter
	}{{"a", a}, {"a", a}, {"b", b}} {
		sc := connectNATS(tb, srv, fmt.Sprintf("subscriber-%s-%d", m.queue, i))
		defer sc.drain(tb)
		sub, err := sc.QueueSubscribe(subject, m.queue, func(msg *nats.Msg) {
			if len(msg.Data) != payloadSize {
				sc.async.add(fmt.Errorf("got %d bytes", len(msg.Data)))
			}
			m.c.inc()
		})
		if err == nil {
			err = sub.SetPendingLimits(-1, -1) // a drop would only show up as a stall
		}
		if err == nil {
			err = sc.Flush() // subscription registered before publishing
		}
		if err != nil {
			tb.Fatalf("nats queue subscriber: %v", err)
		}
	}

	pub := connectNATS(tb, srv, "publisher")
	defer pub.drain(tb)
	per := split(n, senders)
	var wg sync.WaitGroup
	var errs errSink
	tm.ResetTimer()
	start := time.Now()
	for i := range senders {
		wg.Go(func() {
			for j := range per[i] {
				if err := pub.Publish(subject, payload); err != nil {
					errs.add(fmt.Errorf("publish %d/%d of sender %d: %w", j, per[i], i, err))
					return
				}
			}
		})
	}
	wg.Wait() // Publish only buffers (or fails)
	err := pub.FlushTimeout(stallTimeout)
	if err == nil {
		err = waitCounters([]*counter{a, b})
	}
	elapsed := time.Since(start)
	tm.StopTimer()
	errs.report(tb)
	if err != nil {
		tb.Fatal(err)
	}
	return elapsed
}

// ---------------------------------------------------------------------------
// Benchmarks

// BenchmarkZmqmsg_Fanout compares with BenchmarkRawZMQ_PubSub/subs=N
// (target: ≥ 0.7× its deliveries/s) and BenchmarkNATS_PublishFanout.
func BenchmarkZmqmsg_Fanout(b *testing.B) {
	for _, subs := range []int{1, 8} {
		b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
			b.ReportAllocs()
			elapsed := zmqmsgFanout(b, b, b.N, subs, fanoutSenders)
			reportRate(b, b.N*subs, elapsed, "deliveries/s")
		})
	}
}

// BenchmarkZmqmsg_Notify compares with BenchmarkNATS_Notify.
func BenchmarkZmqmsg_Notify(b *testing.B) {
	b.Run("pools=2", func(b *testing.B) {
		b.ReportAllocs()
		elapsed := zmqmsgNotify(b, b, b.N, notifySenders)
		reportRate(b, b.N, elapsed, "msgs/s")
		reportRate(b, 2*b.N, elapsed, "deliveries/s")
	})
}

func BenchmarkNATS_Notify(b *testing.B) {
	b.Run("pools=2", func(b *testing.B) {
		b.ReportAllocs()
		elapsed := natsNotify(b, b, b.N, notifySenders)
		reportRate(b, b.N, elapsed, "msgs/s")
		reportRate(b, 2*b.N, elapsed, "deliveries/s")
	})
}

// ---------------------------------------------------------------------------
// Smoke test: every fanout/notify scenario with a small count (run with -race).

func TestFanoutNotifySmoke(t *testing.T) {
	const n = 200
	for _, subs := range []int{1, 8} {
		t.Run(fmt.Sprintf("Zmqmsg_Fanout/subs=%d", subs), func(t *testing.T) {
			zmqmsgFanout(t, noTimer{}, n, subs, fanoutSenders)
		})
	}
	t.Run("Zmqmsg_Notify/pools=2", func(t *testing.T) {
		zmqmsgNotify(t, noTimer{}, n, notifySenders)
	})
	t.Run("NATS_Notify/pools=2", func(t *testing.T) {
		natsNotify(t, noTimer{}, n, notifySenders)
	})
}
