package engine

import (
	"context"
	"errors"
	"fmt"
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
}

func (f *fanouter) addStats(st *Stats) {
	st.Fanouts = f.fanouts.Load()
	st.FanoutUnreached += f.unreached.Load()
}

// Fanout sends a one-way message to every server of t's topic: one message
// per node that serves it, through an XPUB to that node's fanout port; the
// node hands it to each of its servers of the topic, in order.
//
// The nodes come from a fresh directory lookup (the cache is used only if the
// directory fails), so a server whose Serve has returned is never missed.
// A message waits, in order, until its node has subscribed to the topic: on
// a new connection the node's subscriptions arrive a moment after the
// connect. Fanout returns nil once every node has taken the message, a
// *FanoutError naming the nodes that did not subscribe in time (up to
// Config.WaitForServers, never past ctx's deadline), ErrNoServers if no
// server appeared, or ctx.Err().
func (f *fanouter) Fanout(ctx context.Context, t Target, method string, flags envelope.Flags, payload []byte) error {
	waitUntil, err := f.admit(ctx, t, payload)
	if err != nil {
		return err
	}
	nodes, err := f.fanoutNodes(ctx, t.key(), waitUntil)
	if err != nil {
		return f.ctxError(err)
	}
	m := t.message(envelope.KindFanout, envelope.NewID(), "", method, flags, payload)
	body, err := envelope.Encode(&m)
	if err != nil {
		return fmt.Errorf("zmqmsg: encode fanout: %w", err)
	}
	topic := envelope.FanoutTopic(t.Exchange, t.Topic)
	f.fanouts.Add(1)
	type sent struct {
		id   string
		done chan error
	}
	var waiting []sent
	failed := map[string]error{}
	for id, node := range nodes {
		if node.FanoutPort == 0 {
			failed[id] = errors.New("no fanout port")
			continue
		}
		pub, err := f.publisher(ctx, node, id)
		if err == nil {
			done := make(chan error, 1)
			if err = pub.Submit(ctx, &socket.Publish{Topic: topic, Body: body, Deadline: waitUntil, Done: done}); err == nil {
				waiting = append(waiting, sent{id, done})
				continue
			}
		}
		failed[id] = f.ctxError(err)
	}
	for _, w := range waiting {
		select {
		case err := <-w.done:
			if err != nil {
				failed[w.id] = f.ctxError(err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if len(failed) > 0 {
		f.unreached.Add(uint64(len(failed)))
		f.rt.log.Warn("fanout did not reach every node", "topic", t.Topic, "method", method, "unreached", len(failed), "nodes", len(nodes))
		return &FanoutError{Unreached: failed}
	}
	return nil
}

// fanoutNodes returns the nodes that serve key, by node id, from a fresh
// lookup; it waits for a first server until waitUntil like a call does.
func (f *fanouter) fanoutNodes(ctx context.Context, key directory.Key, waitUntil time.Time) (map[string]directory.Node, error) {
	lookup := func() ([]directory.Entry, error) {
		lctx, cancel := context.WithTimeout(ctx, f.res.timeout)
		defer cancel()
		return f.cfg.Directory.Lookup(lctx, key)
	}
	entries, err := lookup()
	if err != nil || len(entries) == 0 {
		// Wait (on the directory's watch) for a first server, then read
		// again; a directory that fails falls back to the resolver's cache.
		if _, err := f.res.pick(ctx, key, "", waitUntil); err != nil {
			return nil, err
		}
		if entries, err = lookup(); err != nil {
			f.res.lookupErrors.Add(1)
			entries = nil
			if p := f.res.cached(key); p != nil {
				for _, r := range p {
					entries = append(entries, r.Entry)
				}
			}
		}
		if len(entries) == 0 {
			return nil, noServers(key, "")
		}
	}
	nodes := make(map[string]directory.Node, len(entries))
	for _, en := range entries {
		nodes[en.Node.ID()] = en.Node
	}
	return nodes, nil
}
