package proxy

import (
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/zmqmsg/zmqmsg/envelope"
)

// Counters are the proxy's counters.
type Counters struct {
	Requests      atomic.Uint64 // requests routed to a local server
	Malformed     atomic.Uint64 // messages that did not decode, dropped
	WrongKind     atomic.Uint64 // decoded messages of a kind the call port does not take, dropped
	NoServers     atomic.Uint64 // requests for a target this node does not serve (answered with an error)
	Overloaded    atomic.Uint64 // requests refused because the server's queue was full (answered with an error)
	Replies       atomic.Uint64 // replies sent
	Duplicates    atomic.Uint64 // CASTs a server had already had (retries), not run again: acknowledged again, or answered IN_PROGRESS
	Waited        atomic.Uint64 // replies that waited for a full caller pipe (see replyQueue)
	DirectCasts   atomic.Uint64 // direct casts handed to a server
	DirectDropped atomic.Uint64 // direct casts no server could take (full, or none), dropped
	Fanouts       atomic.Uint64 // fanout deliveries handed to local servers (one per server)
	FanoutDropped atomic.Uint64 // fanout deliveries a local server (or, in a daemon, a service process) that is gone could not take, dropped
	Held          atomic.Uint64 // direct casts and fanouts a full lane (or member pipe) could not take at once: their socket paused until it did (push back)
	AcksDropped   atomic.Uint64 // ACKs dropped by the test hook (Hooks.DropAck)
	SendFailed    atomic.Uint64 // replies libzmq refused (the caller is gone, or its pipe is full: it does not read), dropped
	QuickRuns     atomic.Uint64 // requests whose quick handler ran on the loop (QuickServer)
	QuickOverran  atomic.Uint64 // of those, the runs that overran QuickBudget: the loop went on on another goroutine
	MembersLost   atomic.Uint64 // daemon: service processes dropped (heartbeats stopped, or their pipe vanished)
	FailedLost    atomic.Uint64 // daemon: relayed requests answered SERVER_LOST because their service process was lost
	Conflicts     atomic.Uint64 // daemon: ATTACHes refused because another process serves the name
	Refused       atomic.Uint64 // daemon: requests refused while draining (answered SHUTTING_DOWN)
	Cancels       atomic.Uint64 // CANCELs handed to the server running their call (a daemon: relayed to its member)
	CancelsLate   atomic.Uint64 // CANCELs for a call not running here (answered already, or never had), dropped
	// HandshakeFailed counts failed handshakes on the public sockets when
	// CURVE is on: peers without CURVE, keys the ZAP handler refused,
	// broken handshakes. Dropped; the peer never reaches the loop.
	HandshakeFailed atomic.Uint64
}

// StatsAnswer is the JSON payload of the REPLY to a STATS request: the
// counters of the proxy that answered (docs/design.md §5).
type StatsAnswer struct {
	// Role is "node" for a node's own proxy, "daemon" for a node proxy
	// daemon's broker.
	Role string `json:"role"`
	// Counters are the proxy's counters by name (see Counters.Snapshot).
	Counters map[string]uint64 `json:"counters"`
	// Members and InFlight are a daemon's attached service processes and
	// relayed requests waiting for their answer.
	Members  int `json:"members,omitempty"`
	InFlight int `json:"in_flight,omitempty"`
}

// Snapshot returns the counters by their names on the wire.
func (c *Counters) Snapshot() map[string]uint64 {
	return map[string]uint64{
		"malformed":        c.Malformed.Load(),
		"wrong_kind":       c.WrongKind.Load(),
		"requests":         c.Requests.Load(),
		"no_servers":       c.NoServers.Load(),
		"overloaded":       c.Overloaded.Load(),
		"replies":          c.Replies.Load(),
		"duplicates":       c.Duplicates.Load(),
		"waited":           c.Waited.Load(),
		"direct_casts":     c.DirectCasts.Load(),
		"direct_dropped":   c.DirectDropped.Load(),
		"fanouts":          c.Fanouts.Load(),
		"fanout_dropped":   c.FanoutDropped.Load(),
		"held":             c.Held.Load(),
		"send_failed":      c.SendFailed.Load(),
		"quick_runs":       c.QuickRuns.Load(),
		"quick_overran":    c.QuickOverran.Load(),
		"members_lost":     c.MembersLost.Load(),
		"failed_lost":      c.FailedLost.Load(),
		"conflicts":        c.Conflicts.Load(),
		"refused":          c.Refused.Load(),
		"cancels":          c.Cancels.Load(),
		"cancels_late":     c.CancelsLate.Load(),
		"handshake_failed": c.HandshakeFailed.Load(),
	}
}

// sendStats answers the STATS request req with a.
func (q *replyQueue) sendStats(l trySender, routing [][]byte, req *envelope.Message, a StatsAnswer) {
	if frames := statsReply(routing, req, a); frames != nil {
		q.send(l, frames, time.Time{})
	}
}

// statsReply builds the answer to the STATS request req behind its routing
// frames.
func statsReply(routing [][]byte, req *envelope.Message, a StatsAnswer) [][]byte {
	payload, err := json.Marshal(a)
	if err != nil {
		return nil // cannot happen: strings, ints and a map of them
	}
	body, err := envelope.AppendMessage(nil, &envelope.Message{Kind: envelope.KindReply, ID: req.ID, Payload: payload})
	if err != nil {
		return nil
	}
	return append(append(make([][]byte, 0, len(routing)+1), routing...), body)
}
