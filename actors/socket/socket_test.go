package socket_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/testutil"

	"github.com/asynkron/protoactor-go/actor"
	zmq "github.com/pebbe/zmq4"
	"go.uber.org/goleak"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/socket"
)

// probeCmd asks a probe handler which incarnation it is, or makes it panic.
type probeCmd struct {
	panic bool
	reply chan int
}

// probe is a test handler: it owns one socket (bound to bind, if set) and
// answers probeCmd with its generation.
type probe struct {
	gen       int
	bind      string
	setupErr  error        // when set, Setup fails with it
	shutdowns chan<- error // the cause of every Shutdown, buffered
}

func (p *probe) Setup(l *poller.Loop[*probeCmd]) error {
	if p.setupErr != nil {
		return p.setupErr
	}
	_, z, err := l.NewSocket(zmq.ROUTER, "probe")
	if err != nil {
		return err
	}
	if p.bind != "" {
		if err := z.Bind(p.bind); err != nil {
			return fmt.Errorf("bind %s: %w", p.bind, err)
		}
	}
	return nil
}
func (p *probe) HandleMessage(*poller.Loop[*probeCmd], int, [][]byte) {}
func (p *probe) HandleCommand(_ *poller.Loop[*probeCmd], c *probeCmd) {
	if c.panic {
		panic(fmt.Sprintf("probe %d: told to panic", p.gen))
	}
	c.reply <- p.gen
}
func (p *probe) Deadline() time.Time                            { return time.Time{} }
func (p *probe) HandleTimer(*poller.Loop[*probeCmd], time.Time) {}
func (p *probe) Shutdown(_ *poller.Loop[*probeCmd], pending []*probeCmd, cause error) {
	for _, c := range pending {
		close(c.reply)
	}
	p.shutdowns <- cause
}

// probeSpec returns a spec whose every (re)start makes a new probe.
func probeSpec(zctx *zmq.Context, name, bind string, gens *atomic.Int64, shutdowns chan<- error) socket.Spec[*probeCmd] {
	return socket.Spec[*probeCmd]{
		Name: name,
		ZMQ:  zctx,
		NewHandler: func() poller.Handler[*probeCmd] {
			return &probe{gen: int(gens.Add(1)), bind: bind, shutdowns: shutdowns}
		},
	}
}

// ask submits a probeCmd and returns the generation that answered.
func ask(t *testing.T, h *socket.Handle[*probeCmd]) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := &probeCmd{reply: make(chan int, 1)}
	if err := h.Submit(ctx, c); err != nil {
		t.Fatalf("submit: %v", err)
	}
	select {
	case g, ok := <-c.reply:
		if !ok {
			t.Fatal("command was dropped by a stopping loop")
		}
		return g
	case <-ctx.Done():
		t.Fatal("no answer")
		return 0
	}
}

func nextShutdown(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not shut down")
		return nil
	}
}

// watch returns a channel closed when pid terminates.
func watch(t *testing.T, sys *actor.ActorSystem, pid *actor.PID) <-chan struct{} {
	t.Helper()
	gone := make(chan struct{})
	started := make(chan struct{})
	w := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *actor.Started:
			ctx.Watch(pid)
			close(started)
		case *actor.Terminated:
			if m.Who.Equal(pid) {
				close(gone)
			}
		}
	}))
	stopActor(t, sys, w)
	<-started
	return gone
}

func spawnProbeUnderParent(t *testing.T, sys *actor.ActorSystem, spec socket.Spec[*probeCmd], maxRestarts int) *socket.Handle[*probeCmd] {
	t.Helper()
	parent, err := socket.SpawnParent(sys.Root, "sockets", socket.NewStrategy(maxRestarts, time.Minute), nil)
	if err != nil {
		t.Fatal(err)
	}
	stopActor(t, sys, parent)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var h *socket.Handle[*probeCmd]
	err = socket.SpawnUnder(ctx, sys.Root, parent, func(pc actor.SpawnerContext) error {
		var err error
		h, err = socket.Spawn(pc, spec)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// submitWhenUp retries while the socket is between loops.
func submitWhenUp(t *testing.T, h *socket.Handle[*probeCmd]) int {
	t.Helper()
	var gen int
	testutil.WaitFor(t, 5*time.Second, "the restarted loop to take commands", func() bool {
		c := &probeCmd{reply: make(chan int, 1)}
		err := h.Submit(context.Background(), c)
		if errors.Is(err, socket.ErrUnavailable) {
			return false
		}
		if err != nil {
			t.Fatalf("submit: %v", err)
		}
		g, ok := <-c.reply
		if !ok {
			return false // queued on a loop that stopped under us
		}
		gen = g
		return true
	})
	return gen
}

func TestSupervisionRestartsAfterPanic(t *testing.T) {
	zctx := testutil.ZMQ(t)
	sys := testutil.ActorSystem(t)
	var gens atomic.Int64
	shutdowns := make(chan error, 16)
	h := spawnProbeUnderParent(t, sys, probeSpec(zctx, "probe", "", &gens, shutdowns), 5)

	if g := ask(t, h); g != 1 {
		t.Fatalf("first loop answered as generation %d", g)
	}
	if h.Restarts() != 0 {
		t.Fatalf("restarts %d before any failure", h.Restarts())
	}
	if err := h.Submit(context.Background(), &probeCmd{panic: true}); err != nil {
		t.Fatal(err)
	}
	var pe *poller.PanicError
	if cause := nextShutdown(t, shutdowns); !errors.As(cause, &pe) {
		t.Fatalf("failed loop shut down with %v, want a *poller.PanicError", cause)
	}
	testutil.WaitFor(t, 5*time.Second, "Restarts() == 1", func() bool { return h.Restarts() == 1 })
	if g := submitWhenUp(t, h); g != 2 {
		t.Fatalf("after the restart the command was served by generation %d, want 2", g)
	}
	if g := ask(t, h); g != 2 {
		t.Fatalf("later command served by generation %d, want 2", g)
	}
	if n := gens.Load(); n != 2 {
		t.Fatalf("%d handlers created, want 2", n)
	}
	if h.Restarts() != 1 {
		t.Fatalf("restarts %d, want 1", h.Restarts())
	}
}

// TestSupervisionRestartSetupFails: when the loop of a restart fails to
// start (Setup returns an error the Decider restarts on), that failure must
// reach the supervisor like any other, so that the actor is restarted again
// (or stopped), not left alive without a loop.
func TestSupervisionRestartSetupFails(t *testing.T) {
	zctx := testutil.ZMQ(t)
	sys := testutil.ActorSystem(t)
	var gens atomic.Int64
	shutdowns := make(chan error, 16)
	setupErr := errors.New("transient setup failure")
	spec := socket.Spec[*probeCmd]{
		Name: "flaky",
		ZMQ:  zctx,
		NewHandler: func() poller.Handler[*probeCmd] {
			p := &probe{gen: int(gens.Add(1)), shutdowns: shutdowns}
			if p.gen == 2 { // the first restart fails to start
				p.setupErr = setupErr
			}
			return p
		},
	}
	if socket.Decider(&socket.LoopError{Socket: "flaky", Err: setupErr}) != actor.RestartDirective {
		t.Fatal("the Decider does not restart on a plain setup error")
	}
	h := spawnProbeUnderParent(t, sys, spec, 5)
	if g := ask(t, h); g != 1 {
		t.Fatalf("generation %d", g)
	}
	if err := h.Submit(context.Background(), &probeCmd{panic: true}); err != nil {
		t.Fatal(err)
	}
	nextShutdown(t, shutdowns)
	testutil.WaitFor(t, 5*time.Second, "a second handler", func() bool { return gens.Load() >= 2 })
	// Generation 2 failed in Setup; generation 3 must take over.
	var gen int
	deadline := time.Now().Add(3 * time.Second)
	for {
		c := &probeCmd{reply: make(chan int, 1)}
		err := h.Submit(context.Background(), c)
		if err == nil {
			if g, ok := <-c.reply; ok {
				gen = g
				break
			}
		} else if !errors.Is(err, socket.ErrUnavailable) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no loop 3s after a failed restart: %d handlers created, %d restarts, Submit: %v (the restart's setup error was swallowed)",
				gens.Load(), h.Restarts(), err)
		}
		<-time.After(time.Millisecond)
	}
	if gen != 3 || h.Restarts() != 2 {
		t.Fatalf("served by generation %d after %d restarts, want generation 3 after 2", gen, h.Restarts())
	}
}

// TestSupervisionGivesUp: past the strategy's restart budget the socket
// actor is stopped and its Handle refuses work.
func TestSupervisionGivesUp(t *testing.T) {
	zctx := testutil.ZMQ(t)
	sys := testutil.ActorSystem(t)
	var gens atomic.Int64
	shutdowns := make(chan error, 16)
	const budget = 2
	h := spawnProbeUnderParent(t, sys, probeSpec(zctx, "probe", "", &gens, shutdowns), budget)
	gone := watch(t, sys, h.PID())
	for i := 0; i <= budget; i++ {
		if g := submitWhenUp(t, h); g != i+1 {
			t.Fatalf("round %d served by generation %d", i, g)
		}
		if err := h.Submit(context.Background(), &probeCmd{panic: true}); err != nil {
			t.Fatal(err)
		}
		nextShutdown(t, shutdowns)
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("socket actor not stopped after exhausting its restart budget")
	}
	if r := h.Restarts(); r != budget {
		t.Fatalf("restarts %d, want %d", r, budget)
	}
	if err := h.Submit(context.Background(), &probeCmd{reply: make(chan int, 1)}); !errors.Is(err, socket.ErrUnavailable) {
		t.Fatalf("submit to a stopped socket: %v, want ErrUnavailable", err)
	}
	if n := gens.Load(); n != budget+1 {
		t.Fatalf("%d handlers created, want %d", n, budget+1)
	}
}

// occupy binds a ROUTER (owned by the test goroutine) and returns its endpoint.
func occupy(t *testing.T, zctx *zmq.Context) string {
	t.Helper()
	z, err := zctx.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = z.Close() })
	if err := z.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if err := z.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, err := z.GetLastEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func TestSpawnReturnsBindError(t *testing.T) {
	zctx := testutil.ZMQ(t)
	sys := testutil.ActorSystem(t)
	taken := occupy(t, zctx)
	var gens atomic.Int64
	shutdowns := make(chan error, 16)
	before := goleak.IgnoreCurrent()

	h, err := socket.Spawn(sys.Root, probeSpec(zctx, "taken", taken, &gens, shutdowns))
	if err == nil {
		stopActor(t, sys, h.PID())
		t.Fatalf("Spawn on a taken endpoint %s succeeded", taken)
	}
	if !errors.Is(err, zmq.Errno(syscall.EADDRINUSE)) {
		t.Fatalf("Spawn: %v, want EADDRINUSE", err)
	}
	if socket.Decider(err) != actor.StopDirective {
		t.Fatalf("Decider(%v) = %v, want stop", err, socket.Decider(err))
	}
	if h != nil {
		t.Fatal("Spawn returned a handle with its error")
	}
	// The loop, its goroutines and the actor are all gone.
	goleak.VerifyNone(t, before)
	if n := gens.Load(); n != 1 {
		t.Fatalf("%d handlers created, want 1", n)
	}
	// The name is free again: the actor was stopped, not left behind.
	h, err = socket.Spawn(sys.Root, probeSpec(zctx, "taken", "tcp://127.0.0.1:*", &gens, shutdowns))
	if err != nil {
		t.Fatalf("respawn under the same name: %v", err)
	}
	stopActor(t, sys, h.PID())
	if g := ask(t, h); g != 2 {
		t.Fatalf("generation %d", g)
	}
}

func TestDecider(t *testing.T) {
	eterm := zmq.ETERM
	inUse := zmq.Errno(syscall.EADDRINUSE)
	cases := []struct {
		name   string
		reason any
		want   actor.Directive
	}{
		{"ETERM", eterm, actor.StopDirective},
		{"EADDRINUSE", inUse, actor.StopDirective},
		{"LoopError ETERM", &socket.LoopError{Socket: "s", Err: eterm}, actor.StopDirective},
		{"LoopError wrapped EADDRINUSE", &socket.LoopError{Socket: "s", Err: fmt.Errorf("bind tcp://x: %w", inUse)}, actor.StopDirective},
		{"wrapped LoopError EADDRINUSE", fmt.Errorf("start: %w", &socket.LoopError{Socket: "s", Err: fmt.Errorf("setup: %w", fmt.Errorf("bind: %w", inUse))}), actor.StopDirective},
		{"wrapped LoopError ETERM", fmt.Errorf("x: %w", &socket.LoopError{Socket: "s", Err: fmt.Errorf("events: %w", eterm)}), actor.StopDirective},
		{"joined ETERM", errors.Join(errors.New("other"), eterm), actor.StopDirective},
		{"PanicError", &poller.PanicError{Value: "boom"}, actor.RestartDirective},
		{"LoopError PanicError", &socket.LoopError{Socket: "s", Err: &poller.PanicError{Value: "boom"}}, actor.RestartDirective},
		{"wrapped LoopError PanicError", fmt.Errorf("x: %w", &socket.LoopError{Socket: "s", Err: &poller.PanicError{Value: 1}}), actor.RestartDirective},
		{"other errno", &socket.LoopError{Socket: "s", Err: zmq.Errno(syscall.ECONNREFUSED)}, actor.RestartDirective},
		{"EHOSTUNREACH", &socket.LoopError{Socket: "s", Err: zmq.EHOSTUNREACH}, actor.RestartDirective},
		{"plain error", errors.New("socket broke"), actor.RestartDirective},
		{"non-error panic value", "a string", actor.RestartDirective},
		{"nil", nil, actor.RestartDirective},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := socket.Decider(c.reason); got != c.want {
				t.Fatalf("Decider(%v) = %v, want %v", c.reason, got, c.want)
			}
		})
	}
}

// StartSupervised whose ctx ends while the socket is starting either
// returns the ctx's error with nothing left running, or the started pair:
// never nil, nil, nil, and never a race with the late spawn (-race).
func TestStartSupervisedTimeout(t *testing.T) {
	zctx := testutil.ZMQ(t)
	sys := testutil.ActorSystem(t)
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		spec := socket.Spec[*probeCmd]{
			Name: "slow", ZMQ: zctx,
			NewHandler: func() poller.Handler[*probeCmd] {
				cancel() // the caller gives up while the socket starts
				return &probe{shutdowns: make(chan error, 1)}
			},
		}
		parent, h, err := socket.StartSupervised(ctx, sys.Root, fmt.Sprintf("slow-%d", i), spec)
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			t.Fatalf("run %d: %v, want context.Canceled", i, err)
		case err == nil && (parent == nil || h == nil):
			t.Fatalf("run %d: nil parent or handle without an error", i)
		case err == nil:
			if err := sys.Root.StopFuture(parent).Wait(); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
	}
}
