package zmqmsg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/directory"
)

// Rows 16-18 of shared/ACCEPTANCE.md, plus nodes joining and leaving and
// the report of unreachable nodes.

// recorder records, per server, the sequence numbers its "seq" method got.
type recorder struct {
	mu  sync.Mutex
	got map[string][]int
	ch  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{got: map[string][]int{}, ch: make(chan struct{}, 10000)}
}

func (r *recorder) endpoints(name string) Endpoints {
	return Endpoints{"seq": Method(func(ctx context.Context, i int) (struct{}, error) {
		r.mu.Lock()
		r.got[name] = append(r.got[name], i)
		r.mu.Unlock()
		r.ch <- struct{}{}
		return struct{}{}, nil
	})}
}

// wait waits for n more deliveries.
func (r *recorder) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("only %d of %d fanout deliveries arrived", i, n)
		}
	}
}

func (r *recorder) of(name string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.got[name]...)
}

// Row 16: a fanout reaches every server of the topic, each in order; the
// servers sit on two nodes.
func TestFanoutEveryServerInOrder(t *testing.T) {
	dir := newDir(t)
	a, b := newNode(t, dir), newNode(t, dir)
	rec := newRecorder()
	serve(t, a, Target{Topic: "fan", Server: "a1"}, rec.endpoints("a1"))
	serve(t, a, Target{Topic: "fan", Server: "a2"}, rec.endpoints("a2"))
	serve(t, b, Target{Topic: "fan", Server: "b1"}, rec.endpoints("b1"))
	caster := newNode(t, dir)
	c := caster.Client(Target{Topic: "fan", Fanout: true})
	ctx := testCtx(t, 20*time.Second)
	const n = 100
	for i := 0; i < n; i++ {
		if err := c.Cast(ctx, "seq", i); err != nil {
			t.Fatalf("fanout %d: %v", i, err)
		}
	}
	rec.wait(t, 3*n)
	for _, name := range []string{"a1", "a2", "b1"} {
		got := rec.of(name)
		if len(got) != n {
			t.Fatalf("server %s got %d of %d fanouts", name, len(got), n)
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("server %s got fanout %d at position %d", name, v, i)
			}
		}
	}
	if st := caster.Stats(); st.Fanouts != n || st.FanoutsSent != 2*n || st.FanoutUnreached != 0 {
		t.Fatalf("caster: %d fanouts, %d sent, %d unreached; want %d, %d, 0", st.Fanouts, st.FanoutsSent, st.FanoutUnreached, n, 2*n)
	}
	if st := a.Stats(); st.FanoutsRun != 2*n || st.FanoutDropped != 0 {
		t.Fatalf("node a ran %d fanouts, dropped %d", st.FanoutsRun, st.FanoutDropped)
	}
}

// Row 17: topics match exactly, whatever the names have in common, and
// exchanges isolate.
func TestFanoutExactTopics(t *testing.T) {
	dir := newDir(t)
	node := newNode(t, dir)
	rec := newRecorder()
	for _, tg := range []Target{{Topic: "fan"}, {Topic: "fanx"}, {Topic: "fa"}, {Topic: "f"}, {Exchange: "x", Topic: "fan"}, {Exchange: "fan"}} {
		if tg.Topic == "" {
			tg.Topic = "other"
		}
		name := tg.Exchange + "/" + tg.Topic
		serve(t, node, Target{Exchange: tg.Exchange, Topic: tg.Topic, Server: name}, rec.endpoints(name))
	}
	c := newNode(t, dir).Client(Target{Topic: "fan", Fanout: true})
	ctx := testCtx(t, 10*time.Second)
	for i := 0; i < 10; i++ {
		if err := c.Cast(ctx, "seq", i); err != nil {
			t.Fatal(err)
		}
	}
	rec.wait(t, 10)
	// The node hands each fanout to all its servers of the topic in one loop
	// turn, so once "/fan" has run 10, every delivery has been made: exactly
	// 10, all to "/fan".
	if got, st := rec.of("/fan"), node.Stats(); len(got) != 10 || st.FanoutDeliveries != 10 {
		t.Fatalf("/fan got %d fanouts; the node made %d deliveries, want 10: %v", len(got), st.FanoutDeliveries, rec.got)
	}
}

// Row 18: no slow joiner: a server whose Serve has returned receives every
// fanout sent after that, even on a node the caster has never seen.
func TestFanoutNoSlowJoiner(t *testing.T) {
	dir := newDir(t)
	rec := newRecorder()
	caster := newNode(t, dir)
	c := caster.Client(Target{Topic: "join", Fanout: true})
	ctx := testCtx(t, 30*time.Second)
	for i := 0; i < 10; i++ {
		// A new node and server each round; the fanout right after Serve
		// returns must reach it, and every server before it.
		node := newNode(t, dir)
		name := fmt.Sprintf("joiner-%d", i)
		serve(t, node, Target{Topic: "join", Server: name}, rec.endpoints(name))
		if err := c.Cast(ctx, "seq", i); err != nil {
			t.Fatalf("fanout after server %d joined: %v", i, err)
		}
		rec.wait(t, i+1)
		if got := rec.of(name); len(got) != 1 || got[0] != i {
			t.Fatalf("%s got %v, want [%d]", name, got, i)
		}
	}
}

// lookupCounter is a Memory directory that counts the Lookups of a key;
// it keeps Memory's Version.
type lookupCounter struct {
	*directory.Memory
	key directory.Key
	n   atomic.Int64
}

func (d *lookupCounter) Lookup(ctx context.Context, k directory.Key) ([]directory.Entry, error) {
	if k == d.key {
		d.n.Add(1)
	}
	return d.Memory.Lookup(ctx, k)
}

// A fanout reads the directory again only when the key's version changed:
// an unchanged topology costs no lookup, and a server that joins is sent
// the next fanout.
func TestFanoutReadsDirectoryOnChange(t *testing.T) {
	dir := &lookupCounter{Memory: newDir(t), key: directory.Key{Topic: "ver"}}
	rec := newRecorder()
	serve(t, newNode(t, dir), Target{Topic: "ver", Server: "a"}, rec.endpoints("a"))
	c := newNode(t, dir).Client(Target{Topic: "ver", Fanout: true})
	ctx := testCtx(t, 20*time.Second)
	if err := c.Cast(ctx, "seq", 0); err != nil {
		t.Fatal(err)
	}
	before := dir.n.Load()
	for i := 1; i < 20; i++ {
		if err := c.Cast(ctx, "seq", i); err != nil {
			t.Fatal(err)
		}
	}
	rec.wait(t, 20)
	if n := dir.n.Load() - before; n != 0 {
		t.Fatalf("19 fanouts to an unchanged topology made %d lookups", n)
	}
	serve(t, newNode(t, dir), Target{Topic: "ver", Server: "b"}, rec.endpoints("b"))
	if err := c.Cast(ctx, "seq", 20); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 2)
	if got := rec.of("b"); len(got) != 1 || got[0] != 20 {
		t.Fatalf("the joining server got %v, want [20]", got)
	}
	if dir.n.Load() == before {
		t.Fatal("a changed topology was not read again")
	}
}

// A node that leaves (its servers stop) is no longer sent to, without an
// error; a node listed in the directory that never subscribes is reported.
func TestFanoutNodesLeaveAndUnreached(t *testing.T) {
	dir := newDir(t)
	rec := newRecorder()
	stay, leave := newNode(t, dir), newNode(t, dir)
	serve(t, stay, Target{Topic: "churn", Server: "stay"}, rec.endpoints("stay"))
	leaving := serve(t, leave, Target{Topic: "churn", Server: "leave"}, rec.endpoints("leave"))
	caster := newNode(t, dir, func(c *Config) { c.WaitForServers = 300 * time.Millisecond })
	c := caster.Client(Target{Topic: "churn", Fanout: true})
	ctx := testCtx(t, 20*time.Second)
	if err := c.Cast(ctx, "seq", 0); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 2)
	if err := leaving.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Cast(ctx, "seq", 1); err != nil {
		t.Fatalf("fanout after a node left: %v", err)
	}
	rec.wait(t, 1)
	if got := rec.of("leave"); len(got) != 1 {
		t.Fatalf("the stopped server got %v", got)
	}

	// A registration whose node does not answer on its fanout port.
	ghost := directory.Registration{
		Key:    directory.Key{Topic: "churn"},
		Server: "ghost",
		Node:   directory.Node{Host: "127.0.0.1", CallPort: 1, FanoutPort: freePort(t)},
	}
	if err := dir.Register(ctx, ghost, time.Minute); err != nil {
		t.Fatal(err)
	}
	err := c.Cast(ctx, "seq", 2)
	var fe *FanoutError
	if !errors.Is(err, ErrUnreached) || !errors.As(err, &fe) || len(fe.Unreached) != 1 || fe.Unreached[ghost.Node.ID()] == nil {
		t.Fatalf("fanout with an unreachable node: %v", err)
	}
	rec.wait(t, 1) // the live node still got it
	if got := rec.of("stay"); len(got) != 3 {
		t.Fatalf("the live server got %v", got)
	}
	if st := caster.Stats(); st.FanoutUnreached == 0 {
		t.Fatal("the unreached node was not counted")
	}
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}
