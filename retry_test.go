package zmqmsg

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// overloaded serves "idem" as server "a" on a node whose one worker is
// held and whose one queue slot is taken, so that every call to a is
// refused with ErrOverloaded, and as server "b" on another node.
func overloaded(t *testing.T) (cli *Transport, ranB *atomic.Int64) {
	t.Helper()
	d := newDir(t)
	nodeA := newNode(t, d, func(c *Config) { c.ServerConcurrency, c.ServerQueue = 1, 1 })
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	serve(t, nodeA, Target{Topic: "idem", Server: "a"}, Endpoints{
		"idem": func(context.Context, Args) (any, error) { return "a", nil },
		"block": func(ctx context.Context, _ Args) (any, error) {
			entered <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, nil
		},
	})
	t.Cleanup(func() { close(release) })
	ranB = new(atomic.Int64)
	serve(t, newNode(t, d), Target{Topic: "idem", Server: "b"}, Endpoints{
		"idem": func(context.Context, Args) (any, error) { ranB.Add(1); return "b", nil },
	})
	// Hold a's worker; the next call waits in its queue (and times out
	// there, still queued); the one after is refused.
	filler := newNode(t, d).Client(Target{Topic: "idem", Server: "a"})
	go func() { _ = filler.Call(testCtx(t, 60*time.Second), "block", nil, nil) }()
	<-entered
	for attempt := 0; ; attempt++ {
		err := filler.Call(testCtx(t, time.Second), "idem", nil, nil)
		if errors.Is(err, ErrOverloaded) {
			break
		}
		if attempt == 5 {
			t.Fatalf("server a never refused a call: last %v", err)
		}
	}
	return newNode(t, d), ranB
}

func TestRetryGoesToAnotherServer(t *testing.T) {
	cli, ranB := overloaded(t)
	ctx := testCtx(t, 30*time.Second)

	// Without a policy, the calls that reach a fail.
	plain := cli.Client(Target{Topic: "idem"})
	refused := 0
	for range 6 {
		if err := plain.Call(ctx, "idem", nil, nil); errors.Is(err, ErrOverloaded) {
			refused++
		} else if err != nil {
			t.Fatalf("plain call: %v", err)
		}
	}
	if refused == 0 {
		t.Fatal("round robin never reached the overloaded server")
	}

	// With one, every call succeeds on b.
	before := ranB.Load()
	retrying := cli.Client(Target{Topic: "idem"}, Retry(RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, Methods: []string{"idem"}}))
	for range 6 {
		var who string
		if err := retrying.Call(ctx, "idem", nil, &who); err != nil || who != "b" {
			t.Fatalf("retried call: %q, %v", who, err)
		}
	}
	if got := ranB.Load() - before; got != 6 {
		t.Fatalf("b ran %d calls, want 6", got)
	}
	if st := cli.Stats(); st.CallRetries == 0 || st.CallRetries > 6 {
		t.Fatalf("Stats.CallRetries = %d, want 1..6", st.CallRetries)
	}

	// A method the policy does not name is never retried.
	other := cli.Client(Target{Topic: "idem"}, Retry(RetryPolicy{MaxAttempts: 3, Methods: []string{"something-else"}}))
	refused = 0
	for range 6 {
		if err := other.Call(ctx, "idem", nil, nil); errors.Is(err, ErrOverloaded) {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("a method outside the policy was retried")
	}
}

// With LeastOutstanding, a server holding a call gets no more while the
// others are free; round robin would send it every third call (and these
// would wait for their deadline).
func TestLeastOutstandingAvoidsABusyServer(t *testing.T) {
	dir := newDir(t)
	srv := newNode(t, dir)
	release := make(chan struct{})
	var slowRan atomic.Int64
	for _, name := range []string{"f1", "f2"} {
		serve(t, srv, Target{Topic: "lor", Server: name}, Endpoints{"m": func(context.Context, Args) (any, error) { return nil, nil }})
	}
	serve(t, srv, Target{Topic: "lor", Server: "slow"}, Endpoints{"m": func(ctx context.Context, _ Args) (any, error) {
		slowRan.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	}})
	t.Cleanup(func() { close(release) })
	c := newNode(t, dir).Client(Target{Topic: "lor"}, LeastOutstanding())
	held := testCtx(t, 60*time.Second)
	// Calls go out one at a time until one is held by the slow server.
	heldErr := make(chan error, 1)
	for slowRan.Load() == 0 {
		done := make(chan error, 1)
		go func() { done <- c.Call(held, "m", nil, nil) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("call: %v", err)
			}
		case <-time.After(time.Second):
			if slowRan.Load() == 0 {
				t.Fatal("a call neither returned nor reached the slow server")
			}
			go func() { heldErr <- <-done }()
		}
	}
	for i := range 30 {
		if err := c.Call(testCtx(t, 5*time.Second), "m", nil, nil); err != nil {
			t.Fatalf("call %d while the slow server is busy: %v (slow ran %d)", i, err, slowRan.Load())
		}
	}
	if n := slowRan.Load(); n != 1 {
		t.Fatalf("the busy slow server got %d calls, want only the first", n)
	}
}
