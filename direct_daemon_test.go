package zmqmsg

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// Through a node proxy daemon, a burst of direct casts far larger than the
// server's queue (4) loses nothing: the member's full lane stops it reading
// its pipe, the full pipe stops the daemon reading its PULL, and the casts
// wait in libzmq's queues until the handler catches up. Every cast runs,
// in order, and neither the daemon nor the member drops one.
func TestProxyDaemonDirectCastBurstDropsNothing(t *testing.T) {
	dir := newDir(t)
	ipc := filepath.Join(t.TempDir(), "zmqmsg")
	d := startProxy(t, ipc, func(c *ProxyConfig) { c.Ports.Cast = AnyPort })
	srvNode := newNode(t, dir, func(c *Config) { c.ProxyDir, c.ServerQueue = ipc, 4 })
	const n = 5000 // beyond the lane, and beyond the daemon's pipe to the member
	release := make(chan struct{})
	ran := make(chan int, n)
	serve(t, srvNode, Target{Topic: "burst", Server: "b"}, Endpoints{
		"seq": Method(func(ctx context.Context, i int) (struct{}, error) {
			if i == 0 {
				<-release // the lane fills while cast 0 runs
			}
			ran <- i
			return struct{}{}, nil
		}),
	})
	c := newNode(t, dir).Client(Target{Topic: "burst", Server: "b"}, DirectCast())
	ctx := testCtx(t, 30*time.Second)
	for i := 0; i < n; i++ {
		if err := c.Cast(ctx, "seq", i); err != nil {
			t.Fatalf("direct cast %d: %v", i, err)
		}
	}
	// Far more than the lane holds has reached the member's process
	// before the handler goes on: what its old self dropped.
	testutil.WaitFor(t, 10*time.Second, "the daemon to relay a burst beyond the lane", func() bool {
		return d.Stats().DirectCasts >= 100
	})
	close(release)
	inOrder(t, ctx, ran, 0, n, "direct cast", func() string { return fmt.Sprintf("(daemon %+v)", d.Stats()) })
	if st, ds := srvNode.Stats(), d.Stats(); st.DirectDropped != 0 || ds.DirectDropped != 0 || ds.DirectCasts != n || st.DirectCastsRun != n {
		t.Fatalf("member dropped %d and ran %d, daemon dropped %d and relayed %d; want 0, %d, 0, %d",
			st.DirectDropped, st.DirectCastsRun, ds.DirectDropped, ds.DirectCasts, n, n)
	}
}
