package proxy

import (
	"context"

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
//
// The subscriptions are counted in Proxy.fanRefs, which outlives the loop:
// a restarted loop subscribes again to what its predecessor had.

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
	if p.ports.fanout == "" {
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

func subFrame(key directory.Key, on bool) []byte {
	flag := byte(0)
	if on {
		flag = 1
	}
	return envelope.AppendFanoutTopic([]byte{flag}, key.Exchange, key.Topic)
}

// resubscribe subscribes the XSUB to every key that has local servers
// (after a restart).
func (h *public) resubscribe(l *poller.Loop[Cmd]) error {
	if h.fanSock < 0 {
		return nil
	}
	for key := range h.p.fanRefs {
		if err := l.Send(h.fanSock, subFrame(key, true)); err != nil {
			return err
		}
	}
	return nil
}

// subscribe runs a subCmd.
func (h *public) subscribe(l *poller.Loop[Cmd], key directory.Key, on bool) error {
	if h.p.fanRefs == nil {
		h.p.fanRefs = make(map[directory.Key]int)
	}
	n := h.p.fanRefs[key]
	switch {
	case on:
		h.p.fanRefs[key] = n + 1
		if n > 0 {
			return nil
		}
	case n <= 1:
		delete(h.p.fanRefs, key)
		if n == 0 {
			return nil
		}
	default:
		h.p.fanRefs[key] = n - 1
		return nil
	}
	return l.Send(h.fanSock, subFrame(key, on))
}

// deliverFanout hands a decoded fanout (from socket sock: the XSUB, or the
// member's DEALER to the daemon) to every local server of its topic, each
// in its own in-order lane. A full lane pushes back like a direct cast's
// (see hold): the fanout is held for the servers that could not take it
// and sock is paused until they do. Only a server that is stopping, or
// that takes no fanouts, loses it (counted).
func (c *core) deliverFanout(l *poller.Loop[Cmd], sock int, m *envelope.Message) {
	req := &Request{Msg: *m}
	if full := offerFanout(c, req, c.p.routes.All(directory.Key{Exchange: m.Exchange, Topic: m.Topic}), nil); len(full) > 0 {
		c.p.counters.Held.Add(1)
		c.hold(l, sock, req, full, full[0])
	}
}

// offerFanout offers req to each of srvs (a topic's routes, or a held
// fanout's servers) and appends to full, which it returns, those whose
// lane is full.
func offerFanout[S Server](c *core, req *Request, srvs []S, full []DirectServer) []DirectServer {
	for _, srv := range srvs {
		ds, ok := any(srv).(DirectServer)
		o := Stopping
		if ok {
			o = ds.OfferDirect(req)
		}
		switch o {
		case Accepted:
			c.p.counters.Fanouts.Add(1)
		case Full:
			full = append(full, ds)
		default:
			c.fanoutDropped(req, srv.Name())
		}
	}
	return full
}

// fanoutDropped counts (and logs at powers of two) a fanout that srv,
// stopping or taking no fanouts, did not take.
func (c *core) fanoutDropped(req *Request, srv string) {
	if n := c.p.counters.FanoutDropped.Add(1); n&(n-1) == 0 {
		c.p.log.Warn("fanout dropped: its server is stopping or takes no fanouts", append(envelope.LogAttrs(&req.Msg), "topic", req.Msg.Topic, "server", srv, "dropped_total", n)...)
	}
}
