// Package testutil holds the helpers that zmqmsg's test packages share.
// It is imported by tests only.
package testutil

import (
	"bytes"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	zmq "github.com/pebbe/zmq4"
)

// ZMQ returns a fresh zmq context, terminated when the test ends (after
// every cleanup registered later, which closes the sockets). A context that
// does not terminate within 5 s means a socket was left open: the test fails
// instead of hanging.
func ZMQ(t testing.TB) *zmq.Context {
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

// ActorSystem returns a quiet actor system, shut down when the test ends.
// Create it after ZMQ so that it shuts down first.
func ActorSystem(t testing.TB) *actor.ActorSystem {
	t.Helper()
	sys := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }),
		actor.WithDeadLetterThrottleInterval(10*time.Millisecond),
	)
	t.Cleanup(sys.Shutdown)
	return sys
}

// WaitFor polls cond until it holds, or fails the test after timeout. Only
// for conditions (counters) that have no event to wait on.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
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

// LogBuffer collects log output; it is safe for a logger's goroutines and
// the test's at once.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger returns a text logger that writes to b.
func (b *LogBuffer) Logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }
