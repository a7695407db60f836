package directory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// go-redis logs every failed dial through a process-wide logger; the
	// outage tests cause many. The directory's own logs go to t.Log.
	redis.SetLogger(quietRedisLogger{})
	goleak.VerifyTestMain(m)
}

type quietRedisLogger struct{}

func (quietRedisLogger) Printf(context.Context, string, ...any) {}

// fakeClock is a manual clock: timers fire only when the test calls Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool // stopped or fired; guarded by c.mu
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Stopper {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves the clock by d and runs the timers that are due, outside
// the clock's lock (the callbacks take the directory's lock).
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	kept := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case !t.at.After(c.now):
			t.stopped = true
			due = append(due, t)
		default:
			kept = append(kept, t)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// SetNow moves the clock without running timers, as if they were late.
func (c *fakeClock) SetNow(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Pending counts timers that are neither stopped nor fired.
func (c *fakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped {
			n++
		}
	}
	return n
}

func newFake(t *testing.T) (*Memory, *fakeClock) {
	t.Helper()
	c := newFakeClock()
	m := NewMemory(WithClock(c.Now, c.AfterFunc))
	t.Cleanup(func() { m.Close() })
	return m, c
}

var key = Key{Exchange: "ex", Topic: "compute"}

func reg(server, host string, port int) Registration {
	return Registration{Key: key, Server: server, Node: Node{Host: host, CallPort: port}}
}

// signalled reports whether ch has a pending signal, consuming it.
func signalled(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func servers(t *testing.T, d Directory, k Key) []string {
	t.Helper()
	es, err := d.Lookup(t.Context(), k)
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if es == nil {
		t.Fatal("Lookup returned a nil slice")
	}
	out := []string{}
	for _, e := range es {
		out = append(out, e.Node.ID()+"/"+e.Server)
	}
	return out
}

func equal(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestRegisterLookupDeregister(t *testing.T) {
	m, c := newFake(t)
	ctx := t.Context()
	r := reg("s1", "10.0.0.1", 9501)

	if got := servers(t, m, key); len(got) != 0 {
		t.Fatalf("empty directory: got %v", got)
	}
	if err := m.Register(ctx, r, time.Minute); err != nil {
		t.Fatal(err)
	}
	es, err := m.Lookup(ctx, key)
	if err != nil || len(es) != 1 {
		t.Fatalf("Lookup = %v, %v; want one entry", es, err)
	}
	if !es[0].Registration.Equal(r) || !es[0].Expires.Equal(c.Now().Add(time.Minute)) {
		t.Fatalf("entry = %+v", es[0])
	}
	if got := servers(t, m, Key{Exchange: "other", Topic: "compute"}); len(got) != 0 {
		t.Fatalf("other exchange: got %v", got)
	}

	// A Deregister naming another node is stale and leaves the entry.
	stale := r
	stale.Node.CallPort = 1
	if err := m.Deregister(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if got := servers(t, m, key); len(got) != 1 {
		t.Fatalf("after stale Deregister: got %v", got)
	}

	if err := m.Deregister(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got := servers(t, m, key); len(got) != 0 {
		t.Fatalf("after Deregister: got %v", got)
	}
	if n := c.Pending(); n != 0 {
		t.Fatalf("%d timers still pending after Deregister", n)
	}
	if err := m.Deregister(ctx, r); err != nil {
		t.Fatalf("Deregister of an absent entry: %v", err)
	}
}

func TestLookupSorted(t *testing.T) {
	m, _ := newFake(t)
	for _, r := range []Registration{
		reg("b", "10.0.0.2", 9501),
		reg("c", "10.0.0.1", 9502),
		reg("z", "10.0.0.1", 9501),
		reg("a", "10.0.0.1", 9501),
	} {
		if err := m.Register(t.Context(), r, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"10.0.0.1:9501/a", "10.0.0.1:9501/z", "10.0.0.1:9502/c", "10.0.0.2:9501/b"}
	if got := servers(t, m, key); !equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestRefreshExtendsExpiry(t *testing.T) {
	m, c := newFake(t)
	ch, stopWatch := m.Watch(key)
	defer stopWatch()
	r := reg("s1", "10.0.0.1", 9501)

	if err := m.Register(t.Context(), r, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if !signalled(ch) {
		t.Fatal("no signal for a new server")
	}
	c.Advance(8 * time.Second)
	if err := m.Register(t.Context(), r, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if signalled(ch) {
		t.Fatal("a plain refresh signalled")
	}
	c.Advance(8 * time.Second) // past the first TTL, within the second
	if got := servers(t, m, key); len(got) != 1 {
		t.Fatalf("refreshed entry gone: %v", got)
	}
	if signalled(ch) {
		t.Fatal("signal although nothing expired")
	}
	c.Advance(2 * time.Second)
	if got := servers(t, m, key); len(got) != 0 {
		t.Fatalf("entry survived its refreshed TTL: %v", got)
	}
	if !signalled(ch) {
		t.Fatal("no signal on expiry")
	}

	// Moving a server to another node is a change.
	if err := m.Register(t.Context(), r, time.Minute); err != nil {
		t.Fatal(err)
	}
	signalled(ch)
	r.Node.Host = "10.0.0.9"
	if err := m.Register(t.Context(), r, time.Minute); err != nil {
		t.Fatal(err)
	}
	if !signalled(ch) {
		t.Fatal("no signal when a server moved")
	}
	if got := servers(t, m, key); !equal(got, []string{"10.0.0.9:9501/s1"}) {
		t.Fatalf("got %v", got)
	}
}

func TestExpiryNotifiesWatchers(t *testing.T) {
	m, c := newFake(t)
	ch1, stop1 := m.Watch(key)
	defer stop1()
	ch2, stop2 := m.Watch(key)
	defer stop2()
	other, stop3 := m.Watch(Key{Topic: "other"})
	defer stop3()

	if err := m.Register(t.Context(), reg("s1", "10.0.0.1", 9501), time.Second); err != nil {
		t.Fatal(err)
	}
	signalled(ch1)
	signalled(ch2)

	c.Advance(time.Second) // the expiry timer fires here
	if !signalled(ch1) || !signalled(ch2) {
		t.Fatal("watchers not signalled on expiry")
	}
	if signalled(other) {
		t.Fatal("watcher of another key signalled")
	}
	if got := servers(t, m, key); len(got) != 0 {
		t.Fatalf("expired entry still listed: %v", got)
	}
	if n := c.Pending(); n != 0 {
		t.Fatalf("%d timers pending", n)
	}
}

func TestLazyExpiryOnLookup(t *testing.T) {
	m, c := newFake(t)
	ch, stop := m.Watch(key)
	defer stop()
	if err := m.Register(t.Context(), reg("s1", "10.0.0.1", 9501), time.Second); err != nil {
		t.Fatal(err)
	}
	signalled(ch)

	c.SetNow(time.Second) // the timer is late
	if got := servers(t, m, key); len(got) != 0 {
		t.Fatalf("expired entry still listed: %v", got)
	}
	if !signalled(ch) {
		t.Fatal("no signal when Lookup dropped an expired entry")
	}
	if n := c.Pending(); n != 0 {
		t.Fatalf("timer of the dropped entry not stopped: %d pending", n)
	}
}

func TestDeregisterNotifies(t *testing.T) {
	m, _ := newFake(t)
	ch, stop := m.Watch(key)
	defer stop()
	r := reg("s1", "10.0.0.1", 9501)
	if err := m.Register(t.Context(), r, time.Minute); err != nil {
		t.Fatal(err)
	}
	if !signalled(ch) {
		t.Fatal("no signal on Register")
	}
	if err := m.Deregister(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	if !signalled(ch) {
		t.Fatal("no signal on Deregister")
	}
	if err := m.Deregister(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	if signalled(ch) {
		t.Fatal("signal for deregistering an absent entry")
	}
}

func TestWatchStop(t *testing.T) {
	m, _ := newFake(t)
	ch, stop := m.Watch(key)
	stop()
	stop() // idempotent
	if err := m.Register(t.Context(), reg("s1", "10.0.0.1", 9501), time.Minute); err != nil {
		t.Fatal(err)
	}
	if signalled(ch) {
		t.Fatal("stopped watcher signalled")
	}
	if len(m.topics[key].watchers) != 0 {
		t.Fatal("stopped watcher still registered")
	}
}

func TestInvalid(t *testing.T) {
	m, c := newFake(t)
	good := Registration{
		Key:    Key{Topic: "t"},
		Server: "s",
		Node:   Node{Host: "h", CallPort: 1, FanoutPort: 65535},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid registration: %v", err)
	}
	tests := []struct {
		name   string
		change func(*Registration)
		ttl    time.Duration
	}{
		{"empty topic", func(r *Registration) { r.Topic = "" }, time.Second},
		{"empty server", func(r *Registration) { r.Server = "" }, time.Second},
		{"empty host", func(r *Registration) { r.Node.Host = "" }, time.Second},
		{"call port 0", func(r *Registration) { r.Node.CallPort = 0 }, time.Second},
		{"call port too big", func(r *Registration) { r.Node.CallPort = 65536 }, time.Second},
		{"negative fanout port", func(r *Registration) { r.Node.FanoutPort = -1 }, time.Second},
		{"notify port too big", func(r *Registration) { r.Node.NotifyPort = 70000 }, time.Second},
		{"cast port too big", func(r *Registration) { r.Node.CastPort = 65536 }, time.Second},
		{"zero ttl", func(*Registration) {}, 0},
		{"negative ttl", func(*Registration) {}, -time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			tt.change(&r)
			err := m.Register(t.Context(), r, tt.ttl)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Register = %v, want ErrInvalid", err)
			}
			t.Log(err) // the message says what is wrong
		})
	}
	if got := servers(t, m, good.Key); len(got) != 0 {
		t.Fatalf("invalid registrations stored: %v", got)
	}
	if n := c.Pending(); n != 0 {
		t.Fatalf("%d timers for invalid registrations", n)
	}
}

func TestClosed(t *testing.T) {
	m, c := newFake(t)
	ctx := t.Context()
	r := reg("s1", "10.0.0.1", 9501)
	if err := m.Register(ctx, r, time.Minute); err != nil {
		t.Fatal(err)
	}
	ch, stop := m.Watch(key)
	defer stop()

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := c.Pending(); n != 0 {
		t.Fatalf("Close left %d timers", n)
	}
	if signalled(ch) { // also fails if Close closed the channel
		t.Fatal("Close signalled or closed a watcher channel")
	}
	if err := m.Register(ctx, r, time.Minute); !errors.Is(err, ErrClosed) {
		t.Errorf("Register = %v", err)
	}
	if err := m.Deregister(ctx, r); !errors.Is(err, ErrClosed) {
		t.Errorf("Deregister = %v", err)
	}
	if _, err := m.Lookup(ctx, key); !errors.Is(err, ErrClosed) {
		t.Errorf("Lookup = %v", err)
	}
	ch2, stop2 := m.Watch(key)
	stop2()
	if ch2 == nil || signalled(ch2) {
		t.Error("Watch after Close must return a quiet, non-nil channel")
	}
}

func TestContextDone(t *testing.T) {
	m, c := newFake(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := reg("s1", "10.0.0.1", 9501)

	if err := m.Register(ctx, r, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("Register = %v", err)
	}
	if got := servers(t, m, key); len(got) != 0 {
		t.Fatalf("Register with a done ctx stored %v", got)
	}
	if n := c.Pending(); n != 0 {
		t.Fatalf("%d timers", n)
	}
	if err := m.Register(t.Context(), r, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.Deregister(ctx, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("Deregister = %v", err)
	}
	if got := servers(t, m, key); len(got) != 1 {
		t.Fatalf("Deregister with a done ctx removed the entry")
	}
	if _, err := m.Lookup(ctx, key); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lookup = %v", err)
	}
}

func TestConcurrent(t *testing.T) {
	m := NewMemory() // real clock; Close stops the (long) timers
	defer m.Close()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			ch, stop := m.Watch(key)
			defer stop()
			for i := range 50 {
				r := reg(fmt.Sprintf("s%d", i%4), "10.0.0.1", 9000+g)
				if err := m.Register(t.Context(), r, time.Minute); err != nil {
					t.Error(err)
					return
				}
				if _, err := m.Lookup(t.Context(), key); err != nil {
					t.Error(err)
					return
				}
				signalled(ch)
				if i%3 == 0 {
					if err := m.Deregister(t.Context(), r); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestShared(t *testing.T) {
	if a, b := Shared(), Shared(); a != b {
		t.Fatal("Shared returned different instances")
	}
	s := Shared()
	if err := s.Close(); err != nil {
		t.Fatalf("Shared().Close() = %v", err)
	}
	r := Registration{Key: Key{Topic: "TestShared"}, Server: "s", Node: Node{Host: "h", CallPort: 1}}
	if err := s.Register(t.Context(), r, time.Minute); err != nil {
		t.Fatalf("Register after Close of Shared: %v", err)
	}
	if err := s.Deregister(t.Context(), r); err != nil {
		t.Fatal(err)
	}
}

func TestRealClockExpiry(t *testing.T) {
	m := NewMemory()
	defer m.Close()
	ch, stop := m.Watch(key)
	defer stop()
	if err := m.Register(t.Context(), reg("s1", "10.0.0.1", 9501), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for len(servers(t, m, key)) > 0 {
		select {
		case <-ch: // something changed: look again
		case <-deadline:
			t.Fatal("50ms registration still listed after 5s")
		}
	}
}

func TestNodeAndKey(t *testing.T) {
	n := Node{Host: "::1", CallPort: 9501, CastPort: 9504}
	for _, c := range []struct{ got, want string }{
		{n.CallEndpoint(), "tcp://[::1]:9501"},
		{n.CastEndpoint(), "tcp://[::1]:9504"},
		{n.FanoutEndpoint(), ""},
		{n.NotifyEndpoint(), ""},
		{n.ID(), "[::1]:9501"},
		{Node{Host: "127.0.0.1", CallPort: 1}.ID(), "127.0.0.1:1"},
		{Key{Exchange: "ex", Topic: "t"}.String(), "ex/t"},
		{Key{Topic: "t"}.String(), "(default)/t"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestZeroValueAndNilInputs(t *testing.T) {
	var m Memory // the zero value works, with the real clock
	defer m.Close()
	r := reg("s1", "10.0.0.1", 9501)
	// A nil ctx is bad style but must not panic.
	var nilCtx context.Context
	if err := m.Register(nilCtx, r, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := servers(t, &m, key); len(got) != 1 {
		t.Fatalf("got %v", got)
	}
	m2 := NewMemory(nil, WithClock(nil, nil))
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryList(t *testing.T) {
	m, c := newFake(t)
	ctx := t.Context()
	if es, err := m.List(ctx); err != nil || es == nil || len(es) != 0 {
		t.Fatalf("List of an empty directory = %v, %v", es, err)
	}
	regs := []Registration{
		{Key: Key{Exchange: "b", Topic: "t"}, Server: "s", Node: Node{Host: "10.0.0.1", CallPort: 1}},
		{Key: Key{Topic: "z"}, Server: "s", Node: Node{Host: "10.0.0.1", CallPort: 1}},
		{Key: Key{Exchange: "a", Topic: "u"}, Server: "y", Node: Node{Host: "10.0.0.2", CallPort: 1}},
		{Key: Key{Exchange: "a", Topic: "u"}, Server: "x", Node: Node{Host: "10.0.0.2", CallPort: 1}},
		{Key: Key{Exchange: "a", Topic: "u"}, Server: "z", Node: Node{Host: "10.0.0.1", CallPort: 2}},
		{Key: Key{Exchange: "a", Topic: "t"}, Server: "s", Node: Node{Host: "10.0.0.1", CallPort: 1}},
	}
	for i, r := range regs {
		ttl := time.Minute
		if i == 0 {
			ttl = time.Second // expires below
		}
		if err := m.Register(ctx, r, ttl); err != nil {
			t.Fatal(err)
		}
	}
	c.SetNow(time.Second) // the first entry is past its expiry, its timer late
	es, err := m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Key.String()+"@"+e.Node.ID()+"/"+e.Server)
	}
	want := []string{
		"(default)/z@10.0.0.1:1/s",
		"a/t@10.0.0.1:1/s",
		"a/u@10.0.0.1:2/z",
		"a/u@10.0.0.2:1/x",
		"a/u@10.0.0.2:1/y",
	}
	if !equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.List(canceled); !errors.Is(err, context.Canceled) {
		t.Fatalf("List with a done ctx = %v", err)
	}
	m.Close()
	if _, err := m.List(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("List after Close = %v", err)
	}
}
