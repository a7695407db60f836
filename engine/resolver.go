package engine

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/internal/routine"
)

// resolver caches directory lookups per key and keeps them fresh with the
// directory's Watch, so a call costs no directory round trip. When the
// directory fails, the cached entries keep serving (stale but working).
type resolver struct {
	dir     directory.Directory
	log     *slog.Logger
	timeout time.Duration // bound of one directory call

	mu       sync.Mutex
	keys     map[directory.Key]*keyState
	snapshot atomic.Pointer[map[directory.Key]*keyState] // copy of keys for lock-free reads

	stop     chan struct{}
	routines routine.Group // the watch goroutines

	lookupErrors atomic.Uint64

	// down holds the ids of nodes whose CALL connection is down (set by
	// the dealers' liveness reports): round robin avoids them.
	down sync.Map
}

// route is a cached directory entry with its node id computed once.
type route struct {
	directory.Entry
	nodeID  string
	sockKey string // socketKey(nodeID, Node): names the node's sockets

	// outstanding counts this Transport's calls to the server that wait
	// for their answer (the least-outstanding pick); kept across refreshes.
	outstanding *atomic.Int64
}

// begin and end count a call to r as outstanding.
func (r *route) begin() {
	if r.outstanding != nil {
		r.outstanding.Add(1)
	}
}

func (r *route) end() {
	if r.outstanding != nil {
		r.outstanding.Add(-1)
	}
}

func (r *route) load() int64 {
	if r.outstanding == nil {
		return 0
	}
	return r.outstanding.Load()
}

// keyState is the cache of one key.
type keyState struct {
	entries atomic.Pointer[[]route]
	rr      atomic.Uint64
	pools   atomic.Pointer[notifyPools] // NOTIFY: entries grouped by pool

	refreshMu sync.Mutex    // serialises lookup+store, so an older result never overwrites a newer one
	first     chan struct{} // closed once the first lookup has been tried

	mu      sync.Mutex
	changed chan struct{} // closed (and replaced) whenever entries are refreshed
	loaded  bool          // at least one successful lookup
	lastErr error         // the last lookup's error, nil after a success
	failed  time.Time     // when lastErr was seen
}

// failedSince reports whether the key has nothing cached and its last
// lookup failed at or after t.
func (ks *keyState) failedSince(t time.Time) bool {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return !ks.loaded && ks.lastErr != nil && !ks.failed.Before(t)
}

// unavailable returns ErrDirectoryUnavailable when no lookup of the key has
// succeeded yet and the last one failed: nothing is known about the key.
func (ks *keyState) unavailable() error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.loaded || ks.lastErr == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrDirectoryUnavailable, ks.lastErr)
}

func newResolver(dir directory.Directory, log *slog.Logger) *resolver {
	return &resolver{
		dir:     dir,
		log:     log,
		timeout: 5 * time.Second,
		keys:    make(map[directory.Key]*keyState),
		stop:    make(chan struct{}),
	}
}

// state returns the cache of key, creating it (with a first lookup and a
// watch goroutine) on first use.
//
// A caller that finds the key's cache before its first lookup has been tried
// waits for it (bounded by ctx), so that no caller mistakes a cache still
// being filled for a topic nobody serves.
func (r *resolver) state(ctx context.Context, key directory.Key) (*keyState, error) {
	if m := r.snapshot.Load(); m != nil {
		if ks := (*m)[key]; ks != nil {
			return ks, ks.waitFirst(ctx)
		}
	}
	r.mu.Lock()
	ks := r.keys[key]
	if ks != nil {
		r.mu.Unlock()
		return ks, ks.waitFirst(ctx)
	}
	select {
	case <-r.stop:
		r.mu.Unlock()
		return nil, ErrClosed
	default:
	}
	ks = &keyState{changed: make(chan struct{}), first: make(chan struct{})}
	// Round robin starts at a random server, so that short-lived
	// processes spread their first calls.
	ks.rr.Store(rand.Uint64())
	r.keys[key] = ks
	snap := make(map[directory.Key]*keyState, len(r.keys))
	for k, v := range r.keys {
		snap[k] = v
	}
	r.snapshot.Store(&snap)
	watch, stopWatch := r.dir.Watch(key)
	r.mu.Unlock()
	if !r.routines.Go(func() { r.watch(key, ks, watch, stopWatch) }) {
		stopWatch()
	}
	r.refresh(ctx, key, ks)
	close(ks.first)
	return ks, nil
}

// waitFirst waits until the key's first lookup has been tried.
func (ks *keyState) waitFirst(ctx context.Context) error {
	select {
	case <-ks.first:
		return nil
	default:
	}
	select {
	case <-ks.first:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// watch refreshes a key's cache on every change notification.
func (r *resolver) watch(key directory.Key, ks *keyState, watch <-chan struct{}, stopWatch func()) {
	defer stopWatch()
	for {
		select {
		case <-watch:
			r.refresh(context.Background(), key, ks)
		case <-r.stop:
			return
		}
	}
}

// refresh reads key's entries from the directory into the cache. A server
// that was not in the cache before, on a node marked down, clears the mark:
// the node registered again, so it is tried again.
func (r *resolver) refresh(ctx context.Context, key directory.Key, ks *keyState) {
	lctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	ks.refreshMu.Lock()
	defer ks.refreshMu.Unlock()
	entries, err := r.dir.Lookup(lctx, key)
	if err != nil {
		if ctx.Err() != nil {
			return // the caller gave up: not the directory's failure
		}
		r.lookupErrors.Add(1)
		ks.mu.Lock()
		ks.lastErr, ks.failed = err, time.Now()
		loaded := ks.loaded
		ks.mu.Unlock()
		if loaded {
			r.log.Warn("directory lookup failed; serving cached entries", "key", key.String(), "err", err)
		} else {
			// The caller gets ErrDirectoryUnavailable and reports it.
			r.log.Debug("directory lookup failed; nothing cached", "key", key.String(), "err", err)
		}
		return
	}
	// Only a refresh of a key already loaded can see a server appear: the
	// first lookup of a key sees every server for the first time.
	var old []route
	p := ks.entries.Load()
	if p != nil {
		old = *p
	}
	counts := make(map[string]*atomic.Int64, len(old))
	for _, o := range old {
		counts[o.nodeID+"\x00"+o.Server] = o.outstanding
	}
	routes := make([]route, len(entries))
	for i, e := range entries {
		id := e.Node.ID()
		n := counts[id+"\x00"+e.Server]
		if n == nil {
			n = new(atomic.Int64)
		}
		routes[i] = route{Entry: e, nodeID: id, sockKey: socketKey(id, e.Node), outstanding: n}
		if _, down := r.down.Load(id); down && p != nil && !slices.ContainsFunc(old, func(o route) bool { return o.Server == e.Server && o.nodeID == id }) {
			r.down.Delete(id)
			r.log.Info("node registered a server again: trying it again", "node", id, "server", e.Server)
		}
	}
	ks.entries.Store(&routes)
	ks.mu.Lock()
	ks.loaded, ks.lastErr = true, nil
	close(ks.changed)
	ks.changed = make(chan struct{})
	ks.mu.Unlock()
}

// pick chooses the server for a call to key (named server if name is not
// empty, else round robin over the key's servers). With none known it waits
// for the directory to announce one, until waitUntil or ctx ends, then
// fails with ErrNoServers.
func (r *resolver) pick(ctx context.Context, key directory.Key, name string, waitUntil time.Time) (route, error) {
	return r.pickAvoiding(ctx, key, name, waitUntil, time.Time{}, nil, false)
}

// pickAvoiding is pick that also skips the nodes in avoid (a resent cast's
// or a rerouted call's earlier nodes); a deadline (zero: none but ctx's)
// that passes while it waits makes it a timeout, not ErrNoServers.
// earlier nodes) while another node serves the key.
func (r *resolver) pickAvoiding(ctx context.Context, key directory.Key, name string, waitUntil, deadline time.Time, avoid []string, least bool) (route, error) {
	start := time.Now()
	ks, err := r.state(ctx, key)
	if err != nil {
		return route{}, err
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	if e, ok := ks.choose(name, &r.down, avoid, least); ok {
		return e, nil // the common case: no lock, no timer
	}
	for {
		ks.mu.Lock()
		changed, loaded := ks.changed, ks.loaded
		ks.mu.Unlock()
		if !loaded {
			// The first lookup failed (directory down, or its ctx ended):
			// an existing registration sends no change notification, so
			// look again rather than wait for one, unless this pick's
			// own first lookup (in state) just failed.
			if ks.failedSince(start) {
				return route{}, ks.unavailable()
			}
			r.refresh(ctx, key, ks)
			if err := ks.unavailable(); err != nil {
				return route{}, err // nothing known: not "no servers"
			}
			ks.mu.Lock()
			changed = ks.changed
			ks.mu.Unlock()
		}
		if e, ok := ks.choose(name, &r.down, avoid, least); ok {
			return e, nil
		}
		wait := time.Until(waitUntil)
		if wait <= 0 {
			return route{}, noneFound(ctx, key, name, deadline)
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		}
		select {
		case <-changed:
		case <-timer.C:
			return route{}, noneFound(ctx, key, name, deadline)
		case <-ctx.Done():
			return route{}, ctx.Err()
		case <-r.stop:
			return route{}, ErrClosed
		}
	}
}

// noneFound is why a pick found no server by waitUntil: the caller's
// deadline if it has passed (a timeout, not a missing server), else
// ErrNoServers.
func noneFound(ctx context.Context, key directory.Key, name string, deadline time.Time) error {
	now := time.Now()
	if d, ok := ctx.Deadline(); (ok && !now.Before(d)) || (!deadline.IsZero() && !now.Before(deadline)) {
		return context.DeadlineExceeded
	}
	return noServers(key, name)
}

func noServers(key directory.Key, name string) error {
	if name != "" {
		return fmt.Errorf("%w: server %q of %s", ErrNoServers, name, key)
	}
	return fmt.Errorf("%w: %s", ErrNoServers, key)
}

func (ks *keyState) choose(name string, down *sync.Map, avoid []string, least bool) (route, bool) {
	p := ks.entries.Load()
	if p == nil || len(*p) == 0 {
		return route{}, false
	}
	entries := *p
	if name != "" {
		for _, e := range entries {
			if e.Server == name {
				return e, true
			}
		}
		return route{}, false
	}
	// Round robin, skipping servers on nodes whose connection is down
	// while there is another; if all are down, the next one as usual.
	usable := func(e route) bool {
		if _, isDown := down.Load(e.nodeID); isDown {
			return false
		}
		return !slices.Contains(avoid, e.nodeID)
	}
	n := uint64(len(entries))
	if least {
		// The usable server with the fewest calls waiting for it, the
		// round robin deciding between equals.
		start := ks.rr.Add(1) - 1
		best := -1
		for i := uint64(0); i < n; i++ {
			j := int((start + i) % n)
			if usable(entries[j]) && (best < 0 || entries[j].load() < entries[best].load()) {
				best = j
			}
		}
		if best >= 0 {
			return entries[best], true
		}
		return entries[start%n], true
	}
	first := entries[(ks.rr.Add(1)-1)%n]
	e := first
	for i := uint64(1); i < n; i++ {
		if usable(e) {
			return e, true
		}
		e = entries[(ks.rr.Add(1)-1)%n]
	}
	if usable(e) {
		return e, true
	}
	return first, true
}

// hasAlternative reports whether key's cached routes include a node that
// is neither in avoid nor down.
func (r *resolver) hasAlternative(key directory.Key, avoid []string) bool {
	for _, e := range r.cached(key) {
		if _, isDown := r.down.Load(e.nodeID); !isDown && !slices.Contains(avoid, e.nodeID) {
			return true
		}
	}
	return false
}

// forgetDeparted drops the down marks of nodes in none of the cached
// routes (they left the directory), so that NodesDown counts only nodes
// that may still be picked.
func (r *resolver) forgetDeparted() {
	cached := map[string]bool{}
	r.eachCached(func(e route) { cached[e.nodeID] = true })
	r.down.Range(func(k, _ any) bool {
		if !cached[k.(string)] {
			r.down.Delete(k)
		}
		return true
	})
}

// markDown marks the node tag (endpoint ep) down, or clears its mark: new
// requests avoid a node marked down while another serves their target.
func (r *resolver) markDown(tag, ep string, down bool) {
	if !down {
		if _, was := r.down.LoadAndDelete(tag); was {
			r.log.Info("node answers again", "node", tag)
		}
		return
	}
	if _, was := r.down.LoadOrStore(tag, struct{}{}); !was {
		r.log.Warn("node down: its pending calls failed, new calls avoid it until it answers", "node", tag, "endpoint", ep)
	}
}

func (r *resolver) addStats(st *Stats) {
	st.DirectoryErrors = r.lookupErrors.Load()
	st.NodesDown = r.nodesDown()
}

// nodesDown counts the nodes marked down.
func (r *resolver) nodesDown() int {
	n := 0
	r.down.Range(func(any, any) bool { n++; return true })
	return n
}

// cached returns the cached routes of key, or nil.
func (r *resolver) cached(key directory.Key) []route {
	if m := r.snapshot.Load(); m != nil {
		if ks := (*m)[key]; ks != nil {
			if p := ks.entries.Load(); p != nil {
				return *p
			}
		}
	}
	return nil
}

// close stops the watch goroutines.
func (r *resolver) close() {
	r.mu.Lock()
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.mu.Unlock()
	r.routines.Close()
}

// liveSocketKeys returns the socket keys (socketKey) of every node in the
// cached routes, for the CALL/CAST, NOTIFY, direct-cast and fanout sockets.
func (r *resolver) liveSocketKeys() map[string]bool {
	keys := map[string]bool{}
	r.eachCached(func(e route) {
		keys[e.sockKey] = true
		keys[socketKey(e.nodeID+"/notify", e.Node)] = true
	})
	return keys
}

// eachCached calls f with every cached route of every key.
func (r *resolver) eachCached(f func(route)) {
	m := r.snapshot.Load()
	if m == nil {
		return
	}
	for _, ks := range *m {
		if p := ks.entries.Load(); p != nil {
			for _, e := range *p {
				f(e)
			}
		}
	}
}
