package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/reply"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/internal/config"
)

// peers is how this node reaches other nodes, shared by every sender: the
// resolver picks a server, peers gives the socket to its node. It owns the
// client sockets (one socket actor per node and pipeline, supervised by the
// reply supervisor, which also owns the reply table) and their counters,
// and closes the sockets of nodes that left the directory.
type peers struct {
	rt       *runtime
	cfg      *config.Config
	res      *resolver
	table    *reply.Table
	replyPID *actor.PID // the reply supervisor: parent of every client socket
	closed   *atomic.Bool

	dealers    socketSet[socket.DealerCmd] // node id (+"/notify") -> DEALER
	pushers    socketSet[socket.PushCmd]   // node id -> direct-cast PUSH
	publishers socketSet[socket.PubCmd]    // node id -> fanout XPUB

	dealerCounters socket.DealerCounters
	pusherCounters socket.PusherCounters
	pubCounters    socket.PublisherCounters
	idleClosed     atomic.Uint64
	rerouted       atomic.Uint64 // calls and casts sent again elsewhere, never having run
}

// DefaultIdleSweep is how often the engine looks for sockets to nodes that
// are in none of its cached routes (they left the directory); such a
// socket that stayed idle for a whole period is closed.
const DefaultIdleSweep = 30 * time.Second

func newPeers(rt *runtime, res *resolver, closed *atomic.Bool) (*peers, error) {
	p := &peers{rt: rt, cfg: &rt.cfg, res: res, table: reply.NewTable(), closed: closed}
	var err error
	p.replyPID, err = reply.SpawnSupervisor(rt.root, rt.name("reply"), p.table, socket.NewStrategy(10, time.Minute))
	return p, err
}

// admit checks what every send checks before it does anything, and returns
// until when to wait for a first server of the target (WaitForServers,
// never past ctx's deadline). A ctx that has already ended sends nothing.
func (p *peers) admit(ctx context.Context, t Target, payload []byte) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	if p.closed.Load() {
		return time.Time{}, ErrClosed
	}
	if err := t.Validate(); err != nil {
		return time.Time{}, err
	}
	if max := p.cfg.MaxMessageSize; max > 0 && len(payload) > max {
		return time.Time{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), max)
	}
	if err := checkMeta(MetaOf(ctx)); err != nil {
		return time.Time{}, err
	}
	waitUntil := time.Now().Add(p.cfg.WaitForServers)
	if d, ok := ctx.Deadline(); ok {
		waitUntil = minTime(waitUntil, d)
	}
	return waitUntil, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// ctxError maps what the actors return to the errors of the API.
func (p *peers) ctxError(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return ErrTimeout
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, reply.ErrClosed), errors.Is(err, socket.ErrSocketStopped):
		return ErrClosed
	case errors.Is(err, socket.ErrUnavailable):
		if p.closed.Load() {
			return ErrClosed
		}
		return ErrUnavailable
	}
	return err
}

// dealer returns the DEALER socket actor connected to r's node (CALL and
// acknowledged CAST), starting it on first use.
func (p *peers) dealer(ctx context.Context, r route) (*socket.Handle[socket.DealerCmd], error) {
	if h := p.dealers.lookup(r.sockKey); h != nil {
		return h, nil // the hot path: no closure, no allocation
	}
	return p.dealerAt(ctx, r.Node, r.sockKey, r.nodeID, r.Node.CallEndpoint)
}

// dealerAt returns the DEALER socket actor named key (socketKey of a node
// id, with a suffix for pipelines other than CALL/CAST), connected to
// endpoint(); tag is what the reply table tags its requests with.
func (p *peers) dealerAt(ctx context.Context, node directory.Node, key, tag string, endpoint func() string) (*socket.Handle[socket.DealerCmd], error) {
	if err := p.checkPeer(node); err != nil {
		return nil, err
	}
	return p.dealers.get(ctx, p, key, socketName("dealer", key), func() poller.Handler[socket.DealerCmd] {
		ep := endpoint()
		return &socket.Dealer{
			Endpoint: ep, Tag: tag, Table: p.table, Options: p.clientOptions(node), Counters: &p.dealerCounters,
			NodeDown:    func(cause string) error { return &NodeDownError{Node: tag, Cause: cause} },
			Unreachable: func(cause string) error { return &UnavailableError{Node: tag, Cause: cause} },
			HandshakeFailed: func(cause string) error {
				p.rt.log.Warn("node refused the CURVE handshake: requests to it fail", "node", tag, "cause", cause)
				return &HandshakeError{Node: tag, Cause: cause}
			},
			// Only the CALL pipeline's connection decides whether new calls
			// avoid the node (the notify one's tag ends in "/notify").
			OnLiveness: func(up bool) {
				if !strings.HasSuffix(tag, "/notify") {
					p.res.markDown(tag, ep, !up)
				}
			},
		}
	})
}

// pusher returns the PUSH socket actor connected to r's node's direct-cast
// port, starting it on first use.
func (p *peers) pusher(ctx context.Context, r route) (*socket.Handle[socket.PushCmd], error) {
	if h := p.pushers.lookup(r.sockKey); h != nil {
		return h, nil // the hot path: no closure, no allocation
	}
	node := r.Node
	if err := p.checkPeer(node); err != nil {
		return nil, err
	}
	return p.pushers.get(ctx, p, r.sockKey, socketName("push", r.sockKey), func() poller.Handler[socket.PushCmd] {
		o := p.clientOptions(node)
		o.SendHWM = socket.DirectCastHWM
		return &socket.Pusher{Endpoint: node.CastEndpoint(), Options: o, Counters: &p.pusherCounters}
	})
}

// publisher returns the XPUB socket actor connected to node's fanout port
// (socket key key), starting it on first use; its loops publish the
// node's subscriptions in subs.
func (p *peers) publisher(ctx context.Context, node directory.Node, key string, subs *socket.Subscriptions) (*socket.Handle[socket.PubCmd], error) {
	if h := p.publishers.lookup(key); h != nil {
		return h, nil // the hot path: no closure, no allocation
	}
	if err := p.checkPeer(node); err != nil {
		return nil, err
	}
	return p.publishers.get(ctx, p, key, socketName("xpub", key), func() poller.Handler[socket.PubCmd] {
		return &socket.Publisher{Endpoint: node.FanoutEndpoint(), Options: p.clientOptions(node), Counters: &p.pubCounters, Subs: subs}
	})
}

// checkPeer refuses a node whose security does not match this node's: a
// secured node never sends in plaintext, and a plaintext node never tries a
// secured one. It allocates nothing when they match.
func (p *peers) checkPeer(node directory.Node) error {
	sec := p.cfg.Security
	switch {
	case sec == nil && node.CurveKey == "":
		return nil
	case sec == nil:
		return fmt.Errorf("%w: node %s", ErrSecurityRequired, node.ID())
	case node.CurveKey == "":
		return fmt.Errorf("%w: node %s", ErrInsecureNode, node.ID())
	case !config.ValidKey(node.CurveKey):
		// Directory data is input like any other.
		return fmt.Errorf("%w: node %s publishes a malformed CURVE key", ErrInsecureNode, node.ID())
	}
	return nil
}

// clientOptions are the options of a socket that connects to node (which
// passed checkPeer): a CURVE client of the node's published key when this
// node has Security.
func (p *peers) clientOptions(node directory.Node) socket.Options {
	o := p.rt.sock
	if sec := p.cfg.Security; sec != nil {
		o.Curve = &socket.Curve{PublicKey: sec.PublicKey, SecretKey: sec.SecretKey, ServerKey: node.CurveKey}
	}
	return o
}

// sweepIdle runs until the node closes, closing every period the sockets
// to departed nodes that were idle since the previous sweep and that no
// request waits on.
func (p *peers) sweepIdle(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.rt.ctx.Done():
			return
		case <-t.C:
		}
		live := p.res.liveSocketKeys()
		idle := func(key string) bool {
			return !live[key] && p.table.Tagged(socketTag(key)) == 0
		}
		if p.closed.Load() {
			return // Close stops every socket itself
		}
		closeAll(p, p.dealers.sweep(idle))
		closeAll(p, p.pushers.sweep(idle))
		closeAll(p, p.publishers.sweep(idle))
		p.res.forgetDeparted()
	}
}

// closeAll stops the socket actors of hs and counts them.
func closeAll[C any](p *peers, hs []*socket.Handle[C]) {
	for _, h := range hs {
		if err := p.rt.root.StopFuture(h.PID()).Wait(); err != nil {
			p.rt.log.Warn("closing an idle socket", "socket", h.Name(), "err", err)
			continue
		}
		p.idleClosed.Add(1)
		p.rt.log.Info("closed an idle socket to a node that left the directory", "socket", h.Name())
	}
}

// stop fails every pending request with ErrClosed and stops the reply
// supervisor and its socket actors (their loops close the sockets).
func (p *peers) stop() error {
	if err := p.rt.root.PoisonFuture(p.replyPID).Wait(); err != nil {
		return fmt.Errorf("stop reply supervisor: %w", err)
	}
	return nil
}

func (p *peers) addStats(st *Stats) {
	ts := p.table.Stats()
	st.LateReplies, st.UnmatchedReplies, st.PendingCalls = ts.Late, ts.Unmatched, ts.Pending
	dc := &p.dealerCounters
	st.MalformedFrames += dc.Malformed.Load()
	st.WrongKind += dc.WrongKind.Load()
	st.NodeDisconnects = dc.Disconnects.Load()
	st.FailedNodeDown = dc.FailedByDown.Load()
	st.ConnectFailures = dc.ConnectFailures.Load()
	st.NotSent = dc.NotSent.Load()
	st.DirectCastFailed += p.pusherCounters.Failed.Load() + dc.UnackedDropped.Load()
	st.DirectCasts = p.pusherCounters.Sent.Load()
	st.FanoutsSent = p.pubCounters.Sent.Load()
	st.FanoutsParked = p.pubCounters.Parked.Load()
	st.FanoutUnreached += p.pubCounters.NotSubscribed.Load() + p.pubCounters.Lost.Load()
	st.HandshakeFailures += dc.HandshakeFailed.Load() + p.pusherCounters.HandshakeFailed.Load() + p.pubCounters.HandshakeFailed.Load()
	st.Rerouted = p.rerouted.Load()
	st.IdleSocketsClosed = p.idleClosed.Load()
	st.OpenSockets = p.dealers.size() + p.pushers.size() + p.publishers.size()
	p.dealers.each(func(h *socket.Handle[socket.DealerCmd]) {
		st.SocketRestarts += h.Restarts()
		st.MalformedFrames += h.Stats().Oversized
	})
	p.pushers.each(func(h *socket.Handle[socket.PushCmd]) { st.SocketRestarts += h.Restarts() })
	p.publishers.each(func(h *socket.Handle[socket.PubCmd]) { st.SocketRestarts += h.Restarts() })
}

// socketKey names the socket to a node: its id, and for a CURVE node the
// start of its key, so that a node that comes back with a new key pair gets
// a new socket instead of one that keeps failing its handshake.
func socketKey(id string, node directory.Node) string {
	if node.CurveKey == "" {
		return id
	}
	return id + "#" + node.CurveKey
}

// socketName names the actor of the socket with key (socketKey): its kind
// and node id, and for a CURVE node a short hash of the key, so that a node
// back with a new key pair gets an actor of its own while the old one
// stops.
func socketName(kind, key string) string {
	tag, curve, ok := strings.Cut(key, "#")
	if !ok {
		return kind + "-" + tag
	}
	h := fnv.New32a()
	h.Write([]byte(curve))
	return fmt.Sprintf("%s-%s#%08x", kind, tag, h.Sum32())
}

// socketTag returns the node id part of a socket key (socketKey).
func socketTag(key string) string {
	tag, _, _ := strings.Cut(key, "#")
	return tag
}
