package zmqmsg

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/config"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// Quick handlers run on the node proxy's loop, without a hand-off to a
// worker and back; a handler misjudged as quick holds the loop for at most
// its budget: then the loop goes on elsewhere, the other servers' calls
// flow while it blocks, its server's next requests go to workers, and
// ServerConcurrency still bounds the handlers that run at once.
func TestQuickHandlersRunOnTheLoopBounded(t *testing.T) {
	forStrategies(t, func(t *testing.T, s WaitStrategy) {
		dir := newDir(t)
		// Whether a handler is quick depends on its time; the race
		// detector's make any quick: the mechanism is under test here.
		srv := newNode(t, dir, func(c *Config) {
			c.WaitStrategy, c.ServerConcurrency = s, 2
			config.EditTestHooks(c).QuickLimit = time.Hour
		})
		var hits sync.Map
		serve(t, srv, Target{Topic: "fast"}, whoAmI("f", &hits))
		release := make(chan struct{})
		var running, most atomic.Int64
		serve(t, srv, Target{Topic: "slow"}, Endpoints{"wait": Method(func(ctx context.Context, _ int) (int, error) {
			n := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			select {
			case <-release:
				return 1, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		})})
		client := newNode(t, dir, func(c *Config) { c.WaitStrategy = s })
		ctx := testCtx(t, 30*time.Second)
		counters := func() map[string]uint64 {
			t.Helper()
			st, err := client.NodeStats(ctx, srv.Node())
			if err != nil {
				t.Fatal(err)
			}
			return st.Counters
		}
		// A first call can take long (it warms up the codec, and the race
		// detector is slow): the server then waits slowPause before it
		// runs on the loop again.
		fast := client.Client(Target{Topic: "fast"})
		testutil.WaitFor(t, 20*time.Second, "50 quick runs", func() bool {
			if err := fast.Call(ctx, "who", 0, nil); err != nil {
				t.Fatal(err)
			}
			return counters()["quick_runs"] >= 50
		})
		overran := counters()["quick_overran"]

		// The slow server has no history: its first call runs on the loop
		// and overruns; the next ones go to its workers.
		const slowCalls = 4
		errs := make(chan error, slowCalls)
		slow := client.Client(Target{Topic: "slow"})
		go func() { errs <- slow.Call(ctx, "wait", 0, nil) }()
		testutil.WaitFor(t, 20*time.Second, "the slow handler to overrun", func() bool { return counters()["quick_overran"] == overran+1 })
		for range slowCalls - 1 {
			go func() { errs <- slow.Call(ctx, "wait", 0, nil) }()
		}
		testutil.WaitFor(t, 20*time.Second, "two slow handlers running", func() bool { return running.Load() == 2 })
		if c := counters(); c["quick_overran"] != overran+1 {
			t.Errorf("quick_overran = %d, want %d: after an overrun the server's requests go to workers", c["quick_overran"], overran+1)
		}
		for i := range 200 {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := fast.Call(cctx, "who", i, nil)
			cancel()
			if err != nil {
				t.Fatalf("fast call %d while slow handlers block the loop's first owner: %v", i, err)
			}
		}
		close(release)
		for range slowCalls {
			if err := <-errs; err != nil && !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
		}
		if m := most.Load(); m != 2 {
			t.Errorf("at most %d slow handlers ran at once, want ServerConcurrency = 2", m)
		}
	})
}
