package engine

import (
	"context"
	"slices"
	"strings"
	"time"
)

// ServerRef names one server of a topic: its name and its node's id
// ("host:port" of the call port).
type ServerRef struct {
	Server string
	Node   string
}

// Servers returns every server of t's topic that the directory lists (or
// its cache, when the directory fails), sorted by name, including those on
// nodes whose connection is down: a scatter-gather reports them rather
// than skip them. Like a call it waits, bounded by ctx and
// Config.WaitForServers, until one appears; it fails with ErrNoServers,
// ErrDirectoryUnavailable or ctx's error.
func (e *Engine) Servers(ctx context.Context, t Target) ([]ServerRef, error) {
	p := e.peers
	waitUntil, err := p.admit(ctx, t, nil)
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(p.cfg.CallTimeout)
	}
	// A pick waits for the first server and says why there is none.
	if _, err := e.res.pickAvoiding(ctx, t.key(), t.Server, minTime(waitUntil, deadline), deadline, nil, false); err != nil {
		return nil, p.ctxError(err)
	}
	var refs []ServerRef
	for _, r := range e.res.cached(t.key()) {
		if t.Server == "" || r.Server == t.Server {
			refs = append(refs, ServerRef{Server: r.Server, Node: r.nodeID})
		}
	}
	slices.SortFunc(refs, func(a, b ServerRef) int { return strings.Compare(a.Server, b.Server) })
	return refs, nil
}
