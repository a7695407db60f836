package socket_test

import (
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	zmq "github.com/pebbe/zmq4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newZMQ returns a fresh zmq context, terminated when the test ends (after
// every cleanup registered later, which closes the sockets).
func newZMQ(t testing.TB) *zmq.Context {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		done := make(chan error, 1)
		go func() { done <- zctx.Term() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("term: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("zmq context did not terminate: a socket was left open")
		}
	})
	return zctx
}

// newSystem returns a quiet actor system, shut down when the test ends.
// Register it after newZMQ so that it shuts down first.
func newSystem(t testing.TB) *actor.ActorSystem {
	t.Helper()
	sys := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }),
		actor.WithDeadLetterThrottleInterval(10*time.Millisecond),
	)
	t.Cleanup(sys.Shutdown)
	return sys
}

// stopActor stops pid and waits for it, as a cleanup.
func stopActor(t testing.TB, sys *actor.ActorSystem, pid *actor.PID) {
	t.Helper()
	t.Cleanup(func() {
		if err := sys.Root.PoisonFuture(pid).Wait(); err != nil {
			t.Errorf("stop %s: %v", pid.Id, err)
		}
	})
}

// waitFor polls cond until it holds or timeout passes. Only for conditions
// that have no event to wait on.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		runtime.Gosched()
		<-time.After(time.Millisecond)
	}
}
