package directory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/redistest"
)

// testLogger writes to the test log until the test ends.
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.t = nil; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	mu sync.Mutex
	t  testing.TB
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.t != nil {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

var _ io.Writer = (*testWriter)(nil)

// newRedis opens a Redis directory on url with test settings, closed when
// the test ends.
func newRedis(t testing.TB, url string, change ...func(*RedisOptions)) *Redis {
	t.Helper()
	opts, err := ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opts.PollInterval = time.Second
	opts.Logger = testLogger(t)
	for _, f := range change {
		f(&opts)
	}
	r, err := NewRedis(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

func TestConformanceRedis(t *testing.T) {
	srv := redistest.Start(t)
	n := 0
	runConformance(t, func(t *testing.T) Directory {
		n++
		prefix := fmt.Sprintf("conf%d", n) // one key space per subtest
		return newRedis(t, srv.URL()+"?prefix="+prefix)
	})
}

func TestRedisPlainRefreshDoesNotBumpVersion(t *testing.T) {
	srv := redistest.Start(t)
	d := newRedis(t, srv.URL())
	r := reg("s1", "10.0.0.1", 9501)
	verKey := targetKeys("zmqmsg", targetID(key))[2]
	version := func() string {
		v, err := redistest.Command(srv.Addr(), "GET", verKey)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if err := d.Register(t.Context(), r, time.Minute); err != nil {
		t.Fatal(err)
	}
	v1 := version()
	if err := d.Register(t.Context(), r, time.Minute); err != nil {
		t.Fatal(err)
	}
	if v2 := version(); v2 != v1 || v1 == "" {
		t.Fatalf("version %q after a plain refresh, %q before", v2, v1)
	}
	r.Node.CastPort = 7
	if err := d.Register(t.Context(), r, time.Minute); err != nil {
		t.Fatal(err)
	}
	if v3 := version(); v3 == v1 {
		t.Fatalf("version unchanged (%s) after a node change", v3)
	}
	// The keys carry a TTL: grace after the last expiry.
	ttl, err := redistest.Command(srv.Addr(), "PTTL", verKey)
	if err != nil || ttl == "-1" {
		t.Fatalf("PTTL = %s, %v; want a TTL", ttl, err)
	}
}

// Row 24: expiry and clean stop seen by another process's view.
func TestRedisExpiryAndStopAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	a := newRedis(t, srv.URL())
	b := newRedis(t, srv.URL())
	ch, stop := b.Watch(key)
	defer stop()
	if got := servers(t, b, key); len(got) != 0 { // B caches the empty key
		t.Fatalf("got %v", got)
	}

	start := time.Now()
	if err := a.Register(t.Context(), reg("short", "10.0.0.1", 9501), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, 5*time.Second, "B sees A's registration")
	if got := servers(t, b, key); !equal(got, []string{"10.0.0.1:9501/short"}) {
		t.Fatalf("B: got %v", got)
	}
	// Nobody publishes an expiry: B's expiry timer must find it.
	waitSignal(t, ch, 5*time.Second, "B sees the expiry")
	if got := servers(t, b, key); len(got) != 0 {
		t.Fatalf("B after expiry: got %v", got)
	}
	t.Logf("expiry seen by B after %v (TTL 300ms)", time.Since(start))
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("expired after %v, before its TTL", d)
	}

	// Stop cleanly: Deregister is seen by B at once.
	r := reg("long", "10.0.0.2", 9501)
	if err := a.Register(t.Context(), r, time.Minute); err != nil {
		t.Fatal(err)
	}
	waitServers(t, b, key, []string{"10.0.0.2:9501/long"}, 5*time.Second)
	signalled(ch)
	start = time.Now()
	if err := a.Deregister(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, 5*time.Second, "B sees the Deregister")
	if got := servers(t, b, key); len(got) != 0 {
		t.Fatalf("B after Deregister: got %v", got)
	}
	t.Logf("Deregister seen by B after %v", time.Since(start))
}

func TestRedisNotifyAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	a := newRedis(t, srv.URL())
	b := newRedis(t, srv.URL())
	ch, stop := b.Watch(key)
	defer stop()
	// Wait until B's subscription is live (its first read trusted).
	waitFor(t, 5*time.Second, "B's cache trusted", func() bool {
		_, _ = b.Lookup(t.Context(), key)
		return b.Stats().CacheHits > 0
	})
	signalled(ch)
	if err := a.Register(t.Context(), reg("s1", "10.0.0.1", 9501), time.Minute); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, 5*time.Second, "B's watch after A's Register")
	if got := servers(t, b, key); !equal(got, []string{"10.0.0.1:9501/s1"}) {
		t.Fatalf("B: got %v", got)
	}
	if st := b.Stats(); st.Notifications == 0 {
		t.Fatalf("B got no notification: %+v", st)
	}
	// B's Lookups now come from its cache, refreshed by notifications.
	hits := b.Stats().CacheHits
	servers(t, b, key)
	if b.Stats().CacheHits != hits+1 {
		t.Fatalf("Lookup after a notification did not hit the cache: %+v", b.Stats())
	}
}

// Row 25: Redis stops; lookups keep working from the cache; Redis comes
// back empty and the registrations return.
func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	a := newRedis(t, srv.URL())
	b := newRedis(t, srv.URL())
	regs := []Registration{reg("s1", "10.0.0.1", 9501), reg("s2", "10.0.0.2", 9501)}
	want := []string{"10.0.0.1:9501/s1", "10.0.0.2:9501/s2"}
	for _, r := range regs {
		if err := a.Register(t.Context(), r, 3*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	waitServers(t, a, key, want, 5*time.Second)
	waitServers(t, b, key, want, 5*time.Second)
	chB, stopB := b.Watch(key)
	defer stopB()

	srv.Stop()
	if err := a.Register(t.Context(), regs[0], 3*time.Second); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Register during the outage = %v, want ErrUnavailable", err)
	} else {
		t.Logf("Register during the outage: %v", err)
	}
	if err := a.Deregister(t.Context(), regs[0]); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Deregister during the outage = %v, want ErrUnavailable", err)
	}
	if got := servers(t, a, key); !equal(got, want) {
		t.Fatalf("A during the outage: got %v, want the cached %v", got, want)
	}
	if _, err := a.Lookup(t.Context(), Key{Topic: "never-cached"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Lookup of an uncached key = %v, want ErrUnavailable", err)
	}
	if _, err := a.List(t.Context()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("List = %v, want ErrUnavailable", err)
	}
	st := a.Stats()
	if st.StaleServed == 0 || st.Outages != 1 {
		t.Fatalf("stats during the outage: %+v; want StaleServed > 0, Outages == 1", st)
	}
	// Past the TTL, still stale but working.
	waitFor(t, 10*time.Second, "the TTL to pass", func() bool {
		es, err := a.Lookup(t.Context(), key)
		return err == nil && len(es) == 2 && !time.Now().Before(es[0].Expires)
	})
	if got := servers(t, b, key); !equal(got, want) {
		t.Fatalf("B during the outage: got %v", got)
	}

	srv.Restart() // same port, no data
	// The engine retries registrations until Redis is back; so does the test.
	waitFor(t, 10*time.Second, "Register to succeed again", func() bool {
		return a.Register(t.Context(), regs[0], time.Minute) == nil
	})
	if err := a.Register(t.Context(), regs[1], time.Minute); err != nil {
		t.Fatal(err)
	}
	waitServers(t, a, key, want, 5*time.Second)
	waitServers(t, b, key, want, 5*time.Second)
	signalled(chB)
	waitFor(t, 5*time.Second, "both subscriptions back", func() bool {
		return a.Stats().Resubscribes > 0 && b.Stats().Resubscribes > 0
	})
	// B watches: a change after the outage reaches it.
	if err := a.Deregister(t.Context(), regs[1]); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, chB, 5*time.Second, "B's watch after the outage")
	waitServers(t, b, key, want[:1], 5*time.Second)
	t.Logf("A: %+v", a.Stats())
	t.Logf("B: %+v", b.Stats())
	if st := a.Stats(); st.Outages != 1 {
		t.Fatalf("Outages = %d, want 1", st.Outages)
	}
}

// A node may start while Redis is down.
func TestRedisUnavailableAtStart(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop() // a port where nothing listens
	d := newRedis(t, srv.URL(), func(o *RedisOptions) { o.OpTimeout = 200 * time.Millisecond })
	start := time.Now()
	if err := d.Register(t.Context(), reg("s1", "10.0.0.1", 9501), time.Minute); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Register = %v", err)
	}
	if _, err := d.Lookup(t.Context(), key); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Lookup = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("calls took %v with OpTimeout 200ms", d)
	}
	ch, stop := d.Watch(key)
	defer stop()
	srv.Restart()
	if err := d.Register(t.Context(), reg("s1", "10.0.0.1", 9501), time.Minute); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, 5*time.Second, "watch once Redis is up")
}

// A hung Redis (SIGSTOP: connections stay open, nothing answers) is
// bounded by OpTimeout even with a context without deadline, and Lookup
// serves the cache meanwhile.
func TestRedisOpTimeout(t *testing.T) {
	srv := redistest.Start(t)
	d := newRedis(t, srv.URL(), func(o *RedisOptions) { o.OpTimeout = 300 * time.Millisecond })
	if err := d.Register(context.Background(), reg("s1", "10.0.0.1", 9501), time.Minute); err != nil {
		t.Fatal(err)
	}
	servers(t, d, key)
	srv.Pause()
	defer srv.Resume()
	start := time.Now()
	err := d.Register(context.Background(), reg("s1", "10.0.0.1", 9501), time.Minute)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Register against a hung server = %v", err)
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Fatalf("Register took %v with OpTimeout 300ms", el)
	}
	start = time.Now()
	if got := servers(t, d, key); len(got) != 1 {
		t.Fatalf("Lookup against a hung server: %v", got)
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Fatalf("Lookup took %v with OpTimeout 300ms", el)
	}
	srv.Resume()
	waitFor(t, 5*time.Second, "Register after Resume", func() bool {
		return d.Register(context.Background(), reg("s1", "10.0.0.1", 9501), time.Minute) == nil
	})
}

// Row 26: Sentinel failover with a refresh loop.
func TestRedisSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: starts a Sentinel group")
	}
	g := redistest.StartSentinel(t, 1, 3)
	d := newRedis(t, g.URL())
	reader := newRedis(t, g.URL())
	const (
		refresh = 500 * time.Millisecond
		ttl     = 3 * time.Second
		n       = 5
	)
	var regs []Registration
	var want []string
	for i := range n {
		r := reg(fmt.Sprintf("s%d", i), "10.0.0.1", 9501+i)
		regs = append(regs, r)
		want = append(want, r.Node.ID()+"/"+r.Server)
	}
	slices.Sort(want)

	// The refresh loop of the servers, as the engine runs it.
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var refreshErrs sync.Map
	var errMu sync.Mutex
	var firstErr, lastErr time.Time // of the refresh loop, for the write gap
	wg.Go(func() {
		tick := time.NewTicker(refresh)
		defer tick.Stop()
		for {
			for _, r := range regs {
				if err := d.Register(ctx, r, ttl); err != nil && ctx.Err() == nil {
					refreshErrs.Store(err.Error(), true)
					errMu.Lock()
					if firstErr.IsZero() {
						firstErr = time.Now()
					}
					lastErr = time.Now()
					errMu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	waitServers(t, reader, key, want, 5*time.Second)

	// Measure how long Lookup misses an entry (or fails) around the failover.
	var missingSince, worst time.Duration
	var missing bool
	start := time.Now()
	g.KillMaster()
	deadline := start.Add(15 * time.Second)
	recovered := false
	var recoveredAt time.Duration
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		<-tick.C
		now := time.Since(start)
		es, err := reader.Lookup(t.Context(), key)
		ok := err == nil && len(es) == n
		if !ok && !missing {
			missing, missingSince = true, now
		}
		if ok && missing {
			missing = false
			worst = max(worst, now-missingSince)
		}
		if ok {
			m, err := g.CurrentMaster()
			if err == nil && m != g.Master().Addr() && !recovered && now > 0 {
				// Failed over; wait for the refresh loop to have written to
				// the new master too.
				if es2, err := reader.List(t.Context()); err == nil && len(es2) == n {
					recovered, recoveredAt = true, now
				}
			}
		}
		if recovered && now > recoveredAt+2*refresh {
			break
		}
	}
	if missing {
		worst = max(worst, time.Since(start)-missingSince)
	}
	m, _ := g.CurrentMaster()
	t.Logf("failover: new master %s (was %s); recovered after %v; longest gap with an entry missing from Lookup: %v",
		m, g.Master().Addr(), recoveredAt, worst)
	refreshErrs.Range(func(k, _ any) bool { t.Logf("refresh error during failover: %v", k); return true })
	errMu.Lock()
	if !firstErr.IsZero() {
		t.Logf("Register failed from %v to %v after the kill (writes unavailable for about %v)",
			firstErr.Sub(start).Round(time.Millisecond), lastErr.Sub(start).Round(time.Millisecond),
			lastErr.Sub(firstErr).Round(time.Millisecond))
	}
	errMu.Unlock()
	t.Logf("writer: %+v", d.Stats())
	t.Logf("reader: %+v", reader.Stats())
	if !recovered {
		t.Fatalf("no recovery within 15s after killing the master")
	}
	if worst > 0 {
		// Only allowed if the entries really expired: more than one refresh
		// interval plus failover detection.
		t.Logf("entries were missing for %v", worst)
	}
	if worst > refresh+recoveredAt {
		t.Fatalf("an entry was missing from Lookup for %v, longer than one refresh interval + failover (%v)", worst, refresh+recoveredAt)
	}
	waitServers(t, reader, key, want, 5*time.Second)
}

func TestRedisCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	a := newRedis(t, c.URL())
	b := newRedis(t, strings.Join(c.Addrs(), ","))
	const n = 50
	ctx := t.Context()
	watched := Key{Exchange: "ex", Topic: "t7"}
	ch, stop := b.Watch(watched)
	defer stop()
	waitFor(t, 5*time.Second, "B's cache trusted", func() bool {
		_, _ = b.Lookup(ctx, watched)
		return b.Stats().CacheHits > 0
	})
	signalled(ch)
	var want []string
	for i := range n {
		r := Registration{Key: Key{Exchange: "ex", Topic: fmt.Sprintf("t%d", i)}, Server: "s", Node: Node{Host: "10.0.0.1", CallPort: 1000 + i}}
		if err := a.Register(ctx, r, time.Minute); err != nil {
			t.Fatal(err)
		}
		want = append(want, r.Key.String())
	}
	waitSignal(t, ch, 5*time.Second, "cluster pubsub reaches B")
	slots := map[string]bool{}
	for i := range n {
		k := Key{Exchange: "ex", Topic: fmt.Sprintf("t%d", i)}
		es, err := b.Lookup(ctx, k)
		if err != nil || len(es) != 1 || es[0].Node.CallPort != 1000+i {
			t.Fatalf("Lookup(%v) = %v, %v", k, es, err)
		}
		slot, err := redistest.Command(c.Addrs()[0], "CLUSTER", "KEYSLOT", targetKeys("zmqmsg", targetID(k))[0])
		if err != nil {
			t.Fatal(err)
		}
		slots[slot] = true
	}
	if len(slots) < 10 {
		t.Fatalf("50 targets in only %d slots", len(slots))
	}
	es, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Key.String())
	}
	slices.Sort(want)
	if !equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	r := Registration{Key: watched, Server: "s", Node: Node{Host: "10.0.0.1", CallPort: 1007}}
	if err := a.Deregister(ctx, r); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, 5*time.Second, "B sees the Deregister")
	if got := servers(t, b, watched); len(got) != 0 {
		t.Fatalf("after Deregister: %v", got)
	}
	if es, err := b.List(ctx); err != nil || len(es) != n-1 {
		t.Fatalf("List after Deregister: %d entries, %v", len(es), err)
	}
	t.Logf("B: %+v", b.Stats())
}

func TestTargetID(t *testing.T) {
	for _, k := range []Key{
		{}, {Topic: "t"}, {Exchange: "a/b", Topic: "c{d}e%f"}, {Exchange: "\x00\n", Topic: "ü/"},
	} {
		id := targetID(k)
		if strings.ContainsAny(id, "{}") || strings.Count(id, "/") != 1 {
			t.Errorf("targetID(%q) = %q", k, id)
		}
		if back, ok := parseTargetID(id); !ok || back != k {
			t.Errorf("parseTargetID(%q) = %q, %v; want %q", id, back, ok, k)
		}
	}
	for _, bad := range []string{"noslash", "a/%", "a/%4", "a/%zz"} {
		if _, ok := parseTargetID(bad); ok {
			t.Errorf("parseTargetID(%q) accepted", bad)
		}
	}
}

func TestNewRedisOptions(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts RedisOptions
	}{
		{"no address", RedisOptions{}},
		{"bad address", RedisOptions{Addrs: []string{"nohost"}}},
		{"cluster and sentinel", RedisOptions{Addrs: []string{"h:1"}, Cluster: true, MasterName: "m"}},
		{"cluster db", RedisOptions{Addrs: []string{"h:1", "h:2"}, DB: 1}},
		{"negative db", RedisOptions{Addrs: []string{"h:1"}, DB: -1}},
		{"brace prefix", RedisOptions{Addrs: []string{"h:1"}, Prefix: "a{b"}},
		{"negative timeout", RedisOptions{Addrs: []string{"h:1"}, OpTimeout: -1}},
	} {
		if _, err := NewRedis(tt.opts); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%s: NewRedis = %v, want ErrBadOptions", tt.name, err)
		}
	}
	// Valid options in every mode build a client without contacting Redis.
	for _, o := range []RedisOptions{
		{Addrs: []string{"127.0.0.1:1"}},
		{Addrs: []string{"127.0.0.1:1"}, MasterName: "m"},
		{Addrs: []string{"127.0.0.1:1"}, Cluster: true},
		{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}},
	} {
		r, err := NewRedis(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
