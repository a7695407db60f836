package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
)

// slowWork is what the slow server's handler spends per call.
const slowWork = 2 * time.Millisecond

// zmqmsgSlowServer: `callers` goroutines share one Client (round robin, or
// LeastOutstanding) to three servers of a topic, one of which takes
// slowWork per call; n calls in all; returns every call's latency.
func zmqmsgSlowServer(tb testing.TB, tm timer, n, callers int, least bool) []time.Duration {
	dir := directory.NewMemory()
	defer dir.Close()
	srv := newZmqmsgTransport(tb, zmqmsgConfig(dir, zmqmsg.WaitNetpoll))
	cli := newZmqmsgTransport(tb, zmqmsgConfig(dir, zmqmsg.WaitNetpoll))
	defer func() {
		for _, tr := range []*zmqmsg.Transport{cli, srv} {
			if err := tr.Close(); err != nil {
				tb.Errorf("close: %v", err)
			}
		}
	}()
	echo := func(_ context.Context, a zmqmsg.Args) (any, error) { return a.Raw(), nil }
	for _, name := range []string{"fast-1", "fast-2", "slow"} {
		h := echo
		if name == "slow" {
			h = func(ctx context.Context, a zmqmsg.Args) (any, error) {
				time.Sleep(slowWork) // simulated work, not synchronisation
				return a.Raw(), nil
			}
		}
		if _, err := srv.Serve(zmqmsg.Target{Topic: "bench.pick", Server: name}, zmqmsg.Endpoints{"echo": h}); err != nil {
			tb.Fatalf("serve: %v", err)
		}
	}
	var opts []zmqmsg.ClientOption
	if least {
		opts = append(opts, zmqmsg.LeastOutstanding())
	}
	c := cli.Client(zmqmsg.Target{Topic: "bench.pick"}, opts...)
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		var out []byte
		return c.Call(ctx, "echo", payload, &out)
	}
	for range zmqmsgWarmup {
		if err := call(); err != nil {
			tb.Fatal(err)
		}
	}
	lat := make([]time.Duration, n)
	per := split(n, callers)
	var wg sync.WaitGroup
	var errs errSink
	tm.ResetTimer()
	off := 0
	for i := range callers {
		mine := lat[off : off+per[i]]
		off += per[i]
		wg.Go(func() {
			for j := range mine {
				t0 := time.Now()
				if err := call(); err != nil {
					errs.add(err)
					return
				}
				mine[j] = time.Since(t0)
			}
		})
	}
	wg.Wait() // bounded: every call has a ctx timeout
	tm.StopTimer()
	errs.report(tb)
	return lat
}

// BenchmarkZmqmsg_Call_SlowServer: one of three servers takes 2 ms per
// call; 16 callers; round robin against LeastOutstanding (p50, p99).
func BenchmarkZmqmsg_Call_SlowServer(b *testing.B) {
	for _, pick := range []string{"rr", "lor"} {
		b.Run(fmt.Sprintf("pick=%s", pick), func(b *testing.B) {
			b.ReportAllocs()
			reportLatency(b, zmqmsgSlowServer(b, b, b.N, 16, pick == "lor"))
		})
	}
}

func TestSlowServerScenario(t *testing.T) {
	for _, least := range []bool{false, true} {
		if got := len(zmqmsgSlowServer(t, noTimer{}, 32, 4, least)); got != 32 {
			t.Fatalf("least=%v: %d latencies, want 32", least, got)
		}
	}
}
