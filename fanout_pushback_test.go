package zmqmsg

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// fanoutPushback serves "seq" as two servers, a and b, on srvNode: a's
// first fanout blocks until release is closed, so a's lane (ServerQueue 4)
// fills while b's does not. It sends n fanouts from a goroutine (they may
// block once every queue is full), waits for held() to say a full lane (or
// pipe) held one, releases a, and checks that both servers ran all n, in
// order, and that nothing was dropped.
func fanoutPushback(t *testing.T, caster, srvNode *Transport, n int, held func() uint64, dropped func() uint64) {
	t.Helper()
	release := make(chan struct{})
	ran := map[string]chan int{"a": make(chan int, n), "b": make(chan int, n)}
	for name, ch := range ran {
		serve(t, srvNode, Target{Topic: "fanpush", Server: name}, Endpoints{
			"seq": Method(func(ctx context.Context, i int) (struct{}, error) {
				if name == "a" && i == 0 {
					<-release
				}
				ch <- i
				return struct{}{}, nil
			}),
		})
	}
	c := caster.Client(Target{Topic: "fanpush", Fanout: true})
	ctx := testCtx(t, 60*time.Second)
	sent := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := c.Cast(ctx, "seq", i); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	testutil.WaitFor(t, 30*time.Second, "a full lane to hold a fanout", func() bool { return held() > 0 })
	close(release)
	for _, name := range []string{"a", "b"} {
		inOrder(t, ctx, ran[name], 0, n, "server "+name+": fanout", func() string { return fmt.Sprintf("(dropped %d)", dropped()) })
	}
	if err := <-sent; err != nil {
		t.Fatalf("fanout: %v", err)
	}
	if st := srvNode.Stats(); st.FanoutsRun != uint64(2*n) || st.FanoutDropped != 0 || dropped() != 0 {
		t.Fatalf("ran %d fanouts, dropped %d here and %d in all; want %d, 0, 0", st.FanoutsRun, st.FanoutDropped, dropped(), 2*n)
	}
}

// A server whose lane is full holds up the node's fanouts instead of losing
// them: the proxy keeps the fanout for that server, stops reading the
// XSUB, and the caster's queues fill behind it. Both servers of the node
// get every fanout, in order; the node counts the push back and drops
// nothing.
func TestFanoutFullLanePushesBack(t *testing.T) {
	dir := newDir(t)
	srvNode := newNode(t, dir, func(c *Config) { c.ServerQueue = 4 })
	fanoutPushback(t, newNode(t, dir), srvNode, 300,
		func() uint64 { return srvNode.Stats().PushedBack },
		func() uint64 { return srvNode.Stats().FanoutDropped })
}

// Through a node proxy daemon, the same burst, large enough to fill the
// daemon's pipe to the member as well: the member's full lane stops it
// reading its pipe, the daemon holds the fanout and pauses its XSUB, and
// the caster waits. Neither the daemon nor the member drops one.
func TestProxyDaemonFanoutPushesBack(t *testing.T) {
	dir := newDir(t)
	ipc := filepath.Join(t.TempDir(), "zmqmsg")
	d := startProxy(t, ipc, func(c *ProxyConfig) { c.Ports.Fanout = AnyPort })
	srvNode := newNode(t, dir, func(c *Config) { c.ProxyDir, c.ServerQueue = ipc, 4 })
	fanoutPushback(t, newNode(t, dir), srvNode, 20000,
		func() uint64 { return d.Stats().PushedBack },
		func() uint64 { return d.Stats().FanoutDropped + srvNode.Stats().FanoutDropped })
	if st := srvNode.Stats(); st.PushedBack == 0 {
		t.Errorf("the member never held a fanout: %+v", st)
	}
}

// A server whose lane is full and whose handler runs until Stop cancels it
// does not wedge its node: a fanout held for it is dropped for it alone
// (counted) once it stops, and the other server of the node, held up
// behind it, gets every fanout in order.
func TestFanoutHeldForStoppingServerIsDropped(t *testing.T) {
	dir := newDir(t)
	srvNode := newNode(t, dir, func(c *Config) { c.ServerQueue = 4 })
	stuck := serve(t, srvNode, Target{Topic: "fanstop", Server: "a"}, Endpoints{
		"seq": Method(func(ctx context.Context, i int) (struct{}, error) {
			<-ctx.Done() // until Stop gives up on it and cancels
			return struct{}{}, nil
		}),
	})
	const n = 100
	ran := make(chan int, n)
	serve(t, srvNode, Target{Topic: "fanstop", Server: "b"}, Endpoints{
		"seq": Method(func(ctx context.Context, i int) (struct{}, error) {
			ran <- i
			return struct{}{}, nil
		}),
	})
	c := newNode(t, dir).Client(Target{Topic: "fanstop", Fanout: true})
	ctx := testCtx(t, 30*time.Second)
	for i := 0; i < n; i++ {
		if err := c.Cast(ctx, "seq", i); err != nil {
			t.Fatalf("fanout %d: %v", i, err)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "a's full lane to hold a fanout", func() bool { return srvNode.Stats().PushedBack > 0 })
	sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := stuck.Stop(sctx); err == nil {
		t.Error("Stop returned nil with a handler still running at its deadline")
	}
	inOrder(t, ctx, ran, 0, n, "server b: fanout", func() string { return fmt.Sprintf("(the node stopped reading? %+v)", srvNode.Stats()) })
	// Every fanout reached b, a or a counter: a got some (its lane filled
	// before the stop), and none is unaccounted for.
	if st := srvNode.Stats(); st.FanoutDeliveries < n+1 || st.FanoutDeliveries+st.FanoutDropped > 2*n {
		t.Errorf("deliveries %d, dropped %d: want at least %d and at most %d in all", st.FanoutDeliveries, st.FanoutDropped, n+1, 2*n)
	}
}

// inOrder receives from, from+1, ... n-1 from ch, in that order, and fails
// the test at a number out of order or when ctx ends (saying state()).
func inOrder(t *testing.T, ctx context.Context, ch <-chan int, from, n int, what string, state func() string) {
	t.Helper()
	for want := from; want < n; want++ {
		select {
		case i := <-ch:
			if i != want {
				t.Fatalf("%s %d ran where %d was due", what, i, want)
			}
		case <-ctx.Done():
			t.Fatalf("only %d of %d: %s %s", want, n, what, state())
		}
	}
}
