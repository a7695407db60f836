package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
)

// What an idle node, an idle server and a node serving many topics cost:
// Go heap, goroutines and RSS, measured around the objects under test
// (after a GC), per object. The NATS peer is a client connection (with one
// subscription per topic), the unit a NATS service holds per process.

const idleNodes = 50

// memSnap is the process's heap and stacks, goroutines and RSS at one
// moment.
type memSnap struct {
	heap, rss  uint64
	goroutines int
}

func snapshot() memSnap {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSnap{heap: ms.HeapAlloc + ms.StackInuse, rss: rss(), goroutines: runtime.NumGoroutine()}
}

// rss reads the resident set from /proc (0 where there is none).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// reportPer reports the growth from before to after, per n objects.
func reportPer(b *testing.B, before, after memSnap, n int, what string) {
	per := func(a, b uint64) float64 {
		if a < b {
			return 0
		}
		return float64(a-b) / float64(n) / 1024
	}
	b.ReportMetric(per(after.heap, before.heap), "heap-KiB/"+what)
	b.ReportMetric(per(after.rss, before.rss), "rss-KiB/"+what)
	b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(n), "goroutines/"+what)
}

// BenchmarkZmqmsg_IdleNode: 50 Transports, each with its ports bound and
// nothing served.
func BenchmarkZmqmsg_IdleNode(b *testing.B) {
	for i := 0; i < b.N; i++ {
		dir := directory.NewMemory()
		before := snapshot()
		nodes := make([]*zmqmsg.Transport, 0, idleNodes)
		for j := 0; j < idleNodes; j++ {
			nodes = append(nodes, newZmqmsgTransport(b, zmqmsgConfig(dir, zmqmsg.WaitNetpoll)))
		}
		after := snapshot()
		b.StopTimer()
		reportPer(b, before, after, idleNodes, "node")
		for _, n := range nodes {
			if err := n.Close(); err != nil {
				b.Error(err)
			}
		}
		dir.Close()
		b.StartTimer()
	}
}

// BenchmarkNATS_IdleConn: 50 NATS client connections.
func BenchmarkNATS_IdleConn(b *testing.B) {
	srv := startNATSServer(b)
	defer stopNATSServer(b, srv)
	for i := 0; i < b.N; i++ {
		before := snapshot()
		conns := make([]*natsConn, 0, idleNodes)
		for j := 0; j < idleNodes; j++ {
			conns = append(conns, connectNATS(b, srv, fmt.Sprintf("idle-%d", j)))
		}
		after := snapshot()
		b.StopTimer()
		reportPer(b, before, after, idleNodes, "node")
		for _, c := range conns {
			c.drain(b)
		}
		b.StartTimer()
	}
}

// BenchmarkZmqmsg_ServeTopics: one node serving topics servers (one per
// topic), each with one method: what a server costs, and how long Serve
// takes for the first and the last 10% of them.
func BenchmarkZmqmsg_ServeTopics(b *testing.B) {
	for _, topics := range []int{1, 1000} {
		b.Run(fmt.Sprintf("topics=%d", topics), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				serveTopics(b, topics)
			}
		})
	}
}

func serveTopics(b *testing.B, topics int) {
	dir := directory.NewMemory()
	defer dir.Close()
	node := newZmqmsgTransport(b, zmqmsgConfig(dir, zmqmsg.WaitNetpoll))
	defer node.Close()
	eps := zmqmsg.Endpoints{"m": func(context.Context, zmqmsg.Args) (any, error) { return nil, nil }}
	before := snapshot()
	took := make([]time.Duration, topics)
	servers := make([]*zmqmsg.Server, 0, topics)
	for t := 0; t < topics; t++ {
		start := time.Now()
		s, err := node.Serve(zmqmsg.Target{Topic: fmt.Sprintf("topic-%d", t)}, eps)
		if err != nil {
			b.Fatal(err)
		}
		took[t] = time.Since(start)
		servers = append(servers, s)
	}
	after := snapshot()
	b.StopTimer()
	reportPer(b, before, after, topics, "server")
	tenth := max(topics/10, 1)
	b.ReportMetric(meanMicros(took[:tenth]), "serve-first-µs")
	b.ReportMetric(meanMicros(took[topics-tenth:]), "serve-last-µs")
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	for _, s := range servers {
		if err := s.Stop(ctx); err != nil {
			b.Error(err)
		}
	}
	b.StartTimer()
}

func meanMicros(ds []time.Duration) float64 {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return float64(sum.Microseconds()) / float64(len(ds))
}

// BenchmarkNATS_ServeTopics: one connection with topics subscriptions.
func BenchmarkNATS_ServeTopics(b *testing.B) {
	srv := startNATSServer(b)
	defer stopNATSServer(b, srv)
	for _, topics := range []int{1, 1000} {
		b.Run(fmt.Sprintf("topics=%d", topics), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				nc := connectNATS(b, srv, "topics")
				before := snapshot()
				took := make([]time.Duration, topics)
				for t := 0; t < topics; t++ {
					start := time.Now()
					if _, err := nc.Subscribe(fmt.Sprintf("topic-%d", t), func(*nats.Msg) {}); err != nil {
						b.Fatal(err)
					}
					took[t] = time.Since(start)
				}
				after := snapshot()
				b.StopTimer()
				reportPer(b, before, after, topics, "server")
				tenth := max(topics/10, 1)
				b.ReportMetric(meanMicros(took[:tenth]), "serve-first-µs")
				b.ReportMetric(meanMicros(took[topics-tenth:]), "serve-last-µs")
				nc.drain(b)
				b.StartTimer()
			}
		})
	}
}

// BenchmarkZmqmsg_NodeStart: New and a first Serve, then Close (not timed).
func BenchmarkZmqmsg_NodeStart(b *testing.B) {
	dir := directory.NewMemory()
	defer dir.Close()
	eps := zmqmsg.Endpoints{"m": func(context.Context, zmqmsg.Args) (any, error) { return nil, nil }}
	for i := 0; i < b.N; i++ {
		node := newZmqmsgTransport(b, zmqmsgConfig(dir, zmqmsg.WaitNetpoll))
		s, err := node.Serve(zmqmsg.Target{Topic: "start"}, eps)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Stop(context.Background()); err != nil {
			b.Error(err)
		}
		if err := node.Close(); err != nil {
			b.Error(err)
		}
		b.StartTimer()
	}
}
