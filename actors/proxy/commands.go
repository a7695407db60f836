package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/directory"
)

// Cmd is a command for the proxy loop. The interface is sealed. The
// commands: replyCmd (here), routeCmd (routes.go), subCmd (fanout.go),
// attachCmd (member.go).
type Cmd interface{ isProxyCmd() }

// replyCmd sends a reply (routing frames, then the body) on the ROUTER; if
// the caller's pipe stays full it is dropped at expires.
type replyCmd struct {
	frames  [][]byte
	expires time.Time
	inline  [3][]byte // frames' storage for the common case: one command, one allocation
}

func (*replyCmd) isProxyCmd() {}

// route changes the routes on the loop and waits until it has, or ctx
// ends. A loop that stops first still makes the change (the routes outlive
// it), and so does one that is busy past ctx: a caller on the loop's own
// goroutine (an inline handler stopping a server) gets ctx.Err() instead
// of waiting for itself.
func (p *Proxy) route(ctx context.Context, op routeOp, key directory.Key, srv Server) error {
	c := &routeCmd{op: op, key: key, srv: srv, done: make(chan error, 1)}
	if err := p.submit(ctx, c); err != nil {
		return err
	}
	// Submitted: the loop answers, from HandleCommand or Shutdown.
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// submit queues c for the loop. While the loop restarts it tries again,
// until ctx ends or the proxy stops (ErrStopped).
func (p *Proxy) submit(ctx context.Context, c Cmd) error {
	backoff := time.Millisecond
	for {
		err := p.handle.Submit(ctx, c)
		if !errors.Is(err, socket.ErrUnavailable) {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-p.stopped:
			t.Stop()
			return ErrStopped
		case <-ctx.Done():
			t.Stop()
			return err
		}
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}
