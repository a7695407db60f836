package zmqmsg

import (
	"context"
	"errors"
	"fmt"
	"github.com/zmqmsg/zmqmsg/internal/config"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/testutil"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// Rows 12-14 of shared/ACCEPTANCE.md, and the ack-loss behaviour of issue 3.

// counting returns endpoints whose "note" method counts its calls per
// server and reports each on got.
func counting(name string, hits *sync.Map, got chan<- string) Endpoints {
	return Endpoints{"note": func(ctx context.Context, a Args) (any, error) {
		n, _ := hits.LoadOrStore(name, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		if got != nil {
			got <- name
		}
		return nil, nil
	}}
}

func hitsOf(hits *sync.Map, name string) int64 {
	if n, ok := hits.Load(name); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

// Row 12: casts to a named server land only there.
func TestCastTargeted(t *testing.T) {
	dir := newDir(t)
	node := newNode(t, dir)
	var hits sync.Map
	got := make(chan string, 100)
	for _, name := range []string{"s1", "s2", "s3"} {
		serve(t, node, Target{Topic: "cast", Server: name}, counting(name, &hits, got))
	}
	c := newNode(t, dir).Client(Target{Topic: "cast", Server: "s2"})
	ctx := testCtx(t, 10*time.Second)
	for i := 0; i < 10; i++ {
		if err := c.Cast(ctx, "note", i); err != nil {
			t.Fatalf("cast %d: %v", i, err)
		}
	}
	for i := 0; i < 10; i++ {
		select {
		case name := <-got:
			if name != "s2" {
				t.Fatalf("a cast to s2 reached %s", name)
			}
		case <-ctx.Done():
			t.Fatalf("only %d of 10 acknowledged casts ran", i)
		}
	}
}

// Row 13: 20 casts to a topic with 3 servers: each gets some, none gets
// all, and the total is exactly 20.
func TestCastSpread(t *testing.T) {
	dir := newDir(t)
	serverNode := newNode(t, dir)
	var hits sync.Map
	got := make(chan string, 100)
	names := []string{"s1", "s2", "s3"}
	for _, name := range names {
		serve(t, serverNode, Target{Topic: "spread", Server: name}, counting(name, &hits, got))
	}
	// A generous first ACK wait: under -race on a loaded machine an ACK can
	// take over 250 ms, and this test counts retries (there must be none).
	clientNode := newNode(t, dir, func(c *Config) { c.Acks.Timeout = 5 * time.Second })
	c := clientNode.Client(Target{Topic: "spread"})
	ctx := testCtx(t, 10*time.Second)
	for i := 0; i < 20; i++ {
		if err := c.Cast(ctx, "note", i); err != nil {
			t.Fatalf("cast %d: %v", i, err)
		}
	}
	for i := 0; i < 20; i++ {
		select {
		case <-got:
		case <-ctx.Done():
			t.Fatalf("only %d of 20 acknowledged casts ran", i)
		}
	}
	total := int64(0)
	for _, name := range names {
		n := hitsOf(&hits, name)
		if n == 0 || n == 20 {
			t.Fatalf("server %s got %d of 20 casts", name, n)
		}
		total += n
	}
	if st := serverNode.Stats(); total != 20 || st.CastsRun != 20 || st.DuplicateCasts != 0 {
		t.Fatalf("total %d, server ran %d, duplicates %d; want exactly 20, 20, 0", total, st.CastsRun, st.DuplicateCasts)
	}
	if st := clientNode.Stats(); st.Casts != 20 || st.CastRetries != 0 || st.CastsNotAcked != 0 {
		t.Fatalf("client stats: %d casts, %d retries, %d not acked", st.Casts, st.CastRetries, st.CastsNotAcked)
	}
}

// Row 14 and issue 3's ack-loss test: the server side drops ACKs (a test hook,
// not a sleep). Lost ACKs cause retries with growing waits, the handler runs
// once, and when no ACK ever comes Cast fails with ErrNotAcked.
func TestCastAckLoss(t *testing.T) {
	dir := newDir(t)
	var (
		mu       sync.Mutex
		drops    = 2 // ACKs still to drop; -1 drops all
		attempts []time.Time
	)
	dropAcks := func(c *Config) {
		config.EditTestHooks(c).DropAck = func(envelope.ID) bool {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, time.Now())
			if drops == 0 {
				return false
			}
			if drops > 0 {
				drops--
			}
			return true
		}
	}
	serverNode := newNode(t, dir, dropAcks)
	var hits sync.Map
	got := make(chan string, 10)
	serve(t, serverNode, Target{Topic: "lossy", Server: "only"}, counting("only", &hits, got))
	// Long enough that the ACK that is not dropped always beats its wait,
	// even under -race on a loaded machine: the attempts are counted exactly.
	const timeout = 100 * time.Millisecond
	policy := AckPolicy{Timeout: timeout, Multiplier: 2, Retries: 3}
	clientNode := newNode(t, dir, func(c *Config) { c.Acks = policy })
	c := clientNode.Client(Target{Topic: "lossy"})
	ctx := testCtx(t, 10*time.Second)

	// Two ACKs lost, the third arrives.
	if err := c.Cast(ctx, "note", 1); err != nil {
		t.Fatalf("cast with 2 lost ACKs: %v", err)
	}
	<-got
	mu.Lock()
	if len(attempts) != 3 {
		t.Fatalf("%d attempts reached the server, want 3", len(attempts))
	}
	mu.Unlock()
	if st := clientNode.Stats(); st.CastRetries != 2 || st.CastsNotAcked != 0 {
		t.Fatalf("client: %d retries, %d not acked; want 2, 0", st.CastRetries, st.CastsNotAcked)
	}
	if st := serverNode.Stats(); st.CastsRun != 1 || st.DuplicateCasts != 2 {
		t.Fatalf("server: ran %d, duplicates %d; want 1, 2", st.CastsRun, st.DuplicateCasts)
	}

	// Every ACK lost: 1 + Retries attempts, each wait Multiplier times the
	// last, then ErrNotAcked; the handler still ran exactly once.
	mu.Lock()
	drops, attempts = -1, nil
	mu.Unlock()
	err := c.Cast(ctx, "note", 2)
	if !errors.Is(err, ErrNotAcked) {
		t.Fatalf("cast with every ACK lost: %v, want ErrNotAcked", err)
	}
	<-got
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 1+policy.Retries {
		t.Fatalf("%d attempts, want %d", len(attempts), 1+policy.Retries)
	}
	wait := timeout
	for i := 1; i < len(attempts); i++ {
		// A lower bound only, measured where the attempts arrive: transit
		// jitter can shorten a gap a little, so allow a quarter of the wait.
		// That still proves the backoff grows: the previous wait was half.
		if gap := attempts[i].Sub(attempts[i-1]); gap < wait*3/4 {
			t.Fatalf("retry %d came %v after the previous attempt, well before its %v wait", i, gap, wait)
		}
		wait *= 2
	}
	if st := serverNode.Stats(); st.CastsRun != 2 || st.DuplicateCasts != 2+3 {
		t.Fatalf("server: ran %d, duplicates %d; want 2, 5", st.CastsRun, st.DuplicateCasts)
	}
	if st := clientNode.Stats(); st.CastsNotAcked != 1 || st.CastRetries != 2+3 {
		t.Fatalf("client: %d not acked, %d retries; want 1, 5", st.CastsNotAcked, st.CastRetries)
	}
	if n := hitsOf(&hits, "only"); n != 2 {
		t.Fatalf("handler ran %d times for 2 casts", n)
	}
}

// With acks off, Cast returns once the message is handed over, and the
// server sends no ACK.
func TestCastAcksDisabled(t *testing.T) {
	dir := newDir(t)
	serverNode := newNode(t, dir)
	var hits sync.Map
	got := make(chan string, 100)
	serve(t, serverNode, Target{Topic: "fire"}, counting("s", &hits, got))
	clientNode := newNode(t, dir, func(c *Config) { c.Acks.Disabled = true })
	c := clientNode.Client(Target{Topic: "fire"})
	ctx := testCtx(t, 10*time.Second)
	for i := 0; i < 50; i++ {
		if err := c.Cast(ctx, "note", i); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 50; i++ {
		select {
		case <-got:
		case <-ctx.Done():
			t.Fatalf("%d of 50 unacknowledged casts ran", i)
		}
	}
	if st := clientNode.Stats(); st.UnmatchedReplies != 0 || st.LateReplies != 0 {
		t.Fatalf("the server acknowledged casts sent without acks: %+v", st)
	}
}

// The window bounds unacknowledged casts per node: while it is full, Cast
// waits, bounded by its ctx.
func TestCastWindowBounds(t *testing.T) {
	dir := newDir(t)
	serverNode := newNode(t, dir, func(c *Config) { config.EditTestHooks(c).DropAck = func(envelope.ID) bool { return true } })
	serve(t, serverNode, Target{Topic: "window"}, counting("s", new(sync.Map), nil))
	clientNode := newNode(t, dir, func(c *Config) {
		c.CastWindow = 1
		c.Acks = AckPolicy{Timeout: 200 * time.Millisecond, Multiplier: 1, Retries: 5}
	})
	c := clientNode.Client(Target{Topic: "window"})
	first := make(chan error, 1)
	go func() { first <- c.Cast(testCtx(t, 10*time.Second), "note", 1) }()
	// The first cast holds the only slot until it gives up (about 1.2 s).
	testutil.WaitFor(t, 5*time.Second, "the first cast to be sent", func() bool { return clientNode.Stats().Casts == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Cast(ctx, "note", 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cast into a full window: %v, want context.DeadlineExceeded", err)
	}
	if err := <-first; !errors.Is(err, ErrNotAcked) {
		t.Fatalf("first cast: %v, want ErrNotAcked", err)
	}
}

func TestCastRefusals(t *testing.T) {
	dir := newDir(t)
	node := newNode(t, dir, func(c *Config) { c.WaitForServers = 50 * time.Millisecond })
	var hits sync.Map
	serve(t, node, Target{Topic: "r", Server: "s"}, counting("s", &hits, nil))
	ctx := testCtx(t, 10*time.Second)
	if err := node.Client(Target{Topic: "nobody"}).Cast(ctx, "note", 1); !errors.Is(err, ErrNoServers) {
		t.Fatalf("cast to nobody: %v", err)
	}
	if err := node.Client(Target{Topic: "r", Server: "s", Fanout: true}).Cast(ctx, "note", 1); !errors.Is(err, ErrInvalidTarget) {
		t.Fatalf("fanout cast: %v", err)
	}
	if err := node.Client(Target{Topic: "r"}).Cast(ctx, "note", make([]byte, 16<<20+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized cast: %v", err)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	before := node.Stats().Casts
	if err := node.Client(Target{Topic: "r"}).Cast(ended, "note", 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("cast with an ended ctx: %v", err)
	}
	if node.Stats().Casts != before {
		t.Fatal("a cast with an ended ctx was sent")
	}
	if _, err := New(Config{Acks: AckPolicy{Multiplier: 0.5}}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("multiplier 0.5: %v", err)
	}
	// A handler error is counted on the server and returned to the caster.
	serve(t, node, Target{Topic: "bad"}, Endpoints{"fail": func(ctx context.Context, a Args) (any, error) {
		return nil, fmt.Errorf("cast handler error")
	}})
	var re *RemoteError
	if err := node.Client(Target{Topic: "bad"}).Cast(ctx, "fail", nil); !errors.As(err, &re) || re.Message != "cast handler error" {
		t.Fatalf("cast whose handler failed: %v, want a *RemoteError", err)
	}
	testutil.WaitFor(t, 5*time.Second, "the cast error to be counted", func() bool { return node.Stats().CastErrors == 1 })
}

// Row 15: the direct cast (PUSH/PULL, no acks) delivers in order to a single
// server; what a full server lane refuses is dropped and counted.
func TestDirectCastInOrder(t *testing.T) {
	dir := newDir(t)
	serverNode := newNode(t, dir)
	const n = 1000
	got := make(chan int, n)
	serve(t, serverNode, Target{Topic: "direct", Server: "only"}, Endpoints{
		"seq": Method(func(ctx context.Context, i int) (struct{}, error) {
			got <- i
			return struct{}{}, nil
		}),
	})
	if serverNode.Node().CastPort == 0 {
		t.Fatal("the node registered no direct-cast port")
	}
	clientNode := newNode(t, dir)
	c := clientNode.Client(Target{Topic: "direct"}, DirectCast())
	ctx := testCtx(t, 30*time.Second)
	for i := 0; i < n; i++ {
		if err := c.Cast(ctx, "seq", i); err != nil {
			t.Fatalf("direct cast %d: %v", i, err)
		}
	}
	inOrder(t, ctx, got, 0, n, "direct cast", func() string { return "" })
	if st := serverNode.Stats(); st.DirectCastsRun != n || st.DirectDropped != 0 {
		t.Fatalf("server ran %d direct casts, dropped %d; want %d, 0", st.DirectCastsRun, st.DirectDropped, n)
	}
	if st := clientNode.Stats(); st.DirectCasts != n || st.DirectCastFailed != 0 || st.Casts != 0 {
		t.Fatalf("client: %d direct casts, %d failed, %d acked casts", st.DirectCasts, st.DirectCastFailed, st.Casts)
	}
}

// A full lane pushes back instead of dropping: a burst far larger than the
// server's queue (4) runs whole, in order. A direct cast is dropped, and
// counted, only where no server is left for it: here one the directory
// lists on the node but that nothing serves.
func TestDirectCastDropsAreCounted(t *testing.T) {
	dir := newDir(t)
	serverNode := newNode(t, dir, func(c *Config) { c.ServerQueue = 4 })
	release := make(chan struct{})
	entered := make(chan int, 1000)
	serve(t, serverNode, Target{Topic: "slowlane", Server: "s"}, Endpoints{
		"seq": Method(func(ctx context.Context, i int) (struct{}, error) {
			entered <- i
			<-release
			return struct{}{}, nil
		}),
	})
	clientNode := newNode(t, dir)
	c := clientNode.Client(Target{Topic: "slowlane", Server: "s"}, DirectCast())
	ctx := testCtx(t, 30*time.Second)
	const n = 500
	for i := 0; i < n; i++ {
		if err := c.Cast(ctx, "seq", i); err != nil {
			t.Fatal(err)
		}
	}
	<-entered // cast 0 runs (and blocks); the rest are queued, or wait
	close(release)
	inOrder(t, ctx, entered, 1, n, "direct cast", func() string { return "" })
	if st := serverNode.Stats(); st.DirectCastsRun != n || st.DirectDropped != 0 {
		t.Fatalf("server ran %d direct casts and dropped %d; want %d and 0", st.DirectCastsRun, st.DirectDropped, n)
	}

	ghost := directory.Registration{Key: directory.Key{Topic: "slowlane"}, Server: "ghost", Node: serverNode.Node(), Methods: []string{"seq"}}
	if err := dir.Register(ctx, ghost, time.Minute); err != nil {
		t.Fatal(err)
	}
	g := clientNode.Client(Target{Topic: "slowlane", Server: "ghost"}, DirectCast())
	for i := 0; i < 3; i++ {
		if err := g.Cast(ctx, "seq", i); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "the casts to ghost to be counted as dropped", func() bool {
		return serverNode.Stats().DirectDropped == 3
	})
}

// A cast is acknowledged once its handler has run: a handler slower than
// the ACK timeout keeps the caster waiting (its resends are answered
// IN_PROGRESS and do not count as retries), runs once, and the cast
// succeeds without ErrNotAcked.
func TestCastAckedAfterHandlerRan(t *testing.T) {
	dir := newDir(t)
	serverNode := newNode(t, dir)
	started, release := make(chan struct{}), make(chan struct{})
	var runs atomic.Int64
	serve(t, serverNode, Target{Topic: "slow"}, Endpoints{"work": func(ctx context.Context, a Args) (any, error) {
		if runs.Add(1) == 1 {
			close(started)
		}
		<-release
		return nil, nil
	}})
	clientNode := newNode(t, dir, func(c *Config) {
		c.Acks = AckPolicy{Timeout: 20 * time.Millisecond, Multiplier: 1, Retries: 2}
	})
	done := make(chan error, 1)
	go func() { done <- clientNode.Client(Target{Topic: "slow"}).Cast(testCtx(t, 20*time.Second), "work", 1) }()
	<-started
	// Far more resends than Retries allows have been answered IN_PROGRESS.
	testutil.WaitFor(t, 10*time.Second, "resends answered IN_PROGRESS", func() bool { return serverNode.Stats().DuplicateCasts >= 5 })
	select {
	case err := <-done:
		t.Fatalf("the cast returned before its handler finished: %v", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("cast with a slow handler: %v", err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
	if st := clientNode.Stats(); st.CastsNotAcked != 0 || st.CastsResent != 0 {
		t.Fatalf("client stats %+v: the slow cast was given up or sent elsewhere", st)
	}
}

// slowCastServer serves topic with a "work" cast handler that blocks until
// release is closed; started is closed when the first one runs.
func slowCastServer(t *testing.T, tr *Transport, topic string) (srv *Server, runs *atomic.Int64, started, release chan struct{}) {
	t.Helper()
	runs = new(atomic.Int64)
	started, release = make(chan struct{}), make(chan struct{})
	srv = serve(t, tr, Target{Topic: topic}, Endpoints{"work": func(ctx context.Context, a Args) (any, error) {
		if runs.Add(1) == 1 {
			close(started)
		}
		<-release
		return nil, nil
	}})
	return srv, runs, started, release
}

// A server stopped while a cast runs keeps answering that cast's resends
// (IN_PROGRESS) until it finishes: the caster gets its ACK, not
// ErrNoServers, and the cast runs once.
func TestCastDuringServerStop(t *testing.T) {
	dir := newDir(t)
	serverNode := newNode(t, dir)
	srv, runs, started, release := slowCastServer(t, serverNode, "slow")
	clientNode := newNode(t, dir, func(c *Config) {
		c.Acks = AckPolicy{Timeout: 20 * time.Millisecond, Multiplier: 1, Retries: 2}
	})
	cast := make(chan error, 1)
	go func() { cast <- clientNode.Client(Target{Topic: "slow"}).Cast(testCtx(t, 20*time.Second), "work", 1) }()
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop(context.Background()) }()
	ctx := testCtx(t, 10*time.Second)
	testutil.WaitFor(t, 5*time.Second, "the server to leave the directory", func() bool {
		entries, err := dir.Lookup(ctx, directory.Key{Topic: "slow"})
		return err == nil && len(entries) == 0
	})
	before := serverNode.Stats().DuplicateCasts
	testutil.WaitFor(t, 5*time.Second, "resends answered while the server stops", func() bool {
		return serverNode.Stats().DuplicateCasts >= before+3
	})
	close(release)
	if err := <-cast; err != nil {
		t.Fatalf("cast to a server stopped while running it: %v, want its ACK", err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
}

// A cast without a deadline whose handler outlasts CallTimeout fails with
// ErrTimeout (it may still run), never ErrNotAcked (which would send it
// elsewhere); it runs once.
func TestCastSlowerThanCallTimeout(t *testing.T) {
	dir := newDir(t)
	serverNode := newNode(t, dir)
	_, runs, _, release := slowCastServer(t, serverNode, "slow")
	defer close(release)
	other := newNode(t, dir)
	_, otherRuns, _, otherRelease := slowCastServer(t, other, "slow")
	defer close(otherRelease)
	clientNode := newNode(t, dir, func(c *Config) {
		c.CallTimeout = 300 * time.Millisecond
		c.Acks = AckPolicy{Timeout: 20 * time.Millisecond, Multiplier: 1, Retries: 2}
	})
	err := clientNode.Client(Target{Topic: "slow"}).Cast(context.Background(), "work", 1)
	if !errors.Is(err, ErrTimeout) || errors.Is(err, ErrNotAcked) {
		t.Fatalf("cast slower than CallTimeout: %v, want ErrTimeout", err)
	}
	if n := runs.Load() + otherRuns.Load(); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
}
