package zmqmsg

import (
	"context"
	"errors"
	"fmt"
	"github.com/zmqmsg/zmqmsg/internal/config"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/testutil"

	"github.com/zmqmsg/zmqmsg/envelope"
)

// Rows 19-23 of shared/ACCEPTANCE.md, and delivery when a pool member does
// not answer.

// inbox collects notifications per listener.
type inbox struct {
	mu  sync.Mutex
	got map[string][]Notification
	ch  chan struct{}
}

func newInbox() *inbox {
	return &inbox{got: map[string][]Notification{}, ch: make(chan struct{}, 10000)}
}

func (b *inbox) handler(name string) func(context.Context, Notification) error {
	return func(ctx context.Context, n Notification) error {
		b.mu.Lock()
		b.got[name] = append(b.got[name], n)
		b.mu.Unlock()
		b.ch <- struct{}{}
		return nil
	}
}

func (b *inbox) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-b.ch:
		case <-deadline:
			t.Fatalf("only %d of %d notifications arrived", i, n)
		}
	}
}

func (b *inbox) of(name string) []Notification {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Notification(nil), b.got[name]...)
}

func listen(t *testing.T, tr *Transport, topics []string, pool string, h func(context.Context, Notification) error, opts ...ListenOption) *Listener {
	t.Helper()
	l, err := tr.Listen(topics, pool, h, opts...)
	if err != nil {
		t.Fatalf("Listen %v %q: %v", topics, pool, err)
	}
	t.Cleanup(func() { _ = l.Stop(context.Background()) })
	return l
}

// Row 19: a notification arrives with its priority, event type, payload,
// publisher id, timestamp and message id.
func TestNotifyFields(t *testing.T) {
	dir := newDir(t)
	box := newInbox()
	listen(t, newNode(t, dir), []string{DefaultNotifyTopic}, "", box.handler("l"))
	n := newNode(t, dir).Notifier("compute-7")
	ctx := testCtx(t, 10*time.Second)
	before := time.Now()
	if err := n.Info(ctx, "compute.instance.create.end", map[string]int{"vcpus": 4}); err != nil {
		t.Fatal(err)
	}
	box.wait(t, 1)
	got := box.of("l")[0]
	var payload map[string]int
	if err := got.Decode(&payload); err != nil || payload["vcpus"] != 4 {
		t.Fatalf("payload %v, %v", payload, err)
	}
	if got.Priority != Info || got.EventType != "compute.instance.create.end" || got.PublisherID != "compute-7" || got.Topic != DefaultNotifyTopic {
		t.Fatalf("fields: %+v", got)
	}
	if len(got.MessageID) != 36 || got.Timestamp.Before(before) || got.Timestamp.After(time.Now()) {
		t.Fatalf("message id %q, timestamp %v", got.MessageID, got.Timestamp)
	}
}

// Row 20: listeners on different topics receive only their own.
func TestNotifyTopics(t *testing.T) {
	dir := newDir(t)
	box := newInbox()
	node := newNode(t, dir)
	listen(t, node, []string{"alpha"}, "", box.handler("alpha"))
	listen(t, node, []string{"beta"}, "", box.handler("beta"))
	listen(t, node, []string{"alpha", "beta"}, "both", box.handler("both"))
	ctx := testCtx(t, 10*time.Second)
	if err := newNode(t, dir).Notifier("p", "alpha").Warn(ctx, "a.event", 1); err != nil {
		t.Fatal(err)
	}
	box.wait(t, 2)
	if a, b, both := box.of("alpha"), box.of("beta"), box.of("both"); len(a) != 1 || len(b) != 0 || len(both) != 1 {
		t.Fatalf("alpha %d, beta %d, both %d; want 1 0 1", len(a), len(b), len(both))
	}
}

// Row 21: each pool receives exactly one copy of every notification; the
// members of a pool share the load; two pools each get everything.
func TestNotifyPools(t *testing.T) {
	dir := newDir(t)
	box := newInbox()
	a, b := newNode(t, dir), newNode(t, dir)
	listen(t, a, []string{"events"}, "workers", box.handler("w1"))
	listen(t, b, []string{"events"}, "workers", box.handler("w2"))
	listen(t, b, []string{"events"}, "audit", box.handler("audit"))
	notifier := newNode(t, dir)
	ctx := testCtx(t, 20*time.Second)
	const n = 40
	for i := 0; i < n; i++ {
		if err := notifier.Notifier("p", "events").Info(ctx, "tick", i); err != nil {
			t.Fatalf("notification %d: %v", i, err)
		}
	}
	box.wait(t, 2*n)
	w1, w2, audit := box.of("w1"), box.of("w2"), box.of("audit")
	if len(w1) == 0 || len(w2) == 0 || len(w1)+len(w2) != n || len(audit) != n {
		t.Fatalf("workers pool %d+%d, audit pool %d; want a share each summing to %d, and %d", len(w1), len(w2), len(audit), n, n)
	}
	ids := map[string]int{}
	for _, x := range slices.Concat(w1, w2) {
		ids[x.MessageID]++
	}
	for _, x := range audit {
		ids[x.MessageID] += 10
	}
	for id, c := range ids {
		if c != 11 {
			t.Fatalf("notification %s: %d copies in workers and %d in audit, want 1 and 1", id, c%10, c/10)
		}
	}
	if st := notifier.Stats(); st.Notifications != n || st.NotifyFailures != 0 || st.NotificationsUnheard != 0 {
		t.Fatalf("notifier stats: %d sent, %d failed, %d unheard", st.Notifications, st.NotifyFailures, st.NotificationsUnheard)
	}
}

// Row 22: all seven priorities are delivered, and a listener can filter.
func TestNotifyPriorities(t *testing.T) {
	dir := newDir(t)
	box := newInbox()
	node := newNode(t, dir)
	listen(t, node, []string{"p"}, "all", box.handler("all"))
	listen(t, node, []string{"p"}, "alarms", box.handler("alarms"), WithPriorities(Error, Critical))
	notifier := newNode(t, dir).Notifier("pub", "p")
	ctx := testCtx(t, 10*time.Second)
	sends := []func(context.Context, string, any) error{notifier.Audit, notifier.Debug, notifier.Info, notifier.Warn, notifier.Error, notifier.Critical, notifier.Sample}
	for i, send := range sends {
		if err := send(ctx, "e", i); err != nil {
			t.Fatal(err)
		}
	}
	box.wait(t, 7+2)
	var all, alarms []Priority
	for _, x := range box.of("all") {
		all = append(all, x.Priority)
	}
	for _, x := range box.of("alarms") {
		alarms = append(alarms, x.Priority)
	}
	slices.Sort(all)
	want := slices.Clone(Priorities)
	slices.Sort(want)
	if !slices.Equal(all, want) {
		t.Fatalf("unfiltered listener got %v", all)
	}
	slices.Sort(alarms)
	if !slices.Equal(alarms, []Priority{Critical, Error}) {
		t.Fatalf("filtered listener got %v", alarms)
	}
	if st := node.Stats(); st.NotificationsFiltered != 5 {
		t.Fatalf("%d filtered, want 5", st.NotificationsFiltered)
	}
	if err := notifier.Notify(ctx, "urgent", "e", 1); !errors.Is(err, ErrInvalidNotification) {
		t.Fatalf("unknown priority: %v", err)
	}
}

// Row 23: a batch listener gets 205 notifications as 100, 100 and 5. The
// flush timeout (3 s) is long so that a loaded machine cannot split a full
// batch; only the 5-notification tail waits for it.
func TestNotifyBatches(t *testing.T) {
	dir := newDir(t)
	var mu sync.Mutex
	var sizes []int
	seen := map[string]bool{}
	done := make(chan struct{})
	listen(t, newNode(t, dir), []string{"bulk"}, "", nil, WithBatch(100, 3*time.Second, func(ctx context.Context, batch []Notification) error {
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(batch))
		for _, n := range batch {
			seen[n.MessageID] = true
		}
		if len(seen) == 205 {
			close(done)
		}
		return nil
	}))
	notifierNode := newNode(t, dir)
	notifier := notifierNode.Notifier("pub", "bulk")
	ctx := testCtx(t, 30*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < 205; i += 8 {
				if err := notifier.Info(ctx, "bulk.item", i); err != nil {
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
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		t.Fatalf("not all 205 notifications were delivered in batches: sizes %v, unique %d, notifier %+v", sizes, len(seen), notifierNode.Stats())
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(sizes, []int{100, 100, 5}) {
		t.Fatalf("batch sizes %v, want [100 100 5]", sizes)
	}
}

// A pool member that never acknowledges (its ACKs are lost) does not lose
// notifications: they move to the next member of the pool.
func TestNotifyMemberDoesNotAnswer(t *testing.T) {
	dir := newDir(t)
	box := newInbox()
	mute := newNode(t, dir, func(c *Config) { config.EditTestHooks(c).DropAck = func(envelope.ID) bool { return true } })
	alive := newNode(t, dir)
	listen(t, mute, []string{"jobs"}, "pool", box.handler("mute"))
	listen(t, alive, []string{"jobs"}, "pool", box.handler("alive"))
	notifier := newNode(t, dir, func(c *Config) { c.Acks = AckPolicy{Timeout: 200 * time.Millisecond, Multiplier: 1.5, Retries: 1} })
	ctx := testCtx(t, 20*time.Second)
	const n = 10
	for i := 0; i < n; i++ {
		if err := notifier.Notifier("p", "jobs").Info(ctx, "job", fmt.Sprint(i)); err != nil {
			t.Fatalf("notification %d: %v", i, err)
		}
	}
	// Every notification reached the live member; the mute one also ran
	// those it was offered first (at least once, not exactly once).
	testutil.WaitFor(t, 10*time.Second, "every notification at the live member", func() bool { return len(box.of("alive")) == n })
	if st := notifier.Stats(); st.NotifyFailures != 0 || st.CastsNotAcked == 0 {
		t.Fatalf("notifier: %d pool failures, %d unacknowledged attempts (want 0 and > 0)", st.NotifyFailures, st.CastsNotAcked)
	}
}

// A pool that joins after the notifier grouped the topic's pools gets the
// notifications once the notifier has read the directory again, and the
// first pool keeps getting every one (the grouping is rebuilt, not kept).
func TestNotifyPoolsRegroupedAfterAJoin(t *testing.T) {
	dir := newDir(t)
	ctx := testCtx(t, 30*time.Second)
	var a, b atomic.Int64
	listen := func(tr *Transport, pool string, n *atomic.Int64) {
		l, err := tr.Listen([]string{"regroup"}, pool, func(context.Context, Notification) error { n.Add(1); return nil })
		if err != nil {
			t.Fatalf("Listen %s: %v", pool, err)
		}
		t.Cleanup(func() { _ = l.Stop(context.Background()) })
	}
	listen(newNode(t, dir), "a", &a)
	ntf := newNode(t, dir).Notifier("p", "regroup")
	if err := ntf.Info(ctx, "e", 1); err != nil || a.Load() != 1 {
		t.Fatalf("first notification: %v, pool a ran %d", err, a.Load())
	}
	listen(newNode(t, dir), "b", &b)
	sent := int64(1)
	testutil.WaitFor(t, 20*time.Second, "the new pool to get a notification", func() bool {
		if err := ntf.Info(ctx, "e", 1); err != nil {
			t.Fatalf("Info: %v", err)
		}
		sent++
		return b.Load() > 0
	})
	if got := a.Load(); got != sent {
		t.Fatalf("pool a ran %d of %d notifications", got, sent)
	}
}
