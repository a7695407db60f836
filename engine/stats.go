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

// NodeStats asks node's call port for its counters with a STATS request:
// those of the node's own proxy, or of the node proxy daemon that owns the
// port. It waits for the answer until ctx ends (or CallTimeout, without a
// deadline); a node too old to know STATS drops the request as malformed
// and the wait ends in ErrTimeout.
func (e *Engine) NodeStats(ctx context.Context, node directory.Node) (proxy.StatsAnswer, error) {
	var a proxy.StatsAnswer
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
		deadline = time.Now().Add(e.cfg.CallTimeout)
	}
	m, err := e.callOnce(ctx, &req, body, r, deadline, false)
	if err != nil {
		return a, fmt.Errorf("zmqmsg: stats of node %s: %w", id, err)
	}
	if err := json.Unmarshal(m.Payload, &a); err != nil {
		return a, fmt.Errorf("zmqmsg: stats of node %s: malformed answer: %w", id, err)
	}
	return a, nil
}
