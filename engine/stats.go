package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/zmqmsg/zmqmsg/actors/proxy"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// Stats are the engine's counters; every drop, failure and late reply is
// counted here, so that "nothing lost silently" can be checked.
type Stats struct {
	Calls                 uint64 // calls sent
	CancelsSent           uint64 // CANCELs sent: calls whose ctx was cancelled before their answer
	CallRetries           uint64 // calls sent again to another server after a retryable failure (RetryPolicy)
	CallErrors            uint64 // calls that ended with an error (timeouts included)
	Timeouts              uint64 // calls that timed out
	LateReplies           uint64 // replies that arrived after their call gave up, dropped
	UnmatchedReplies      uint64 // replies for unknown ids, dropped
	MalformedFrames       uint64 // received messages that did not decode, dropped
	WrongKind             uint64 // decoded messages of a kind the socket does not take, dropped
	NoServers             uint64 // requests this node's proxy could not route (answered with an error)
	Overloaded            uint64 // requests refused because a server queue was full (answered)
	Expired               uint64 // requests whose deadline passed before a worker took them, dropped
	CallsCancelled        uint64 // calls whose caller gave up (CANCEL) while the handler ran: its ctx was cancelled
	HeartbeatsSent        uint64 // IN_PROGRESS ACKs this node's servers sent for monitored calls (MonitorEvery)
	ServersLost           uint64 // monitored calls that failed with ErrServerLost: no heartbeat for MonitorMisses intervals
	HeartbeatsReceived    uint64 // IN_PROGRESS ACKs this Transport's monitored calls received
	HandlerErrors         uint64 // handler errors returned to callers
	HandlerPanics         uint64 // handler panics, returned to callers as RemoteError
	SendFailures          uint64 // messages libzmq refused (peer gone), dropped
	Casts                 uint64 // casts sent (each counted once, however often retried)
	CastRetries           uint64 // cast resends after an ACK did not come in time
	CastsNotAcked         uint64 // casts that failed with ErrNotAcked
	CastsResent           uint64 // topic casts sent to another node's server after their node went down or never acknowledged
	CastsRun              uint64 // cast handlers run by this node's servers
	CastErrors            uint64 // cast handlers that returned an error (counted, logged)
	DuplicateCasts        uint64 // retried casts a server had already had: acknowledged, not run again
	DirectCasts           uint64 // direct casts handed to a PUSH socket
	DirectCastFailed      uint64 // direct casts, and casts sent with acks off, that could not be sent (closed, refused, node unreachable, left queued at Close), dropped
	DirectCastsRun        uint64 // direct cast handlers run by this node's servers
	DirectDropped         uint64 // direct casts this node received but no server could take (queue full, none), dropped
	DirectRefused         uint64 // direct casts (and casts sent with acks off) a local server had no method for, dropped (logged with the method)
	Fanouts               uint64 // fanout casts sent (each once, whatever the number of nodes)
	FanoutsSent           uint64 // fanout messages handed to a node's socket (one per node)
	FanoutsParked         uint64 // fanout messages that waited for a node's subscription
	FanoutUnreached       uint64 // fanout messages a node never took (not subscribed in time, socket failed); reported to the caster
	FanoutsRun            uint64 // fanout handlers run by this node's servers
	FanoutDropped         uint64 // fanouts this node received for a server that was stopping (or takes none), dropped
	PushedBack            uint64 // direct casts and fanouts this node received that a full server lane could not take at once: the node stopped reading their socket until it did, so the senders waited
	FanoutDeliveries      uint64 // fanouts this node handed to its servers' lanes (one per server)
	FanoutsRefused        uint64 // fanouts a local server had no method for, dropped (logged with the method; one per server)
	Notifications         uint64 // notifications sent (each once, whatever the number of pools)
	NotificationsUnheard  uint64 // notifications sent to a topic no pool listened to (counted, logged)
	NotificationsRun      uint64 // notification handlers run by this node's listeners
	NotifyFailures        uint64 // deliveries to a pool that no member of the pool acknowledged
	NotificationsFiltered uint64 // notifications a listener's priority filter dropped (acknowledged)
	SocketRestarts        uint64 // socket actors restarted by their supervisor
	DirectoryErrors       uint64 // failed directory lookups (cached entries kept serving)
	NodeDisconnects       uint64 // connections to other nodes lost (peer gone, heartbeat timeout, keepalive)
	FailedNodeDown        uint64 // calls and casts failed at once because their node's connection was lost
	ConnectFailures       uint64 // failed attempts to connect to another node (refused, unreachable, connect timeout)
	NotSent               uint64 // calls and casts whose caller waited, failed before libzmq had them, their node being unreachable (each then rerouted, or failed: ErrUnavailable, or ErrNodeDown for a cast an earlier attempt may have delivered)
	Rerouted              uint64 // calls and casts that never ran where they were sent (their node unreachable, or its server stopping) and went to another server of their topic
	NodesDown             int    // nodes whose connection is down now (new calls avoid them)
	RegistrationErrors    uint64 // failed directory registrations and refreshes (retried until the directory returns)
	OpenSockets           int    // sockets to other nodes open now (DEALERs, PUSHes, XPUBs)
	IdleSocketsClosed     uint64 // sockets to nodes that left the directory, closed after a sweep period without use
	HandshakeFailures     uint64 // failed security handshakes, both ways: peers refused by this node's ports, and nodes that refused this one
	AuthAllowed           uint64 // CURVE clients the ZAP handler accepted
	AuthDenied            uint64 // CURVE clients the ZAP handler refused (unknown key, wrong mechanism), logged without keys
	PendingCalls          int    // calls waiting for a reply now
}

// statsPart is one part of the engine that owns counters: it adds them to
// a snapshot.
type statsPart interface{ addStats(*Stats) }

// Stats returns a snapshot of the counters, gathered from the parts that
// own them.
func (e *Engine) Stats() Stats {
	var st Stats
	parts := []statsPart{e.peers, &e.caller, e.caster, &e.fanouter, &e.notifier, e.res, e.reg, e.serving,
		proxyStats{e.proxy}, proxyStats{e.notify}}
	for _, p := range parts {
		p.addStats(&st)
	}
	if z := e.rt.zap; z != nil {
		zc := z.Counters()
		st.AuthAllowed, st.AuthDenied = zc.Allowed.Load(), zc.Denied.Load()
		st.MalformedFrames += zc.Malformed.Load()
		st.SocketRestarts += z.Restarts()
	}
	return st
}

// proxyStats adds a proxy's drops to a snapshot (nil: none).
type proxyStats struct{ px *proxy.Proxy }

func (p proxyStats) addStats(st *Stats) {
	if p.px == nil {
		return
	}
	c := p.px.Counters()
	st.MalformedFrames += c.Malformed.Load() + p.px.LoopStats().Oversized
	st.WrongKind += c.WrongKind.Load()
	st.NoServers += c.NoServers.Load()
	st.Overloaded += c.Overloaded.Load()
	st.SendFailures += c.SendFailed.Load()
	st.DuplicateCasts += c.Duplicates.Load()
	st.SocketRestarts += p.px.Restarts()
	st.HandshakeFailures += c.HandshakeFailed.Load()
	// The notify proxy has no direct-cast or fanout port: zero there.
	st.DirectDropped += c.DirectDropped.Load()
	st.FanoutDropped += c.FanoutDropped.Load()
	st.PushedBack += c.Held.Load()
	st.FanoutDeliveries += c.Fanouts.Load()
}

// NodeStats are the counters of a node's proxy, as its call port answers a
// STATS request: Role "node" (the node's own proxy) or "daemon" (a node
// proxy daemon), and every drop it counted by name ("direct_dropped",
// "fanout_dropped", "no_servers", ...; docs/design.md §5).
type NodeStats = proxy.StatsAnswer

// NodeStats asks node's call port for its counters with a STATS request:
// those of the node's own proxy, or of the node proxy daemon that owns the
// port. It waits for the answer until ctx ends (or CallTimeout, without a
// deadline); a node too old to know STATS drops the request as malformed
// and the wait ends in ErrTimeout.
func (e *Engine) NodeStats(ctx context.Context, node directory.Node) (NodeStats, error) {
	var a NodeStats
	if err := ctx.Err(); err != nil {
		return a, err
	}
	if e.closed.Load() {
		return a, ErrClosed
	}
	id := node.ID()
	r := route{Entry: directory.Entry{Registration: directory.Registration{Node: node}}, nodeID: id, sockKey: socketKey(id, node)}
	req := envelope.Message{Kind: envelope.KindStats, ID: envelope.NewID()}
	body, err := envelope.Encode(&req)
	if err != nil {
		return a, fmt.Errorf("zmqmsg: encode stats request: %w", err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(e.rt.cfg.CallTimeout)
	}
	m, err := e.caller.once(ctx, &req, body, r, deadline, nil, 0)
	if err != nil {
		return a, fmt.Errorf("zmqmsg: stats of node %s: %w", id, err)
	}
	if err := json.Unmarshal(m.Payload, &a); err != nil {
		return a, fmt.Errorf("zmqmsg: stats of node %s: malformed answer: %w", id, err)
	}
	return a, nil
}
