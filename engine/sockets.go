package engine

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/socket"
)

// socketSet holds the client sockets of one kind to other nodes (DEALERs,
// PUSHes or XPUBs), one per key, each a socket actor supervised by the
// reply supervisor. Reads on the hot path take no lock: they use a copy of
// the map that is replaced whenever a socket is added.
type socketSet[C any] struct {
	mu   sync.Mutex
	m    map[string]*socket.Handle[C] // under mu
	snap atomic.Pointer[map[string]*socket.Handle[C]]
	seen map[string]uint64 // key -> the socket's activity at the last sweep; under mu
}

// lookup returns the socket for key if it is running, without a lock.
func (ss *socketSet[C]) lookup(key string) *socket.Handle[C] {
	if m := ss.snap.Load(); m != nil {
		return (*m)[key]
	}
	return nil
}

// get returns the socket for key, starting it on first use with a handler
// from newHandler; name names the actor and its loop.
func (ss *socketSet[C]) get(ctx context.Context, p *peers, key, name string, newHandler func() poller.Handler[C]) (*socket.Handle[C], error) {
	if h := ss.lookup(key); h != nil {
		return h, nil // the common case: no lock
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if h := ss.m[key]; h != nil {
		return h, nil
	}
	if p.closed.Load() {
		return nil, ErrClosed
	}
	var h *socket.Handle[C]
	err := socket.SpawnUnder(ctx, p.rt.root, p.replyPID, func(parent actor.SpawnerContext) error {
		var err error
		h, err = socket.Spawn(parent, socket.Spec[C]{
			Name:       name,
			ZMQ:        p.rt.zctx,
			NewHandler: newHandler,
			Loop:       p.rt.loop(),
			Logger:     p.rt.log,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("zmqmsg: connect %s: %w", name, err)
	}
	if ss.m == nil {
		ss.m = make(map[string]*socket.Handle[C])
	}
	ss.m[key] = h
	// The same node under another key (it came back with a new CURVE key
	// pair): the old socket can only fail its handshakes, and its events
	// would fail this one's calls. Stop it.
	var stale []*socket.Handle[C]
	for k, old := range ss.m {
		if k != key && socketTag(k) == socketTag(key) {
			delete(ss.m, k)
			stale = append(stale, old)
		}
	}
	ss.publish()
	for _, old := range stale {
		p.rt.root.Stop(old.PID()) // asynchronous: never under ss.mu for long
	}
	return h, nil
}

// publish replaces the lock-free copy of the map (under mu).
func (ss *socketSet[C]) publish() {
	snap := make(map[string]*socket.Handle[C], len(ss.m))
	for k, v := range ss.m {
		snap[k] = v
	}
	ss.snap.Store(&snap)
}

// activity sums what a socket's loop has done for callers: unchanged
// between two sweeps means idle. Received messages do not count: a monitor
// reports the reconnection attempts of a socket nobody uses.
func activity(st poller.Stats) uint64 { return st.Sent + st.Commands }

// sweep removes the sockets that idle reports (given their key) and that
// did nothing since the previous sweep, and returns them; the caller stops
// them. A socket is only collected on its second idle sweep.
func (ss *socketSet[C]) sweep(idle func(key string) bool) []*socket.Handle[C] {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var gone []*socket.Handle[C]
	seen := make(map[string]uint64, len(ss.m))
	for key, h := range ss.m {
		a := activity(h.Stats())
		if prev, ok := ss.seen[key]; ok && prev == a && idle(key) {
			delete(ss.m, key)
			gone = append(gone, h)
			continue
		}
		seen[key] = a
	}
	ss.seen = seen
	if len(gone) > 0 {
		ss.publish()
	}
	return gone
}

// size returns how many sockets the set holds.
func (ss *socketSet[C]) size() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

// each calls f for every socket of the set.
func (ss *socketSet[C]) each(f func(*socket.Handle[C])) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, h := range ss.m {
		f(h)
	}
}
