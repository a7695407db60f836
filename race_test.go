package zmqmsg

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRaceHammer drives the public API from many goroutines at once: callers
// on two clients, servers starting and stopping, and both Transports closing
// while all of that goes on. Under -race it must show no data race, no
// panic, no call that hangs, no error outside the documented set, and (with
// goleak in TestMain) nothing left running.
func TestRaceHammer(t *testing.T) {
	dir := newDir(t)
	serverNode, err := New(Config{Directory: dir, Ports: Ports{Call: AnyPort}, WaitForServers: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer serverNode.Close()
	clientNode, err := New(Config{Directory: dir, Ports: Ports{Call: AnyPort}, WaitForServers: 50 * time.Millisecond, CallTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer clientNode.Close()
	echo := Endpoints{"echo": func(ctx context.Context, a Args) (any, error) { return a.Raw(), nil }}
	if _, err := serverNode.Serve(Target{Topic: "hammer", Server: "steady"}, echo); err != nil {
		t.Fatal(err)
	}

	allowed := func(err error) bool {
		return err == nil || errors.Is(err, ErrClosed) || errors.Is(err, ErrNoServers) ||
			errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
			errors.Is(err, ErrNotAcked) // a cast whose server closed before acknowledging
	}
	var (
		wg         sync.WaitGroup
		calls, oks atomic.Int64
		unexpected = make(chan error, 100)
		report     = func(err error) {
			select {
			case unexpected <- err:
			default:
			}
		}
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	enough := make(chan struct{})
	var enoughOnce sync.Once

	// Callers: on the client node and on the server node itself.
	for g := 0; g < 16; g++ {
		node := clientNode
		if g%4 == 0 {
			node = serverNode
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := node.Client(Target{Topic: "hammer"})
			for i := 0; i < 2000 && ctx.Err() == nil; i++ {
				payload := []byte(fmt.Sprintf("%d-%d", g, i))
				if i%4 == 3 {
					err := c.Cast(ctx, "echo", payload)
					if err != nil && !allowed(err) {
						report(fmt.Errorf("cast: %w", err))
					}
					if errors.Is(err, ErrClosed) {
						return
					}
					continue
				}
				var got []byte
				err := c.Call(ctx, "echo", payload, &got)
				calls.Add(1)
				if err == nil {
					if string(got) != string(payload) {
						report(fmt.Errorf("mismatched reply %q for %q", got, payload))
					}
					if oks.Add(1) == 500 {
						enoughOnce.Do(func() { close(enough) })
					}
				} else if !allowed(err) {
					report(fmt.Errorf("call: %w", err))
				}
				if errors.Is(err, ErrClosed) {
					return
				}
			}
		}()
	}
	// Servers coming and going on the server node.
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50 && ctx.Err() == nil; i++ {
				s, err := serverNode.Serve(Target{Topic: "hammer", Server: fmt.Sprintf("churn-%d-%d", g, i)}, echo)
				if err != nil {
					if !errors.Is(err, ErrClosed) {
						report(fmt.Errorf("serve: %w", err))
					}
					return
				}
				if err := s.Stop(ctx); err != nil && !errors.Is(err, ErrClosed) {
					report(fmt.Errorf("stop: %w", err))
				}
			}
		}()
	}
	// Close both nodes while all of that runs.
	select {
	case <-enough:
	case <-ctx.Done():
		t.Fatal("the callers never got 500 replies")
	}
	closers := make(chan error, 4)
	for _, n := range []*Transport{clientNode, serverNode, clientNode, serverNode} {
		go func() { closers <- n.Close() }()
	}
	for i := 0; i < 4; i++ {
		if err := <-closers; err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("callers or servers still running 20s after Close")
	}
	close(unexpected)
	for err := range unexpected {
		t.Error(err)
	}
	t.Logf("%d calls, %d ok", calls.Load(), oks.Load())
}
