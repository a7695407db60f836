package bench

// Baseline benchmarks: raw ZeroMQ (github.com/pebbe/zmq4 over libzmq) and
// NATS (embedded nats-server + nats.go). They are the reference points for
// the library's own benchmarks, which will live next to them and use the
// same payload size, transport (TCP on 127.0.0.1) and metrics.
//
// Rules every scenario follows:
//   - traffic only on 127.0.0.1;
//   - each ZMQ context comes from zmq.NewContext() and is terminated;
//     every socket has linger 0 and is closed explicitly;
//   - a socket is only ever used by one goroutine at a time (sockets created
//     during setup are handed over to their goroutine before use, and closed
//     only after that goroutine has finished);
//   - every wait is bounded (socket send/recv timeouts, stall detection),
//     so a broken scenario fails instead of hanging;
//   - nothing keeps running after a scenario returns (TestMain uses goleak).
//
// Each scenario is a function taking a timer (the *testing.B, or noTimer in
// the smoke test) and an operation count, so TestBaselines can run all of
// them with a small count (e.g. under -race) without the benchmark driver.

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	zmq "github.com/pebbe/zmq4"
	"go.uber.org/goleak"
)

const (
	payloadSize = 64

	// ioTimeout bounds every single blocking socket operation / request. A
	// lost message still fails the run; 15 s leaves room for the smoke
	// tests, which CI runs under -race on 2 vCPUs (one call of 64 concurrent
	// callers once took over 5 s there while other race-enabled tests ran
	// beside it).
	ioTimeout = 15 * time.Second
	// stallTimeout: a throughput wait fails if no progress is made for this long.
	stallTimeout = 10 * time.Second
	// shutdownTimeout bounds waits for goroutines/contexts/connections to end.
	shutdownTimeout = 10 * time.Second

	// High-water mark for the ZMQ throughput scenarios. PUSH/PULL is lossless
	// by design; PUB/SUB is made lossless with XPUB_NODROP (the publisher
	// blocks instead of dropping when a subscriber pipe is full), so the HWM
	// only sizes the batching window and bounds memory.
	zmqHWM = 100_000
)

var payload = bytes.Repeat([]byte{'p'}, payloadSize)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// timer is the part of *testing.B the scenarios need.
type timer interface {
	ResetTimer()
	StopTimer()
}

type noTimer struct{}

func (noTimer) ResetTimer() {}
func (noTimer) StopTimer()  {}

// ---------------------------------------------------------------------------
// Metrics helpers

// percentile returns the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999999) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

// timedLoop runs call n times under the benchmark's timer and returns each
// run's latency; the first error ends the benchmark.
func timedLoop(tb testing.TB, tm timer, n int, call func() error) []time.Duration {
	tb.Helper()
	lat := make([]time.Duration, n)
	tm.ResetTimer()
	for i := range lat {
		t0 := time.Now()
		if err := call(); err != nil {
			tb.Fatal(err)
		}
		lat[i] = time.Since(t0)
	}
	tm.StopTimer()
	return lat
}

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(percentile(lat, 50))/float64(time.Microsecond), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 99))/float64(time.Microsecond), "p99-µs")
}

// reportCgo reports the cgo calls per operation since since (client and
// server together: both run in this process; setup is included, which
// b.N makes negligible).
func reportCgo(b *testing.B, since int64) {
	b.ReportMetric(float64(runtime.NumCgoCall()-since)/float64(b.N), "cgo/op")
}

func reportRate(b *testing.B, count int, elapsed time.Duration, unit string) {
	if elapsed > 0 {
		b.ReportMetric(float64(count)/elapsed.Seconds(), unit)
	}
}

// split divides n operations among k workers as evenly as possible.
func split(n, k int) []int {
	per := make([]int, k)
	for i := range per {
		per[i] = n / k
		if i < n%k {
			per[i]++
		}
	}
	return per
}

// errSink collects errors from worker goroutines.
type errSink struct {
	mu   sync.Mutex
	errs []error
}

func (s *errSink) add(err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

func (s *errSink) report(tb testing.TB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, err := range s.errs {
		tb.Error(err)
	}
}

// waitWithTimeout waits for ch to be closed (or to deliver), failing after d.
func waitWithTimeout(ch <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// ---------------------------------------------------------------------------
// ZMQ helpers

var inprocSeq atomic.Uint64

func newZMQContext(tb testing.TB) *zmq.Context {
	tb.Helper()
	ctx, err := zmq.NewContext()
	if err != nil {
		tb.Fatalf("zmq.NewContext: %v", err)
	}
	return ctx
}

// termZMQContext terminates ctx; all its sockets must be closed already.
// zmq_ctx_term blocks while sockets are open, so it is bounded by a timeout
// (a leaked goroutine is then reported by goleak instead of a hang).
func termZMQContext(tb testing.TB, ctx *zmq.Context) {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- ctx.Term() }()
	select {
	case err := <-done:
		if err != nil {
			tb.Errorf("zmq context term: %v", err)
		}
	case <-time.After(shutdownTimeout):
		tb.Errorf("zmq context term did not finish within %v (socket left open?)", shutdownTimeout)
	}
}

// newZMQSocket creates a socket with linger 0 and bounded send/recv.
func newZMQSocket(ctx *zmq.Context, t zmq.Type) (*zmq.Socket, error) {
	s, err := ctx.NewSocket(t)
	if err != nil {
		return nil, fmt.Errorf("new %v socket: %w", t, err)
	}
	for _, set := range []func() error{
		func() error { return s.SetLinger(0) },
		func() error { return s.SetSndtimeo(ioTimeout) },
		func() error { return s.SetRcvtimeo(ioTimeout) },
	} {
		if err := set(); err != nil {
			s.Close()
			return nil, fmt.Errorf("configure %v socket: %w", t, err)
		}
	}
	return s, nil
}

func mustZMQSocket(tb testing.TB, ctx *zmq.Context, t zmq.Type) *zmq.Socket {
	tb.Helper()
	s, err := newZMQSocket(ctx, t)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func closeZMQSocket(tb testing.TB, s *zmq.Socket) {
	tb.Helper()
	if err := s.Close(); err != nil {
		tb.Errorf("close socket: %v", err)
	}
}

// bindLoopback binds s to an ephemeral TCP port on 127.0.0.1 and returns the
// real endpoint.
func bindLoopback(s *zmq.Socket) (string, error) {
	if err := s.Bind("tcp://127.0.0.1:*"); err != nil {
		return "", fmt.Errorf("bind: %w", err)
	}
	ep, err := s.GetLastEndpoint()
	if err != nil {
		return "", fmt.Errorf("last endpoint: %w", err)
	}
	return ep, nil
}

func isEAGAIN(err error) bool {
	return zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN)
}

// zmqRoundTrip sends the payload on a DEALER and waits for the echo.
func zmqRoundTrip(s *zmq.Socket) error {
	if _, err := s.SendBytes(payload, 0); err != nil {
		return fmt.Errorf("dealer send: %w", err)
	}
	reply, err := s.RecvBytes(0)
	if err != nil {
		return fmt.Errorf("dealer recv: %w", err)
	}
	if len(reply) != payloadSize {
		return fmt.Errorf("dealer recv: got %d bytes, want %d", len(reply), payloadSize)
	}
	return nil
}

// routerEcho is a ROUTER echo server running in its own goroutine. The
// goroutine owns the ROUTER; it is stopped through an inproc PAIR socket that
// it polls together with the ROUTER, so no socket is touched from two
// goroutines.
type routerEcho struct {
	endpoint string
	stop     *zmq.Socket // PAIR, owned by the goroutine that started the server
	done     chan error
}

func startRouterEcho(tb testing.TB, ctx *zmq.Context) *routerEcho {
	tb.Helper()
	stopEndpoint := fmt.Sprintf("inproc://router-echo-stop-%d", inprocSeq.Add(1))
	stop := mustZMQSocket(tb, ctx, zmq.PAIR)
	if err := stop.Bind(stopEndpoint); err != nil {
		closeZMQSocket(tb, stop)
		tb.Fatalf("bind stop socket: %v", err)
	}
	ready := make(chan string, 1)
	srv := &routerEcho{stop: stop, done: make(chan error, 1)}
	go func() { srv.done <- serveRouterEcho(ctx, stopEndpoint, ready) }()
	select {
	case ep := <-ready:
		srv.endpoint = ep
		return srv
	case err := <-srv.done:
		closeZMQSocket(tb, stop)
		tb.Fatalf("router echo server: %v", err)
	case <-time.After(shutdownTimeout):
		closeZMQSocket(tb, stop)
		tb.Fatalf("router echo server did not start within %v", shutdownTimeout)
	}
	return nil
}

// shutdown signals the server, waits for it to exit and closes the stop socket.
func (srv *routerEcho) shutdown(tb testing.TB) {
	tb.Helper()
	defer closeZMQSocket(tb, srv.stop)
	if _, err := srv.stop.SendBytes([]byte{0}, 0); err != nil {
		tb.Errorf("signal router echo stop: %v", err)
		return
	}
	select {
	case err := <-srv.done:
		if err != nil {
			tb.Errorf("router echo server: %v", err)
		}
	case <-time.After(shutdownTimeout):
		tb.Errorf("router echo server did not stop within %v", shutdownTimeout)
	}
}

func serveRouterEcho(ctx *zmq.Context, stopEndpoint string, ready chan<- string) (err error) {
	router, err := newZMQSocket(ctx, zmq.ROUTER)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, router.Close()) }()
	// Fail loudly instead of silently dropping a reply (ROUTER drops
	// unroutable messages by default).
	if err := router.SetRouterMandatory(1); err != nil {
		return fmt.Errorf("router mandatory: %w", err)
	}
	ep, err := bindLoopback(router)
	if err != nil {
		return err
	}

	stopRx, err := newZMQSocket(ctx, zmq.PAIR)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopRx.Close()) }()
	if err := stopRx.Connect(stopEndpoint); err != nil {
		return fmt.Errorf("connect stop socket: %w", err)
	}

	poller := zmq.NewPoller()
	poller.Add(router, zmq.POLLIN)
	poller.Add(stopRx, zmq.POLLIN)
	ready <- ep

	frames := make([][]byte, 0, 4)
	for {
		// The timeout only makes the loop re-check; stopping is driven by
		// the stop socket.
		polled, err := poller.Poll(time.Second)
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		for _, p := range polled {
			if p.Socket == stopRx {
				return nil
			}
		}
		// Drain everything the ROUTER has queued, echoing each message
		// (all frames, starting with the peer identity) back.
		for {
			frames = frames[:0]
			f, err := router.RecvBytes(zmq.DONTWAIT)
			if err != nil {
				if isEAGAIN(err) {
					break
				}
				return fmt.Errorf("router recv: %w", err)
			}
			frames = append(frames, f)
			for {
				more, err := router.GetRcvmore()
				if err != nil {
					return fmt.Errorf("router rcvmore: %w", err)
				}
				if !more {
					break
				}
				f, err := router.RecvBytes(0)
				if err != nil {
					return fmt.Errorf("router recv: %w", err)
				}
				frames = append(frames, f)
			}
			for i, f := range frames {
				flag := zmq.SNDMORE
				if i == len(frames)-1 {
					flag = 0
				}
				if _, err := router.SendBytes(f, flag); err != nil {
					return fmt.Errorf("router send: %w", err)
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------
// NATS helpers

const natsEchoSubject = "bench.echo"

func startNATSServer(tb testing.TB) *server.Server {
	tb.Helper()
	return startNATSServerMax(tb, 0)
}

// startNATSServerMax starts a server whose payload limit is maxPayload
// bytes (0: the server's default, 1 MiB).
func startNATSServerMax(tb testing.TB, maxPayload int32) *server.Server {
	tb.Helper()
	s, err := server.NewServer(&server.Options{
		Host:       "127.0.0.1",
		Port:       -1,
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: maxPayload,
	})
	if err != nil {
		tb.Fatalf("nats server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(shutdownTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		tb.Fatalf("nats server not ready within %v", shutdownTimeout)
	}
	return s
}

func stopNATSServer(tb testing.TB, s *server.Server) {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		s.Shutdown()
		s.WaitForShutdown()
		close(done)
	}()
	if !waitWithTimeout(done, shutdownTimeout) {
		tb.Errorf("nats server did not shut down within %v", shutdownTimeout)
	}
}

// natsConn is a connection plus a channel closed once it is fully closed, and
// a sink for asynchronous errors (e.g. slow consumer), which would otherwise
// only show up as a missing message.
type natsConn struct {
	*nats.Conn
	closed chan struct{}
	async  errSink
}

func connectNATS(tb testing.TB, s *server.Server, name string) *natsConn {
	tb.Helper()
	c := &natsConn{closed: make(chan struct{})}
	nc, err := nats.Connect(s.ClientURL(),
		nats.Name(name),
		nats.Timeout(ioTimeout),
		nats.DrainTimeout(shutdownTimeout),
		nats.NoReconnect(),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.async.add(fmt.Errorf("nats %s async error: %w", name, err))
		}),
	)
	if err != nil {
		tb.Fatalf("nats connect %s: %v", name, err)
	}
	c.Conn = nc
	return c
}

// drain drains the connection (unsubscribing and flushing) and waits until it
// is closed.
func (c *natsConn) drain(tb testing.TB) {
	tb.Helper()
	if err := c.Drain(); err != nil {
		tb.Errorf("nats drain: %v", err)
		c.Close()
	}
	if !waitWithTimeout(c.closed, shutdownTimeout) {
		tb.Errorf("nats connection not closed within %v after drain", shutdownTimeout)
		c.Close()
	}
	c.async.report(tb)
}

// startNATSEchoResponder subscribes a responder (on its own connection) that
// echoes every request back.
func startNATSEchoResponder(tb testing.TB, s *server.Server) *natsConn {
	tb.Helper()
	resp := connectNATS(tb, s, "echo-responder")
	_, err := resp.Subscribe(natsEchoSubject, func(m *nats.Msg) {
		if err := m.Respond(m.Data); err != nil {
			resp.async.add(fmt.Errorf("respond: %w", err))
		}
	})
	if err == nil {
		err = resp.Flush() // subscription is registered on the server
	}
	if err != nil {
		resp.drain(tb)
		tb.Fatalf("nats responder: %v", err)
	}
	return resp
}

func natsRoundTrip(nc *nats.Conn) error {
	m, err := nc.Request(natsEchoSubject, payload, ioTimeout)
	if err != nil {
		return fmt.Errorf("nats request: %w", err)
	}
	if len(m.Data) != payloadSize {
		return fmt.Errorf("nats reply: got %d bytes, want %d", len(m.Data), payloadSize)
	}
	return nil
}

// counter counts deliveries and closes done when target is reached.
type counter struct {
	n      atomic.Int64
	target int64
	done   chan struct{}
}

func newCounter(target int) *counter {
	return &counter{target: int64(target), done: make(chan struct{})}
}

func (c *counter) inc() {
	if c.n.Add(1) == c.target {
		close(c.done)
	}
}

// waitCounters waits until every counter reached its target, failing if
// none of them makes progress for stallTimeout.
func waitCounters(cs []*counter) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	total := func() (s int64) {
		for _, c := range cs {
			s += c.n.Load()
		}
		return s
	}
	last, lastChange := total(), time.Now()
	for _, c := range cs {
		for {
			select {
			case <-c.done:
			case <-tick.C:
				if t := total(); t != last {
					last, lastChange = t, time.Now()
				} else if time.Since(lastChange) > stallTimeout {
					return fmt.Errorf("stalled: %d of %d deliveries after %v without progress",
						t, int64(len(cs))*cs[0].target, stallTimeout)
				}
				continue
			}
			break
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Scenarios: raw ZMQ

// zmqEchoSequential: one DEALER, send + blocking recv, n times.
// Returns per-op latencies. With twoContexts the DEALER lives in a context
// of its own, as it would in another process: two libzmq I/O threads, as
// between two zmqmsg nodes; otherwise both ends share one I/O thread.
func zmqEchoSequential(tb testing.TB, tm timer, n int, twoContexts bool) []time.Duration {
	ctx := newZMQContext(tb)
	defer termZMQContext(tb, ctx)
	srv := startRouterEcho(tb, ctx)
	defer srv.shutdown(tb)

	cctx := ctx
	if twoContexts {
		cctx = newZMQContext(tb)
		defer termZMQContext(tb, cctx)
	}
	dealer := mustZMQSocket(tb, cctx, zmq.DEALER)
	defer closeZMQSocket(tb, dealer)
	if err := dealer.Connect(srv.endpoint); err != nil {
		tb.Fatalf("dealer connect: %v", err)
	}
	if err := zmqRoundTrip(dealer); err != nil { // warm-up: connection established
		tb.Fatal(err)
	}

	return timedLoop(tb, tm, n, func() error { return zmqRoundTrip(dealer) })
}

// zmqEchoConcurrent: `callers` goroutines, each with its own DEALER, doing n
// round trips in total. Returns the wall time of the measured part.
func zmqEchoConcurrent(tb testing.TB, tm timer, n, callers int, twoContexts bool) time.Duration {
	ctx := newZMQContext(tb)
	defer termZMQContext(tb, ctx)
	srv := startRouterEcho(tb, ctx)
	defer srv.shutdown(tb)
	cctx := ctx
	if twoContexts {
		cctx = newZMQContext(tb)
		defer termZMQContext(tb, cctx)
	}

	socks := make([]*zmq.Socket, 0, callers)
	defer func() {
		for _, s := range socks {
			closeZMQSocket(tb, s)
		}
	}()
	for range callers {
		s := mustZMQSocket(tb, cctx, zmq.DEALER)
		socks = append(socks, s)
		if err := s.Connect(srv.endpoint); err != nil {
			tb.Fatalf("dealer connect: %v", err)
		}
		if err := zmqRoundTrip(s); err != nil { // warm-up
			tb.Fatal(err)
		}
	}

	per := split(n, callers)
	var wg sync.WaitGroup
	var errs errSink
	tm.ResetTimer()
	start := time.Now()
	for i, s := range socks { // socks[i] is used only by goroutine i
		wg.Go(func() {
			for range per[i] {
				if err := zmqRoundTrip(s); err != nil {
					errs.add(err)
					return
				}
			}
		})
	}
	wg.Wait() // bounded: every recv has a timeout
	elapsed := time.Since(start)
	tm.StopTimer()
	errs.report(tb)
	return elapsed
}

// zmqPushPull: PUSH n messages to one PULL; returns the time until the
// receiver has counted all n.
func zmqPushPull(tb testing.TB, tm timer, n int) time.Duration {
	ctx := newZMQContext(tb)
	defer termZMQContext(tb, ctx)

	pull := mustZMQSocket(tb, ctx, zmq.PULL)
	defer closeZMQSocket(tb, pull)
	push := mustZMQSocket(tb, ctx, zmq.PUSH)
	defer closeZMQSocket(tb, push)
	for _, err := range []error{pull.SetRcvhwm(zmqHWM), push.SetSndhwm(zmqHWM)} {
		if err != nil {
			tb.Fatalf("set hwm: %v", err)
		}
	}
	ep, err := bindLoopback(pull)
	if err != nil {
		tb.Fatal(err)
	}
	if err := push.Connect(ep); err != nil {
		tb.Fatalf("push connect: %v", err)
	}
	// Warm-up (connection established), received here before the receiver
	// goroutine takes over the PULL socket.
	if _, err := push.SendBytes(payload, 0); err != nil {
		tb.Fatalf("push send: %v", err)
	}
	if _, err := pull.RecvBytes(0); err != nil {
		tb.Fatalf("pull recv: %v", err)
	}

	recvDone := make(chan error, 1)
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
	var sendErr error
	for i := range n {
		if _, err := push.SendBytes(payload, 0); err != nil {
			sendErr = fmt.Errorf("push send %d/%d: %w", i, n, err)
			break
		}
	}
	recvErr := <-recvDone // bounded by the PULL's receive timeout
	elapsed := time.Since(start)
	tm.StopTimer()
	if err := errors.Join(sendErr, recvErr); err != nil {
		tb.Fatal(err)
	}
	return elapsed
}

// zmqPubSub: XPUB → subs × SUB, n messages each delivered to every
// subscriber; returns the time until every subscriber has counted n.
func zmqPubSub(tb testing.TB, tm timer, n, subs int) time.Duration {
	ctx := newZMQContext(tb)
	defer termZMQContext(tb, ctx)

	pub := mustZMQSocket(tb, ctx, zmq.XPUB)
	defer closeZMQSocket(tb, pub)
	for _, err := range []error{
		pub.SetSndhwm(zmqHWM),
		pub.SetXpubVerbose(1),   // pass every subscription up, not just the first per topic
		pub.SetXpubNodrop(true), // block (bounded by SNDTIMEO) instead of dropping at HWM
	} {
		if err != nil {
			tb.Fatalf("configure xpub: %v", err)
		}
	}
	ep, err := bindLoopback(pub)
	if err != nil {
		tb.Fatal(err)
	}

	socks := make([]*zmq.Socket, 0, subs)
	defer func() {
		for _, s := range socks {
			closeZMQSocket(tb, s)
		}
	}()
	for range subs {
		s := mustZMQSocket(tb, ctx, zmq.SUB)
		socks = append(socks, s)
		for _, err := range []error{s.SetRcvhwm(zmqHWM), s.SetSubscribe(""), s.Connect(ep)} {
			if err != nil {
				tb.Fatalf("configure sub: %v", err)
			}
		}
	}
	// Slow-joiner guard: wait until the XPUB has seen every subscription.
	for seen := 0; seen < subs; {
		f, err := pub.RecvBytes(0)
		if err != nil {
			tb.Fatalf("xpub waiting for subscriptions (%d/%d): %v", seen, subs, err)
		}
		if len(f) > 0 && f[0] == 1 {
			seen++
		}
	}

	var wg sync.WaitGroup
	var errs errSink
	tm.ResetTimer()
	start := time.Now()
	for _, s := range socks { // each SUB is used only by its goroutine
		wg.Go(func() {
			for i := range n {
				m, err := s.RecvBytes(0)
				if err != nil {
					errs.add(fmt.Errorf("sub recv %d/%d: %w", i, n, err))
					return
				}
				if len(m) != payloadSize {
					errs.add(fmt.Errorf("sub recv: got %d bytes", len(m)))
					return
				}
			}
		})
	}
	for i := range n {
		if _, err := pub.SendBytes(payload, 0); err != nil {
			errs.add(fmt.Errorf("pub send %d/%d: %w", i, n, err))
			break
		}
	}
	wg.Wait() // bounded by the SUBs' receive timeout
	elapsed := time.Since(start)
	tm.StopTimer()
	errs.report(tb)
	return elapsed
}

// ---------------------------------------------------------------------------
// Scenarios: NATS

func natsRequestSequential(tb testing.TB, tm timer, n int) []time.Duration {
	srv := startNATSServer(tb)
	defer stopNATSServer(tb, srv)
	resp := startNATSEchoResponder(tb, srv)
	defer resp.drain(tb)
	cli := connectNATS(tb, srv, "requester")
	defer cli.drain(tb)
	if err := natsRoundTrip(cli.Conn); err != nil { // warm-up (response mux subscription)
		tb.Fatal(err)
	}

	return timedLoop(tb, tm, n, func() error { return natsRoundTrip(cli.Conn) })
}

// natsRequestConcurrent: callers goroutines sharing ONE connection.
func natsRequestConcurrent(tb testing.TB, tm timer, n, callers int) time.Duration {
	srv := startNATSServer(tb)
	defer stopNATSServer(tb, srv)
	resp := startNATSEchoResponder(tb, srv)
	defer resp.drain(tb)
	cli := connectNATS(tb, srv, "requester")
	defer cli.drain(tb)
	if err := natsRoundTrip(cli.Conn); err != nil { // warm-up
		tb.Fatal(err)
	}

	per := split(n, callers)
	var wg sync.WaitGroup
	var errs errSink
	tm.ResetTimer()
	start := time.Now()
	for i := range callers {
		wg.Go(func() {
			for range per[i] {
				if err := natsRoundTrip(cli.Conn); err != nil {
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
	return elapsed
}

// natsPublish publishes n messages on one connection; the subscribers (each
// on its own connection) are created by subscribe. queue != "" makes them
// queue-group members (each message delivered once), otherwise every
// subscriber gets every message. Returns the time until all deliveries.
func natsPublish(tb testing.TB, tm timer, n, subs int, queue string) time.Duration {
	const subject = "bench.pub"
	srv := startNATSServer(tb)
	defer stopNATSServer(tb, srv)

	// Queue group: one counter shared by the whole group (each message is
	// delivered once). Fan-out: one counter per subscriber.
	shared := newCounter(n)
	var counters []*counter
	if queue != "" {
		counters = append(counters, shared)
	}
	for i := range subs {
		c := shared
		if queue == "" {
			c = newCounter(n)
			counters = append(counters, c)
		}
		sc := connectNATS(tb, srv, fmt.Sprintf("subscriber-%d", i))
		defer sc.drain(tb)
		handler := func(*nats.Msg) { c.inc() }
		var sub *nats.Subscription
		var err error
		if queue != "" {
			sub, err = sc.QueueSubscribe(subject, queue, handler)
		} else {
			sub, err = sc.Subscribe(subject, handler)
		}
		if err == nil {
			// No client-side drops: a drop would only show up as a stall.
			err = sub.SetPendingLimits(-1, -1)
		}
		if err == nil {
			err = sc.Flush() // subscription registered before publishing
		}
		if err != nil {
			tb.Fatalf("subscribe: %v", err)
		}
	}

	pub := connectNATS(tb, srv, "publisher")
	defer pub.drain(tb)

	tm.ResetTimer()
	start := time.Now()
	for i := range n {
		if err := pub.Publish(subject, payload); err != nil {
			tb.Fatalf("publish %d/%d: %v", i, n, err)
		}
	}
	if err := pub.FlushTimeout(stallTimeout); err != nil {
		tb.Fatalf("publisher flush: %v", err)
	}
	err := waitCounters(counters)
	elapsed := time.Since(start)
	tm.StopTimer()
	if err != nil {
		tb.Fatal(err)
	}
	return elapsed
}

// ---------------------------------------------------------------------------
// Benchmarks

// contextsCases: "contexts=1" puts both ends in one zmq context (one libzmq
// I/O thread does both sides of the TCP connection); "contexts=2" gives each
// end its own, as two processes, or two zmqmsg nodes, have.
var contextsCases = []struct {
	name string
	two  bool
}{{"contexts=1", false}, {"contexts=2", true}}

func BenchmarkRawZMQ_DealerRouterEcho_Sequential(b *testing.B) {
	for _, c := range contextsCases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			cgo := runtime.NumCgoCall()
			lat := zmqEchoSequential(b, b, b.N, c.two)
			reportLatency(b, lat)
			reportCgo(b, cgo)
		})
	}
}

func BenchmarkRawZMQ_DealerRouterEcho_Concurrent(b *testing.B) {
	for _, c := range contextsCases {
		for _, callers := range []int{16, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", c.name, callers), func(b *testing.B) {
				b.ReportAllocs()
				elapsed := zmqEchoConcurrent(b, b, b.N, callers, c.two)
				reportRate(b, b.N, elapsed, "calls/s")
			})
		}
	}
}

func BenchmarkNATS_RequestReply_Sequential(b *testing.B) {
	b.ReportAllocs()
	lat := natsRequestSequential(b, b, b.N)
	reportLatency(b, lat)
}

func BenchmarkNATS_RequestReply_Concurrent(b *testing.B) {
	for _, callers := range []int{16, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			b.ReportAllocs()
			elapsed := natsRequestConcurrent(b, b, b.N, callers)
			reportRate(b, b.N, elapsed, "calls/s")
		})
	}
}

func BenchmarkRawZMQ_PushPull(b *testing.B) {
	b.ReportAllocs()
	elapsed := zmqPushPull(b, b, b.N)
	reportRate(b, b.N, elapsed, "msgs/s")
}

func BenchmarkRawZMQ_PubSub(b *testing.B) {
	for _, subs := range []int{1, 8} {
		b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
			b.ReportAllocs()
			elapsed := zmqPubSub(b, b, b.N, subs)
			reportRate(b, b.N*subs, elapsed, "deliveries/s")
		})
	}
}

func BenchmarkNATS_Publish_QueueSub(b *testing.B) {
	b.ReportAllocs()
	elapsed := natsPublish(b, b, b.N, 1, "workers")
	reportRate(b, b.N, elapsed, "msgs/s")
}

func BenchmarkNATS_PublishFanout(b *testing.B) {
	for _, subs := range []int{1, 8} {
		b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
			b.ReportAllocs()
			elapsed := natsPublish(b, b, b.N, subs, "")
			reportRate(b, b.N*subs, elapsed, "deliveries/s")
		})
	}
}

// ---------------------------------------------------------------------------
// Smoke test: every scenario end to end with a small count (useful with
// -race, and checks that nothing is left running).

func TestBaselines(t *testing.T) {
	const n = 300
	checkLat := func(t *testing.T, lat []time.Duration) {
		if len(lat) != n || slices.Contains(lat, 0) {
			t.Errorf("latencies not fully recorded")
		}
	}
	t.Run("RawZMQ_DealerRouterEcho_Sequential", func(t *testing.T) {
		checkLat(t, zmqEchoSequential(t, noTimer{}, n, false))
		checkLat(t, zmqEchoSequential(t, noTimer{}, n, true))
	})
	t.Run("RawZMQ_DealerRouterEcho_Concurrent", func(t *testing.T) {
		zmqEchoConcurrent(t, noTimer{}, n, 16, true)
	})
	t.Run("NATS_RequestReply_Sequential", func(t *testing.T) {
		checkLat(t, natsRequestSequential(t, noTimer{}, n))
	})
	t.Run("NATS_RequestReply_Concurrent", func(t *testing.T) {
		natsRequestConcurrent(t, noTimer{}, n, 16)
	})
	t.Run("RawZMQ_PushPull", func(t *testing.T) {
		zmqPushPull(t, noTimer{}, n)
	})
	t.Run("RawZMQ_PubSub", func(t *testing.T) {
		zmqPubSub(t, noTimer{}, n, 8)
	})
	t.Run("NATS_Publish_QueueSub", func(t *testing.T) {
		natsPublish(t, noTimer{}, n, 1, "workers")
	})
	t.Run("NATS_PublishFanout", func(t *testing.T) {
		natsPublish(t, noTimer{}, n, 8, "")
	})
}

func TestPercentile(t *testing.T) {
	d := make([]time.Duration, 100)
	for i := range d {
		d[i] = time.Duration(i + 1)
	}
	if got := percentile(d, 50); got != 50 {
		t.Errorf("p50 = %v, want 50", got)
	}
	if got := percentile(d, 99); got != 99 {
		t.Errorf("p99 = %v, want 99", got)
	}
	if got := percentile(d[:1], 99); got != 1 {
		t.Errorf("p99 of one = %v, want 1", got)
	}
}
