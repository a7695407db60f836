package engine

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/zmqmsg/zmqmsg/directory"
)

// The registrar is the actor that keeps this node's servers in the
// directory. It is the only code that calls Register and Deregister, so a
// refresh can never resurrect a server that has just been deregistered:
// the actor handles one message at a time.
//
//	Serve  ──regAdd──>    registrar ── Register (first, synchronous for Serve)
//	Stop   ──regRemove──> registrar ── Deregister
//	timer  ──regTick──>   registrar ── Register every server again (TTL/3)
//
// When a refresh fails (the directory is unreachable), the registrar
// retries on a backoff from 100 ms doubling up to TTL/3 instead of waiting
// for the next tick, logs the outage once when it starts and once when it
// ends, and counts every failed attempt. Registrations resume by
// themselves when the directory returns, however long it was gone: a
// killed node's entries expire, a live node's come back.
type registrar struct {
	dir    directory.Directory
	ttl    time.Duration
	every  time.Duration
	log    *slog.Logger
	errors *atomic.Uint64 // failed Register attempts (first or refresh)

	// state outlives a restart of the actor (its producer closes over it).
	state *registrarState
}

type registrarState struct {
	regs    map[regKey]directory.Registration
	failing bool
	backoff time.Duration
	timer   *time.Timer
}

type regKey struct {
	directory.Key
	server string
}

type (
	regAdd struct {
		reg  directory.Registration
		done chan error // buffered 1
	}
	regRemove struct {
		reg  directory.Registration
		done chan error // buffered 1
	}
	regTick struct{}
)

// registrarOpTimeout bounds one directory call of the registrar.
const registrarOpTimeout = 5 * time.Second

const registrarBackoffMin = 100 * time.Millisecond

// registrarRef is the registrar actor as the rest of the engine sees it:
// its address and its counter.
type registrarRef struct {
	root   *actor.RootContext
	pid    *actor.PID
	errors atomic.Uint64 // failed Register attempts (first or refresh)
}

// spawnRegistrar starts the registrar actor under root.
func spawnRegistrar(root *actor.RootContext, name string, dir directory.Directory, ttl time.Duration, log *slog.Logger) (*registrarRef, error) {
	ref := &registrarRef{root: root}
	st := &registrarState{regs: make(map[regKey]directory.Registration)}
	props := actor.PropsFromProducer(func() actor.Actor {
		return &registrar{dir: dir, ttl: ttl, every: ttl / 3, log: log, errors: &ref.errors, state: st}
	})
	var err error
	if ref.pid, err = root.SpawnNamed(props, name); err != nil {
		return nil, err
	}
	return ref, nil
}

func (r *registrar) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		r.schedule(c, r.every)
	case *regAdd:
		err := r.register(context.Background(), m.reg)
		if err == nil {
			r.state.regs[keyOf(m.reg)] = m.reg
		}
		m.done <- err
	case *regRemove:
		delete(r.state.regs, keyOf(m.reg))
		ctx, cancel := context.WithTimeout(context.Background(), registrarOpTimeout)
		m.done <- r.dir.Deregister(ctx, m.reg)
		cancel()
	case regTick:
		r.refresh(c)
	case *actor.Stopping:
		if r.state.timer != nil {
			r.state.timer.Stop()
		}
	}
}

func keyOf(reg directory.Registration) regKey { return regKey{reg.Key, reg.Server} }

func (r *registrar) register(ctx context.Context, reg directory.Registration) error {
	ctx, cancel := context.WithTimeout(ctx, registrarOpTimeout)
	defer cancel()
	err := r.dir.Register(ctx, reg, r.ttl)
	if err != nil {
		r.errors.Add(1)
	}
	return err
}

// refresh registers every server again; on a failure it stops (the
// directory is most likely unreachable for all of them) and retries soon.
// The whole refresh is bounded by half a refresh period, so that Serve and
// Stop, waiting in the mailbox, are never held for long.
func (r *registrar) refresh(c actor.Context) {
	ctx, cancel := context.WithTimeout(context.Background(), max(r.every/2, time.Second))
	defer cancel()
	var failed error
	n := 0
	for _, reg := range r.state.regs {
		if err := r.register(ctx, reg); err != nil {
			failed = err
			n = len(r.state.regs) - n
			break
		}
		n++
	}
	st := r.state
	switch {
	case failed != nil:
		if !st.failing {
			r.log.Warn("directory registrations failing; retrying until the directory returns", "not_refreshed", n, "of", len(st.regs), "err", failed)
			st.failing, st.backoff = true, registrarBackoffMin
		} else {
			st.backoff = min(2*st.backoff, r.every)
		}
		r.schedule(c, st.backoff)
	default:
		if st.failing {
			r.log.Info("directory registrations restored", "servers", len(st.regs))
			st.failing = false
		}
		r.schedule(c, r.every)
	}
}

// schedule sends the actor a regTick after d.
func (r *registrar) schedule(c actor.Context, d time.Duration) {
	if r.state.timer != nil {
		r.state.timer.Stop()
	}
	self, root := c.Self(), c.ActorSystem().Root
	r.state.timer = time.AfterFunc(d, func() { root.Send(self, regTick{}) })
}

// register registers reg now and keeps refreshing it.
func (r *registrarRef) register(ctx context.Context, reg directory.Registration) error {
	done := make(chan error, 1)
	return r.call(ctx, &regAdd{reg: reg, done: done}, done)
}

// deregister stops refreshing reg and deregisters it.
func (r *registrarRef) deregister(ctx context.Context, reg directory.Registration) error {
	done := make(chan error, 1)
	return r.call(ctx, &regRemove{reg: reg, done: done}, done)
}

// call sends msg to the registrar and waits for its answer on done.
func (r *registrarRef) call(ctx context.Context, msg any, done chan error) error {
	r.root.Send(r.pid, msg)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("zmqmsg: registrar: %w", ctx.Err())
	}
}

// stop stops the actor.
func (r *registrarRef) stop() error {
	if err := r.root.StopFuture(r.pid).Wait(); err != nil {
		return fmt.Errorf("stop registrar: %w", err)
	}
	return nil
}

func (r *registrarRef) addStats(st *Stats) { st.RegistrationErrors = r.errors.Load() }
