package socket

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// SpawnChild asks a parent actor to start a child under its supervision.
// Start runs inside the parent's mailbox turn with the parent's context; its
// error is sent on Done (buffered 1).
type SpawnChild struct {
	Start func(parent actor.SpawnerContext) error
	Done  chan error
}

// Parent is a plain supervising actor: it starts the children it is asked to
// start (SpawnChild) and supervises them with the strategy of its props.
// OnStopping, when set, runs before its children are stopped.
type Parent struct {
	OnStopping func()
}

// Receive handles the parent's messages.
func (p *Parent) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *SpawnChild:
		m.Done <- m.Start(ctx)
	case *actor.Stopping:
		if p.OnStopping != nil {
			p.OnStopping()
		}
	}
}

// SpawnParent starts a Parent under root, supervising its children with
// socket actors' strategy.
func SpawnParent(root *actor.RootContext, name string, strategy actor.SupervisorStrategy, onStopping func()) (*actor.PID, error) {
	props := actor.PropsFromProducer(
		func() actor.Actor { return &Parent{OnStopping: onStopping} },
		actor.WithSupervisor(strategy),
	)
	pid, err := root.SpawnNamed(props, name)
	if err != nil {
		return nil, fmt.Errorf("spawn %s: %w", name, err)
	}
	return pid, nil
}

// SpawnUnder asks the parent at pid to start a child and waits for the result.
func SpawnUnder(ctx context.Context, root *actor.RootContext, pid *actor.PID, start func(parent actor.SpawnerContext) error) error {
	req := &SpawnChild{Start: start, Done: make(chan error, 1)}
	root.Send(pid, req)
	select {
	case err := <-req.Done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// StartSupervised starts a Parent named name under root and, under it, one
// socket actor of spec, with the socket actors' Strategy (restarts within
// a minute: at most 10). It returns once the actor's first loop has
// started (bound, connected); on an error nothing is left running. Stop the
// pair with root.StopFuture(parent).
func StartSupervised[C any](ctx context.Context, root *actor.RootContext, name string, spec Spec[C]) (parent *actor.PID, h *Handle[C], err error) {
	return StartSupervisedWith(ctx, root, name, NewStrategy(10, time.Minute), spec)
}

// StartSupervisedWith is StartSupervised with a strategy of the caller's.
func StartSupervisedWith[C any](ctx context.Context, root *actor.RootContext, name string, strategy actor.SupervisorStrategy, spec Spec[C]) (parent *actor.PID, h *Handle[C], err error) {
	parent, err = SpawnParent(root, name, strategy, nil)
	if err != nil {
		return nil, nil, err
	}
	// The child's handle comes back over a channel: after a ctx timeout
	// the spawn may still finish in the parent's mailbox, and must not
	// write to anything this function returns.
	got := make(chan *Handle[C], 1)
	err = SpawnUnder(ctx, root, parent, func(pc actor.SpawnerContext) error {
		hd, err := Spawn(pc, spec)
		if err == nil {
			got <- hd
		}
		return err
	})
	if err != nil {
		_ = root.StopFuture(parent).Wait()
		return nil, nil, err
	}
	return parent, <-got, nil
}
