package proxy

import (
	"encoding/json"

	"github.com/zmqmsg/zmqmsg/envelope"
)

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
		"send_failed":      c.SendFailed.Load(),
		"members_lost":     c.MembersLost.Load(),
		"failed_lost":      c.FailedLost.Load(),
		"conflicts":        c.Conflicts.Load(),
		"refused":          c.Refused.Load(),
		"handshake_failed": c.HandshakeFailed.Load(),
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
