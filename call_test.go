package zmqmsg

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/testutil"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// The tests in this file are rows 1-11, 28 and 29 of shared/ACCEPTANCE.md,
// run over both wait strategies where the strategy matters.

// newDir returns a private in-memory directory, so that tests never see
// each other's servers.
func newDir(t testing.TB) *directory.Memory {
	t.Helper()
	d := directory.NewMemory()
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// newNode starts a Transport on a free port; mod may adjust its Config.
func newNode(t testing.TB, dir directory.Directory, mod ...func(*Config)) *Transport {
	t.Helper()
	cfg := Config{Directory: dir, Ports: Ports{Call: AnyPort}}
	for _, m := range mod {
		m(&cfg)
	}
	return startTransport(t, cfg)
}

// startTransport starts a Transport of cfg with opts, closed at cleanup.
func startTransport(t testing.TB, cfg Config, opts ...Option) *Transport {
	t.Helper()
	tr, err := New(cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr
}

func serve(t testing.TB, tr *Transport, target Target, eps Endpoints) *Server {
	t.Helper()
	s, err := tr.Serve(target, eps)
	if err != nil {
		t.Fatalf("Serve %+v: %v", target, err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

type echoed struct {
	Server string
	Seq    int
}

// whoAmI returns endpoints whose "who" method answers with the server name
// and echoes the sequence number, counting calls per server.
func whoAmI(name string, hits *sync.Map) Endpoints {
	return Endpoints{"who": Method(func(ctx context.Context, seq int) (echoed, error) {
		n, _ := hits.LoadOrStore(name, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		return echoed{Server: name, Seq: seq}, nil
	})}
}

func forStrategies(t *testing.T, f func(t *testing.T, s WaitStrategy)) {
	for _, s := range []WaitStrategy{WaitNetpoll, WaitZMQPoll} {
		t.Run(s.String(), func(t *testing.T) { f(t, s) })
	}
}

// Row 1: round robin over 3 servers; replies in order; none lost or duplicated.
func TestCallRoundRobin(t *testing.T) {
	forStrategies(t, func(t *testing.T, s WaitStrategy) {
		dir := newDir(t)
		strategy := func(c *Config) { c.WaitStrategy = s }
		server := newNode(t, dir, strategy)
		var hits sync.Map
		for _, name := range []string{"s1", "s2", "s3"} {
			serve(t, server, Target{Topic: "rr", Server: name}, whoAmI(name, &hits))
		}
		c := newNode(t, dir, strategy).Client(Target{Topic: "rr"})
		ctx := testCtx(t, 20*time.Second)
		for i := 0; i < 30; i++ {
			var got echoed
			if err := c.Call(ctx, "who", i, &got); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			if got.Seq != i {
				t.Fatalf("call %d got the reply of call %d", i, got.Seq)
			}
		}
		total := int64(0)
		for _, name := range []string{"s1", "s2", "s3"} {
			n, ok := hits.Load(name)
			if !ok || n.(*atomic.Int64).Load() == 0 {
				t.Fatalf("server %s got no call", name)
			}
			total += n.(*atomic.Int64).Load()
		}
		if total != 30 {
			t.Fatalf("servers ran %d calls, want exactly 30", total)
		}
	})
}

// Row 2: a named server, and only it, takes the call.
func TestCallNamedServer(t *testing.T) {
	dir := newDir(t)
	node := newNode(t, dir)
	var state [3]atomic.Int64
	for i := range state {
		serve(t, node, Target{Topic: "named", Server: fmt.Sprintf("s%d", i+1)}, Endpoints{
			"incr": Method(func(ctx context.Context, by int64) (int64, error) { return state[i].Add(by), nil }),
		})
	}
	c := newNode(t, dir).Client(Target{Topic: "named", Server: "s2"})
	ctx := testCtx(t, 10*time.Second)
	for i := 0; i < 10; i++ {
		if err := c.Call(ctx, "incr", 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	if a, b, c := state[0].Load(), state[1].Load(), state[2].Load(); a != 0 || b != 10 || c != 0 {
		t.Fatalf("state s1=%d s2=%d s3=%d, want 0 10 0", a, b, c)
	}
}

// Row 3: the same topic in two exchanges reaches only its own servers.
func TestCallExchangesIsolate(t *testing.T) {
	dir := newDir(t)
	node := newNode(t, dir)
	for _, ex := range []string{"nova", "cinder"} {
		serve(t, node, Target{Exchange: ex, Topic: "compute"}, Endpoints{
			"where": Method(func(ctx context.Context, _ struct{}) (string, error) { return ex, nil }),
		})
	}
	client := newNode(t, dir, func(c *Config) { c.WaitForServers = 100 * time.Millisecond })
	ctx := testCtx(t, 10*time.Second)
	for _, ex := range []string{"nova", "cinder", "nova", "cinder"} {
		var got string
		if err := client.Client(Target{Exchange: ex, Topic: "compute"}).Call(ctx, "where", nil, &got); err != nil {
			t.Fatal(err)
		}
		if got != ex {
			t.Fatalf("call in exchange %q answered by %q", ex, got)
		}
	}
	// The default exchange has no "compute" server at all.
	err := client.Client(Target{Topic: "compute"}).Call(ctx, "where", nil, nil)
	if !errors.Is(err, ErrNoServers) {
		t.Fatalf("default exchange: %v, want ErrNoServers", err)
	}
}

// Row 4: no servers fails with ErrNoServers, not with a timeout.
func TestCallNoServers(t *testing.T) {
	dir := newDir(t)
	node := newNode(t, dir, func(c *Config) { c.WaitForServers = 100 * time.Millisecond })
	serve(t, node, Target{Topic: "known", Server: "only"}, whoAmI("only", new(sync.Map)))
	ctx := testCtx(t, 30*time.Second)
	for _, target := range []Target{{Topic: "nobody"}, {Topic: "known", Server: "other"}} {
		err := node.Client(target).Call(ctx, "who", 1, nil)
		if !errors.Is(err, ErrNoServers) || errors.Is(err, ErrTimeout) {
			t.Fatalf("%+v: %v, want ErrNoServers", target, err)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("ErrNoServers came only after the call's deadline")
	}
}

type quotaError struct{ left int }

func (e *quotaError) Error() string     { return fmt.Sprintf("quota exceeded, %d left", e.left) }
func (e *quotaError) ErrorType() string { return "QuotaExceeded" }

// Row 5: remote errors, unknown methods and panics come back as RemoteError.
func TestCallRemoteErrors(t *testing.T) {
	dir := newDir(t)
	node := newNode(t, dir)
	serve(t, node, Target{Topic: "errs"}, Endpoints{
		"plain": func(ctx context.Context, a Args) (any, error) { return nil, errors.New("disk on fire") },
		"typed": func(ctx context.Context, a Args) (any, error) { return nil, &quotaError{left: 3} },
		"panic": func(ctx context.Context, a Args) (any, error) { panic("handler bug") },
		"ok":    func(ctx context.Context, a Args) (any, error) { return "fine", nil },
	})
	c := newNode(t, dir).Client(Target{Topic: "errs"})
	ctx := testCtx(t, 10*time.Second)
	cases := []struct {
		method, typ, msg string
	}{
		{"plain", "*errors.errorString", "disk on fire"},
		{"typed", "QuotaExceeded", "quota exceeded, 3 left"},
		{"panic", "panic", "handler bug"},
		{"nope", "NoSuchMethod", `"nope"`},
	}
	for _, tc := range cases {
		err := c.Call(ctx, tc.method, nil, nil)
		var re *RemoteError
		if !errors.As(err, &re) {
			t.Fatalf("%s: %v (%T), want *RemoteError", tc.method, err, err)
		}
		if re.Type != tc.typ || !bytes.Contains([]byte(re.Message), []byte(tc.msg)) {
			t.Fatalf("%s: RemoteError{%q, %q}, want type %q containing %q", tc.method, re.Type, re.Message, tc.typ, tc.msg)
		}
		if got := errors.Is(err, ErrNoSuchMethod); got != (tc.method == "nope") {
			t.Fatalf("%s: errors.Is(ErrNoSuchMethod) = %v", tc.method, got)
		}
	}
	// The server survived the panic.
	var s string
	if err := c.Call(ctx, "ok", nil, &s); err != nil || s != "fine" {
		t.Fatalf("after panic: %q, %v", s, err)
	}
	if st := node.Stats(); st.HandlerPanics != 1 || st.HandlerErrors != 2 {
		t.Fatalf("server stats: %d panics, %d handler errors; want 1 and 2", st.HandlerPanics, st.HandlerErrors)
	}
}

// Row 6: a slow call times out while short calls on the same client succeed;
// its late reply is counted and dropped.
func TestCallTimeout(t *testing.T) {
	dir := newDir(t)
	node := newNode(t, dir)
	release := make(chan struct{})
	serve(t, node, Target{Topic: "slow"}, Endpoints{
		// Ignores its ctx on purpose, so that its reply comes late.
		"slow": func(ctx context.Context, a Args) (any, error) {
			<-release
			return "late", nil
		},
		"fast": Method(func(ctx context.Context, i int) (int, error) { return i, nil }),
	})
	clientNode := newNode(t, dir)
	c := clientNode.Client(Target{Topic: "slow"})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	slowErr := make(chan error, 1)
	go func() { slowErr <- c.Call(ctx, "slow", nil, nil) }()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got int
			if err := c.Call(testCtx(t, 10*time.Second), "fast", i, &got); err != nil || got != i {
				errs <- fmt.Errorf("fast call %d: %d, %v", i, got, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	err := <-slowErr
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow call: %v, want ErrTimeout matching context.DeadlineExceeded", err)
	}
	close(release) // the handler answers now, after its caller gave up
	testutil.WaitFor(t, 5*time.Second, "the late reply to be counted", func() bool { return clientNode.Stats().LateReplies == 1 })
	if st := clientNode.Stats(); st.Timeouts != 1 || st.UnmatchedReplies != 0 || st.PendingCalls != 0 {
		t.Fatalf("client stats %+v: want 1 timeout, 0 unmatched, 0 pending", st)
	}
}

// Row 7: cancellation returns at once; an ended ctx sends nothing.
func TestCallCancellation(t *testing.T) {
	dir := newDir(t)
	node := newNode(t, dir)
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release) // before the server's Stop in Cleanup
	var ran atomic.Int64
	serve(t, node, Target{Topic: "cancel"}, Endpoints{
		// A caller's cancellation is not sent to the server: the handler
		// runs until its deadline, or here until the test releases it.
		"block": func(ctx context.Context, a Args) (any, error) {
			ran.Add(1)
			started <- struct{}{}
			select {
			case <-ctx.Done():
			case <-release:
			}
			return nil, nil
		},
	})
	clientNode := newNode(t, dir)
	c := clientNode.Client(Target{Topic: "cancel"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Call(ctx, "block", nil, nil) }()
	<-started
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
			t.Fatalf("cancelled call: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled call did not return")
	}
	before := clientNode.Stats().Calls
	if err := c.Call(ctx, "block", nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("call with an ended ctx: %v", err)
	}
	if after := clientNode.Stats().Calls; after != before || ran.Load() != 1 {
		t.Fatalf("a call with an ended ctx sent something: calls %d -> %d, handler ran %d times", before, after, ran.Load())
	}
}

// Row 8: a call made before its server exists succeeds once it is up.
func TestCallBeforeServerIsUp(t *testing.T) {
	dir := newDir(t)
	clientNode := newNode(t, dir, func(c *Config) { c.WaitForServers = 10 * time.Second })
	c := clientNode.Client(Target{Topic: "later"}) // made before any server exists
	done := make(chan error, 1)
	var got echoed
	go func() { done <- c.Call(testCtx(t, 20*time.Second), "who", 7, &got) }()
	serverNode := newNode(t, dir)
	serve(t, serverNode, Target{Topic: "later", Server: "late-riser"}, whoAmI("late-riser", new(sync.Map)))
	select {
	case err := <-done:
		if err != nil || got != (echoed{"late-riser", 7}) {
			t.Fatalf("early call: %+v, %v", got, err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("early call never returned")
	}
}

// Row 9: 20,000 sequential and 10,000 concurrent calls from 64 goroutines
// each get their own reply, with no timeout.
func TestCallNoLostReplies(t *testing.T) {
	seq, conc := 20_000, 10_000
	if testing.Short() {
		seq, conc = 2_000, 2_000
	}
	dir := newDir(t)
	serve(t, newNode(t, dir), Target{Topic: "echo"}, Endpoints{
		"echo": func(ctx context.Context, a Args) (any, error) { return a.Raw(), nil },
	})
	clientNode := newNode(t, dir)
	c := clientNode.Client(Target{Topic: "echo"})
	ctx := testCtx(t, 2*time.Minute)
	call := func(i int) error {
		want := []byte(fmt.Sprintf("request-%d", i))
		var got []byte
		if err := c.Call(ctx, "echo", want, &got); err != nil {
			return fmt.Errorf("call %d: %w", i, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("call %d got %q", i, got)
		}
		return nil
	}
	for i := 0; i < seq; i++ {
		if err := call(i); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := seq + g; i < seq+conc; i += 64 {
				if err := call(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := clientNode.Stats()
	if st.Calls != uint64(seq+conc) || st.CallErrors != 0 || st.Timeouts != 0 || st.LateReplies != 0 || st.UnmatchedReplies != 0 {
		t.Fatalf("client stats %+v", st)
	}
}

// Row 10: payloads of 0, 64 bytes and 4 MiB round-trip; over the maximum is
// refused on the sending side.
func TestCallPayloads(t *testing.T) {
	dir := newDir(t)
	var handled atomic.Int64
	serve(t, newNode(t, dir), Target{Topic: "blob"}, Endpoints{
		"echo": func(ctx context.Context, a Args) (any, error) {
			handled.Add(1)
			return a.Raw(), nil
		},
	})
	c := newNode(t, dir, func(c *Config) { c.MaxMessageSize = 5 << 20 }).Client(Target{Topic: "blob"})
	ctx := testCtx(t, 30*time.Second)
	for _, size := range []int{0, 64, 4 << 20} {
		want := make([]byte, size)
		if _, err := rand.Read(want); err != nil {
			t.Fatal(err)
		}
		var got []byte
		if err := c.Call(ctx, "echo", want, &got); err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bytes came back altered (%d bytes)", size, len(got))
		}
	}
	before := handled.Load()
	err := c.Call(ctx, "echo", make([]byte, 5<<20+1), nil)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized call: %v, want ErrTooLarge", err)
	}
	if handled.Load() != before {
		t.Fatal("an oversized call reached the server")
	}
}

// Row 11: servers on two nodes (127.0.0.1 and 127.0.0.2) share a topic.
func TestCallMultiNode(t *testing.T) {
	dir := newDir(t)
	var hits sync.Map
	for i, host := range []string{"127.0.0.1", "127.0.0.2"} {
		node := newNode(t, dir, func(c *Config) { c.Host = host })
		if node.Node().Host != host {
			t.Fatalf("node %d: host %q", i, node.Node().Host)
		}
		serve(t, node, Target{Topic: "spread", Server: host}, whoAmI(host, &hits))
	}
	c := newNode(t, dir).Client(Target{Topic: "spread"})
	ctx := testCtx(t, 10*time.Second)
	seen := map[string]int{}
	for i := 0; i < 20; i++ {
		var got echoed
		if err := c.Call(ctx, "who", i, &got); err != nil {
			t.Fatal(err)
		}
		seen[got.Server]++
	}
	if seen["127.0.0.1"] == 0 || seen["127.0.0.2"] == 0 {
		t.Fatalf("calls per node: %v; want both nodes", seen)
	}
}

// Row 28 (call port): hostile frames from a raw peer are dropped and counted,
// and the node keeps serving.
func TestCallPortRejectsMalformedFrames(t *testing.T) {
	dir := newDir(t)
	node := newNode(t, dir)
	serve(t, node, Target{Topic: "victim"}, whoAmI("victim", new(sync.Map)))

	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer zctx.Term()
	raw, err := zctx.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetLinger(0)
	if err := raw.Connect(node.Node().CallEndpoint()); err != nil {
		t.Fatal(err)
	}
	valid, err := envelope.Encode(&envelope.Message{Kind: envelope.KindReply, ID: envelope.NewID(), Topic: "victim"})
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, 100)
	_, _ = rand.Read(garbage)
	many := make([][]byte, 200)
	for i := range many {
		many[i] = []byte("x")
	}
	// The ROUTER prepends the peer's identity; the last frame is the body.
	hostile := [][][]byte{
		{garbage},                   // random body
		{{}},                        // empty message
		{[]byte("XX\x01\x01")},      // wrong signature
		{[]byte("ZM\x01")},          // truncated header
		{valid[:20]},                // truncated after the id
		many,                        // huge frame count
		{garbage, garbage, garbage}, // routing garbage, garbage body
		{{}, []byte("ZM\x07\x01")},  // REQ-style, bad version
		{valid},                     // a REPLY sent to the call port: wrong kind
	}
	for _, msg := range hostile {
		if _, err := raw.SendMessage(toAny(msg)...); err != nil {
			t.Fatal(err)
		}
	}
	want := uint64(len(hostile))
	testutil.WaitFor(t, 5*time.Second, "every hostile message to be counted", func() bool {
		st := node.Stats()
		return st.MalformedFrames+st.WrongKind >= want
	})
	if st := node.Stats(); st.WrongKind != 1 || st.MalformedFrames != want-1 {
		t.Fatalf("malformed %d, wrong kind %d; want %d and 1", st.MalformedFrames, st.WrongKind, want-1)
	}
	var got echoed
	if err := newNode(t, dir).Client(Target{Topic: "victim"}).Call(testCtx(t, 10*time.Second), "who", 1, &got); err != nil {
		t.Fatalf("after hostile input: %v", err)
	}
}

func toAny(frames [][]byte) []any {
	out := make([]any, len(frames))
	for i, f := range frames {
		out[i] = f
	}
	return out
}

// Row 29: Close with calls in flight fails each with ErrClosed promptly and
// leaves nothing behind (goleak checks the goroutines at the end).
func TestCloseFailsInFlightCalls(t *testing.T) {
	dir := newDir(t)
	serverNode := newNode(t, dir)
	entered := make(chan struct{}, 16)
	serve(t, serverNode, Target{Topic: "hang"}, Endpoints{
		"hang": func(ctx context.Context, a Args) (any, error) {
			entered <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	clientNode, err := New(Config{Directory: dir, Ports: Ports{Call: AnyPort}})
	if err != nil {
		t.Fatal(err)
	}
	c := clientNode.Client(Target{Topic: "hang"})
	const n = 8
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() { errs <- c.Call(testCtx(t, 30*time.Second), "hang", nil, nil) }()
	}
	for i := 0; i < n; i++ {
		<-entered
	}
	if err := clientNode.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i := 0; i < n; i++ {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("in-flight call: %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("an in-flight call did not return after Close")
		}
	}
	if err := clientNode.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.Call(context.Background(), "hang", nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
	// The server side: Close with handlers blocked cancels their contexts.
	if err := serverNode.Close(); err != nil {
		t.Fatalf("server Close: %v", err)
	}
}

// Server.Stop finishes in-flight requests before returning.
func TestServerStopFinishesInFlight(t *testing.T) {
	dir := newDir(t)
	node := newNode(t, dir)
	entered := make(chan struct{})
	release := make(chan struct{})
	srv := serve(t, node, Target{Topic: "drain"}, Endpoints{
		"work": func(ctx context.Context, a Args) (any, error) {
			close(entered)
			<-release
			return "done", nil
		},
	})
	c := newNode(t, dir).Client(Target{Topic: "drain"})
	res := make(chan error, 1)
	var got string
	go func() { res <- c.Call(testCtx(t, 10*time.Second), "work", nil, &got) }()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop(testCtx(t, 10*time.Second)) }()
	select {
	case <-stopped:
		t.Fatal("Stop returned with a request in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := <-res; err != nil || got != "done" {
		t.Fatalf("in-flight call: %q, %v", got, err)
	}
	// Stopped: deregistered at once, so new calls find no server.
	entries, _ := dir.Lookup(context.Background(), directory.Key{Topic: "drain"})
	if len(entries) != 0 {
		t.Fatalf("stopped server still registered: %+v", entries)
	}
}

func TestInvalidInput(t *testing.T) {
	if _, err := New(Config{Ports: Ports{Call: 70000}}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("port 70000: %v", err)
	}
	dir := newDir(t)
	node := newNode(t, dir)
	if _, err := node.Serve(Target{}, nil); !errors.Is(err, ErrInvalidTarget) {
		t.Fatalf("Serve without topic: %v", err)
	}
	if _, err := node.Serve(Target{Topic: "x", Fanout: true}, nil); !errors.Is(err, ErrInvalidTarget) {
		t.Fatalf("Serve fanout: %v", err)
	}
	if _, err := node.Serve(Target{Topic: "x"}, Endpoints{"m": nil}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("nil handler: %v", err)
	}
	serve(t, node, Target{Topic: "dup", Server: "same"}, Endpoints{})
	if _, err := node.Serve(Target{Topic: "dup", Server: "same"}, Endpoints{}); err == nil {
		t.Fatal("a duplicate server name was accepted")
	}
	ctx := testCtx(t, 5*time.Second)
	if err := node.Client(Target{}).Call(ctx, "m", nil, nil); !errors.Is(err, ErrInvalidTarget) {
		t.Fatalf("Call without topic: %v", err)
	}
	if err := node.Client(Target{Topic: "x", Fanout: true}).Call(ctx, "m", nil, nil); !errors.Is(err, ErrInvalidTarget) {
		t.Fatalf("Call on fanout: %v", err)
	}
	if err := node.Client(Target{Topic: "x"}).Call(ctx, "m", make(chan int), nil); err == nil {
		t.Fatal("unencodable args accepted")
	}
	// A taken port is a clear error from New.
	if _, err := New(Config{Directory: dir, Ports: Ports{Call: node.Node().CallPort}}); err == nil {
		t.Fatal("New on a taken port succeeded")
	}
	// Bad arguments reach the caller as a RemoteError.
	serve(t, node, Target{Topic: "typed"}, Endpoints{"sq": Method(func(ctx context.Context, i int) (int, error) { return i * i, nil })})
	var re *RemoteError
	err := node.Client(Target{Topic: "typed"}).Call(ctx, "sq", "not a number", nil)
	if !errors.As(err, &re) || re.Type != "BadArguments" {
		t.Fatalf("bad arguments: %v", err)
	}
}

// Inline servers run their handlers on the proxy loop: results, remote
// errors, panics and Stop behave as with workers, and they share a topic
// with worker servers.
func TestCallInlineServers(t *testing.T) {
	dir := newDir(t)
	node := newNode(t, dir)
	var hits sync.Map
	eps := func(name string) Endpoints {
		e := whoAmI(name, &hits)
		e["fail"] = func(ctx context.Context, a Args) (any, error) { return nil, &quotaError{left: 1} }
		e["panic"] = func(ctx context.Context, a Args) (any, error) { panic("inline bug") }
		return e
	}
	inline, err := node.Serve(Target{Topic: "inl", Server: "inline"}, eps("inline"), Inline())
	if err != nil {
		t.Fatal(err)
	}
	serve(t, node, Target{Topic: "inl", Server: "worker"}, eps("worker"))
	c := newNode(t, dir).Client(Target{Topic: "inl"})
	ctx := testCtx(t, 10*time.Second)
	for i := 0; i < 10; i++ {
		var got echoed
		if err := c.Call(ctx, "who", i, &got); err != nil || got.Seq != i {
			t.Fatalf("call %d: %+v, %v", i, got, err)
		}
	}
	for _, name := range []string{"inline", "worker"} {
		if n, ok := hits.Load(name); !ok || n.(*atomic.Int64).Load() != 5 {
			t.Fatalf("server %s: want 5 of 10 calls", name)
		}
	}
	ic := node.Client(Target{Topic: "inl", Server: "inline"})
	var re *RemoteError
	if err := ic.Call(ctx, "fail", nil, nil); !errors.As(err, &re) || re.Type != "QuotaExceeded" {
		t.Fatalf("inline remote error: %v", err)
	}
	if err := ic.Call(ctx, "panic", nil, nil); !errors.As(err, &re) || re.Type != "panic" {
		t.Fatalf("inline panic: %v", err)
	}
	var got echoed
	if err := ic.Call(ctx, "who", 99, &got); err != nil || got.Server != "inline" {
		t.Fatalf("after an inline panic the node must keep serving: %+v, %v", got, err)
	}
	if err := inline.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// Stopped: the topic's calls all go to the worker server now.
	for i := 0; i < 4; i++ {
		if err := c.Call(ctx, "who", i, &got); err != nil || got.Server != "worker" {
			t.Fatalf("after Stop: %+v, %v", got, err)
		}
	}
}

// A handler that gives up at the caller's deadline (it returns ctx.Err())
// is a timeout for the caller, whichever comes first: its answer or the
// caller's own timer; never a RemoteError.
func TestCallHandlerDeadlineIsATimeout(t *testing.T) {
	dir := newDir(t)
	node := newNode(t, dir)
	serve(t, node, Target{Topic: "patient"}, Endpoints{
		"wait": func(ctx context.Context, a Args) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	c := newNode(t, dir).Client(Target{Topic: "patient"})
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		err := c.Call(ctx, "wait", nil, nil)
		cancel()
		var re *RemoteError
		if !errors.Is(err, ErrTimeout) || errors.As(err, &re) {
			t.Fatalf("call %d: %v (%T), want ErrTimeout", i, err, err)
		}
	}
}

// ACCEPTANCE row 28 on the node's other ports: hostile messages on the
// notify ROUTER, the direct-cast PULL and the fanout XSUB are dropped and
// counted, and the node keeps serving.
func TestOtherPortsRejectMalformedFrames(t *testing.T) {
	dir := newDir(t)
	node := newNode(t, dir)
	var hits sync.Map
	serve(t, node, Target{Topic: "victim"}, whoAmI("victim", &hits))
	listen(t, node, []string{"victim"}, "p", func(context.Context, Notification) error { return nil })
	raw := newRawPeer(t)
	garbage := make([]byte, 64)
	_, _ = rand.Read(garbage)
	reply, err := envelope.Encode(&envelope.Message{Kind: envelope.KindReply, ID: envelope.NewID(), Topic: "victim"})
	if err != nil {
		t.Fatal(err)
	}
	n := node.Node()
	notify := raw.connect(zmq.DEALER, n.NotifyEndpoint())
	raw.send(notify, garbage)
	raw.send(notify, reply[:20])
	raw.send(notify, reply) // wrong kind
	push := raw.connect(zmq.PUSH, n.CastEndpoint())
	raw.send(push, garbage)
	raw.send(push, garbage, garbage)
	raw.send(push, reply) // wrong kind
	xpub := raw.connect(zmq.XPUB, n.FanoutEndpoint())
	topic := victimTopic
	raw.waitSubscription(xpub, topic)
	raw.send(xpub, topic, garbage)
	raw.send(xpub, topic, reply) // wrong kind
	testutil.WaitFor(t, 5*time.Second, "every hostile message to be counted", func() bool {
		st := node.Stats()
		return st.MalformedFrames == 5 && st.WrongKind == 3
	})
	var got echoed
	if err := newNode(t, dir).Client(Target{Topic: "victim"}).Call(testCtx(t, 10*time.Second), "who", 1, &got); err != nil {
		t.Fatalf("after hostile input: %v", err)
	}
}

// An inline handler runs on the proxy loop. One that stops another server
// of its node sends the loop route commands it cannot run until the
// handler returns: Stop must end at its ctx's deadline, not wait for the
// loop forever, and the node must keep serving and close afterwards.
func TestInlineHandlerStoppingAServerDoesNotHangTheNode(t *testing.T) {
	dir := newDir(t)
	node := newNode(t, dir)
	other := serve(t, node, Target{Topic: "victim", Server: "v"}, Endpoints{"m": func(context.Context, Args) (any, error) { return nil, nil }})
	stopped := make(chan error, 1)
	_, err := node.Serve(Target{Topic: "stopper"}, Endpoints{"stop": func(context.Context, Args) (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		stopped <- other.Stop(ctx)
		return "done", nil
	}, "ping": func(context.Context, Args) (any, error) { return "pong", nil }}, Inline())
	if err != nil {
		t.Fatal(err)
	}
	client := newNode(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got string
	if err := client.Client(Target{Topic: "stopper"}).Call(ctx, "stop", nil, &got); err != nil || got != "done" {
		t.Fatalf("call: %q, %v", got, err)
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("Stop from an inline handler never returned")
	}
	if err := client.Client(Target{Topic: "stopper"}).Call(ctx, "ping", nil, &got); err != nil || got != "pong" {
		t.Fatalf("the node stopped serving after the inline Stop: %q, %v", got, err)
	}
	closed := make(chan error, 1)
	go func() { closed <- node.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("Close hung after an inline handler stopped a server")
	}
}
