package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/internal/envflag"
	"github.com/zmqmsg/zmqmsg/internal/opshttp"
	"github.com/zmqmsg/zmqmsg/metrics"
)

var cmdBenchServer = &command{
	name:    "bench server",
	args:    "",
	summary: "serve a benchmark topic (echo, whoami, sink, stats) and count what arrives",
	doc: `Serves --topic with the methods
  echo    returns its arguments as they came (raw bytes)
  whoami  returns {"server", "host", "pid", "node"}
  sink    one-way: does nothing; every pattern's arrivals are counted
  stats   returns the counters: calls (echo and whoami), casts (acknowledged),
          direct, fanouts, notifications, sinks, the pool, and what its node
          dropped or refused (direct_dropped, fanout_dropped, direct_refused,
          fanouts_refused, expired, overloaded, no_servers, send_failures)
  record  with --journal: appends its payload to the journal file
and listens for notifications on --topic in the pool --pool. Prints one JSON
line {"ready":true,...} on stdout once it is reachable (with "metrics" and
"pprof", the addresses --metrics-addr and --pprof-addr bound). On SIGINT or
SIGTERM it deregisters, finishes what it accepted, prints its final
counters as one JSON line and exits 0.`,
	maxArgs: 0,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.topic, "topic", "bench", "`topic` to serve and listen to")
		fs.StringVar(&o.name, "name", "", "server `NAME` (default bench-PID@HOST:PORT of its node)")
		fs.StringVar(&o.pool, "pool", "bench", "listener pool `NAME` for the notifications")
		envflag.DurationVar(fs, &o.work, "work", 0, "how long each 'record' handler works (sleeps) before it writes its journal line")
		fs.IntVar(&o.queue, "queue", 0, "size `N` of the server's request queue, and of its lane of direct casts and fanouts (0: the library's default, 1024); beyond it calls are refused as overloaded, fanouts dropped, and direct casts wait")
		fs.StringVar(&o.journal, "journal", "", "append the payload of every 'record' call or cast to `FILE`, one line each, written before the ACK (for loss accounting across a kill)")
		fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://`ADDR`/metrics (host:port; off when empty)")
		fs.StringVar(&o.pprofAddr, "pprof-addr", "", "serve Go profiles at http://`ADDR`/debug/pprof/ (host:port; off when empty; keep it private)")
		proxyDirFlag(fs, o)
	},
	run:    runBenchServer,
	serves: true,
}

var cmdBenchClient = &command{
	name:    "bench client",
	args:    "",
	summary: "load a bench server with one pattern, report rate, latency and losses",
	doc: `Runs --concurrency goroutines sending --size byte messages of one --pattern to
the bench servers of --topic for --duration (or until --count messages):
  call    echo, round trip checked byte for byte
  cast    sink, acknowledged cast       direct  sink, direct cast (no ack)
  fanout  sink to every server          notify  notification to every pool
Latency is the time each send takes: the call's round trip, the cast's or
notification's acknowledgement, the fanout's hand-off to every node, the
direct cast's hand-off to the socket. Before and after the run it calls
"stats" on every bench server of the topic and sums the deltas: "received"
counts what the servers got, "expected" is what they should have got (per
server for fanout, per pool for notify), "lost" the difference after
waiting up to --drain for stragglers.

Lost messages are accounted for by where they were dropped. Direct casts
and fanouts push back (a full lane or pipe stops the hop before it
reading, and the sender's Cast or Fanout waits, bounded by --timeout):
they are dropped only where no server is left for them. Before and after the run the client also reads the counters
of each node proxy daemon of the servers (over its call port) and reports
what each hop dropped of the pattern's messages: "dropped at" (JSON
"dropped_at": {hop: {counter: n}}), the daemons ("daemon NODE":
direct_dropped, fanout_dropped) and the servers ("server NAME": their
node's proxy and lanes), and what no hop counted ("unexplained"). A hop
whose counters cannot be read is "unknown" (null), and so is then what is
unexplained. What the hops refused with an answer to the sender (its
errors, not lost messages: no_servers, overloaded, expired, ...) is under
"refused_at". A daemon counts for every topic of its node.

Prints a live progress line on a terminal, then a table, or one JSON object
with --json. Exits 1 if any message was lost or any send failed. Run one
client per topic at a time: the servers' counters do not tell clients
apart.

A run stops early, and prints what it has, on SIGINT or SIGTERM (the sends
in flight finish; those still running 2s later are canceled and counted
as "canceled", not as errors), when no server is left or the directory
cannot be read, or when every send failed for 5s (the servers or their
daemon are gone); then it exits with that error's code. Servers whose
counters cannot be read after the run are listed, and lost is unknown
("?", null in JSON).`,
	maxArgs: 0,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.topic, "topic", "bench", "`topic` of the bench servers")
		fs.StringVar(&o.pattern, "pattern", "call", "`pattern`: call, cast, direct, fanout or notify")
		fs.IntVar(&o.concurrency, "concurrency", 16, "sending goroutines")
		envflag.DurationVar(fs, &o.duration, "duration", 10*time.Second, "how long to send")
		fs.Int64Var(&o.count, "count", 0, "stop after `N` messages (0: no limit but --duration)")
		fs.IntVar(&o.size, "size", 64, "payload size in `bytes`")
		fs.Float64Var(&o.rate, "rate", 0, "send at most `N` messages per second in total (0: as fast as the servers answer)")
		envflag.DurationVar(fs, &o.drain, "drain", 5*time.Second, "how long to wait for the servers' counters to catch up")
	},
	run: runBenchClient,
}

// benchStats are a bench server's counters, as its stats method returns
// them.
type benchStats struct {
	Server        string `json:"server"`
	Pool          string `json:"pool"`
	Calls         uint64 `json:"calls"`
	Casts         uint64 `json:"casts"`
	Direct        uint64 `json:"direct"`
	Fanouts       uint64 `json:"fanouts"`
	Notifications uint64 `json:"notifications"`
	Sinks         uint64 `json:"sinks"`
	// What the server's node dropped (its Stats.DirectDropped and
	// FanoutDropped): direct casts and fanouts no lane could take.
	DirectDropped uint64 `json:"direct_dropped"`
	FanoutDropped uint64 `json:"fanout_dropped"`
	// What it refused or failed (Stats): one-way messages to a method the
	// server lacks (run, counted as received), requests expired before a
	// worker took them, refused as overloaded or with no server, and
	// replies libzmq refused.
	DirectRefused  uint64 `json:"direct_refused"`
	FanoutsRefused uint64 `json:"fanouts_refused"`
	Expired        uint64 `json:"expired"`
	Overloaded     uint64 `json:"overloaded"`
	NoServers      uint64 `json:"no_servers"`
	SendFailures   uint64 `json:"send_failures"`
	// The server process's health, for soak runs.
	Goroutines int   `json:"goroutines"`
	RSSKiB     int64 `json:"rss_kib"`
}

// counters returns the server's drop and refusal counters by name.
func (s benchStats) counters() map[string]uint64 {
	return map[string]uint64{
		"direct_dropped": s.DirectDropped, "fanout_dropped": s.FanoutDropped,
		"direct_refused": s.DirectRefused, "fanouts_refused": s.FanoutsRefused, "expired": s.Expired,
		"overloaded": s.Overloaded, "no_servers": s.NoServers, "send_failures": s.SendFailures,
	}
}

// received returns the counter of pattern.
func (s benchStats) received(pattern string) uint64 {
	switch pattern {
	case "call":
		return s.Calls
	case "cast":
		return s.Casts
	case "direct":
		return s.Direct
	case "fanout":
		return s.Fanouts
	case "notify":
		return s.Notifications
	}
	return 0
}

func runBenchServer(ctx context.Context, c *cli, _ []string) (err error) {
	if c.o.topic == "" {
		return usagef("empty --topic")
	}
	key := directory.Key{Exchange: c.g.exchange, Topic: c.o.topic}
	if c.o.queue < 0 {
		return usagef("--queue %d is negative", c.o.queue)
	}
	// Bound first: a taken address stops the server before it is reachable.
	ops, err := opshttp.Bind(c.o.metricsAddr, c.o.pprofAddr)
	if err != nil {
		return err
	}
	defer ops.Close()
	n, err := c.startNode(ctx, key, func(cfg *zmqmsg.Config) {
		cfg.ProxyDir, cfg.RegistrationTTL, cfg.ServerQueue = c.o.proxyDir, c.o.ttl, c.o.queue
	})
	if err != nil {
		return err
	}
	defer n.close(&err)
	s := &benchCounters{n: n, name: c.o.name, pool: c.o.pool}
	if s.name == "" {
		s.name = fmt.Sprintf("bench-%d@%s", os.Getpid(), n.t.Node().ID())
	}
	endpoints := s.endpoints()
	if c.o.journal != "" {
		// Unbuffered: each line is in the kernel's page cache before the
		// handler returns (and so before its ACK), and survives a SIGKILL.
		f, err := os.OpenFile(c.o.journal, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("--journal: %w", err)
		}
		defer f.Close()
		endpoints["record"] = recorder(f, c.o.work)
	}
	srv, err := n.t.Serve(zmqmsg.Target{Exchange: c.g.exchange, Topic: c.o.topic, Server: s.name}, endpoints)
	if err != nil {
		return fmt.Errorf("serve %s: %w", c.o.topic, err)
	}
	l, err := n.t.Listen([]string{c.o.topic}, c.o.pool, func(context.Context, zmqmsg.Notification) error {
		s.notifications.Add(1)
		return nil
	})
	if err != nil {
		return errors.Join(fmt.Errorf("listen %s: %w", c.o.topic, err), srv.Stop(context.Background()))
	}
	ready := map[string]any{
		"ready": true, "server": s.name, "exchange": c.g.exchange, "topic": c.o.topic, "pool": c.o.pool,
		"node": n.t.Node().CallEndpoint(), "pid": os.Getpid(),
	}
	var fams metrics.Servers
	ops.Serve(func() []metrics.Family { return fams.Transport(n.t) })
	if ops.Metrics != nil {
		ready["metrics"] = ops.Metrics.Addr().String()
	}
	if ops.Pprof != nil {
		ready["pprof"] = ops.Pprof.Addr().String()
	}
	if err := c.printLine(ready); err != nil {
		return errors.Join(err, srv.Stop(context.Background()), l.Stop(context.Background()))
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := errors.Join(srv.Stop(sctx), l.Stop(sctx)); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	settle(sctx) // the last replies and ACKs leave before the node closes
	return c.printLine(map[string]any{"stopped": true, "stats": s.stats()})
}

// benchCounters is what a bench server counts, and its name.
type benchCounters struct {
	n                           *node
	name, pool                  string
	calls, sinks, notifications atomic.Uint64
}

// stats returns the server's counters.
func (s *benchCounters) stats() benchStats {
	st := s.n.t.Stats()
	// The engine's CastsRun counts every one-way handler run but
	// notifications: acknowledged, direct and fanout casts.
	acked := int64(st.CastsRun) - int64(st.DirectCastsRun) - int64(st.FanoutsRun)
	return benchStats{
		Server: s.name, Pool: s.pool, Calls: s.calls.Load(), Casts: uint64(max(acked, 0)),
		Direct: st.DirectCastsRun, Fanouts: st.FanoutsRun, Notifications: s.notifications.Load(), Sinks: s.sinks.Load(),
		DirectDropped: st.DirectDropped, FanoutDropped: st.FanoutDropped,
		DirectRefused: st.DirectRefused, FanoutsRefused: st.FanoutsRefused, Expired: st.Expired,
		Overloaded: st.Overloaded, NoServers: st.NoServers, SendFailures: st.SendFailures,
		Goroutines: runtime.NumGoroutine(), RSSKiB: rssKiB(),
	}
}

// endpoints returns the handlers of echo, whoami, sink and stats.
func (s *benchCounters) endpoints() zmqmsg.Endpoints {
	host, _ := os.Hostname() // "" is an acceptable fallback
	return zmqmsg.Endpoints{
		"echo": func(_ context.Context, a zmqmsg.Args) (any, error) {
			s.calls.Add(1)
			return bytes.Clone(a.Raw()), nil // Raw is valid while the handler runs
		},
		"whoami": func(context.Context, zmqmsg.Args) (any, error) {
			s.calls.Add(1)
			return map[string]any{"server": s.name, "host": host, "pid": os.Getpid(), "node": s.n.t.Node().CallEndpoint()}, nil
		},
		"sink": func(context.Context, zmqmsg.Args) (any, error) {
			s.sinks.Add(1)
			return nil, nil
		},
		"stats": func(context.Context, zmqmsg.Args) (any, error) { return s.stats(), nil },
	}
}

// recorder returns the handler of record: after work, it appends its
// payload to f as one line.
func recorder(f *os.File, work time.Duration) zmqmsg.Handler {
	var mu sync.Mutex
	return func(ctx context.Context, a zmqmsg.Args) (any, error) {
		if work > 0 {
			t := time.NewTimer(work)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			}
		}
		mu.Lock()
		defer mu.Unlock()
		_, err := f.Write(append(bytes.Clone(a.Raw()), '\n'))
		return nil, err
	}
}

// printLine prints v as one JSON line, whatever --json says: the bench
// server's output is for scripts.
func (c *cli) printLine(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	if _, err := fmt.Fprintf(c.stdout, "%s\n", b); err != nil {
		return fmt.Errorf("write stdout: %w", err)
	}
	return nil
}

// benchResult is what bench client reports.
type benchResult struct {
	Pattern     string   `json:"pattern"`
	Exchange    string   `json:"exchange"`
	Topic       string   `json:"topic"`
	Servers     int      `json:"servers"`
	Pools       int      `json:"pools,omitempty"`
	Concurrency int      `json:"concurrency"`
	Size        int      `json:"size"`
	ElapsedS    float64  `json:"elapsed_s"`
	Sent        int64    `json:"sent"`
	OK          int64    `json:"ok"`
	Errors      int64    `json:"errors"`
	Canceled    int64    `json:"canceled,omitempty"` // in flight when the run stopped early, canceled after inFlightGrace
	FirstError  string   `json:"first_error,omitempty"`
	Stopped     string   `json:"stopped,omitempty"` // "interrupted", or the error that stopped the run early
	Expected    int64    `json:"expected"`
	Received    int64    `json:"received"`                 // by the servers whose counters were read
	Unread      []string `json:"servers_unread,omitempty"` // servers whose counters could not be read after the run
	Lost        *int64   `json:"lost"`                     // null when a server's counters could not be read
	Dropped     int64    `json:"dropped_by_servers"`       // the servers' hops' share of DroppedAt
	// DroppedAt: by hop ("daemon NODE", "server NAME"), the deltas of the
	// counters of the pattern's dropped messages; null for a hop whose
	// counters could not be read.
	DroppedAt map[string]map[string]int64 `json:"dropped_at"`
	// Unexplained is Lost minus what DroppedAt counts; null when either is
	// unknown.
	Unexplained *int64 `json:"unexplained"`
	// RefusedAt: by hop, refusals answered to their sender (errors, not
	// lost messages); non-zero ones only.
	RefusedAt map[string]map[string]int64 `json:"refused_at,omitempty"`
	Extra     int64                       `json:"extra,omitempty"`
	Rate      float64                     `json:"msgs_per_s"`
	Latency   struct {
		P50 float64 `json:"p50"`
		P90 float64 `json:"p90"`
		P99 float64 `json:"p99"`
		Max float64 `json:"max"`
	} `json:"latency_ms"`
}

// lostOrZero is Lost, 0 when unknown.
func (r benchResult) lostOrZero() int64 {
	if r.Lost == nil {
		return 0
	}
	return *r.Lost
}

var patterns = []string{"call", "cast", "direct", "fanout", "notify"}

// maxBenchSize bounds --size.
const maxBenchSize = maxMessageSize

func runBenchClient(ctx context.Context, c *cli, _ []string) (err error) {
	o := c.o
	switch {
	case !slices.Contains(patterns, o.pattern):
		return usagef("bad --pattern %q: want one of %v", o.pattern, patterns)
	case o.concurrency < 1:
		return usagef("--concurrency %d: want at least 1", o.concurrency)
	case o.rate < 0:
		return usagef("--rate %v: want ≥ 0", o.rate)
	case o.duration <= 0:
		return usagef("--duration %v: want more than 0", o.duration)
	case o.size < 0 || o.size > maxBenchSize:
		return usagef("--size %d: want 0 to %d", o.size, maxBenchSize)
	case o.count < 0:
		return usagef("--count %d is negative", o.count)
	case o.topic == "":
		return usagef("empty --topic")
	}
	n, err := c.startNode(ctx, directory.Key{Exchange: c.g.exchange, Topic: o.topic}, nil)
	if err != nil {
		return err
	}
	defer n.close(&err)

	entries, err := c.benchServers(ctx, n)
	if err != nil {
		return err
	}
	nodes := map[string]directory.Node{}
	for _, e := range entries {
		nodes[e.Server] = e.Node
	}
	// A server the directory still lists but that does not answer (killed,
	// its registration not yet expired) is left out of the run's accounting.
	before := c.benchStats(ctx, n, slices.Sorted(maps.Keys(nodes)))
	if len(before) == 0 {
		return fmt.Errorf("bench: none of the %d servers of %s answered: %w", len(entries), c.o.topic, zmqmsg.ErrNoServers)
	}
	servers := slices.Sorted(maps.Keys(before))
	pools := map[string]bool{}
	for _, s := range before {
		pools[s.Pool] = true
	}
	hops := c.readHops(ctx, n, before, nodes)

	r, stopErr := c.benchRun(ctx, n, servers, before, hops, pools)
	if c.g.json {
		err = c.printValue(r)
	} else {
		err = c.printBench(r)
	}
	if err != nil {
		return err
	}
	if stopErr != nil && !errors.Is(stopErr, errInterrupted) {
		return fmt.Errorf("bench stopped after %d messages: %w", r.Sent, stopErr)
	}
	if (r.Lost != nil && *r.Lost > 0) || r.Errors > 0 {
		return &lostError{lost: r.lostOrZero(), errors: r.Errors}
	}
	return nil
}

// errInterrupted stops a bench run on SIGINT or SIGTERM.
var errInterrupted = errors.New("interrupted")

// Bounds of a bench run that stops early.
const (
	// benchStall: a run in which every send failed for this long stops
	// (the servers, or their daemon, are gone).
	benchStall = 5 * time.Second
	// inFlightGrace: how long the sends in flight when a run stops early
	// may take before they are canceled (and counted as such, not as
	// errors).
	inFlightGrace = 2 * time.Second
	// maxDrainCall bounds each stats call after the run.
	maxDrainCall = 5 * time.Second
)

// fatal reports whether err means that the run cannot go on: no server is
// left, the directory cannot be read, or CURVE refuses this node.
func fatal(err error) bool {
	for _, target := range []error{zmqmsg.ErrNoServers, zmqmsg.ErrDirectoryUnavailable, directory.ErrUnavailable, zmqmsg.ErrClosed,
		zmqmsg.ErrUnauthorized, zmqmsg.ErrSecurityRequired, zmqmsg.ErrInsecureNode} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// benchRun sends until --duration, --count, a signal (ctx), a fatal error
// or a stall stops it, then reads the servers' counters, and returns the
// result and what stopped the run early (errInterrupted, or an error; nil
// when it ran its course).
func (c *cli) benchRun(ctx context.Context, n *node, servers []string, before map[string]benchStats, hops benchHops, pools map[string]bool) (benchResult, error) {
	o := c.o
	b := c.newBenchLoad(ctx, c.sender(n))
	defer b.abort()
	elapsed, latency := c.runLoad(ctx, b)

	copies := int64(1) // how many times a message arrives
	switch o.pattern {
	case "fanout":
		copies = int64(len(servers))
	case "notify":
		copies = int64(len(pools))
	}
	r := benchResult{
		Pattern: o.pattern, Exchange: c.g.exchange, Topic: o.topic, Servers: len(servers), Concurrency: o.concurrency,
		Size: o.size, ElapsedS: elapsed.Seconds(), Sent: b.sent.Load(), OK: b.ok.Load(), Errors: b.failed.Load(),
		Canceled: b.canceled.Load(), Expected: b.ok.Load() * copies,
		Rate: float64(b.ok.Load()) / elapsed.Seconds(),
	}
	if o.pattern == "notify" {
		r.Pools = len(pools)
	}
	if p := b.firstErr.Load(); p != nil {
		r.FirstError = (*p).Error()
	}
	if b.stopErr != nil {
		r.Stopped = b.stopErr.Error()
	}
	r.Latency.P50, r.Latency.P90, r.Latency.P99 = ms(latency.percentile(50)), ms(latency.percentile(90)), ms(latency.percentile(99))
	r.Latency.Max = ms(latency.max)
	c.accountRun(ctx, n, &r, servers, before, hops, copies)
	return r, b.stopErr
}

// accountRun waits for the servers' counters to catch up with r and sets
// what r says was received, lost and dropped where.
func (c *cli) accountRun(ctx context.Context, n *node, r *benchResult, servers []string, before map[string]benchStats, hops benchHops, copies int64) {
	var unread []string
	var after map[string]hopCounters
	r.Received, after, unread = c.drain(ctx, n, servers, before, hops, r.Expected)
	if len(unread) == 0 {
		// Canceled sends may or may not have arrived.
		lost := max(r.Expected-r.Received, 0)
		r.Lost = &lost
		r.Extra = max(r.Received-(r.OK+r.Canceled)*copies, 0)
	} else {
		r.Unread = unread
	}
	acc := account(r.Pattern, hops.before, after)
	r.DroppedAt = acc.dropped
	if len(acc.refused) > 0 {
		r.RefusedAt = acc.refused
	}
	for _, name := range servers {
		for _, v := range acc.dropped[serverHop(name)] {
			r.Dropped += v
		}
	}
	if dropped, known := acc.total(); known && r.Lost != nil {
		u := *r.Lost - dropped
		r.Unexplained = &u
	}
}

// ms converts d to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// sender returns the function that sends one message of the pattern.
func (c *cli) sender(n *node) func(ctx context.Context) error {
	payload := bytes.Repeat([]byte{'x'}, c.o.size)
	target := zmqmsg.Target{Exchange: c.g.exchange, Topic: c.o.topic}
	switch c.o.pattern {
	case "call":
		cl := n.t.Client(target)
		return func(ctx context.Context) error {
			var reply []byte
			if err := cl.Call(ctx, "echo", payload, &reply); err != nil {
				return err
			}
			if !bytes.Equal(reply, payload) {
				return fmt.Errorf("echo returned %d bytes that differ from the %d sent", len(reply), len(payload))
			}
			return nil
		}
	case "cast":
		cl := n.t.Client(target)
		return func(ctx context.Context) error { return cl.Cast(ctx, "sink", payload) }
	case "direct":
		cl := n.t.Client(target, zmqmsg.DirectCast())
		return func(ctx context.Context) error { return cl.Cast(ctx, "sink", payload) }
	case "fanout":
		target.Fanout = true
		cl := n.t.Client(target)
		return func(ctx context.Context) error { return cl.Cast(ctx, "sink", payload) }
	default: // notify
		nt := n.t.Notifier("zmqmsg-bench", c.o.topic)
		return func(ctx context.Context) error { return nt.Notify(ctx, zmqmsg.Info, "bench", payload) }
	}
}

// benchServers returns the directory's entries of --topic.
func (c *cli) benchServers(ctx context.Context, n *node) ([]directory.Entry, error) {
	lctx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	key := directory.Key{Exchange: c.g.exchange, Topic: c.o.topic}
	entries, err := n.dir.Lookup(lctx, key)
	if err != nil {
		return nil, c.dirFailed(err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: no bench server of %s (start one with zmqmsg bench server)", zmqmsg.ErrNoServers, key)
	}
	return entries, nil
}

// benchStats calls stats on each server, by name. A server that does not
// answer (killed, its registration not yet expired) is logged and left out.
func (c *cli) benchStats(ctx context.Context, n *node, servers []string) map[string]benchStats {
	out := make(map[string]benchStats, len(servers))
	for _, name := range servers {
		sctx, cancel := context.WithTimeout(ctx, c.g.timeout)
		var s benchStats
		err := n.t.Client(zmqmsg.Target{Exchange: c.g.exchange, Topic: c.o.topic, Server: name}).Call(sctx, "stats", nil, &s)
		cancel()
		if err != nil {
			c.log.Warn("bench: a listed server does not answer; left out", "server", name, "err", err)
			continue
		}
		out[name] = s
	}
	return out
}

// drainPoll is how often drain reads the servers' counters; drainStable is
// how long they must stay unchanged, short of the expected total, before
// drain gives up early.
const (
	drainPoll   = 100 * time.Millisecond
	drainStable = time.Second
)

// drain reads the counters of the servers and of their daemons until the
// servers have received expected, or received and dropped add up to it,
// or the counts stay unchanged for drainStable, or --drain passes. It
// returns what the servers received since before, and every hop's
// counters (nil for a daemon that did not answer: it is not read again).
// A server that does not answer (stopped mid-run) is left out of the sums
// and returned in unread; drain then stops at once: the accounting cannot
// close. After a signal (ctx done) it reads the counters once.
func (c *cli) drain(ctx context.Context, n *node, servers []string, before map[string]benchStats, hops benchHops, expected int64) (got int64, after map[string]hopCounters, unread []string) {
	limit := time.Now().Add(c.o.drain)
	var last int64 = -1
	lastChange := time.Now()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	after = map[string]hopCounters{}
	recv := map[string]int64{} // by server, its last count read
	for {
		got = 0
		busy := false
		for _, name := range servers {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(c.g.timeout, maxDrainCall))
			var s benchStats
			err := n.t.Client(zmqmsg.Target{Exchange: c.g.exchange, Topic: c.o.topic, Server: name}).Call(sctx, "stats", nil, &s)
			cancel()
			if errors.Is(err, zmqmsg.ErrOverloaded) && time.Now().Before(limit) {
				// Its pipe is full of what was sent (direct casts push
				// back): still working through them.
				busy = true
				got += recv[name]
				continue
			}
			if err != nil {
				c.log.Warn("bench: a server does not answer for its counters; left out", "server", name, "err", err)
				unread = append(unread, name)
				after[serverHop(name)] = nil
				continue
			}
			recv[name] = int64(s.received(c.o.pattern)) - int64(before[name].received(c.o.pattern))
			got += recv[name]
			after[serverHop(name)] = s.counters()
		}
		for hop, node := range hops.daemons {
			if prev, ok := after[hop]; ok && prev == nil {
				continue // it did not answer: do not wait for it again
			}
			a, err := c.nodeStats(ctx, n, node)
			if err != nil || a.Role != "daemon" {
				c.log.Warn("bench: a daemon's counters cannot be read; what it dropped is unknown", "hop", hop, "role", a.Role, "err", err)
				after[hop] = nil
				continue
			}
			after[hop] = a.Counters
		}
		dropped, _ := account(c.o.pattern, hops.before, after).total()
		now := time.Now()
		if got+dropped != last || busy {
			last, lastChange = got+dropped, now
		}
		if busy && !now.After(limit) && ctx.Err() == nil {
			<-tick.C
			continue
		}
		if len(unread) > 0 || got+dropped >= expected || now.After(limit) || now.Sub(lastChange) >= drainStable || ctx.Err() != nil {
			return got, after, unread
		}
		<-tick.C
	}
}

// progress prints a live line every second until done.
func (c *cli) progress(done <-chan struct{}, start time.Time, sent, ok, failed *atomic.Int64) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var prev int64
	for {
		select {
		case <-done:
			fmt.Fprintf(c.stdout, "\r%70s\r", "")
			return
		case <-tick.C:
			cur := ok.Load()
			fmt.Fprintf(c.stdout, "\r%6.1fs  sent %d  ok %d  errors %d  %d msgs/s   ",
				time.Since(start).Seconds(), sent.Load(), cur, failed.Load(), cur-prev)
			prev = cur
		}
	}
}

func (c *cli) printBench(r benchResult) error {
	ex := r.Exchange
	if ex == "" {
		ex = "(default)"
	}
	fmt.Fprintf(c.stdout, "bench %s: %s/%s, %d servers", r.Pattern, ex, r.Topic, r.Servers)
	if r.Pattern == "notify" {
		fmt.Fprintf(c.stdout, " in %d pools", r.Pools)
	}
	fmt.Fprintf(c.stdout, ", concurrency %d, %d bytes, %.2fs", r.Concurrency, r.Size, r.ElapsedS)
	if r.Stopped == errInterrupted.Error() {
		fmt.Fprint(c.stdout, " (interrupted)")
	}
	fmt.Fprintln(c.stdout)
	lost := "?"
	if r.Lost != nil {
		lost = strconv.FormatInt(*r.Lost, 10)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "sent\tok\terrors\texpected\treceived\tlost\tmsgs/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\t")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%s\t%.0f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", r.Sent, r.OK, r.Errors, r.Expected, r.Received,
		lost, r.Rate, r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write stdout: %w", err)
	}
	if r.Canceled > 0 {
		fmt.Fprintf(c.stdout, "%d sends still in flight %v after the run stopped were canceled (not counted as errors)\n", r.Canceled, inFlightGrace)
	}
	if len(r.Unread) > 0 {
		fmt.Fprintf(c.stdout, "the counters of %s could not be read after the run: received counts the others, lost is unknown\n", strings.Join(r.Unread, ", "))
	}
	c.printDrops(r, lost)
	if r.Extra > 0 {
		fmt.Fprintf(c.stdout, "%d more received than expected (duplicates, or another client)\n", r.Extra)
	}
	if r.FirstError != "" {
		fmt.Fprintf(c.stdout, "first error: %s\n", r.FirstError)
	}
	if r.Stopped != "" && r.Stopped != errInterrupted.Error() {
		fmt.Fprintf(c.stdout, "stopped early: %s\n", r.Stopped)
	}
	return nil
}

// printDrops prints where the run's lost messages were dropped, and what
// the hops refused, when there is anything to say.
func (c *cli) printDrops(r benchResult, lost string) {
	var dropped int64
	unknown := false
	for _, cs := range r.DroppedAt {
		unknown = unknown || cs == nil
		for _, v := range cs {
			dropped += v
		}
	}
	if r.lostOrZero() > 0 || dropped != 0 || unknown {
		unexplained := "?"
		if r.Unexplained != nil {
			unexplained = strconv.FormatInt(*r.Unexplained, 10)
		}
		if _, oneWay := droppedCounters[r.Pattern]; oneWay {
			what := r.Pattern
			if what == "direct" {
				what = "direct cast"
			}
			fmt.Fprintf(c.stdout, "lost %s, dropped at (a %s only where no server is left for it):\n", lost, what)
		} else {
			fmt.Fprintf(c.stdout, "lost %s, dropped at (no hop drops a %s unanswered):\n", lost, r.Pattern)
		}
		printHops(c.stdout, r.DroppedAt, [2]string{"unexplained", unexplained})
		if r.Unexplained != nil && *r.Unexplained < 0 {
			fmt.Fprintf(c.stdout, "the hops dropped %d more than were lost: another client's, or another topic's on the same daemon\n", -*r.Unexplained)
		}
	}
	if len(r.RefusedAt) > 0 {
		fmt.Fprintln(c.stdout, "refused with an answer to the sender (errors or resends, not lost):")
		printHops(c.stdout, r.RefusedAt)
	}
}

// rssKiB returns the process's resident set size (VmRSS in
// /proc/self/status), or -1 where that file does not exist.
func rssKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return n
				}
			}
		}
	}
	return -1
}
