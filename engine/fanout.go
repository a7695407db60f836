package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// fanouter sends FANOUTs: one message per node that serves the topic,
// through the node's XPUB.
type fanouter struct {
	*peers
	fanouts, unreached atomic.Uint64

	views sync.Map // directory.Key -> *fanKey
	subs  sync.Map // socket key -> *socket.Subscriptions, shared by the node's publishers
}

// fanKey caches the nodes of one key.
type fanKey struct {
	mu   sync.Mutex // serialises the re-reads of the key
	view atomic.Pointer[fanView]
}

// fanView is one read of a key's nodes, valid while the directory's
// version of the key is still version.
type fanView struct {
	version uint64
	topic   []byte // envelope.FanoutTopic of the key
	nodes   []fanNode
}

// fanNode is one node of a fanView.
type fanNode struct {
	id, sockKey string
	node        directory.Node
	subs        *socket.Subscriptions
}

// pending is a fanout whose node's subscription was not known: its
// caller waits for the publisher loop's answer.
type pending struct {
	id   string
	done chan error
	pub  *socket.Publish
}

var (
	errNoFanoutPort = errors.New("no fanout port")
	errNoVersion    = errors.New("the directory has no versions")
)

func (f *fanouter) addStats(st *Stats) {
	st.Fanouts = f.fanouts.Load()
	st.FanoutUnreached += f.unreached.Load()
}

// Fanout sends a one-way message to every server of t's topic: one message
// per node that serves it, through an XPUB to that node's fanout port; the
// node hands it to each of its servers of the topic, in order.
//
// The nodes are read from the directory, or from the last read while the
// directory's version of the key (directory.Versioner) is unchanged, so a
// server whose Serve has returned is never missed (the cache is used too if
// the directory fails). A message waits, in order, until its node has
// subscribed to the topic: on a new connection the node's subscriptions
// arrive a moment after the connect. To a node whose subscription its
// publisher has already seen, the message is queued and Fanout does not
// wait; for any other node it waits until the node has taken the message.
// Fanout returns nil once every node has it, a *FanoutError naming the
// nodes that did not subscribe in time (up to Config.WaitForServers, never
// past ctx's deadline), ErrNoServers if no server appeared, or ctx.Err().
func (f *fanouter) Fanout(ctx context.Context, t Target, method string, flags envelope.Flags, payload []byte) error {
	waitUntil, err := f.admit(ctx, t, payload)
	if err != nil {
		return err
	}
	view, err := f.view(ctx, t.key(), waitUntil)
	if err != nil {
		return f.ctxError(err)
	}
	m := t.message(ctx, envelope.KindFanout, envelope.NewID(), "", method, flags, payload)
	body, err := envelope.Encode(&m)
	if err != nil {
		return fmt.Errorf("zmqmsg: encode fanout: %w", err)
	}
	f.fanouts.Add(1)
	var buf [8]pending
	waiting := buf[:0]
	var failed map[string]error
	for i := range view.nodes {
		n := &view.nodes[i]
		var done chan error
		if !n.subs.Has(view.topic) {
			done = make(chan error, 1)
		}
		pub, err := f.submit(ctx, n, view.topic, body, waitUntil, done)
		switch {
		case err != nil:
			failed = addFailure(failed, n.id, f.ctxError(err))
		case done != nil:
			waiting = append(waiting, pending{n.id, done, pub})
		}
	}
	for _, w := range waiting {
		select {
		case err := <-w.done:
			socket.ReleasePublish(w.pub)
			if err != nil {
				failed = addFailure(failed, w.id, f.ctxError(err))
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if len(failed) > 0 {
		f.unreached.Add(uint64(len(failed)))
		f.rt.log.Warn("fanout did not reach every node", append(envelope.LogAttrs(&m), "topic", t.Topic, "method", method, "unreached", len(failed), "nodes", len(view.nodes))...)
		return &FanoutError{Unreached: failed}
	}
	return nil
}

// submit queues a fanout on n's publisher.
func (f *fanouter) submit(ctx context.Context, n *fanNode, topic, body []byte, waitUntil time.Time, done chan error) (*socket.Publish, error) {
	if n.node.FanoutPort == 0 {
		return nil, errNoFanoutPort
	}
	h, err := f.publisher(ctx, n.node, n.sockKey, n.subs)
	if err != nil {
		return nil, err
	}
	c := socket.NewPublish(topic, body, waitUntil, done)
	if err := h.Submit(ctx, c); err != nil {
		socket.ReleasePublish(c) // the loop never had it
		return nil, err
	}
	return c, nil
}

func addFailure(failed map[string]error, id string, err error) map[string]error {
	if failed == nil {
		failed = map[string]error{}
	}
	failed[id] = err
	return failed
}

// view returns the nodes of key. With a directory.Versioner it reads the
// key's version first and returns the cached view if it was read at that
// version; otherwise it reads the directory (fanoutEntries) and caches the
// result under the version read before.
func (f *fanouter) view(ctx context.Context, key directory.Key, waitUntil time.Time) (*fanView, error) {
	vd, ok := f.cfg.Directory.(directory.Versioner)
	v, err := uint64(0), errNoVersion
	if ok {
		// No timer of our own: Version answers from memory or bounds its
		// own read (Redis: OpTimeout), and ctx bounds it too.
		v, err = vd.Version(ctx, key)
	}
	if err != nil {
		vw, _, err := f.read(ctx, key, waitUntil, 0) // its Lookup decides
		return vw, err
	}
	fk := f.fanKey(key)
	if vw := fk.view.Load(); vw != nil && vw.version == v {
		return vw, nil // the common case: no lock, no allocation
	}
	fk.mu.Lock()
	defer fk.mu.Unlock()
	if vw := fk.view.Load(); vw != nil && vw.version == v {
		return vw, nil // read meanwhile, at the same version
	}
	vw, fresh, err := f.read(ctx, key, waitUntil, v)
	if err == nil && fresh {
		fk.view.Store(vw)
	}
	return vw, err
}

func (f *fanouter) fanKey(key directory.Key) *fanKey {
	if fk, ok := f.views.Load(key); ok {
		return fk.(*fanKey)
	}
	fk, _ := f.views.LoadOrStore(key, &fanKey{})
	return fk.(*fanKey)
}

// read reads key's nodes into a view at version; fresh is false if they
// came from the resolver's cache.
func (f *fanouter) read(ctx context.Context, key directory.Key, waitUntil time.Time, version uint64) (vw *fanView, fresh bool, err error) {
	entries, fresh, err := f.fanoutEntries(ctx, key, waitUntil)
	if err != nil {
		return nil, false, err
	}
	vw = &fanView{version: version, topic: envelope.FanoutTopic(key.Exchange, key.Topic)}
	at := make(map[string]int, len(entries)) // node id -> index in nodes
	for _, en := range entries {
		id := en.Node.ID()
		n := fanNode{id: id, sockKey: socketKey(id, en.Node), node: en.Node}
		s, _ := f.subs.LoadOrStore(n.sockKey, &socket.Subscriptions{})
		n.subs = s.(*socket.Subscriptions)
		if i, seen := at[id]; seen {
			vw.nodes[i] = n // the last entry of a node wins
			continue
		}
		at[id] = len(vw.nodes)
		vw.nodes = append(vw.nodes, n)
	}
	return vw, fresh, nil
}

// fanoutEntries returns the entries of key from a fresh lookup; it waits
// for a first server until waitUntil like a call does. If the directory
// fails, they come from the resolver's cache and fresh is false.
func (f *fanouter) fanoutEntries(ctx context.Context, key directory.Key, waitUntil time.Time) (entries []directory.Entry, fresh bool, err error) {
	lookup := func() ([]directory.Entry, error) {
		lctx, cancel := context.WithTimeout(ctx, f.res.timeout)
		defer cancel()
		return f.cfg.Directory.Lookup(lctx, key)
	}
	entries, err = lookup()
	if err == nil && len(entries) > 0 {
		return entries, true, nil
	}
	// Wait (on the directory's watch) for a first server, then read
	// again; a directory that fails falls back to the resolver's cache.
	if _, err := f.res.pick(ctx, key, "", waitUntil); err != nil {
		return nil, false, err
	}
	fresh = true
	if entries, err = lookup(); err != nil {
		f.res.lookupErrors.Add(1)
		entries, fresh = nil, false
		for _, r := range f.res.cached(key) {
			entries = append(entries, r.Entry)
		}
	}
	if len(entries) == 0 {
		return nil, false, noServers(key, "")
	}
	return entries, fresh, nil
}
