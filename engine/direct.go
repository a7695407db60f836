package engine

import (
	"context"
	"fmt"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/proxy"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// DirectCast sends a one-way message over the direct-cast pipeline: a PUSH
// to the server's node, its PULL, and the server's in-order lane. There is
// no acknowledgement: it returns once the message is queued for the node's
// socket (waiting, bounded by ctx, while that queue is full). Messages from
// one sender to one server run in the order they were sent. A message the
// receiving node cannot hand to a server is dropped there and counted
// (Stats.DirectDropped on that node), and so is one whose method the server
// does not have (Stats.DirectRefused).
func (e *Engine) DirectCast(ctx context.Context, t Target, method string, flags envelope.Flags, payload []byte) error {
	waitUntil, err := e.admit(ctx, t, payload)
	if err != nil {
		return err
	}
	entry, err := e.res.pick(ctx, t.key(), t.Server, waitUntil)
	if err != nil {
		return e.ctxError(ctx, err)
	}
	if entry.Node.CastPort == 0 {
		return fmt.Errorf("%w: node %s has no direct-cast port", ErrNoServers, entry.nodeID)
	}
	p, err := e.pusher(ctx, entry)
	if err != nil {
		return e.ctxError(ctx, err)
	}
	m := envelope.Message{
		Kind:     envelope.KindCast,
		Flags:    flags | envelope.FlagNoAck,
		ID:       envelope.NewID(),
		Exchange: t.Exchange,
		Topic:    t.Topic,
		Server:   entry.Server,
		Method:   method,
		Payload:  payload,
	}
	body, err := envelope.Encode(&m)
	if err != nil {
		return fmt.Errorf("zmqmsg: encode cast: %w", err)
	}
	if err := p.Submit(ctx, &socket.Push{Body: body}); err != nil {
		e.directRefused.Add(1)
		return e.ctxError(ctx, err)
	}
	return nil
}

// pusher returns the PUSH socket actor connected to node's direct-cast
// port, starting it on first use under the reply supervisor.
func (e *Engine) pusher(ctx context.Context, r route) (*socket.Handle[socket.PushCmd], error) {
	if h := e.pushers.lookup(r.sockKey); h != nil {
		return h, nil // the hot path: no closure, no allocation
	}
	node := r.Node
	if err := e.checkPeer(node); err != nil {
		return nil, err
	}
	return e.pushers.get(ctx, e, r.sockKey, socketName("push", r.sockKey), func() poller.Handler[socket.PushCmd] {
		o := e.clientOptions(node)
		o.SendHWM = socket.DirectCastHWM
		return &socket.Pusher{Endpoint: node.CastEndpoint(), Options: o, Counters: &e.pusherCounters}
	})
}

// OfferDirect hands a direct cast to the server's in-order lane without
// blocking (proxy.DirectServer).
func (s *Server) OfferDirect(r *proxy.Request) proxy.Offer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.stopping {
		return proxy.Stopping
	}
	select {
	case s.direct <- r:
		return proxy.Accepted
	default:
		return proxy.Full
	}
}

// directLane runs the server's direct casts and fanouts one at a time, in
// the order they arrived.
func (s *Server) directLane() {
	defer s.wg.Done()
	for r := range s.direct {
		if r.Msg.Kind == envelope.KindFanout {
			s.e.fanoutsRun.Add(1)
		} else {
			s.e.directRun.Add(1)
		}
		s.runCast(r)
	}
}
