package poller

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"go.uber.org/goleak"
)

// -poller.stress runs the full stress test that CI runs for both strategies:
// 200k sequential and 200k concurrent round trips from 64 goroutines.
var stress = flag.Bool("poller.stress", false, "run the full 200k+200k round-trip stress test")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func strategies() []Strategy {
	s := []Strategy{StrategyZMQPoller}
	if netpollSupported {
		s = append(s, StrategyNetpoll)
	}
	return s
}

func newContext(t testing.TB) *zmq.Context {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := zctx.Term(); err != nil {
			t.Errorf("term: %v", err)
		}
	})
	return zctx
}

// echoServer is a ROUTER that sends every message back to its sender.
type echoServer struct {
	endpoint string
	bound    string
}

type noCmd struct{}

func (e *echoServer) Setup(l *Loop[noCmd]) error {
	_, z, err := l.NewSocket(zmq.ROUTER, "echo")
	if err != nil {
		return err
	}
	if err := z.Bind(e.endpoint); err != nil {
		return err
	}
	e.bound, err = z.GetLastEndpoint()
	return err
}
func (e *echoServer) HandleMessage(l *Loop[noCmd], sock int, frames [][]byte) {
	if err := l.Send(sock, frames...); err != nil {
		panic(err)
	}
}
func (e *echoServer) HandleCommand(*Loop[noCmd], noCmd)     {}
func (e *echoServer) Deadline() time.Time                   { return time.Time{} }
func (e *echoServer) HandleTimer(*Loop[noCmd], time.Time)   {}
func (e *echoServer) Shutdown(*Loop[noCmd], []noCmd, error) {}
func (e *echoServer) String() string                        { return e.bound }
func (e *echoServer) mustStart(t testing.TB, zctx *zmq.Context, s Strategy) *Loop[noCmd] {
	t.Helper()
	l, err := Start[noCmd](zctx, e, Options{Name: "echo", Strategy: s})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Stop() })
	return l
}

// request is the client loop's command: send payload (the id in decimal
// if empty), answer on reply.
type request struct {
	id      uint64
	payload string
	reply   chan []byte
}

// echoClient is a DEALER that correlates replies by an 8-byte id.
type echoClient struct {
	endpoint string
	pending  map[uint64]chan []byte // loop goroutine only
	bogus    atomic.Int64
}

func (c *echoClient) Setup(l *Loop[*request]) error {
	c.pending = make(map[uint64]chan []byte)
	_, z, err := l.NewSocket(zmq.DEALER, "client")
	if err != nil {
		return err
	}
	return z.Connect(c.endpoint)
}
func (c *echoClient) HandleMessage(l *Loop[*request], _ int, frames [][]byte) {
	if len(frames) != 2 || len(frames[0]) != 8 {
		c.bogus.Add(1)
		return
	}
	id := binary.BigEndian.Uint64(frames[0])
	ch, ok := c.pending[id]
	if !ok {
		c.bogus.Add(1)
		return
	}
	delete(c.pending, id)
	ch <- frames[1] // buffered 1: never blocks
}
func (c *echoClient) HandleCommand(l *Loop[*request], r *request) {
	c.pending[r.id] = r.reply
	var idb [8]byte
	binary.BigEndian.PutUint64(idb[:], r.id)
	payload := r.payload
	if payload == "" {
		payload = fmt.Sprint(r.id)
	}
	if err := l.Send(0, idb[:], []byte(payload)); err != nil {
		panic(err)
	}
}
func (c *echoClient) Deadline() time.Time                    { return time.Time{} }
func (c *echoClient) HandleTimer(*Loop[*request], time.Time) {}
func (c *echoClient) Shutdown(_ *Loop[*request], pending []*request, _ error) {
	for _, r := range pending {
		close(r.reply)
	}
	for _, ch := range c.pending {
		close(ch)
	}
}

func roundTrip(ctx context.Context, l *Loop[*request], id uint64) error {
	r := &request{id: id, reply: make(chan []byte, 1)}
	if err := l.Submit(ctx, r); err != nil {
		return err
	}
	select {
	case b, ok := <-r.reply:
		if !ok {
			return ErrClosed
		}
		if string(b) != fmt.Sprint(id) {
			return fmt.Errorf("mismatched reply %q for %d", b, id)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("round trip %d: %w", id, ctx.Err())
	}
}

func TestStress(t *testing.T) {
	seq, conc := 5000, 5000
	if *stress {
		seq, conc = 200_000, 200_000
	}
	for _, s := range strategies() {
		t.Run(s.String(), func(t *testing.T) {
			zctx := newContext(t)
			srv := &echoServer{endpoint: "tcp://127.0.0.1:*"}
			srv.mustStart(t, zctx, s)
			cli := &echoClient{endpoint: srv.bound}
			l, err := Start[*request](zctx, cli, Options{Name: "client", Strategy: s})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = l.Stop() }()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			var next atomic.Uint64
			for i := 0; i < seq; i++ {
				if err := roundTrip(ctx, l, next.Add(1)); err != nil {
					t.Fatalf("sequential %d: %v", i, err)
				}
			}
			const callers = 64
			var wg sync.WaitGroup
			errs := make(chan error, callers)
			for g := 0; g < callers; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := g; i < conc; i += callers {
						if err := roundTrip(ctx, l, next.Add(1)); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if n := cli.bogus.Load(); n != 0 {
				t.Fatalf("%d unmatched replies", n)
			}
			st := l.Stats()
			if st.Sent != uint64(seq+conc) || st.Received != uint64(seq+conc) {
				t.Fatalf("stats: sent %d received %d, want %d each", st.Sent, st.Received, seq+conc)
			}
		})
	}
}

func TestSetupErrorReturnedAndNothingLeft(t *testing.T) {
	for _, s := range strategies() {
		t.Run(s.String(), func(t *testing.T) {
			zctx := newContext(t)
			first := &echoServer{endpoint: "tcp://127.0.0.1:*"}
			first.mustStart(t, zctx, s)
			second := &echoServer{endpoint: first.bound}
			_, err := Start[noCmd](zctx, second, Options{Name: "dup", Strategy: s})
			if zmq.AsErrno(err) != zmq.EADDRINUSE {
				t.Fatalf("second bind: got %v, want EADDRINUSE", err)
			}
		})
	}
}

// panicky panics on its first command.
type panicky struct{ echoServer }

func (p *panicky) HandleCommand(*Loop[noCmd], noCmd) { panic("boom") }

func TestHandlerPanicBecomesExitError(t *testing.T) {
	for _, s := range strategies() {
		t.Run(s.String(), func(t *testing.T) {
			zctx := newContext(t)
			exited := make(chan error, 1)
			p := &panicky{echoServer{endpoint: "inproc://panicky-" + s.String()}}
			l, err := Start[noCmd](zctx, p, Options{Strategy: s, OnExit: func(err error) { exited <- err }})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Submit(context.Background(), noCmd{}); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				var pe *PanicError
				if !errors.As(err, &pe) || pe.Value != "boom" {
					t.Fatalf("exit error %v, want PanicError(boom)", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("loop did not exit")
			}
			var pe *PanicError
			if err := l.Stop(); !errors.As(err, &pe) {
				t.Fatalf("Stop: %v", err)
			}
			if err := l.Submit(context.Background(), noCmd{}); !errors.Is(err, ErrClosed) {
				t.Fatalf("Submit after exit: %v, want ErrClosed", err)
			}
		})
	}
}

// A command queued but never run reaches Shutdown, so its owner can fail it.
func TestStopHandsPendingCommandsToShutdown(t *testing.T) {
	for _, s := range strategies() {
		t.Run(s.String(), func(t *testing.T) {
			zctx := newContext(t)
			blocked := make(chan struct{})
			g := &gate{entered: make(chan struct{}), release: blocked}
			l, err := Start[int](zctx, g, Options{Strategy: s, QueueSize: 8})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 5; i++ {
				if err := l.Submit(context.Background(), i); err != nil {
					t.Fatal(err)
				}
			}
			<-g.entered // the loop is inside command 0
			stopped := make(chan error, 1)
			go func() { stopped <- l.Stop() }()
			// Stop must refuse new work as soon as it is called; count what
			// got in before that, it must not be lost either.
			accepted := 0
			deadline := time.Now().Add(5 * time.Second)
			for l.TrySubmit(99) || len(l.cmds) == 0 && accepted == 0 {
				accepted++
				if time.Now().After(deadline) {
					t.Fatal("TrySubmit still accepted after Stop")
				}
				runtime.Gosched()
			}
			close(blocked)
			if err := <-stopped; err != nil {
				t.Fatal(err)
			}
			if got := len(g.ran) + len(g.pending); got != 5+accepted || g.ran[0] != 0 {
				t.Fatalf("ran %v pending %v, accepted %d extra: commands lost", g.ran, g.pending, accepted)
			}
		})
	}
}

// gate blocks in its first command until release is closed.
type gate struct {
	entered chan struct{}
	release chan struct{}
	ran     []int
	pending []int
	once    sync.Once
}

func (g *gate) Setup(*Loop[int]) error                  { return nil }
func (g *gate) HandleMessage(*Loop[int], int, [][]byte) {}
func (g *gate) HandleCommand(_ *Loop[int], c int) {
	g.ran = append(g.ran, c)
	g.once.Do(func() { close(g.entered); <-g.release })
}
func (g *gate) Deadline() time.Time               { return time.Time{} }
func (g *gate) HandleTimer(*Loop[int], time.Time) {}
func (g *gate) Shutdown(_ *Loop[int], pending []int, _ error) {
	g.pending = pending
}

// timerHandler asks for a timer and reports when it fired.
type timerHandler struct {
	at    time.Time
	fired chan time.Time
}

func (h *timerHandler) Setup(*Loop[int]) error                  { return nil }
func (h *timerHandler) HandleMessage(*Loop[int], int, [][]byte) {}
func (h *timerHandler) HandleCommand(*Loop[int], int)           {}
func (h *timerHandler) Deadline() time.Time                     { return h.at }
func (h *timerHandler) HandleTimer(_ *Loop[int], now time.Time) {
	h.at = time.Time{}
	h.fired <- now
}
func (h *timerHandler) Shutdown(*Loop[int], []int, error) {}

func TestTicklessTimer(t *testing.T) {
	for _, s := range strategies() {
		t.Run(s.String(), func(t *testing.T) {
			zctx := newContext(t)
			h := &timerHandler{at: time.Now().Add(30 * time.Millisecond), fired: make(chan time.Time, 1)}
			want := h.at
			l, err := Start[int](zctx, h, Options{Strategy: s})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = l.Stop() }()
			select {
			case now := <-h.fired:
				if now.Before(want) {
					t.Fatalf("timer fired early: %v before %v", now, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("timer never fired")
			}
			// Asleep with no deadline, the loop must not spin.
			before := l.Stats().Wakeups
			idle := time.NewTimer(50 * time.Millisecond)
			<-idle.C
			if d := l.Stats().Wakeups - before; d > 2 {
				t.Fatalf("idle loop woke %d times in 50ms", d)
			}
		})
	}
}

// BenchmarkEcho measures one round trip through a client loop and an echo
// loop over TCP: the cost the wait strategies add to a raw DEALER/ROUTER
// echo (bench/ has that baseline).
func BenchmarkEcho(b *testing.B) {
	for _, s := range strategies() {
		for _, callers := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/callers=%d", s, callers), func(b *testing.B) {
				zctx := newContext(b)
				srv := &echoServer{endpoint: "tcp://127.0.0.1:*"}
				srv.mustStart(b, zctx, s)
				l, err := Start[*request](zctx, &echoClient{endpoint: srv.bound}, Options{Strategy: s})
				if err != nil {
					b.Fatal(err)
				}
				defer func() { _ = l.Stop() }()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				var next atomic.Uint64
				for i := 0; i < 100; i++ {
					if err := roundTrip(ctx, l, next.Add(1)); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				var wg sync.WaitGroup
				per := b.N / callers
				for g := 0; g < callers; g++ {
					n := per
					if g == 0 {
						n += b.N % callers
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < n; i++ {
							if err := roundTrip(ctx, l, next.Add(1)); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
			})
		}
	}
}
