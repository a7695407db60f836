package proxy

import (
	"context"
	"fmt"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// The FANOUT pipeline on the node side:
//
//	other nodes' XPUB --tcp--> XSUB :9502 (proxy loop) --lane--> every local server of the topic
//
// The XSUB is subscribed to the topic frame (envelope.FanoutTopic) of every
// (exchange, topic) that has a local server, so a node receives no traffic
// for topics it does not serve; XSUB sends its subscriptions to every
// publisher that connects, and publishers use them to know when a node is
// ready for a topic (no slow-joiner loss: see the engine's fanout).

// subCmd subscribes (on) or unsubscribes the XSUB for key's topic frame.
type subCmd struct {
	key  directory.Key
	on   bool
	done chan error // buffered 1
}

func (*subCmd) isProxyCmd() {}

// Subscribe counts one more local server of key and, for the first, makes
// the XSUB subscribe to key's topic frame. It returns once the subscription
// is sent, so that every publisher connected from then on, or already
// connected, learns of it. A node without a fanout port ignores it.
func (p *Proxy) Subscribe(ctx context.Context, key directory.Key) error {
	return p.sub(ctx, key, true)
}

// Unsubscribe counts one local server of key less and, for the last,
// unsubscribes the XSUB.
func (p *Proxy) Unsubscribe(ctx context.Context, key directory.Key) error {
	return p.sub(ctx, key, false)
}

func (p *Proxy) sub(ctx context.Context, key directory.Key, on bool) error {
	if p.fanoutEndpoint == "" {
		return nil
	}
	c := &subCmd{key: key, on: on, done: make(chan error, 1)}
	if err := p.handle.Submit(ctx, c); err != nil {
		return err
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// setupFanout binds the XSUB and subscribes it again to every key that has
// local servers (after a restart).
func (f *frontend) setupFanout(l *poller.Loop[Cmd]) error {
	if f.fanBind == "" {
		return nil
	}
	var xsub *zmq.Socket
	var err error
	f.fanSock, xsub, err = l.NewSocket(zmq.XSUB, "xsub")
	if err != nil {
		return err
	}
	f.public = append(f.public, xsub)
	if err := f.opts.Apply(xsub); err != nil {
		return err
	}
	if err := bindRetry(xsub, f.fanBind, f.p.fanoutEndpoint != ""); err != nil {
		return fmt.Errorf("bind %s: %w", f.fanBind, err)
	}
	ep, err := xsub.GetLastEndpoint()
	if err != nil {
		return err
	}
	if f.p.fanoutEndpoint == "" {
		f.p.fanoutEndpoint = ep
	}
	f.p.fanMu.Lock()
	defer f.p.fanMu.Unlock()
	for key := range f.p.fanRefs {
		if err := l.Send(f.fanSock, subFrame(key, true)); err != nil {
			return err
		}
	}
	return nil
}

func subFrame(key directory.Key, on bool) []byte {
	flag := byte(0)
	if on {
		flag = 1
	}
	return envelope.AppendFanoutTopic([]byte{flag}, key.Exchange, key.Topic)
}

// subscribe runs a subCmd on the loop.
func (f *frontend) subscribe(l *poller.Loop[Cmd], key directory.Key, on bool) error {
	f.p.fanMu.Lock()
	defer f.p.fanMu.Unlock()
	if f.p.fanRefs == nil {
		f.p.fanRefs = make(map[directory.Key]int)
	}
	n := f.p.fanRefs[key]
	switch {
	case on:
		f.p.fanRefs[key] = n + 1
		if n > 0 {
			return nil
		}
	case n <= 1:
		delete(f.p.fanRefs, key)
		if n == 0 {
			return nil
		}
	default:
		f.p.fanRefs[key] = n - 1
		return nil
	}
	return l.Send(f.fanSock, subFrame(key, on))
}

// handleFanout delivers a fanout from the XSUB to every local server of its
// topic, each in its own in-order lane.
func (f *frontend) handleFanout(frames [][]byte) {
	if len(frames) != 2 {
		f.p.counters.Malformed.Add(1)
		return
	}
	var m envelope.Message
	if err := envelope.DecodeInto(&m, frames[1]); err != nil {
		f.p.counters.Malformed.Add(1)
		return
	}
	if m.Kind != envelope.KindFanout {
		f.p.counters.WrongKind.Add(1)
		return
	}
	f.deliverFanout(&m)
}

// deliverFanout hands a decoded fanout to every local server of its topic.
func (f *frontend) deliverFanout(m *envelope.Message) {
	req := &Request{Msg: *m}
	for _, srv := range f.p.routes.All(directory.Key{Exchange: m.Exchange, Topic: m.Topic}) {
		ds, ok := srv.(DirectServer)
		if ok && ds.OfferDirect(req) == Accepted {
			f.p.counters.Fanouts.Add(1)
			continue
		}
		if n := f.p.counters.FanoutDropped.Add(1); n&(n-1) == 0 {
			f.p.log.Warn("fanout dropped: a server could not take it", "topic", m.Topic, "server", srv.Name(), "dropped_total", n)
		}
	}
}
