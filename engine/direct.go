package engine

import (
	"context"
	"fmt"

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
func (c *caster) DirectCast(ctx context.Context, t Target, method string, flags envelope.Flags, payload []byte) error {
	waitUntil, err := c.admit(ctx, t, payload)
	if err != nil {
		return err
	}
	entry, err := c.res.pick(ctx, t.key(), t.Server, waitUntil)
	if err != nil {
		return c.ctxError(err)
	}
	if entry.Node.CastPort == 0 {
		return fmt.Errorf("%w: node %s has no direct-cast port", ErrNoServers, entry.nodeID)
	}
	p, err := c.pusher(ctx, entry)
	if err != nil {
		return c.ctxError(err)
	}
	m := t.message(ctx, envelope.KindCast, envelope.NewID(), entry.Server, method, flags|envelope.FlagNoAck, payload)
	push := socket.NewPush() // pooled: no allocation once warm
	if push.Body, err = envelope.AppendMessage(push.Body[:0], &m); err != nil {
		return fmt.Errorf("zmqmsg: encode cast: %w", err)
	}
	if err := p.Submit(ctx, push); err != nil {
		c.directFailed.Add(1)
		return c.ctxError(err)
	}
	return nil
}

// WhenDirectRoom calls wake once when the in-order lane, found full by
// OfferDirect, has room again (proxy.DirectWaiter): the proxy stops reading
// direct casts meanwhile instead of dropping them.
func (s *Server) WhenDirectRoom(wake func()) { s.direct.whenRoom(wake) }
