package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/zmqmsg/zmqmsg/directory"
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

// Topics returns the topics of exchange that the directory lists servers
// of, sorted; none is not an error. It fails with ErrDirectoryUnavailable
// (wrapping the cause) when the directory cannot be read, and says so when
// the directory cannot list its entries.
func (e *Engine) Topics(ctx context.Context, exchange string) ([]string, error) {
	ls, ok := e.rt.cfg.Directory.(directory.Lister)
	if !ok {
		return nil, fmt.Errorf("zmqmsg: the directory (%T) cannot list its topics", e.rt.cfg.Directory)
	}
	entries, err := ls.List(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %w", ErrDirectoryUnavailable, err)
	}
	var topics []string
	for _, en := range entries {
		if en.Exchange == exchange && (len(topics) == 0 || topics[len(topics)-1] != en.Topic) {
			topics = append(topics, en.Topic)
		}
	}
	return topics, nil
}
