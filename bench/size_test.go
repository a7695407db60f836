package bench

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// payloadSizes are the sizes of the payload-size benchmarks: where a
// message stops fitting the receive buffer (64 KiB, docs/design.md §3) and
// well past it.
var payloadSizes = []struct {
	name string
	n    int
}{{"4KiB", 4 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}}

// sizeWarmup round trips precede the measured ones.
const sizeWarmup = 50

// sequentialSized runs n timed round trips of one call after sizeWarmup
// untimed ones.
func sequentialSized(tb testing.TB, tm timer, n int, call func() error) []time.Duration {
	tb.Helper()
	for range sizeWarmup {
		if err := call(); err != nil {
			tb.Fatal(err)
		}
	}
	return timedLoop(tb, tm, n, call)
}

// zmqmsgSized: one caller, raw []byte echo of size bytes.
func zmqmsgSized(tb testing.TB, tm timer, n, size int) []time.Duration {
	env := startZmqmsg(tb, zmqmsgStrategies[0])
	defer env.close(tb)
	body := bytes.Repeat([]byte{'s'}, size)
	lat := sequentialSized(tb, tm, n, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		var out []byte
		if err := env.cli.Call(ctx, "echo", body, &out); err != nil {
			return fmt.Errorf("zmqmsg call of %d bytes: %w", size, err)
		}
		if len(out) != size {
			return fmt.Errorf("zmqmsg reply: got %d bytes, want %d", len(out), size)
		}
		return nil
	})
	env.checkStats(tb)
	return lat
}

// natsSized: the same over NATS request/reply (the server's payload limit
// raised to fit 1 MiB and its header).
func natsSized(tb testing.TB, tm timer, n, size int) []time.Duration {
	srv := startNATSServerMax(tb, 2<<20)
	defer stopNATSServer(tb, srv)
	resp := startNATSEchoResponder(tb, srv)
	defer resp.drain(tb)
	cli := connectNATS(tb, srv, "requester")
	defer cli.drain(tb)
	body := bytes.Repeat([]byte{'s'}, size)
	return sequentialSized(tb, tm, n, func() error {
		m, err := cli.Request(natsEchoSubject, body, ioTimeout)
		if err != nil {
			return fmt.Errorf("nats request of %d bytes: %w", size, err)
		}
		if len(m.Data) != size {
			return fmt.Errorf("nats reply: got %d bytes, want %d", len(m.Data), size)
		}
		return nil
	})
}

// BenchmarkZmqmsg_Call_Size is the sequential raw CALL at larger payloads;
// compare with BenchmarkNATS_RequestReply_Size (p50 and p99).
func BenchmarkZmqmsg_Call_Size(b *testing.B) {
	for _, s := range payloadSizes {
		b.Run("size="+s.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(2 * s.n))
			reportLatency(b, zmqmsgSized(b, b, b.N, s.n))
		})
	}
}

// BenchmarkNATS_RequestReply_Size is NATS request/reply at the same sizes.
func BenchmarkNATS_RequestReply_Size(b *testing.B) {
	for _, s := range payloadSizes {
		b.Run("size="+s.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(2 * s.n))
			reportLatency(b, natsSized(b, b, b.N, s.n))
		})
	}
}

// TestSizedRoundTrips checks the payload-size scenarios once each.
func TestSizedRoundTrips(t *testing.T) {
	for _, s := range payloadSizes {
		if got := len(zmqmsgSized(t, noTimer{}, 3, s.n)); got != 3 {
			t.Errorf("zmqmsg %s: %d latencies, want 3", s.name, got)
		}
		if got := len(natsSized(t, noTimer{}, 3, s.n)); got != 3 {
			t.Errorf("nats %s: %d latencies, want 3", s.name, got)
		}
	}
}
