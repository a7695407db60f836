// Package socket holds zmqmsg's socket actors: one protoactor actor per
// logical ZeroMQ socket.
//
// A socket actor does not touch its socket. It owns a poller.Loop, which owns
// the socket; the actor gives the loop its lifecycle:
//
//	Started     -> start a loop with a fresh handler (create, configure, bind or connect)
//	loop failed -> the actor fails with a *LoopError; its supervisor's decider
//	               chooses Restart (a new loop and socket), or Stop
//	Restarting  -> stop the loop (the old socket is closed before the new one exists)
//	Stopping    -> stop the loop
//
// Callers never go through the actor's mailbox on the hot path: they submit
// typed commands straight to the current loop through a Handle (one channel
// send), and the actor only swaps the loop behind the Handle on restart.
//
// Protoactor runs every mailbox turn on its own goroutine and recovers panics
// only there, so nothing in Receive blocks for long, and the loop goroutine
// reports its failures as messages instead of panicking.
//
// # Stability
//
// This package is exported for zmqmsg's own commands and tests only: its
// API may change in any release. Applications use the zmqmsg package.
package socket

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
)

// ErrUnavailable is returned by Handle.Submit while the socket has no
// running loop (it is restarting, or stopped).
var ErrUnavailable = errors.New("socket: not running")

// LoopError is the failure of a socket actor whose loop ended with an error.
type LoopError struct {
	Socket string
	Err    error
}

func (e *LoopError) Error() string { return fmt.Sprintf("socket %s: %v", e.Socket, e.Err) }
func (e *LoopError) Unwrap() error { return e.Err }

// Decider maps a socket actor's failure to a supervision directive:
// a terminated context or a taken address stops the actor (restarting cannot
// help), anything else (a panic in a handler, a socket error) restarts it
// with a new socket.
func Decider(reason any) actor.Directive {
	err, ok := reason.(error)
	if !ok {
		return actor.RestartDirective
	}
	var errno zmq.Errno
	if errors.As(err, &errno) && (errno == zmq.ETERM || errno == zmq.EADDRINUSE) {
		return actor.StopDirective
	}
	return actor.RestartDirective
}

// Spec describes a socket actor.
type Spec[C any] struct {
	// Name names the actor, its loop and its socket in logs.
	Name string
	// ZMQ is the Transport's context.
	ZMQ *zmq.Context
	// NewHandler returns a fresh handler for each (re)start of the loop.
	NewHandler func() poller.Handler[C]
	// Loop configures the loop (OnExit is set by the actor).
	Loop poller.Options
	// Logger receives lifecycle events.
	Logger *slog.Logger
}

// Handle is how callers reach a socket actor: it always points at the
// actor's current loop.
type Handle[C any] struct {
	pid      *actor.PID
	loop     atomic.Pointer[poller.Loop[C]]
	ready    chan error // the first start's result, buffered 1
	restarts atomic.Uint64
	gens     atomic.Uint64 // loop starts so far
	name     string
}

// PID returns the actor's process id.
func (h *Handle[C]) PID() *actor.PID { return h.pid }

// Name returns the socket's name.
func (h *Handle[C]) Name() string { return h.name }

// Restarts returns how often the socket was recreated after a failure.
func (h *Handle[C]) Restarts() uint64 { return h.restarts.Load() }

// Submit queues cmd for the socket's loop; see poller.Loop.Submit. It
// returns ErrUnavailable while the socket is restarting or stopped.
func (h *Handle[C]) Submit(ctx context.Context, cmd C) error {
	l := h.loop.Load()
	if l == nil {
		return ErrUnavailable
	}
	err := l.Submit(ctx, cmd)
	if errors.Is(err, poller.ErrClosed) {
		return ErrUnavailable
	}
	return err
}

// Stats returns the counters of the current loop.
func (h *Handle[C]) Stats() poller.Stats {
	if l := h.loop.Load(); l != nil {
		return l.Stats()
	}
	return poller.Stats{}
}

// Spawn starts a socket actor as a child of parent and waits until its first
// loop has started: a bind or connect error is returned here and the actor is
// stopped. system is needed to deliver the loop's exit to the actor.
func Spawn[C any](parent actor.SpawnerContext, spec Spec[C]) (*Handle[C], error) {
	h := &Handle[C]{ready: make(chan error, 1), name: spec.Name}
	if spec.Logger == nil {
		spec.Logger = slog.New(slog.DiscardHandler)
	}
	props := actor.PropsFromProducer(func() actor.Actor { return &socketActor[C]{spec: spec, h: h} })
	pid, err := parent.SpawnNamed(props, spec.Name)
	if err != nil {
		return nil, fmt.Errorf("socket %s: spawn: %w", spec.Name, err)
	}
	h.pid = pid
	if err := <-h.ready; err != nil {
		_ = parent.ActorSystem().Root.StopFuture(pid).Wait()
		return nil, err
	}
	return h, nil
}

// loopExited tells the actor that the loop of start number gen ended.
type loopExited struct {
	gen uint64
	err error
}

// socketActor is the actor; a new instance is made on every restart.
type socketActor[C any] struct {
	spec Spec[C]
	h    *Handle[C]
	loop *poller.Loop[C] // the loop this instance started
	gen  uint64          // which start that loop belongs to
}

func (a *socketActor[C]) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.start(ctx)
	case *loopExited:
		if m.gen != a.gen || a.loop == nil || m.err == nil {
			return // an old loop, or a stop we asked for
		}
		a.h.loop.CompareAndSwap(a.loop, nil)
		a.spec.Logger.Warn("socket loop failed", "socket", a.spec.Name, "err", m.err)
		// Fail the actor: its supervisor decides (see Decider).
		panic(&LoopError{Socket: a.spec.Name, Err: m.err})
	case *actor.Restarting:
		a.h.restarts.Add(1)
		a.stop()
	case *actor.Stopping:
		a.stop()
	}
}

func (a *socketActor[C]) start(ctx actor.Context) {
	self := ctx.Self()
	root := ctx.ActorSystem().Root
	gen := a.h.gens.Add(1)
	opts := a.spec.Loop
	opts.Name = a.spec.Name
	opts.OnExit = func(err error) {
		// On the loop goroutine: report, never block, never panic.
		root.Send(self, &loopExited{gen: gen, err: err})
	}
	l, err := poller.Start(a.spec.ZMQ, a.spec.NewHandler(), opts)
	if err != nil {
		if gen == 1 {
			a.h.ready <- err // first start: the spawner returns the error
			return
		}
		// A restart that cannot start fails again: the supervisor decides.
		panic(&LoopError{Socket: a.spec.Name, Err: err})
	}
	a.loop, a.gen = l, gen
	a.h.loop.Store(l)
	if gen == 1 {
		a.h.ready <- nil
	}
}

func (a *socketActor[C]) stop() {
	if a.loop == nil {
		return
	}
	a.h.loop.CompareAndSwap(a.loop, nil)
	_ = a.loop.Stop()
	a.loop = nil
}
