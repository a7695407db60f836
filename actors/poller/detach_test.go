package poller

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// detachServer echoes like echoServer, running each handler with
// Detachable: "block" waits for release first ("panic" then panics), any
// other payload returns at once. A handler that lost the loop answers
// through a command.
type detachServer struct {
	bound   string
	release chan struct{}
	handle  atomic.Pointer[Loop[[][]byte]]
	owners  atomic.Int64 // Detachable calls that kept the loop
}

func (d *detachServer) Setup(l *Loop[[][]byte]) error {
	_, z, err := l.NewSocket(zmq.ROUTER, "echo")
	if err != nil {
		return err
	}
	if err := z.Bind("tcp://127.0.0.1:*"); err != nil {
		return err
	}
	d.bound, err = z.GetLastEndpoint()
	return err
}

func (d *detachServer) HandleMessage(l *Loop[[][]byte], sock int, frames [][]byte) {
	payload := string(frames[len(frames)-1])
	owner := l.Detachable(time.Millisecond, func() {
		if payload == "block" || payload == "panic" {
			<-d.release
		}
		if payload == "panic" {
			panic("detached handler")
		}
	})
	if !owner {
		// Not the loop any more: hand the answer to the loop that is.
		if err := d.handle.Load().Submit(context.Background(), frames); err != nil {
			panic(err)
		}
		return
	}
	d.owners.Add(1)
	if err := l.Send(sock, frames...); err != nil {
		panic(err)
	}
}

func (d *detachServer) HandleCommand(l *Loop[[][]byte], frames [][]byte) {
	if err := l.Send(0, frames...); err != nil {
		panic(err)
	}
}
func (d *detachServer) Deadline() time.Time                         { return time.Time{} }
func (d *detachServer) HandleTimer(*Loop[[][]byte], time.Time)      {}
func (d *detachServer) Shutdown(*Loop[[][]byte], [][][]byte, error) {}

// echoPayload is a round trip of payload through the client loop.
func echoPayload(ctx context.Context, l *Loop[*request], id uint64, payload string) error {
	r := &request{id: id, payload: payload, reply: make(chan []byte, 1)}
	if err := l.Submit(ctx, r); err != nil {
		return err
	}
	select {
	case b, ok := <-r.reply:
		if !ok || string(b) != payload {
			return fmt.Errorf("round trip %d: reply %q, want %q", id, b, payload)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("round trip %d (%s): %w", id, payload, ctx.Err())
	}
}

// A handler that overruns its Detachable budget keeps its goroutine and
// the loop goes on without it: other requests are served meanwhile, the
// late answer still arrives, a panic after the hand-off is counted and
// harms nothing, and Stop leaves no goroutine behind.
func TestDetachableHandsTheLoopOff(t *testing.T) {
	for _, s := range strategies() {
		t.Run(s.String(), func(t *testing.T) {
			zctx := newContext(t)
			srv := &detachServer{release: make(chan struct{})}
			sl, err := Start[[][]byte](zctx, srv, Options{Name: "detach", Strategy: s})
			if err != nil {
				t.Fatal(err)
			}
			srv.handle.Store(sl)
			defer func() { _ = sl.Stop() }()
			cli := &echoClient{endpoint: srv.bound}
			cl, err := Start[*request](zctx, cli, Options{Name: "client", Strategy: s})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cl.Stop() }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			if err := echoPayload(ctx, cl, 1, "quick"); err != nil {
				t.Fatal(err)
			}
			blocked := make(chan error, 2)
			go func() { blocked <- echoPayload(ctx, cl, 2, "block") }()
			waitFor(t, ctx, "a hand-off", func() bool { return sl.Stats().Handoffs == 1 })
			// The handler still blocks; the loop serves on.
			for i := uint64(10); i < 110; i++ {
				if err := echoPayload(ctx, cl, i, "quick"); err != nil {
					t.Fatalf("while a handler blocks: %v", err)
				}
			}
			go func() { blocked <- echoPayload(ctx, cl, 3, "panic") }()
			waitFor(t, ctx, "a second hand-off", func() bool { return sl.Stats().Handoffs == 2 })
			close(srv.release)
			if err := <-blocked; err != nil {
				t.Fatal(err)
			}
			waitFor(t, ctx, "the detached panic", func() bool { return sl.Stats().DetachedPanics == 1 })
			if err := echoPayload(ctx, cl, 200, "quick"); err != nil {
				t.Fatalf("after the panic: %v", err)
			}
			if got := srv.owners.Load(); got != 102 {
				t.Errorf("Detachable kept the loop %d times, want 102 (every quick request)", got)
			}
			if st := sl.Stats(); st.Handoffs != 2 {
				t.Errorf("hand-offs = %d, want 2", st.Handoffs)
			}
			if err := sl.Stop(); err != nil {
				t.Errorf("stop: %v", err)
			}
			// The panicking request's caller never gets an answer.
			cancel()
			<-blocked
		})
	}
}

// waitFor waits until cond holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		}
		runtime.Gosched()
	}
}
