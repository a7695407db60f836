package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/testutil"

	"go.uber.org/goleak"

	"github.com/zmqmsg/zmqmsg/directory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errDirectoryDown = errors.New("directory down")

// testDir is a directory.Memory whose Lookup can be switched to fail, and
// whose Lookup calls can be observed and held.
type testDir struct {
	*directory.Memory
	fail    atomic.Bool
	lookups atomic.Int64

	mu   sync.Mutex
	hold func() // when set, the next Lookup calls it after reading the directory, then clears it
}

func newTestDir(t *testing.T) *testDir {
	d := &testDir{Memory: directory.NewMemory()}
	t.Cleanup(func() { _ = d.Memory.Close() })
	return d
}

func (d *testDir) Lookup(ctx context.Context, k directory.Key) ([]directory.Entry, error) {
	defer d.lookups.Add(1)
	if d.fail.Load() {
		return nil, errDirectoryDown
	}
	entries, err := d.Memory.Lookup(ctx, k)
	d.mu.Lock()
	hold := d.hold
	d.hold = nil
	d.mu.Unlock()
	if hold != nil {
		hold()
	}
	return entries, err
}

func (d *testDir) holdNextLookup(f func()) {
	d.mu.Lock()
	d.hold = f
	d.mu.Unlock()
}

func newTestResolver(t *testing.T, dir directory.Directory) *resolver {
	r := newResolver(dir, slog.New(slog.DiscardHandler))
	t.Cleanup(r.close)
	return r
}

var testKey = directory.Key{Exchange: "ex", Topic: "calc"}

func reg(server string, port int) directory.Registration {
	return directory.Registration{Key: testKey, Server: server, Node: directory.Node{Host: "127.0.0.1", CallPort: port}}
}

func register(t *testing.T, d directory.Directory, r directory.Registration) {
	t.Helper()
	if err := d.Register(context.Background(), r, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// loaded reports whether the resolver has finished a lookup of key.
func loaded(r *resolver, key directory.Key) bool {
	r.mu.Lock()
	ks := r.keys[key]
	r.mu.Unlock()
	if ks == nil {
		return false
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.loaded
}

// cached returns the servers in the resolver's cache of key.
func cached(r *resolver, key directory.Key) []string {
	r.mu.Lock()
	ks := r.keys[key]
	r.mu.Unlock()
	if ks == nil {
		return nil
	}
	p := ks.entries.Load()
	if p == nil {
		return nil
	}
	var names []string
	for _, e := range *p {
		names = append(names, e.Server)
	}
	return names
}

type pickResult struct {
	e   route
	err error
}

func pickAsync(r *resolver, ctx context.Context, key directory.Key, name string, waitUntil time.Time) <-chan pickResult {
	ch := make(chan pickResult, 1)
	go func() {
		e, err := r.pick(ctx, key, name, waitUntil)
		ch <- pickResult{e, err}
	}()
	return ch
}

func awaitPick(t *testing.T, ch <-chan pickResult) pickResult {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(5 * time.Second):
		t.Fatal("pick did not return")
		return pickResult{}
	}
}

func mustPick(t *testing.T, r *resolver, name string) route {
	t.Helper()
	e, err := r.pick(context.Background(), testKey, name, time.Now().Add(time.Second))
	if err != nil {
		t.Fatalf("pick %q: %v", name, err)
	}
	return e
}

func TestPickWaitsForRegistration(t *testing.T) {
	dir := newTestDir(t)
	r := newTestResolver(t, dir)
	start := time.Now()
	ch := pickAsync(r, context.Background(), testKey, "", time.Now().Add(5*time.Second))
	// Once the first lookup (which found nothing) is in the cache the pick
	// can only be waiting for a change.
	testutil.WaitFor(t, 5*time.Second, "the first lookup", func() bool { return loaded(r, testKey) })
	select {
	case res := <-ch:
		t.Fatalf("pick returned %+v before anything was registered", res)
	default:
	}
	register(t, dir, reg("s1", 9001))
	res := awaitPick(t, ch)
	if res.err != nil || res.e.Server != "s1" || res.e.Node.CallPort != 9001 {
		t.Fatalf("pick: %+v", res)
	}
	if time.Since(start) > 4*time.Second {
		t.Fatal("pick returned at its deadline, not on the registration")
	}
}

func TestPickNamedWaitsForThatServer(t *testing.T) {
	dir := newTestDir(t)
	r := newTestResolver(t, dir)
	register(t, dir, reg("a", 9001))
	ch := pickAsync(r, context.Background(), testKey, "b", time.Now().Add(5*time.Second))
	testutil.WaitFor(t, 5*time.Second, "the first lookup", func() bool { return loaded(r, testKey) })
	register(t, dir, reg("c", 9003)) // a change, but not the server asked for
	testutil.WaitFor(t, 5*time.Second, "c in the cache", func() bool { return len(cached(r, testKey)) == 2 })
	select {
	case res := <-ch:
		t.Fatalf("pick of b returned %+v before b was registered", res)
	default:
	}
	register(t, dir, reg("b", 9002))
	if res := awaitPick(t, ch); res.err != nil || res.e.Server != "b" {
		t.Fatalf("pick: %+v", res)
	}
}

func TestPickNoServersAfterWait(t *testing.T) {
	dir := newTestDir(t)
	r := newTestResolver(t, dir)
	const wait = 100 * time.Millisecond
	start := time.Now()
	_, err := r.pick(context.Background(), testKey, "", start.Add(wait))
	if !errors.Is(err, ErrNoServers) {
		t.Fatalf("pick: %v, want ErrNoServers", err)
	}
	if d := time.Since(start); d < wait {
		t.Fatalf("gave up after %v, before waitUntil (%v)", d, wait)
	}
	// A waitUntil in the past fails at once.
	start = time.Now()
	if _, err := r.pick(context.Background(), testKey, "", start.Add(-time.Second)); !errors.Is(err, ErrNoServers) {
		t.Fatalf("pick: %v, want ErrNoServers", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("pick with a past waitUntil took %v", d)
	}
	// Named: the error names the server.
	register(t, dir, reg("a", 9001))
	testutil.WaitFor(t, 5*time.Second, "a in the cache", func() bool { return len(cached(r, testKey)) == 1 })
	_, err = r.pick(context.Background(), testKey, "nobody", time.Now().Add(20*time.Millisecond))
	if !errors.Is(err, ErrNoServers) || !strings.Contains(err.Error(), `"nobody"`) {
		t.Fatalf("named pick: %v", err)
	}
}

func TestPickContextAndClose(t *testing.T) {
	dir := newTestDir(t)
	r := newResolver(dir, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	ch := pickAsync(r, ctx, testKey, "", time.Now().Add(10*time.Second))
	testutil.WaitFor(t, 5*time.Second, "the first lookup", func() bool { return loaded(r, testKey) })
	cancel()
	if res := awaitPick(t, ch); !errors.Is(res.err, context.Canceled) {
		t.Fatalf("cancelled pick: %+v", res)
	}
	ch = pickAsync(r, context.Background(), testKey, "", time.Now().Add(10*time.Second))
	r.close()
	if res := awaitPick(t, ch); !errors.Is(res.err, ErrClosed) {
		t.Fatalf("pick during close: %+v", res)
	}
	other := directory.Key{Topic: "other"}
	if _, err := r.pick(context.Background(), other, "", time.Now().Add(time.Second)); !errors.Is(err, ErrClosed) {
		t.Fatalf("pick of a new key after close: %v", err)
	}
}

func TestPickNamed(t *testing.T) {
	dir := newTestDir(t)
	r := newTestResolver(t, dir)
	for i, s := range []string{"a", "b", "c"} {
		register(t, dir, reg(s, 9001+i))
	}
	for range 5 {
		if e := mustPick(t, r, "b"); e.Server != "b" || e.Node.CallPort != 9002 {
			t.Fatalf("named pick: %+v", e)
		}
	}
	// Named picks do not move the round robin: the unnamed picks go
	// round in order from wherever it started.
	first := mustPick(t, r, "")
	for i := 1; i <= 3; i++ {
		want := string(rune('a' + (int(first.Server[0]-'a')+i)%3))
		if e := mustPick(t, r, ""); e.Server != want {
			t.Fatalf("round-robin pick %d after %s: %s, want %s", i, first.Server, e.Server, want)
		}
		if e := mustPick(t, r, "b"); e.Server != "b" {
			t.Fatalf("named pick: %+v", e)
		}
	}
}

func TestPickRoundRobin(t *testing.T) {
	dir := newTestDir(t)
	r := newTestResolver(t, dir)
	servers := []string{"a", "b", "c"}
	for i, s := range servers {
		register(t, dir, reg(s, 9001+i))
	}
	counts := map[string]int{}
	start := -1
	for i := range 30 {
		e := mustPick(t, r, "")
		if start < 0 {
			start = slices.Index(servers, e.Server)
		}
		// Lookup is sorted by (node, server): the order is a, b, c, from
		// a random start.
		if want := servers[(start+i)%3]; e.Server != want {
			t.Fatalf("pick %d: %s, want %s", i, e.Server, want)
		}
		counts[e.Server]++
	}
	for _, s := range servers {
		if counts[s] != 10 {
			t.Fatalf("counts %v, want 10 each", counts)
		}
	}
}

func TestPickFollowsDeregistration(t *testing.T) {
	dir := newTestDir(t)
	r := newTestResolver(t, dir)
	register(t, dir, reg("a", 9001))
	register(t, dir, reg("b", 9002))
	mustPick(t, r, "")
	if err := dir.Deregister(context.Background(), reg("a", 9001)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "a to leave the cache", func() bool { return len(cached(r, testKey)) == 1 })
	for range 10 {
		if e := mustPick(t, r, ""); e.Server != "b" {
			t.Fatalf("picked %s after it was deregistered", e.Server)
		}
	}
}

// TestCachedEntriesSurviveDirectoryFailure: when a refresh fails, the cached
// entries keep serving; once the directory works again the next change is
// picked up.
func TestCachedEntriesSurviveDirectoryFailure(t *testing.T) {
	dir := newTestDir(t)
	r := newTestResolver(t, dir)
	register(t, dir, reg("a", 9001))
	register(t, dir, reg("b", 9002))
	mustPick(t, r, "")

	dir.fail.Store(true)
	register(t, dir, reg("c", 9003)) // triggers a refresh, which fails
	testutil.WaitFor(t, 5*time.Second, "the failed refresh", func() bool { return r.lookupErrors.Load() == 1 })
	counts := map[string]int{}
	for range 30 {
		counts[mustPick(t, r, "").Server]++
	}
	if counts["a"] != 15 || counts["b"] != 15 || len(counts) != 2 {
		t.Fatalf("picks while the directory is down: %v, want a and b 15 each", counts)
	}
	if e := mustPick(t, r, "b"); e.Server != "b" {
		t.Fatalf("named pick while the directory is down: %+v", e)
	}

	dir.fail.Store(false)
	register(t, dir, reg("d", 9004))
	testutil.WaitFor(t, 5*time.Second, "the refresh after recovery", func() bool { return len(cached(r, testKey)) == 4 })
	seen := map[string]bool{}
	for range 4 {
		seen[mustPick(t, r, "").Server] = true
	}
	if len(seen) != 4 {
		t.Fatalf("picks after recovery: %v", seen)
	}
	if n := r.lookupErrors.Load(); n != 1 {
		t.Fatalf("lookupErrors %d, want 1", n)
	}
}

// TestFirstLookupFailureDoesNotPoisonKey: a key whose first lookup failed
// (the directory was briefly down) must be looked up again by a later pick.
// Registrations that already exist produce no change notification, so
// waiting for one is not enough.
func TestFirstLookupFailureDoesNotPoisonKey(t *testing.T) {
	dir := newTestDir(t)
	r := newTestResolver(t, dir)
	register(t, dir, reg("a", 9001))
	dir.fail.Store(true)
	if _, err := r.pick(context.Background(), testKey, "", time.Now().Add(20*time.Millisecond)); !errors.Is(err, ErrDirectoryUnavailable) || errors.Is(err, ErrNoServers) {
		t.Fatalf("pick while the directory is down: %v, want ErrDirectoryUnavailable", err)
	}
	if n := dir.lookups.Load(); n != 1 {
		t.Fatalf("%d lookups for one pick, want 1", n)
	}
	dir.fail.Store(false)
	// The directory is back and a is registered; a heartbeat refresh of a
	// does not notify watchers.
	register(t, dir, reg("a", 9001))
	e, err := r.pick(context.Background(), testKey, "", time.Now().Add(time.Second))
	if err != nil || e.Server != "a" {
		t.Fatalf("pick after the directory recovered: server %q, %v (lookups: %d; the failed first lookup is never retried)",
			e.Server, err, dir.lookups.Load())
	}
}

// TestStaleLookupDoesNotOverwriteNewer: the first lookup of a key (run by
// pick) and a refresh triggered by a change (run by the watch goroutine)
// may overlap. The older result must not overwrite the newer one.
func TestStaleLookupDoesNotOverwriteNewer(t *testing.T) {
	dir := newTestDir(t)
	r := newTestResolver(t, dir)
	// The first lookup reads the directory (empty), then is held while a
	// server registers and the watch goroutine refreshes.
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseFirst := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseFirst) // runs before the resolver's close
	held := make(chan struct{})
	dir.holdNextLookup(func() {
		close(held)
		<-release
	})
	ch := pickAsync(r, context.Background(), testKey, "", time.Now().Add(2*time.Second))
	<-held
	register(t, dir, reg("a", 9001))
	// An implementation that runs refreshes of a key concurrently lets the
	// watch refresh land now; one that serialises them holds it until the
	// first lookup is done (then this wait gives up, which is fine).
	deadline := time.Now().Add(time.Second)
	for len(cached(r, testKey)) == 0 && time.Now().Before(deadline) {
		<-time.After(time.Millisecond)
	}
	releaseFirst() // the first lookup now stores its older, empty result
	res := awaitPick(t, ch)
	if res.err != nil || res.e.Server != "a" {
		t.Fatalf("pick: server %q, %v (cache now %v: the stale first lookup overwrote the newer refresh)", res.e.Server, res.err, cached(r, testKey))
	}
}

// TestResolverConcurrentPicks hammers pick on several keys from many
// goroutines while servers come and go, under -race.
func TestResolverConcurrentPicks(t *testing.T) {
	dir := newTestDir(t)
	r := newTestResolver(t, dir)
	keys := []directory.Key{{Topic: "k0"}, {Topic: "k1"}, {Topic: "k2"}}
	for i, k := range keys {
		if err := dir.Register(context.Background(), directory.Registration{Key: k, Server: "base", Node: directory.Node{Host: "127.0.0.1", CallPort: 9000 + i}}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				k := keys[(g+i)%len(keys)]
				if _, err := r.pick(context.Background(), k, "", time.Now().Add(2*time.Second)); err != nil {
					errs <- fmt.Errorf("pick %s: %w", k, err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 50 {
			rg := directory.Registration{Key: keys[i%len(keys)], Server: fmt.Sprintf("s%d", i), Node: directory.Node{Host: "127.0.0.1", CallPort: 10000 + i}}
			_ = dir.Register(context.Background(), rg, time.Minute)
			_ = dir.Deregister(context.Background(), rg)
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Each new process starts its round robin at a random server, so that
// short-lived clients spread their first calls: 60 fresh resolvers' first
// picks hit every one of 3 servers (each is missed with probability
// (2/3)^60, about 3e-11).
func TestFirstPickIsSpread(t *testing.T) {
	dir := newTestDir(t)
	for i, s := range []string{"a", "b", "c"} {
		register(t, dir, reg(s, 9001+i))
	}
	firsts := map[string]int{}
	for range 60 {
		firsts[mustPick(t, newTestResolver(t, dir), "").Server]++
	}
	if len(firsts) != 3 {
		t.Fatalf("first picks of 60 new resolvers: %v, want all of a, b, c", firsts)
	}
}

// A node marked down stays down when a key is looked up for the first time
// (every server is new to that lookup); a server that registers on it
// later, in a key already cached, clears the mark (the node came back).
func TestDownMarkSurvivesFirstLookup(t *testing.T) {
	dir := newTestDir(t)
	a := reg("a", 9001)
	register(t, dir, a)
	r := newTestResolver(t, dir)
	id := a.Node.ID()
	r.down.Store(id, struct{}{})
	if e := mustPick(t, r, ""); e.Server != "a" {
		t.Fatalf("pick %s", e.Server)
	}
	if _, down := r.down.Load(id); !down {
		t.Fatal("the first lookup of a key cleared a down mark")
	}
	b := a
	b.Server = "b"
	register(t, dir, b)
	testutil.WaitFor(t, 5*time.Second, "the new server on the down node to clear its mark", func() bool {
		_, down := r.down.Load(id)
		return !down
	})
}
