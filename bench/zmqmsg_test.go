package bench

// zmqmsg's own request/reply benchmarks, next to the raw libzmq and NATS
// baselines in baseline_test.go (same payload, same TCP loopback, same
// metrics), so that one `go test -bench` run shows all three.
//
// Topology (the real network path, never a Transport calling itself):
//
//	client Transport (own zmq context, AnyPort)          server Transport (AnyPort)
//	Client.Call -> reply table -> DEALER --tcp 127.0.0.1--> proxy ROUTER -> server worker -> handler
//	                                     <--------------------------------- reply command <-
//
// Both Transports share one private in-memory directory (directory.NewMemory)
// and use the same poller strategy. Every call has its own context with a
// timeout (ioTimeout), like nc.Request's timeout in the NATS baseline; its
// error is checked.

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
)

// zmqmsgVariant is a wait strategy, whether the server's handlers run on
// workers (the default) or inline on the proxy loop (zmqmsg.Inline), and
// whether the server joins a node proxy daemon (zmqmsg.StartProxy, run in
// the benchmark's process) instead of embedding its proxy: one more hop,
// over IPC; and whether both nodes run CURVE (zmqmsg.Security).
type zmqmsgVariant struct {
	name     string
	strategy zmqmsg.WaitStrategy
	inline   bool
	daemon   bool
	curve    bool
}

// zmqmsgStrategies are the variants every zmqmsg scenario runs with.
var zmqmsgStrategies = []zmqmsgVariant{
	{"netpoll", zmqmsg.WaitNetpoll, false, false, false},
	{"zmqpoller", zmqmsg.WaitZMQPoll, false, false, false},
	{"netpoll-inline", zmqmsg.WaitNetpoll, true, false, false},
	{"netpoll-daemon", zmqmsg.WaitNetpoll, false, true, false},
	{"netpoll-curve", zmqmsg.WaitNetpoll, false, false, true},
}

const (
	zmqmsgTopic = "bench.echo"
	// zmqmsgWarmup calls run before the timer starts: directory lookup,
	// DEALER spawn and TCP connect happen on the first one.
	zmqmsgWarmup = 200
)

var zmqmsgTarget = zmqmsg.Target{Topic: zmqmsgTopic}

// jsonArgs is the argument (and result) of the JSON scenario: a small
// struct, about payloadSize bytes once encoded.
type jsonArgs struct {
	ID    uint64   `json:"id"`
	Name  string   `json:"name"`
	Tags  []string `json:"tags"`
	Ready bool     `json:"ready"`
}

var jsonPayload = jsonArgs{ID: 42, Name: "benchmark", Tags: []string{"alpha", "beta"}, Ready: true}

// zmqmsgEnv is a server Transport serving the echo topic, and a client
// Transport (a different node) with a Client for it.
type zmqmsgEnv struct {
	dir    *directory.Memory
	server *zmqmsg.Transport
	srv    *zmqmsg.Server
	client *zmqmsg.Transport
	cli    *zmqmsg.Client
	daemon *zmqmsg.Proxy // the server's node proxy daemon (variant daemon)
}

func startZmqmsg(tb testing.TB, v zmqmsgVariant) *zmqmsgEnv {
	strategy := v.strategy
	tb.Helper()
	env := &zmqmsgEnv{dir: directory.NewMemory()}
	ok := false
	defer func() {
		if !ok {
			env.close(tb)
		}
	}()
	var sec *zmqmsg.Security
	if v.curve {
		// One key pair for both nodes: a node always accepts its own key.
		pub, secret, err := zmqmsg.NewKeyPair()
		if err != nil {
			tb.Fatal(err)
		}
		sec = &zmqmsg.Security{PublicKey: pub, SecretKey: secret}
	}
	newTransport := func() *zmqmsg.Transport {
		cfg := zmqmsgConfig(env.dir, strategy)
		cfg.Security = sec
		return newZmqmsgTransport(tb, cfg)
	}
	if v.daemon {
		var err error
		env.daemon, err = zmqmsg.StartProxy(zmqmsg.ProxyConfig{Dir: tb.TempDir(), Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}, WaitStrategy: strategy})
		if err != nil {
			tb.Fatalf("StartProxy: %v", err)
		}
		cfg := zmqmsgConfig(env.dir, strategy)
		cfg.ProxyDir = env.daemon.Dir()
		env.server = newZmqmsgTransport(tb, cfg)
	} else {
		env.server = newTransport()
	}
	srv, err := env.server.Serve(zmqmsgTarget, zmqmsg.Endpoints{
		// []byte in, []byte out: raw, no codec.
		"echo": func(_ context.Context, a zmqmsg.Args) (any, error) { return a.Raw(), nil },
		// Decoded into a struct and encoded again with the default codec (JSON).
		"echoJSON": zmqmsg.Method(func(_ context.Context, a jsonArgs) (jsonArgs, error) { return a, nil }),
	}, serveOptions(v)...)
	if err != nil {
		tb.Fatalf("serve: %v", err)
	}
	env.srv = srv
	env.client = newTransport()
	env.cli = env.client.Client(zmqmsgTarget)
	ok = true
	return env
}

// zmqmsgConfig is the Config of every benchmark Transport: free ports on
// 127.0.0.1, the scenario's directory and wait strategy. The first wait for
// a cast's ACK is 2 s instead of 250 ms: on loopback nothing is lost, and on
// a loaded 2-vCPU machine under -race an ACK can take longer than 250 ms,
// which would resend (correctly, de-duplicated) and break the scenarios'
// exact accounting of one run per cast.
func zmqmsgConfig(dir directory.Directory, strategy zmqmsg.WaitStrategy) zmqmsg.Config {
	return zmqmsg.Config{
		Ports:        zmqmsg.Ports{Call: zmqmsg.AnyPort},
		Directory:    dir,
		WaitStrategy: strategy,
		CallTimeout:  ioTimeout, // calls always carry a ctx deadline anyway
		Acks:         zmqmsg.AckPolicy{Timeout: 2 * time.Second},
	}
}

func newZmqmsgTransport(tb testing.TB, cfg zmqmsg.Config) *zmqmsg.Transport {
	tb.Helper()
	tr, err := zmqmsg.New(cfg)
	if err != nil {
		tb.Fatalf("zmqmsg.New: %v", err)
	}
	return tr
}

// close stops everything, client first (its DEALER disconnects), then the
// server and its Transport, then the directory. Each step is bounded by the
// library (Server.Stop by ctx, Transport.Close by its term watchdog).
func (env *zmqmsgEnv) close(tb testing.TB) {
	tb.Helper()
	if env.client != nil {
		if err := env.client.Close(); err != nil {
			tb.Errorf("close client transport: %v", err)
		}
	}
	if env.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if err := env.srv.Stop(ctx); err != nil {
			tb.Errorf("stop server: %v", err)
		}
		cancel()
	}
	if env.server != nil {
		if err := env.server.Close(); err != nil {
			tb.Errorf("close server transport: %v", err)
		}
	}
	if env.daemon != nil {
		if err := env.daemon.Close(); err != nil {
			tb.Errorf("close proxy daemon: %v", err)
		}
	}
	if err := env.dir.Close(); err != nil {
		tb.Errorf("close directory: %v", err)
	}
}

// checkStats fails if the client saw anything but clean round trips.
func (env *zmqmsgEnv) checkStats(tb testing.TB) {
	tb.Helper()
	for name, tr := range map[string]*zmqmsg.Transport{"client": env.client, "server": env.server} {
		st := tr.Stats()
		if st.CallErrors+st.LateReplies+st.UnmatchedReplies+st.MalformedFrames+st.WrongKind+
			st.NoServers+st.Overloaded+st.Expired+st.HandlerErrors+st.SendFailures != 0 {
			tb.Errorf("%s transport stats show errors/drops: %+v", name, st)
		}
	}
}

// rawCall does one raw []byte round trip.
func (env *zmqmsgEnv) rawCall() error {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	var out []byte
	if err := env.cli.Call(ctx, "echo", payload, &out); err != nil {
		return fmt.Errorf("zmqmsg call: %w", err)
	}
	if len(out) != payloadSize {
		return fmt.Errorf("zmqmsg reply: got %d bytes, want %d", len(out), payloadSize)
	}
	return nil
}

// jsonCall does one JSON-codec round trip.
func (env *zmqmsgEnv) jsonCall() error {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	var out jsonArgs
	if err := env.cli.Call(ctx, "echoJSON", jsonPayload, &out); err != nil {
		return fmt.Errorf("zmqmsg json call: %w", err)
	}
	if out.ID != jsonPayload.ID || len(out.Tags) != len(jsonPayload.Tags) {
		return fmt.Errorf("zmqmsg json reply: got %+v, want %+v", out, jsonPayload)
	}
	return nil
}

func (env *zmqmsgEnv) warmup(tb testing.TB, call func() error) {
	tb.Helper()
	for range zmqmsgWarmup {
		if err := call(); err != nil {
			tb.Fatal(err)
		}
	}
}

// ---------------------------------------------------------------------------
// Scenarios

// zmqmsgSequential: one caller, n round trips; returns per-op latencies.
// json selects the codec path (echoJSON with a struct) instead of raw bytes.
func zmqmsgSequential(tb testing.TB, tm timer, n int, v zmqmsgVariant, json bool) []time.Duration {
	env := startZmqmsg(tb, v)
	defer env.close(tb)
	call := env.rawCall
	if json {
		call = env.jsonCall
	}
	env.warmup(tb, call)
	lat := timedLoop(tb, tm, n, call)
	env.checkStats(tb)
	return lat
}

// zmqmsgConcurrent: `callers` goroutines sharing ONE Client (one Transport,
// so one DEALER to the server node), n round trips in total. Returns the wall
// time of the measured part.
func zmqmsgConcurrent(tb testing.TB, tm timer, n, callers int, v zmqmsgVariant) time.Duration {
	env := startZmqmsg(tb, v)
	defer env.close(tb)
	env.warmup(tb, env.rawCall)

	per := split(n, callers)
	var wg sync.WaitGroup
	var errs errSink
	tm.ResetTimer()
	start := time.Now()
	for i := range callers {
		wg.Go(func() {
			for range per[i] {
				if err := env.rawCall(); err != nil {
					errs.add(err)
					return
				}
			}
		})
	}
	wg.Wait() // bounded: every call has a ctx timeout
	elapsed := time.Since(start)
	tm.StopTimer()
	errs.report(tb)
	env.checkStats(tb)
	return elapsed
}

// ---------------------------------------------------------------------------
// Benchmarks

// BenchmarkZmqmsg_Call_Sequential compares with
// BenchmarkRawZMQ_DealerRouterEcho_Sequential (target: ≤ 1.5× its p50 and ns/op).
func BenchmarkZmqmsg_Call_Sequential(b *testing.B) {
	for _, s := range zmqmsgStrategies {
		b.Run("strategy="+s.name, func(b *testing.B) {
			b.ReportAllocs()
			cgo := runtime.NumCgoCall()
			lat := zmqmsgSequential(b, b, b.N, s, false)
			reportLatency(b, lat)
			reportCgo(b, cgo)
		})
	}
}

// BenchmarkZmqmsg_Call_Concurrent compares with
// BenchmarkNATS_RequestReply_Concurrent (target: ≥ 1.0× its calls/s).
func BenchmarkZmqmsg_Call_Concurrent(b *testing.B) {
	for _, s := range zmqmsgStrategies {
		for _, callers := range []int{16, 64} {
			b.Run(fmt.Sprintf("strategy=%s/callers=%d", s.name, callers), func(b *testing.B) {
				b.ReportAllocs()
				elapsed := zmqmsgConcurrent(b, b, b.N, callers, s)
				reportRate(b, b.N, elapsed, "calls/s")
			})
		}
	}
}

// BenchmarkZmqmsg_Call_JSON_Sequential is the sequential call with a small
// struct through the default JSON codec (both ways) instead of raw bytes:
// the difference to BenchmarkZmqmsg_Call_Sequential is the codec's cost.
func BenchmarkZmqmsg_Call_JSON_Sequential(b *testing.B) {
	for _, s := range zmqmsgStrategies {
		b.Run("strategy="+s.name, func(b *testing.B) {
			b.ReportAllocs()
			lat := zmqmsgSequential(b, b, b.N, s, true)
			reportLatency(b, lat)
		})
	}
}

// ---------------------------------------------------------------------------
// Smoke test: every zmqmsg scenario with a small count (run with -race).

func TestZmqmsgSmoke(t *testing.T) {
	const n = 300
	checkLat := func(t *testing.T, lat []time.Duration) {
		if len(lat) != n || slices.Contains(lat, 0) {
			t.Errorf("latencies not fully recorded")
		}
	}
	for _, s := range zmqmsgStrategies {
		t.Run("strategy="+s.name, func(t *testing.T) {
			t.Run("Call_Sequential", func(t *testing.T) {
				checkLat(t, zmqmsgSequential(t, noTimer{}, n, s, false))
			})
			t.Run("Call_JSON_Sequential", func(t *testing.T) {
				checkLat(t, zmqmsgSequential(t, noTimer{}, n, s, true))
			})
			for _, callers := range []int{16, 64} {
				t.Run(fmt.Sprintf("Call_Concurrent/callers=%d", callers), func(t *testing.T) {
					zmqmsgConcurrent(t, noTimer{}, n, callers, s)
				})
			}
		})
	}
}

// TestZmqmsgTwoNodes checks the benchmark topology: the client is a
// different node than the server, so calls cross TCP.
func TestZmqmsgTwoNodes(t *testing.T) {
	env := startZmqmsg(t, zmqmsgVariant{name: "default"})
	defer env.close(t)
	if a, b := env.client.Node().ID(), env.server.Node().ID(); a == b {
		t.Fatalf("client and server are the same node %s", a)
	}
	if err := env.rawCall(); err != nil {
		t.Fatal(err)
	}
	if st := env.client.Stats(); st.Calls != 1 {
		t.Errorf("client transport sent %d calls, want 1", st.Calls)
	}
	var out []byte
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := env.cli.Call(ctx, "echo", payload, &out); err != nil || !bytes.Equal(out, payload) {
		t.Fatalf("echo: %q, %v", out, err)
	}
}

func serveOptions(v zmqmsgVariant) []zmqmsg.ServeOption {
	if v.inline {
		return []zmqmsg.ServeOption{zmqmsg.Inline()}
	}
	return nil
}
