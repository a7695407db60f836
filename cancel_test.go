package zmqmsg

import (
	"context"
	"errors"
	"testing"
	"time"
)

// cancelled serves "wait", a handler that returns only when its ctx ends,
// reporting why on the returned channel.
func cancelled(t *testing.T, tr *Transport, topic string) (entered chan struct{}, returned chan error) {
	t.Helper()
	entered, returned = make(chan struct{}, 1), make(chan error, 1)
	serve(t, tr, Target{Topic: topic}, Endpoints{"wait": func(ctx context.Context, _ Args) (any, error) {
		entered <- struct{}{}
		<-ctx.Done()
		returned <- ctx.Err()
		return nil, ctx.Err()
	}})
	return entered, returned
}

// cancelCall calls "wait" with a 60 s deadline, cancels the call once the
// handler runs, and checks that the handler's ctx ends long before that
// deadline, with context.Canceled.
func cancelCall(t *testing.T, c *Client, entered chan struct{}, returned chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	callErr := make(chan error, 1)
	go func() { callErr <- c.Call(ctx, "wait", nil, nil) }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never ran")
	}
	cancel()
	if err := <-callErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("Call returned %v, want context.Canceled", err)
	}
	select {
	case err := <-returned:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the handler's ctx ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second): // the call's own deadline is 60 s
		t.Fatal("the handler still runs after its caller cancelled")
	}
}

func TestCancelReachesTheHandler(t *testing.T) {
	dir := newDir(t)
	srv, cli := newNode(t, dir), newNode(t, dir)
	entered, returned := cancelled(t, srv, "cancel")
	cancelCall(t, cli.Client(Target{Topic: "cancel"}), entered, returned)
	if st := cli.Stats(); st.CancelsSent != 1 {
		t.Errorf("client sent %d CANCELs, want 1", st.CancelsSent)
	}
	if st := srv.Stats(); st.CallsCancelled != 1 {
		t.Errorf("server counted %d cancelled calls, want 1", st.CallsCancelled)
	}
	// A call that times out sends none: its server's ctx ends at the same
	// deadline.
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := cli.Client(Target{Topic: "cancel"}).Call(short, "wait", nil, nil); !errors.Is(err, ErrTimeout) {
		t.Fatalf("short call: %v, want ErrTimeout", err)
	}
	<-entered
	if err := <-returned; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timed-out handler's ctx: %v, want DeadlineExceeded", err)
	}
	if st := cli.Stats(); st.CancelsSent != 1 {
		t.Errorf("a timeout sent a CANCEL: %d", st.CancelsSent)
	}
}

func TestCancelThroughTheDaemon(t *testing.T) {
	d := newDaemonNode(t)
	entered, returned := cancelled(t, d.members[0], "cancel-daemon")
	cancelCall(t, d.client.Client(Target{Topic: "cancel-daemon"}), entered, returned)
	if st := d.members[0].Stats(); st.CallsCancelled != 1 {
		t.Errorf("member counted %d cancelled calls, want 1", st.CallsCancelled)
	}
	ns, err := d.client.NodeStats(testCtx(t, 10*time.Second), d.proxy.Node())
	if err != nil {
		t.Fatalf("NodeStats: %v", err)
	}
	if ns.Counters["cancels"] != 1 || ns.Counters["cancels_late"] != 0 {
		t.Errorf("daemon counters: cancels %d, late %d; want 1, 0", ns.Counters["cancels"], ns.Counters["cancels_late"])
	}
}

// A call for any server goes to the one its node's proxy picks, whatever
// server the caller's resolver named: the CANCEL still finds it.
func TestCancelFindsTheServerTheNodePicked(t *testing.T) {
	dir := newDir(t)
	srv := newNode(t, dir)
	entered, returned := make(chan struct{}, 1), make(chan error, 1)
	wait := Endpoints{"wait": func(ctx context.Context, _ Args) (any, error) {
		entered <- struct{}{}
		<-ctx.Done()
		returned <- ctx.Err()
		return nil, ctx.Err()
	}}
	serve(t, srv, Target{Topic: "cancel2", Server: "w1"}, wait)
	serve(t, srv, Target{Topic: "cancel2", Server: "w2"}, wait)
	const calls = 6
	for range calls {
		// A new client each time: its resolver's first pick and the node's
		// need not agree.
		cancelCall(t, newNode(t, dir).Client(Target{Topic: "cancel2"}), entered, returned)
	}
	if st := srv.Stats(); st.CallsCancelled != calls {
		t.Fatalf("server cancelled %d of %d calls", st.CallsCancelled, calls)
	}
}
