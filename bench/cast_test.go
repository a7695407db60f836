package bench

// CAST benchmarks: zmqmsg's acknowledged and direct casts, next to their
// baselines (NATS request to a queue-group subscriber that acks at once, and
// raw PUSH/PULL), so that one `go test -bench` run shows them side by side.
//
// Topology: the same two Transports (two nodes, netpoll strategy, private
// in-memory directory) as the Call benchmarks. The server serves topic
// bench.echo with a "count" handler that counts runs with an atomic; the
// measured time ends when the server has RUN all n casts, not when the last
// Cast returned:
//
//	acked:  Client.Cast -> DEALER --tcp--> proxy ROUTER -> server queue -> worker -> handler
//	                             <-- ACK --  (once the server queue has it)
//	direct: Client.Cast -> PUSH ----tcp--> proxy PULL -> server's in-order lane -> handler
//
// The senders share one cancellable ctx, cancelled when the server stops
// making progress for stallTimeout or a sender fails. There is no per-cast
// ctx timeout: an acked cast is bounded by its AckPolicy (ErrNotAcked after
// 3.75 s), a direct cast only ever waits for room in its PUSH queue.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
)

const castMethod = "count"

// castEnv is a zmqmsgEnv whose server counts the casts it runs.
type castEnv struct {
	*zmqmsgEnv
	direct  bool
	counter atomic.Pointer[counter] // the handler increments the current one
	bad     atomic.Int64            // runs that got the wrong payload
}

func startCast(tb testing.TB, direct bool) *castEnv {
	tb.Helper()
	env := &castEnv{zmqmsgEnv: &zmqmsgEnv{dir: directory.NewMemory()}, direct: direct}
	env.counter.Store(newCounter(0))
	ok := false
	defer func() {
		if !ok {
			env.close(tb)
		}
	}()
	// The default Config: a full lane pushes back on the senders.
	env.server = newZmqmsgTransport(tb, zmqmsgConfig(env.dir, zmqmsg.WaitNetpoll))
	srv, err := env.server.Serve(zmqmsgTarget, zmqmsg.Endpoints{castMethod: env.handle})
	if err != nil {
		tb.Fatalf("serve: %v", err)
	}
	env.srv = srv
	env.client = newZmqmsgTransport(tb, zmqmsgConfig(env.dir, zmqmsg.WaitNetpoll))
	var opts []zmqmsg.ClientOption
	if direct {
		opts = append(opts, zmqmsg.DirectCast())
	}
	env.cli = env.client.Client(zmqmsgTarget, opts...)
	ok = true
	return env
}

func (env *castEnv) handle(_ context.Context, a zmqmsg.Args) (any, error) {
	if len(a.Raw()) != payloadSize {
		env.bad.Add(1)
	}
	env.counter.Load().inc()
	return nil, nil
}

// run starts a fresh count of n runs, has `senders` goroutines cast n
// messages in total (split evenly), and waits until the server has run all
// n and every Cast has returned. It fails on a sender's error or when the
// count stalls. Returns the time from the first cast to the later of the
// n-th run and the last Cast's return.
func (env *castEnv) run(tb testing.TB, tm timer, n, senders int) time.Duration {
	tb.Helper()
	c := newCounter(n)
	env.counter.Store(c) // every earlier cast has run already (see warmup)

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
				if err := env.cli.Cast(ctx, castMethod, payload); err != nil {
					errs.add(fmt.Errorf("cast %d/%d of sender %d: %w", j, per[i], i, err))
					failOnce.Do(func() { close(failed) })
					return
				}
			}
		})
	}
	err := waitRuns(c, failed, env.lost)
	if err != nil {
		cancel() // unblocks the senders
	}
	wg.Wait() // acked: the last ACKs may come in just after the last runs
	elapsed := time.Since(start)
	tm.StopTimer()
	errs.report(tb)
	if err != nil {
		tb.Fatal(err)
	}
	return elapsed
}

// waitRuns waits until c reached its target; it gives up when failed is
// closed, lost (asked every tick) reports messages that will never run, or
// c makes no progress for stallTimeout.
func waitRuns(c *counter, failed <-chan struct{}, lost func() error) error {
	if c.target == 0 {
		return nil
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last, lastChange := c.n.Load(), time.Now()
	for {
		select {
		case <-c.done:
			return nil
		case <-failed:
			return fmt.Errorf("a sender failed after %d of %d runs", c.n.Load(), c.target)
		case <-tick.C:
			if err := lost(); err != nil {
				return fmt.Errorf("%d of %d casts run: %w", c.n.Load(), c.target, err)
			}
			if v := c.n.Load(); v != last {
				last, lastChange = v, time.Now()
			} else if time.Since(lastChange) > stallTimeout {
				return fmt.Errorf("stalled: %d of %d casts run after %v without progress", v, c.target, stallTimeout)
			}
		}
	}
}

// lost reports casts that will never run: dropped by the server node, or
// given up on by the client.
func (env *castEnv) lost() error {
	cs, ss := env.client.Stats(), env.server.Stats()
	if ss.DirectDropped+cs.DirectCastFailed+cs.CastsNotAcked != 0 {
		return fmt.Errorf("casts lost: server dropped %d direct casts (DirectDropped), client failed %d direct casts, %d acked casts not acknowledged",
			ss.DirectDropped, cs.DirectCastFailed, cs.CastsNotAcked)
	}
	return nil
}

// warmup casts zmqmsgWarmup messages from one goroutine and waits until the
// server ran them: directory lookup, socket spawn and TCP connect happen on
// the first one.
func (env *castEnv) warmup(tb testing.TB) {
	tb.Helper()
	env.run(tb, noTimer{}, zmqmsgWarmup, 1)
}

// checkCastStats fails on any error, drop, retry or duplicate in either
// Transport's counters, and checks that every cast sent ran exactly once
// on the right path. total is every cast of the scenario (warm-up included).
func (env *castEnv) checkCastStats(tb testing.TB, total int) {
	tb.Helper()
	env.checkStats(tb)
	if b := env.bad.Load(); b != 0 {
		tb.Errorf("%d casts ran with a payload that is not %d bytes", b, payloadSize)
	}
	cs, ss := env.client.Stats(), env.server.Stats()
	for name, st := range map[string]zmqmsg.Stats{"client": cs, "server": ss} {
		if st.CastRetries+st.CastsNotAcked+st.CastErrors+st.DuplicateCasts+
			st.DirectCastFailed+st.DirectDropped+st.HandlerPanics != 0 {
			tb.Errorf("%s transport: retries=%d not-acked=%d cast-errors=%d duplicates=%d direct-failed=%d direct-dropped=%d panics=%d",
				name, st.CastRetries, st.CastsNotAcked, st.CastErrors, st.DuplicateCasts,
				st.DirectCastFailed, st.DirectDropped, st.HandlerPanics)
		}
	}
	want := uint64(total)
	if env.direct {
		// DirectCasts is counted after the PUSH took the message, so it may
		// lag the server's run count by a moment.
		if ss.DirectCastsRun != want || ss.CastsRun != want || cs.DirectCasts > want || cs.Casts != 0 {
			tb.Errorf("direct casts: client sent %d (acked %d), server ran %d (all casts %d); want %d, all direct",
				cs.DirectCasts, cs.Casts, ss.DirectCastsRun, ss.CastsRun, want)
		}
	} else if cs.Casts != want || ss.CastsRun != want || cs.DirectCasts != 0 || ss.DirectCastsRun != 0 {
		tb.Errorf("acked casts: client sent %d (direct %d), server ran %d (direct %d); want %d, all acked",
			cs.Casts, cs.DirectCasts, ss.CastsRun, ss.DirectCastsRun, want)
	}
}

// ---------------------------------------------------------------------------
// Scenarios

// zmqmsgCast: `senders` goroutines sharing ONE Client (acked, or made with
// DirectCast), n casts in total; returns the time until the server ran all n.
func zmqmsgCast(tb testing.TB, tm timer, n, senders int, direct bool) time.Duration {
	env := startCast(tb, direct)
	defer env.close(tb)
	env.warmup(tb)
	elapsed := env.run(tb, tm, n, senders)
	env.checkCastStats(tb, zmqmsgWarmup+n)
	return elapsed
}

// natsPublishAck: "publish with a reply ack": `senders` goroutines sharing
// ONE connection each nc.Request a 64-byte message to a queue-group
// subscriber (its own connection) that counts it and acks at once with an
// empty reply. n requests in total; returns the time until the last ack.
func natsPublishAck(tb testing.TB, tm timer, n, senders int) time.Duration {
	const subject, queue = "bench.cast", "workers"
	srv := startNATSServer(tb)
	defer stopNATSServer(tb, srv)

	var runs atomic.Int64
	sub := connectNATS(tb, srv, "ack-subscriber")
	defer sub.drain(tb)
	s, err := sub.QueueSubscribe(subject, queue, func(m *nats.Msg) {
		runs.Add(1)
		if err := m.Respond(nil); err != nil {
			sub.async.add(fmt.Errorf("respond: %w", err))
		}
	})
	if err == nil {
		err = s.SetPendingLimits(-1, -1) // a drop would only show up as a timeout
	}
	if err == nil {
		err = sub.Flush() // subscription registered before the first request
	}
	if err != nil {
		tb.Fatalf("nats queue subscriber: %v", err)
	}

	cli := connectNATS(tb, srv, "publisher")
	defer cli.drain(tb)
	send := func() error {
		if _, err := cli.Request(subject, payload, ioTimeout); err != nil {
			return fmt.Errorf("nats request: %w", err)
		}
		return nil
	}
	if err := send(); err != nil { // warm-up (response mux subscription)
		tb.Fatal(err)
	}

	per := split(n, senders)
	var wg sync.WaitGroup
	var errs errSink
	tm.ResetTimer()
	start := time.Now()
	for i := range senders {
		wg.Go(func() {
			for range per[i] {
				if err := send(); err != nil {
					errs.add(err)
					return
				}
			}
		})
	}
	wg.Wait() // bounded: every request has a timeout
	elapsed := time.Since(start)
	tm.StopTimer()
	errs.report(tb)
	if got := runs.Load(); got != int64(n)+1 {
		tb.Errorf("subscriber ran %d messages, want %d", got, n+1)
	}
	return elapsed
}

// zmqPushPullSenders: `senders` goroutines, each with its own PUSH socket,
// n messages in total to one PULL (one zmq context, as zmqPushPull);
// returns the time until the receiver has counted all n.
func zmqPushPullSenders(tb testing.TB, tm timer, n, senders int) time.Duration {
	ctx := newZMQContext(tb)
	defer termZMQContext(tb, ctx)

	pull := mustZMQSocket(tb, ctx, zmq.PULL)
	defer closeZMQSocket(tb, pull)
	if err := pull.SetRcvhwm(zmqHWM); err != nil {
		tb.Fatalf("set hwm: %v", err)
	}
	ep, err := bindLoopback(pull)
	if err != nil {
		tb.Fatal(err)
	}
	pushes := make([]*zmq.Socket, 0, senders)
	defer func() {
		for _, s := range pushes {
			closeZMQSocket(tb, s)
		}
	}()
	for range senders {
		s := mustZMQSocket(tb, ctx, zmq.PUSH)
		pushes = append(pushes, s)
		if err := s.SetSndhwm(zmqHWM); err != nil {
			tb.Fatalf("set hwm: %v", err)
		}
		if err := s.Connect(ep); err != nil {
			tb.Fatalf("push connect: %v", err)
		}
		// Warm-up (this connection established), received here before the
		// receiver goroutine takes over the PULL socket.
		if _, err := s.SendBytes(payload, 0); err != nil {
			tb.Fatalf("push send: %v", err)
		}
		if _, err := pull.RecvBytes(0); err != nil {
			tb.Fatalf("pull recv: %v", err)
		}
	}

	per := split(n, senders)
	recvDone := make(chan error, 1)
	var wg sync.WaitGroup
	var errs errSink
	tm.ResetTimer()
	start := time.Now()
	go func() { // owns pull until it sends on recvDone
		for i := range n {
			m, err := pull.RecvBytes(0)
			if err != nil {
				recvDone <- fmt.Errorf("pull recv %d/%d: %w", i, n, err)
				return
			}
			if len(m) != payloadSize {
				recvDone <- fmt.Errorf("pull recv: got %d bytes", len(m))
				return
			}
		}
		recvDone <- nil
	}()
	for i, s := range pushes { // pushes[i] is used only by goroutine i
		wg.Go(func() {
			for j := range per[i] {
				if _, err := s.SendBytes(payload, 0); err != nil {
					errs.add(fmt.Errorf("push %d send %d/%d: %w", i, j, per[i], err))
					return
				}
			}
		})
	}
	recvErr := <-recvDone // bounded by the PULL's receive timeout
	elapsed := time.Since(start)
	tm.StopTimer()
	wg.Wait() // bounded by the PUSHes' send timeout
	errs.report(tb)
	if recvErr != nil {
		tb.Fatal(recvErr)
	}
	return elapsed
}

// ---------------------------------------------------------------------------
// Benchmarks

// BenchmarkZmqmsg_Cast_Acked compares with BenchmarkNATS_PublishAck
// (target: ≥ 1.0× its msgs/s).
func BenchmarkZmqmsg_Cast_Acked(b *testing.B) {
	for _, senders := range []int{16, 64} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			b.ReportAllocs()
			elapsed := zmqmsgCast(b, b, b.N, senders, false)
			reportRate(b, b.N, elapsed, "casts/s")
		})
	}
}

// BenchmarkZmqmsg_Cast_Direct compares with BenchmarkRawZMQ_PushPull
// (senders=1) and BenchmarkRawZMQ_PushPull_Senders (senders=16) (target:
// ≥ 0.7× their msgs/s).
func BenchmarkZmqmsg_Cast_Direct(b *testing.B) {
	for _, senders := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			b.ReportAllocs()
			elapsed := zmqmsgCast(b, b, b.N, senders, true)
			reportRate(b, b.N, elapsed, "msgs/s")
		})
	}
}

func BenchmarkNATS_PublishAck(b *testing.B) {
	for _, senders := range []int{16, 64} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			b.ReportAllocs()
			elapsed := natsPublishAck(b, b, b.N, senders)
			reportRate(b, b.N, elapsed, "msgs/s")
		})
	}
}

func BenchmarkRawZMQ_PushPull_Senders(b *testing.B) {
	for _, senders := range []int{16} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			b.ReportAllocs()
			elapsed := zmqPushPullSenders(b, b, b.N, senders)
			reportRate(b, b.N, elapsed, "msgs/s")
		})
	}
}

// ---------------------------------------------------------------------------
// Smoke test: every cast scenario with a small count (run with -race).

func TestCastSmoke(t *testing.T) {
	const n = 300
	for _, senders := range []int{16, 64} {
		t.Run(fmt.Sprintf("Zmqmsg_Cast_Acked/senders=%d", senders), func(t *testing.T) {
			zmqmsgCast(t, noTimer{}, n, senders, false)
		})
	}
	for _, senders := range []int{1, 16, 64} {
		t.Run(fmt.Sprintf("Zmqmsg_Cast_Direct/senders=%d", senders), func(t *testing.T) {
			zmqmsgCast(t, noTimer{}, n, senders, true)
		})
	}
	for _, senders := range []int{16, 64} {
		t.Run(fmt.Sprintf("NATS_PublishAck/senders=%d", senders), func(t *testing.T) {
			natsPublishAck(t, noTimer{}, n, senders)
		})
	}
	t.Run("RawZMQ_PushPull_Senders/senders=16", func(t *testing.T) {
		zmqPushPullSenders(t, noTimer{}, n, 16)
	})
}

// TestCastCounts checks that the cast scenarios count what they claim: the
// handler runs once per cast, on the path the client asked for.
func TestCastCounts(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) {
			env := startCast(t, direct)
			defer env.close(t)
			env.warmup(t)
			env.run(t, noTimer{}, 50, 4)
			env.checkCastStats(t, zmqmsgWarmup+50)
			if got := env.counter.Load().n.Load(); got != 50 {
				t.Errorf("handler ran %d times in the last round, want 50", got)
			}
			// A cast on a closed Transport fails: the scenario's error path.
			if err := env.client.Close(); err != nil {
				t.Fatal(err)
			}
			err := env.cli.Cast(context.Background(), castMethod, payload)
			if !errors.Is(err, zmqmsg.ErrClosed) {
				t.Errorf("cast after Close: %v, want ErrClosed", err)
			}
			env.client = nil // closed already
		})
	}
}
