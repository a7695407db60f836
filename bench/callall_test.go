package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
)

// zmqmsgCallAll: one caller, n scatter-gathers of "echo" to `servers`
// servers spread over two nodes; returns each gather's latency.
func zmqmsgCallAll(tb testing.TB, tm timer, n, servers int) []time.Duration {
	dir := directory.NewMemory()
	defer dir.Close()
	var nodes []*zmqmsg.Transport
	defer func() {
		for _, tr := range nodes {
			if err := tr.Close(); err != nil {
				tb.Errorf("close: %v", err)
			}
		}
	}()
	for range 3 {
		nodes = append(nodes, newZmqmsgTransport(tb, zmqmsgConfig(dir, zmqmsg.WaitNetpoll)))
	}
	for i := range servers {
		_, err := nodes[i%2].Serve(zmqmsg.Target{Topic: "bench.all", Server: fmt.Sprintf("s%d", i)}, zmqmsg.Endpoints{
			"echo": func(_ context.Context, a zmqmsg.Args) (any, error) { return a.Raw(), nil },
		})
		if err != nil {
			tb.Fatalf("serve: %v", err)
		}
	}
	cli := nodes[2].Client(zmqmsg.Target{Topic: "bench.all"})
	gather := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		rs, err := cli.CallAll(ctx, "echo", payload)
		if err != nil {
			return err
		}
		if len(rs) != servers {
			return fmt.Errorf("%d answers, want %d", len(rs), servers)
		}
		for _, r := range rs {
			var out []byte
			if err := r.Decode(&out); err != nil || len(out) != payloadSize {
				return fmt.Errorf("server %s: %d bytes, %v", r.Server, len(out), err)
			}
		}
		return nil
	}
	return sequentialSized(tb, tm, n, gather)
}

// BenchmarkZmqmsg_CallAll is a scatter-gather to 8 servers on two nodes
// (one CALL per server, concurrently); compare its p50 with
// BenchmarkZmqmsg_Call_Sequential's.
func BenchmarkZmqmsg_CallAll(b *testing.B) {
	b.Run("servers=8", func(b *testing.B) {
		b.ReportAllocs()
		reportLatency(b, zmqmsgCallAll(b, b, b.N, 8))
	})
}

func TestCallAllScenario(t *testing.T) {
	if got := len(zmqmsgCallAll(t, noTimer{}, 3, 8)); got != 3 {
		t.Fatalf("%d gathers, want 3", got)
	}
}
