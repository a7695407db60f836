// Command zmqmsg-demo shows zmqmsg's four patterns end to end, in one
// process: CALL, CAST (acknowledged and direct), FANOUT and NOTIFY.
//
// It starts two nodes (two Transports) on 127.0.0.1, each on a free port,
// sharing the embedded in-memory directory. Node A serves the topic
// "calculator" with two servers, calc-1 and calc-2; node B calls them over
// TCP: round robin, a named server, a remote error, an unknown method, a
// timeout, a topic nobody serves, acknowledged and direct casts, a fanout,
// notifications to two listener pools, and a short concurrent burst. It prints
// both nodes' counters and closes everything.
//
//	go run ./cmd/zmqmsg-demo [-calls 2000] [-concurrency 16] [-v]
//
// It exits non-zero if anything does not behave as documented.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg"
)

const topic = "calculator"

// Pair is the arguments of add and div.
type Pair struct {
	A, B int
}

// Result is what add and div return: the value and which server computed it.
type Result struct {
	Value  int
	Server string
}

// SlowArgs is the argument of slow: how long the simulated work takes.
type SlowArgs struct {
	Work time.Duration
}

// DivisionByZero is div's error. Its ErrorType is what the caller sees as
// RemoteError.Type (named after Python's, as an oslo.messaging peer would).
type DivisionByZero struct{ A int }

func (e *DivisionByZero) Error() string     { return fmt.Sprintf("cannot divide %d by zero", e.A) }
func (e *DivisionByZero) ErrorType() string { return "ZeroDivisionError" }

// ledger receives the demo's casts: which server ran "record" for what.
type ledger struct {
	mu      sync.Mutex
	entries map[string][]int
	got     chan struct{} // one per recorded cast
}

// calculator returns the endpoints of one server named name.
func calculator(name string, l *ledger) zmqmsg.Endpoints {
	return zmqmsg.Endpoints{
		// record is cast (one-way): nobody waits for its result.
		"record": zmqmsg.Method(func(ctx context.Context, v int) (struct{}, error) {
			l.mu.Lock()
			l.entries[name] = append(l.entries[name], v)
			l.mu.Unlock()
			l.got <- struct{}{}
			return struct{}{}, nil
		}),
		"add": zmqmsg.Method(func(ctx context.Context, p Pair) (Result, error) {
			return Result{Value: p.A + p.B, Server: name}, nil
		}),
		"div": zmqmsg.Method(func(ctx context.Context, p Pair) (Result, error) {
			if p.B == 0 {
				return Result{}, &DivisionByZero{A: p.A}
			}
			return Result{Value: p.A / p.B, Server: name}, nil
		}),
		"slow": zmqmsg.Method(func(ctx context.Context, a SlowArgs) (string, error) {
			// Simulated work: it ends early when the caller gives up.
			t := time.NewTimer(a.Work)
			defer t.Stop()
			select {
			case <-t.C:
				return "done by " + name, nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}),
	}
}

func main() {
	calls := flag.Int("calls", 2000, "number of calls in the burst")
	concurrency := flag.Int("concurrency", 16, "goroutines calling in the burst")
	verbose := flag.Bool("v", false, "debug logs (slog) to stderr")
	flag.Parse()
	if *calls < 1 || *concurrency < 1 {
		fmt.Fprintln(os.Stderr, "zmqmsg-demo: -calls and -concurrency must be at least 1")
		os.Exit(2)
	}
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	if err := run(ctx, os.Stdout, logger, *calls, *concurrency); err != nil {
		fmt.Fprintln(os.Stderr, "zmqmsg-demo: FAILED:", err)
		stop()
		os.Exit(1)
	}
	fmt.Printf("servers stopped, nodes closed; total %s\n", time.Since(start).Round(time.Millisecond))
}

// run is the demo; every deviation from the documented behaviour is an
// error. It returns once the servers are stopped and both nodes closed.
func run(ctx context.Context, w io.Writer, logger *slog.Logger, calls, concurrency int) (err error) {
	major, minor, patch := zmq.Version()
	fmt.Fprintf(w, "zmqmsg demo: CALL, CAST, FANOUT and NOTIFY over ZeroMQ (libzmq %d.%d.%d), two nodes in one process, in-memory directory\n\n", major, minor, patch)

	// Two nodes. Directory nil = the process-wide in-memory directory, so
	// node B finds what node A serves. AnyPort never collides.
	a, err := zmqmsg.New(zmqmsg.Config{Host: "127.0.0.1", Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}, Logger: logger.With("node", "A")})
	if err != nil {
		return fmt.Errorf("start node A: %w", err)
	}
	defer closeAll(&err, "close node A", a.Close)
	b, err := zmqmsg.New(zmqmsg.Config{Host: "127.0.0.1", Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}, Logger: logger.With("node", "B")})
	if err != nil {
		return fmt.Errorf("start node B: %w", err)
	}
	defer closeAll(&err, "close node B", b.Close)

	var servers []*zmqmsg.Server
	led := &ledger{entries: map[string][]int{}, got: make(chan struct{}, 64)}
	for _, name := range []string{"calc-1", "calc-2"} {
		s, err := a.Serve(zmqmsg.Target{Topic: topic, Server: name}, calculator(name, led))
		if err != nil {
			return fmt.Errorf("serve %s: %w", name, err)
		}
		servers = append(servers, s)
	}
	defer func() {
		for _, s := range servers {
			stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			closeAll(&err, "stop server "+s.Name(), func() error { return s.Stop(stopCtx) })
			cancel()
		}
	}()
	fmt.Fprintf(w, "node A  %-21s serves %q: calc-1, calc-2\n", a.Node().CallEndpoint(), topic)
	fmt.Fprintf(w, "node B  %-21s calls it over TCP\n", b.Node().CallEndpoint())

	d := &demo{ctx: ctx, w: w, a: a, b: b, calc: b.Client(zmqmsg.Target{Topic: topic}), led: led}
	steps := []struct {
		title string
		run   func() error
	}{
		{"round robin (first call includes the TCP connect)", d.roundRobin},
		{"named server", d.namedServer},
		{"errors", d.failures},
		{"cast (one-way, acknowledged once the server has it)", d.casts},
		{"direct cast (PUSH/PULL, no ack, in order per server)", d.directCasts},
		{"fanout (every server of the topic, each in order)", d.fanout},
		{"notify (listener pools, own port: each pool gets one copy)", func() error { return notifyDemo(ctx, w, a, b) }},
		{fmt.Sprintf("burst: %d calls from %d goroutines", calls, concurrency), func() error { return burst(ctx, w, d.calc, calls, concurrency) }},
		{"stats", d.stats},
		{"CURVE (encrypted, only listed keys get in)", func() error { return curveDemo(ctx, w, logger) }},
	}
	for _, step := range steps {
		section(w, step.title)
		if err := step.run(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "across processes and machines: the Redis directory, zmqmsg-proxy and the zmqmsg CLI (see README)")
	return nil
}

// curveDemo starts a secured node serving "vault" that lists one client
// key, and calls it from that client, from a stranger with another key and
// from a node without Security; it is skipped where libzmq lacks CURVE.
func curveDemo(ctx context.Context, w io.Writer, logger *slog.Logger) (err error) {
	if !zmq.HasCurve() {
		fmt.Fprintln(w, "  skipped: this libzmq was built without CURVE")
		return nil
	}
	type keys struct{ pub, sec string }
	var srvKey, cliKey, strangerKey keys
	for _, k := range []*keys{&srvKey, &cliKey, &strangerKey} {
		if k.pub, k.sec, err = zmqmsg.NewKeyPair(); err != nil {
			return err
		}
	}
	node := func(name string, sec *zmqmsg.Security) (*zmqmsg.Transport, error) {
		return zmqmsg.New(zmqmsg.Config{Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}, Security: sec, Logger: logger.With("node", name)})
	}
	srv, err := node("vault", &zmqmsg.Security{PublicKey: srvKey.pub, SecretKey: srvKey.sec, AllowedClients: []string{cliKey.pub}})
	if err != nil {
		return fmt.Errorf("start the secured node: %w", err)
	}
	defer closeAll(&err, "close the secured node", srv.Close)
	s, err := srv.Serve(zmqmsg.Target{Topic: "vault"}, zmqmsg.Endpoints{"open": zmqmsg.Method(func(context.Context, string) (string, error) { return "opened", nil })})
	if err != nil {
		return err
	}
	defer closeAll(&err, "stop vault", func() error { return s.Stop(context.Background()) })
	fmt.Fprintf(w, "  node %s serves \"vault\", publishes public key %s…, allows 1 client key\n", srv.Node().CallEndpoint(), srv.Node().CurveKey[:8])
	for _, c := range []struct {
		name string
		sec  *zmqmsg.Security
	}{
		{"listed key", &zmqmsg.Security{PublicKey: cliKey.pub, SecretKey: cliKey.sec}},
		{"unknown key", &zmqmsg.Security{PublicKey: strangerKey.pub, SecretKey: strangerKey.sec}},
		{"no Security", nil},
	} {
		cn, err := node(c.name, c.sec)
		if err != nil {
			return err
		}
		var got string
		t0 := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cerr := cn.Client(zmqmsg.Target{Topic: "vault"}).Call(cctx, "open", "please", &got)
		cancel()
		lat := time.Since(t0)
		closeAll(&err, "close "+c.name, cn.Close)
		switch {
		case c.sec != nil && c.sec.PublicKey == cliKey.pub && cerr == nil:
			row(w, c.name, "answered: "+got, lat)
		case c.sec != nil && c.sec.PublicKey == strangerKey.pub && errors.Is(cerr, zmqmsg.ErrUnauthorized):
			row(w, c.name, "refused in the handshake (ErrUnauthorized)", lat)
		case c.sec == nil && errors.Is(cerr, zmqmsg.ErrSecurityRequired):
			row(w, c.name, "refused before sending (ErrSecurityRequired)", lat)
		default:
			return fmt.Errorf("CURVE, %s: unexpected result %q, %v", c.name, got, cerr)
		}
	}
	st := srv.Stats()
	fmt.Fprintf(w, "  the secured node accepted %d connections, refused %d (logged without keys)\n", st.AuthAllowed, st.AuthDenied)
	return nil
}

// notifyDemo runs two listener pools: "billing" with two members, "audit"
// with one, and sends six notifications.
func notifyDemo(ctx context.Context, w io.Writer, a, b *zmqmsg.Transport) error {
	var mu sync.Mutex
	got := map[string][]string{}
	arrived := make(chan struct{}, 64)
	listener := func(name string) func(context.Context, zmqmsg.Notification) error {
		return func(_ context.Context, n zmqmsg.Notification) error {
			var v int
			if err := n.Decode(&v); err != nil {
				return err
			}
			mu.Lock()
			got[name] = append(got[name], fmt.Sprintf("%s:%d", n.Priority, v))
			mu.Unlock()
			arrived <- struct{}{}
			return nil
		}
	}
	var listeners []*zmqmsg.Listener
	defer func() {
		for _, l := range listeners {
			stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = l.Stop(stopCtx)
			cancel()
		}
	}()
	for _, spec := range []struct {
		node       *zmqmsg.Transport
		pool, name string
	}{{a, "billing", "billing-1"}, {b, "billing", "billing-2"}, {a, "audit", "audit-1"}} {
		l, err := spec.node.Listen([]string{"instances"}, spec.pool, listener(spec.name))
		if err != nil {
			return fmt.Errorf("listen %s: %w", spec.name, err)
		}
		listeners = append(listeners, l)
	}
	notifier := b.Notifier("demo-publisher", "instances")
	priorities := []zmqmsg.Priority{zmqmsg.Info, zmqmsg.Warn, zmqmsg.Error, zmqmsg.Info, zmqmsg.Audit, zmqmsg.Critical}
	for i, p := range priorities {
		nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		t0 := time.Now()
		err := notifier.Notify(nctx, p, "instance.update", i)
		cancel()
		if err != nil {
			return fmt.Errorf("notify %d: %w", i, err)
		}
		row(w, fmt.Sprintf("%s instance.update %d", p, i), "every pool has it", time.Since(t0))
	}
	for i := 0; i < 2*len(priorities); i++ {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("only %d of %d notification copies arrived", i, 2*len(priorities))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Fprintf(w, "  pool billing: billing-1 %v, billing-2 %v\n", got["billing-1"], got["billing-2"])
	fmt.Fprintf(w, "  pool audit:   audit-1 %v\n", got["audit-1"])
	if len(got["billing-1"])+len(got["billing-2"]) != len(priorities) || len(got["audit-1"]) != len(priorities) {
		return fmt.Errorf("each pool must get each notification once: %v", got)
	}
	return nil
}

// call is Client.Call with a deadline, so that the demo never hangs.
func call(ctx context.Context, c *zmqmsg.Client, method string, args, reply any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Call(ctx, method, args, reply); err != nil {
		return fmt.Errorf("call %s: %w", method, err)
	}
	return nil
}

// burst runs calls add calls from concurrency goroutines and prints the
// throughput and latency percentiles.
func burst(ctx context.Context, w io.Writer, c *zmqmsg.Client, calls, concurrency int) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	lat := make([]time.Duration, calls)
	served := make([]map[string]int, concurrency)
	var next atomic.Int64
	var (
		mu       sync.Mutex
		firstErr error
	)
	var wg sync.WaitGroup
	t0 := time.Now()
	for g := range concurrency {
		served[g] = map[string]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= calls || ctx.Err() != nil {
					return
				}
				var r Result
				s := time.Now()
				err := c.Call(ctx, "add", Pair{i, 1}, &r)
				lat[i] = time.Since(s)
				if err == nil && r.Value != i+1 {
					err = fmt.Errorf("add(%d, 1) = %d", i, r.Value)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("burst call %d: %w", i, err)
						cancel()
					}
					mu.Unlock()
					return
				}
				served[g][r.Server]++
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if firstErr != nil {
		return firstErr
	}
	total := map[string]int{}
	for _, m := range served {
		for k, v := range m {
			total[k] += v
		}
	}
	slices.Sort(lat)
	fmt.Fprintf(w, "  %d calls in %s: %.0f calls/s\n", calls, elapsed.Round(time.Millisecond), float64(calls)/elapsed.Seconds())
	fmt.Fprintf(w, "  latency  p50 %s  p99 %s  max %s\n", ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(lat[len(lat)-1]))
	fmt.Fprintf(w, "  answered by calc-1: %d, calc-2: %d\n", total["calc-1"], total["calc-2"])
	if total["calc-1"]+total["calc-2"] != calls {
		return fmt.Errorf("burst: answers %v, want %d from calc-1 and calc-2", total, calls)
	}
	return nil
}

// percentile returns the nearest-rank p-th percentile of sorted.
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p+99)/100 - 1
	return sorted[max(i, 0)]
}

// printStats prints the two nodes' counters side by side, in columns: the
// fields of zmqmsg.Stats in declaration order, names to the left, values
// to the right; a counter that is zero on both nodes is left out.
func printStats(w io.Writer, a, b zmqmsg.Stats) {
	type row struct{ name, a, b string }
	rows := []row{{"", "node A", "node B"}}
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		if va.Field(i).IsZero() && vb.Field(i).IsZero() {
			continue
		}
		rows = append(rows, row{va.Type().Field(i).Name, fmt.Sprint(va.Field(i)), fmt.Sprint(vb.Field(i))})
	}
	var wn, wv int
	for _, r := range rows {
		wn, wv = max(wn, len(r.name)), max(wv, len(r.a), len(r.b))
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-*s  %*s  %*s\n", wn, r.name, wv, r.a, wv, r.b)
	}
}

func section(w io.Writer, title string) { fmt.Fprintf(w, "\n%s:\n", title) }

func row(w io.Writer, what, outcome string, lat time.Duration) {
	fmt.Fprintf(w, "  %-28s %9s  %s\n", what, ms(lat), outcome)
}

// ms formats d in milliseconds with two decimals.
func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// closeAll runs fn and records its error in *err unless *err is already set.
func closeAll(err *error, what string, fn func() error) {
	if e := fn(); e != nil && *err == nil {
		*err = fmt.Errorf("%s: %w", what, e)
	}
}
