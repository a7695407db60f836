package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
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
          direct, fanouts, notifications, sinks, and the pool
  record  with --journal: appends its payload to the journal file
and listens for notifications on --topic in the pool --pool. Prints one JSON
line {"ready":true,...} on stdout once it is reachable. On SIGINT or SIGTERM
it deregisters, finishes what it accepted, prints its final counters as one
JSON line and exits 0.`,
	maxArgs: 0,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.topic, "topic", "bench", "`topic` to serve and listen to")
		fs.StringVar(&o.name, "name", "", "server `NAME` (default bench-PID@HOST:PORT of its node)")
		fs.StringVar(&o.pool, "pool", "bench", "listener pool `NAME` for the notifications")
		durationVar(fs, &o.work, "work", 0, "how long each 'record' handler works (sleeps) before it writes its journal line")
		fs.StringVar(&o.journal, "journal", "", "append the payload of every 'record' call or cast to `FILE`, one line each, written before the ACK (for loss accounting across a kill)")
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
waiting up to --drain for stragglers, and "dropped_by_servers" what the
servers' nodes counted as dropped: direct casts and fanouts have no flow
control, so a sender faster than a server overflows its lane. Prints a live progress line on a
terminal, then a table, or one JSON object with --json. Exits 1 if any
message was lost or any send failed. Run one client per topic at a time:
the servers' counters do not tell clients apart.`,
	maxArgs: 0,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.topic, "topic", "bench", "`topic` of the bench servers")
		fs.StringVar(&o.pattern, "pattern", "call", "`pattern`: call, cast, direct, fanout or notify")
		fs.IntVar(&o.concurrency, "concurrency", 16, "sending goroutines")
		durationVar(fs, &o.duration, "duration", 10*time.Second, "how long to send")
		fs.Int64Var(&o.count, "count", 0, "stop after `N` messages (0: no limit but --duration)")
		fs.IntVar(&o.size, "size", 64, "payload size in `bytes`")
		fs.Float64Var(&o.rate, "rate", 0, "send at most `N` messages per second in total (0: as fast as the servers answer)")
		durationVar(fs, &o.drain, "drain", 5*time.Second, "how long to wait for the servers' counters to catch up")
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
	// The server process's health, for soak runs.
	Goroutines int   `json:"goroutines"`
	RSSKiB     int64 `json:"rss_kib"`
}

// dropped returns the counter of what the server's node dropped of pattern.
func (s benchStats) dropped(pattern string) uint64 {
	switch pattern {
	case "direct":
		return s.DirectDropped
	case "fanout":
		return s.FanoutDropped
	}
	return 0
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
	n, err := c.startNode(ctx, key, func(cfg *zmqmsg.Config) { cfg.ProxyDir, cfg.RegistrationTTL = c.o.proxyDir, c.o.ttl })
	if err != nil {
		return err
	}
	defer n.close(&err)
	host, _ := os.Hostname() // "" is an acceptable fallback
	name := c.o.name
	if name == "" {
		name = fmt.Sprintf("bench-%d@%s", os.Getpid(), n.t.Node().ID())
	}
	var calls, sinks, notifications atomic.Uint64
	stats := func() benchStats {
		s := n.t.Stats()
		// The engine's CastsRun counts every one-way handler run but
		// notifications: acknowledged, direct and fanout casts.
		acked := int64(s.CastsRun) - int64(s.DirectCastsRun) - int64(s.FanoutsRun)
		return benchStats{
			Server: name, Pool: c.o.pool, Calls: calls.Load(), Casts: uint64(max(acked, 0)),
			Direct: s.DirectCastsRun, Fanouts: s.FanoutsRun, Notifications: notifications.Load(), Sinks: sinks.Load(),
			DirectDropped: s.DirectDropped, FanoutDropped: s.FanoutDropped,
			Goroutines: runtime.NumGoroutine(), RSSKiB: rssKiB(),
		}
	}
	endpoints := zmqmsg.Endpoints{
		"echo": func(_ context.Context, a zmqmsg.Args) (any, error) {
			calls.Add(1)
			return bytes.Clone(a.Raw()), nil // Raw is valid while the handler runs
		},
		"whoami": func(context.Context, zmqmsg.Args) (any, error) {
			calls.Add(1)
			return map[string]any{"server": name, "host": host, "pid": os.Getpid(), "node": n.t.Node().CallEndpoint()}, nil
		},
		"sink": func(context.Context, zmqmsg.Args) (any, error) {
			sinks.Add(1)
			return nil, nil
		},
		"stats": func(context.Context, zmqmsg.Args) (any, error) { return stats(), nil },
	}
	if c.o.journal != "" {
		// Unbuffered: each line is in the kernel's page cache before the
		// handler returns (and so before its ACK), and survives a SIGKILL.
		f, err := os.OpenFile(c.o.journal, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("--journal: %w", err)
		}
		defer f.Close()
		var mu sync.Mutex
		endpoints["record"] = func(ctx context.Context, a zmqmsg.Args) (any, error) {
			if c.o.work > 0 {
				t := time.NewTimer(c.o.work)
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
	srv, err := n.t.Serve(zmqmsg.Target{Exchange: c.g.exchange, Topic: c.o.topic, Server: name}, endpoints)
	if err != nil {
		return fmt.Errorf("serve %s: %w", c.o.topic, err)
	}
	l, err := n.t.Listen([]string{c.o.topic}, c.o.pool, func(context.Context, zmqmsg.Notification) error {
		notifications.Add(1)
		return nil
	})
	if err != nil {
		return errors.Join(fmt.Errorf("listen %s: %w", c.o.topic, err), srv.Stop(context.Background()))
	}
	if err := c.printLine(map[string]any{
		"ready": true, "server": name, "exchange": c.g.exchange, "topic": c.o.topic, "pool": c.o.pool,
		"node": n.t.Node().CallEndpoint(), "pid": os.Getpid(),
	}); err != nil {
		return errors.Join(err, srv.Stop(context.Background()), l.Stop(context.Background()))
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := errors.Join(srv.Stop(sctx), l.Stop(sctx)); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	settle(sctx) // the last replies and ACKs leave before the node closes
	return c.printLine(map[string]any{"stopped": true, "stats": stats()})
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
	Pattern     string  `json:"pattern"`
	Exchange    string  `json:"exchange"`
	Topic       string  `json:"topic"`
	Servers     int     `json:"servers"`
	Pools       int     `json:"pools,omitempty"`
	Concurrency int     `json:"concurrency"`
	Size        int     `json:"size"`
	ElapsedS    float64 `json:"elapsed_s"`
	Sent        int64   `json:"sent"`
	OK          int64   `json:"ok"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	Expected    int64   `json:"expected"`
	Received    int64   `json:"received"`
	Lost        int64   `json:"lost"`
	Dropped     int64   `json:"dropped_by_servers"`
	Extra       int64   `json:"extra,omitempty"`
	Rate        float64 `json:"msgs_per_s"`
	Latency     struct {
		P50 float64 `json:"p50"`
		P90 float64 `json:"p90"`
		P99 float64 `json:"p99"`
		Max float64 `json:"max"`
	} `json:"latency_ms"`
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

	servers, err := c.benchServers(ctx, n)
	if err != nil {
		return err
	}
	// A server the directory still lists but that does not answer (killed,
	// its registration not yet expired) is left out of the run's accounting.
	before, err := c.benchStats(ctx, n, servers, true)
	if err != nil {
		return err
	}
	if len(before) == 0 {
		return fmt.Errorf("bench: none of the %d servers of %s answered: %w", len(servers), c.o.topic, zmqmsg.ErrNoServers)
	}
	servers = servers[:0]
	for name := range before {
		servers = append(servers, name)
	}
	sort.Strings(servers)
	pools := map[string]bool{}
	for _, s := range before {
		pools[s.Pool] = true
	}

	send := c.sender(n)
	var (
		sent, ok, failed atomic.Int64
		claimed          atomic.Int64
		firstErr         atomic.Pointer[error]
		wg               sync.WaitGroup
	)
	hists := make([]*histogram, o.concurrency)
	stop := make(chan struct{})
	start := time.Now()
	deadline := time.AfterFunc(o.duration, func() { close(stop) })
	for g := range o.concurrency {
		h := &histogram{}
		hists[g] = h
		wg.Add(1)
		go func() {
			defer wg.Done()
			// --rate: each goroutine sends its share on a fixed schedule,
			// catching up after a slow message but never bursting ahead.
			var every time.Duration
			var next time.Time
			if o.rate > 0 {
				every = time.Duration(float64(time.Second) * float64(o.concurrency) / o.rate)
				next = time.Now()
			}
			for {
				if every > 0 {
					if wait := time.Until(next); wait > 0 {
						t := time.NewTimer(wait)
						select {
						case <-t.C:
						case <-stop:
							t.Stop()
							return
						case <-ctx.Done():
							t.Stop()
							return
						}
					}
					next = next.Add(every)
				}
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				if o.count > 0 && claimed.Add(1) > o.count {
					return
				}
				sent.Add(1)
				octx, cancel := context.WithTimeout(ctx, c.g.timeout)
				t0 := time.Now()
				err := send(octx)
				d := time.Since(t0)
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				ok.Add(1)
				h.record(d)
			}
		}()
	}
	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	if isTerminal(c.stdout) && !c.g.json {
		progressWG.Add(1)
		go func() {
			defer progressWG.Done()
			c.progress(progressDone, start, &sent, &ok, &failed)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	deadline.Stop()
	close(progressDone)
	progressWG.Wait()

	mult := int64(1)
	switch o.pattern {
	case "fanout":
		mult = int64(len(servers))
	case "notify":
		mult = int64(len(pools))
	}
	r := benchResult{
		Pattern: o.pattern, Exchange: c.g.exchange, Topic: o.topic, Servers: len(servers), Concurrency: o.concurrency,
		Size: o.size, ElapsedS: elapsed.Seconds(), Sent: sent.Load(), OK: ok.Load(), Errors: failed.Load(),
		Expected: ok.Load() * mult,
	}
	if o.pattern == "notify" {
		r.Pools = len(pools)
	}
	if p := firstErr.Load(); p != nil {
		r.FirstError = (*p).Error()
	}
	r.Received, r.Dropped, err = c.drain(ctx, n, servers, before, r.Expected)
	if err != nil {
		return err
	}
	r.Lost = max(r.Expected-r.Received, 0)
	r.Extra = max(r.Received-r.Expected, 0)
	r.Rate = float64(r.OK) / elapsed.Seconds()
	all := &histogram{}
	for _, h := range hists {
		all.merge(h)
	}
	r.Latency.P50, r.Latency.P90, r.Latency.P99 = ms(all.percentile(50)), ms(all.percentile(90)), ms(all.percentile(99))
	r.Latency.Max = ms(all.max)
	if c.g.json {
		err = c.printValue(r)
	} else {
		err = c.printBench(r)
	}
	if err != nil {
		return err
	}
	if r.Lost > 0 || r.Errors > 0 {
		return &lostError{lost: r.Lost, errors: r.Errors}
	}
	return nil
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

// benchServers returns the names of the servers of --topic.
func (c *cli) benchServers(ctx context.Context, n *node) ([]string, error) {
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
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Server
	}
	return names, nil
}

// benchStats calls stats on each server, by name. With skipDead a server
// that does not answer is logged and left out instead of failing the run.
func (c *cli) benchStats(ctx context.Context, n *node, servers []string, skipDead bool) (map[string]benchStats, error) {
	out := make(map[string]benchStats, len(servers))
	for _, name := range servers {
		sctx, cancel := context.WithTimeout(ctx, c.g.timeout)
		var s benchStats
		err := n.t.Client(zmqmsg.Target{Exchange: c.g.exchange, Topic: c.o.topic, Server: name}).Call(sctx, "stats", nil, &s)
		cancel()
		if err != nil && skipDead {
			c.log.Warn("bench: a listed server does not answer; left out", "server", name, "err", err)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stats of %s: %w", name, err)
		}
		out[name] = s
	}
	return out, nil
}

// drainPoll is how often drain reads the servers' counters; drainStable is
// how long they must stay unchanged, short of the expected total, before
// drain gives up early.
const (
	drainPoll   = 100 * time.Millisecond
	drainStable = time.Second
)

// drain reads the servers' counters until they add up to expected, stay
// unchanged for drainStable, or --drain passes, and returns what the
// servers received since before, and what their nodes dropped.
func (c *cli) drain(ctx context.Context, n *node, servers []string, before map[string]benchStats, expected int64) (got, dropped int64, err error) {
	limit := time.Now().Add(c.o.drain)
	var last int64 = -1
	lastChange := time.Now()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		after, err := c.benchStats(context.WithoutCancel(ctx), n, servers, false)
		if err != nil {
			return 0, 0, err
		}
		got, dropped = 0, 0
		for name, s := range after {
			got += int64(s.received(c.o.pattern)) - int64(before[name].received(c.o.pattern))
			dropped += int64(s.dropped(c.o.pattern)) - int64(before[name].dropped(c.o.pattern))
		}
		now := time.Now()
		if got != last {
			last, lastChange = got, now
		}
		if got >= expected || now.After(limit) || now.Sub(lastChange) >= drainStable || ctx.Err() != nil {
			return got, dropped, nil
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
	fmt.Fprintf(c.stdout, ", concurrency %d, %d bytes, %.2fs\n", r.Concurrency, r.Size, r.ElapsedS)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "sent\tok\terrors\texpected\treceived\tlost\tmsgs/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\t")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%.0f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", r.Sent, r.OK, r.Errors, r.Expected, r.Received,
		r.Lost, r.Rate, r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write stdout: %w", err)
	}
	if r.Dropped > 0 {
		fmt.Fprintf(c.stdout, "the servers' nodes dropped %d (their lanes were full: %s has no flow control)\n", r.Dropped, r.Pattern)
	}
	if r.Extra > 0 {
		fmt.Fprintf(c.stdout, "%d more received than expected (duplicates, or another client)\n", r.Extra)
	}
	if r.FirstError != "" {
		fmt.Fprintf(c.stdout, "first error: %s\n", r.FirstError)
	}
	return nil
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
