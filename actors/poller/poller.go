// Package poller runs the loops that own zmqmsg's ZeroMQ sockets.
//
// # Ownership
//
// A *zmq.Socket is not safe for concurrent use. In zmqmsg only a Loop
// goroutine ever calls a method on one: the loop creates its sockets (in
// Handler.Setup, on the loop goroutine), reads and writes them, and closes
// them when it exits. The loop is one goroutine at a time, not always the
// same one: a handler function run with Loop.Detachable that overruns its
// budget keeps its goroutine, and the loop goes on on a new one (see
// detach.go). Everybody else talks to the loop through typed commands
// queued with Submit; the loop executes them one at a time in
// Handler.HandleCommand. The handlers (in actors/socket, actors/proxy and
// actors/zap) may call socket methods too, such as Connect or Disconnect,
// but only from these callbacks, which run on the loop goroutine.
//
// # The loop
//
// One pass of the loop:
//
//  1. service every socket: ask libzmq for its events (GetEvents), flush the
//     send backlog while POLLOUT, receive with DONTWAIT while POLLIN, up to a
//     budget per socket per pass;
//  2. run queued commands, up to a budget;
//  3. fire the handler's timer if its deadline has passed;
//  4. if the pass did anything, go round again; otherwise sleep until a socket
//     may be ready, a command arrives, or the handler's next deadline (the loop
//     is tickless: it never wakes on an interval).
//
// The loop may only go to sleep after a zmq call that found nothing to do:
// libzmq signals its descriptor once per "sleep" of the socket's command
// mailbox, and any zmq call (a send included) may consume that signal. Step 4
// therefore always follows a pass in which GetEvents found nothing.
//
// # Waiting strategies
//
// How the loop sleeps is a Strategy:
//
//   - Netpoll (the default on Linux): the socket's ZMQ_FD is duplicated and
//     registered with Go's netpoller; a helper goroutine per socket parks in
//     RawConn.Read until libzmq signals, then wakes the loop, which selects on
//     {commands, ready, timer}. No OS thread is parked per loop and a command
//     reaches the loop with one goroutine hand-off.
//   - ZMQPoller (portable): the loop blocks in zmq_poll over its sockets plus
//     the receiving end of an inproc PAIR. Producers wake it through a waker
//     goroutine that owns the sending end (so no socket is shared), with a
//     coalescing flag so a burst of commands costs one wake-up byte.
//
// Both strategies run the same stress test (200k sequential and 200k
// concurrent round trips, zero lost or mismatched) in CI.
//
// # Stability
//
// This package is exported for zmqmsg's own commands and tests only: its
// API may change in any release. Applications use the zmqmsg package.
package poller

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/internal/config"
	"github.com/zmqmsg/zmqmsg/internal/routine"
)

// Strategy selects how a Loop sleeps; it is the type of the zmqmsg
// Config's WaitStrategy.
type Strategy = config.WaitStrategy

// The strategies.
const (
	StrategyDefault   = config.WaitDefault // Netpoll where it is supported (Linux), else ZMQPoller
	StrategyNetpoll   = config.WaitNetpoll // each socket's ZMQ_FD in Go's netpoller
	StrategyZMQPoller = config.WaitZMQPoll // zmq_poll, woken by an inproc PAIR
)

// Resolve returns the concrete strategy that s stands for on this platform.
func Resolve(s Strategy) Strategy {
	if s == StrategyDefault {
		if netpollSupported {
			return StrategyNetpoll
		}
		return StrategyZMQPoller
	}
	return s
}

// Errors returned by Loop methods.
var (
	// ErrClosed is returned by Submit once the loop is stopping or stopped.
	ErrClosed = errors.New("poller: loop closed")
	// ErrUnsupported is returned by Start when a strategy is not available here.
	ErrUnsupported = errors.New("poller: strategy not supported on this platform")
)

// PanicError is the exit error of a loop whose handler panicked. The loop
// recovers the panic so that a bug never kills the process; its owner (the
// socket actor) decides what happens next.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("poller: handler panicked: %v", e.Value) }

// Handler is the owner of a loop's sockets: the logic of one socket actor.
// Every method runs on the loop goroutine, one at a time, and must not block.
type Handler[C any] interface {
	// Setup creates, configures and binds or connects the sockets with
	// l.NewSocket. An error aborts the start and is returned by Start.
	Setup(l *Loop[C]) error
	// HandleMessage is called with every message received on socket sock. The
	// frames belong to the handler.
	HandleMessage(l *Loop[C], sock int, frames [][]byte)
	// HandleCommand runs one command queued with Submit.
	HandleCommand(l *Loop[C], cmd C)
	// Deadline returns when HandleTimer should run next; the zero time means never.
	Deadline() time.Time
	// HandleTimer runs when the time returned by Deadline has passed.
	HandleTimer(l *Loop[C], now time.Time)
	// Shutdown runs once when the loop stops, before its sockets are closed;
	// pending is every command that was queued but never run, so that the
	// handler can fail them (nothing is dropped silently).
	Shutdown(l *Loop[C], pending []C, cause error)
}

// Options configure a Loop.
type Options struct {
	// Name identifies the loop in logs and errors.
	Name string
	// Strategy selects how the loop sleeps.
	Strategy Strategy
	// QueueSize is the capacity of the command queue; Submit blocks (bounded
	// by its context) when it is full. Default 1024.
	QueueSize int
	// Budget is how many messages a pass receives from one socket, and how
	// many commands it runs, before it moves on. Default 256.
	Budget int
	// MaxBacklog bounds the messages waiting for a socket to become writable
	// (send high-water mark reached). While a socket's backlog is full the loop
	// stops taking commands, so producers block in Submit. Default 4096.
	MaxBacklog int
	// MaxFrames bounds the frames of one received message; longer messages
	// are dropped and counted (Stats.Oversized). Default 64.
	MaxFrames int
	// slowRecv makes the loop receive through pebbe's RecvBytes (tests
	// compare the two paths).
	slowRecv bool
	// OnHandoff, when set, is called when a Detachable function overran
	// its budget and the loop moved to a new goroutine (on the watchdog's
	// goroutine: do not block).
	OnHandoff func()
	// OnExit, when set, is called on the loop goroutine as the very last thing
	// with the reason the loop ended (nil after Stop).
	OnExit func(error)
}

func (o *Options) defaults() {
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
	}
	if o.Budget <= 0 {
		o.Budget = 256
	}
	if o.MaxBacklog <= 0 {
		o.MaxBacklog = 4096
	}
	if o.MaxFrames <= 0 {
		o.MaxFrames = 64
	}
	if o.Name == "" {
		o.Name = "loop"
	}
}

// Stats are counters of one loop. Read them with Loop.Stats.
type Stats struct {
	Received  uint64 // messages received
	Sent      uint64 // messages handed to libzmq
	Backlog   uint64 // sends that hit the high-water mark and waited
	Wakeups   uint64 // times the loop went to sleep and woke up
	Commands  uint64 // commands run
	SendError uint64 // sends that failed for a reason other than the high-water mark
	Oversized uint64 // received messages over MaxFrames frames, dropped
	Handoffs  uint64 // times a Detachable function overran its budget and the loop moved to a new goroutine
	// DetachedPanics counts panics of Detachable functions that had
	// overrun (the loop had moved on): recovered, and the loop unharmed.
	DetachedPanics uint64
}

// sock is the loop's view of one socket. Owned by the loop goroutine.
type sock struct {
	z        *zmq.Socket
	name     string
	backlog  [][][]byte // whole messages waiting for POLLOUT, in order
	paused   bool       // true: do not receive (the consumer is behind)
	sendOnly bool       // a PUSH or PUB: nothing to receive, ever
	rareIn   bool       // an XPUB (mostly sends, rarely receives subscriptions) or a monitor PAIR (rare events)
	quiet    bool       // the last zmq call on it found nothing, and none since (a send may consume its descriptor's signal): only the descriptor can tell news
	rx       *receiver  // the fast receive path (recv.go); nil: pebbe's
}

// Loop is one socket-owning goroutine. Create it with Start.
type Loop[C any] struct {
	opts Options
	h    Handler[C]
	zctx *zmq.Context

	cmds     chan C
	stopCh   chan struct{} // closed by Stop
	stopOnce sync.Once
	done     chan struct{} // closed when the loop goroutine has exited
	routines routine.Group // the loop goroutine
	exitErr  error         // set before done is closed

	// mu guards closed: Submit holds it shared while it queues, Stop takes it
	// exclusively once, so that after Stop no command can enter the queue and
	// the loop's final drain sees every queued command.
	mu     sync.RWMutex
	closed bool

	// The current owner (detach.go); the watchdog and the budget of a
	// Detachable function.
	cur      atomic.Pointer[turn]
	epoch    time.Time
	budget   atomic.Int64
	watchdog *time.Timer // made stopped by Start; Reset and Stopped by the owner

	// Owned by the loop goroutine.
	socks    []*sock
	w        waiter
	draining bool   // a backlog is full: do not take commands
	woke     bool   // the pass follows a wait
	readyNow []bool // sockets whose descriptor was readable at the pass's start
	passes   uint32 // passes since the loop started, wrapping

	received, sent, backlogged, wakeups, commands, sendErrors, oversized atomic.Uint64
	handoffs, detachedPanics                                             atomic.Uint64
}

// waiter is a wait strategy.
type waiter interface {
	// arm is called once after Setup with the loop's sockets.
	arm(socks []*sock) error
	// wait sleeps until a socket may have events, a command may be queued or
	// stop was requested, or d has passed (d < 0: no timeout). wantIn and
	// wantOut tell which events each socket is waited for.
	wait(d time.Duration, wantIn, wantOut []bool) error
	// notify is called by producers after queuing a command.
	notify()
	// readable sets ready[i] when socket i's descriptor is readable now,
	// without blocking; false: the strategy cannot tell (the pass then asks
	// every socket but the quiet rarely receiving ones). Loop goroutine.
	readable(ready []bool) bool
	// close releases the strategy's resources; called on the loop goroutine
	// before the sockets are closed.
	close()
}

// Start creates a loop, runs h.Setup on the new loop goroutine, and returns
// once setup finished: a setup error (a taken port, say) is returned here,
// and then no goroutine is left running.
func Start[C any](zctx *zmq.Context, h Handler[C], opts Options) (*Loop[C], error) {
	opts.defaults()
	l := &Loop[C]{
		opts:   opts,
		h:      h,
		zctx:   zctx,
		cmds:   make(chan C, opts.QueueSize),
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
		epoch:  time.Now(),
	}
	l.watchdog = time.AfterFunc(time.Hour, l.handOff)
	l.watchdog.Stop()
	switch Resolve(opts.Strategy) {
	case StrategyNetpoll:
		if !netpollSupported {
			return nil, fmt.Errorf("%s: %w: netpoll", opts.Name, ErrUnsupported)
		}
		l.w = newNetpollWaiter()
	case StrategyZMQPoller:
		l.w = newZMQPollerWaiter(zctx)
	default:
		return nil, fmt.Errorf("%s: %w: %v", opts.Name, ErrUnsupported, opts.Strategy)
	}
	started := make(chan error, 1)
	l.routines.Go(func() { l.run(started) })
	if err := <-started; err != nil {
		<-l.done
		return nil, err
	}
	return l, nil
}

// Name returns the loop's name.
func (l *Loop[C]) Name() string { return l.opts.Name }

// Submit queues cmd for the loop. It blocks while the queue is full, until ctx
// ends (returning ctx.Err()) or the loop stops (returning ErrClosed). A nil
// error means the handler will see cmd, in HandleCommand or, if the loop
// stops first, in Shutdown's pending list.
func (l *Loop[C]) Submit(ctx context.Context, cmd C) error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	select {
	case l.cmds <- cmd:
	default:
		select {
		case l.cmds <- cmd:
		case <-ctx.Done():
			l.mu.RUnlock()
			return ctx.Err()
		case <-l.stopCh:
			l.mu.RUnlock()
			return ErrClosed
		}
	}
	l.mu.RUnlock()
	l.w.notify()
	return nil
}

// TrySubmit queues cmd if the queue has room and reports whether it did.
func (l *Loop[C]) TrySubmit(cmd C) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return false
	}
	select {
	case l.cmds <- cmd:
	default:
		return false
	}
	l.w.notify()
	return true
}

// Stop asks the loop to exit and waits until it has: Handler.Shutdown has
// run, every socket is closed, and any function Detachable handed off has
// returned. It is idempotent and safe to call from any
// goroutine except the loop's own.
func (l *Loop[C]) Stop() error {
	l.stopOnce.Do(func() {
		close(l.stopCh)
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		l.w.notify() // a loop asleep in zmq_poll sees stop only when woken
	})
	<-l.done
	l.routines.Close()
	return l.exitErr
}

// Done is closed when the loop goroutine has exited.
func (l *Loop[C]) Done() <-chan struct{} { return l.done }

// Err returns why the loop exited (nil after Stop), once Done is closed.
func (l *Loop[C]) Err() error {
	select {
	case <-l.done:
		return l.exitErr
	default:
		return nil
	}
}

// Stats returns a snapshot of the loop's counters. Safe from any goroutine.
func (l *Loop[C]) Stats() Stats {
	return Stats{
		Received:  l.received.Load(),
		Sent:      l.sent.Load(),
		Backlog:   l.backlogged.Load(),
		Wakeups:   l.wakeups.Load(),
		Commands:  l.commands.Load(),
		SendError: l.sendErrors.Load(),
		Oversized: l.oversized.Load(),
		Handoffs:  l.handoffs.Load(),

		DetachedPanics: l.detachedPanics.Load(),
	}
}

// NewSocket creates a socket of type t owned by this loop and returns its
// index. Call it only from Handler.Setup. The socket gets linger 0 so that
// closing it never blocks; callers may change that.
func (l *Loop[C]) NewSocket(t zmq.Type, name string) (int, *zmq.Socket, error) {
	z, err := l.zctx.NewSocket(t)
	if err != nil {
		return -1, nil, fmt.Errorf("%s: new %s socket: %w", l.opts.Name, name, err)
	}
	if err := z.SetLinger(0); err != nil {
		_ = z.Close()
		return -1, nil, fmt.Errorf("%s: %s: set linger: %w", l.opts.Name, name, err)
	}
	s := &sock{z: z, name: name, sendOnly: t == zmq.PUSH || t == zmq.PUB, rareIn: t == zmq.XPUB || t == zmq.PAIR}
	if socketLayoutOK && !l.opts.slowRecv {
		s.rx = newReceiver(z)
	}
	l.socks = append(l.socks, s)
	return len(l.socks) - 1, z, nil
}

// Socket returns socket i. Only the loop goroutine may use it. Whatever
// the caller does with it may consume its descriptor's signal, so the
// loop asks the socket for news on its next pass.
func (l *Loop[C]) Socket(i int) *zmq.Socket {
	s := l.socks[i]
	s.quiet = false
	return s.z
}

// Backlogged returns how many messages wait in socket i's send backlog.
// Loop goroutine only (Shutdown uses it to count what is dropped).
func (l *Loop[C]) Backlogged(i int) int { return len(l.socks[i].backlog) }

// SetPaused stops (true) or resumes (false) receiving from socket i. While a
// socket is paused its messages stay in libzmq's queues and, once they are
// full, the high-water mark pushes back on the peers. Loop goroutine only.
func (l *Loop[C]) SetPaused(i int, paused bool) {
	s := l.socks[i]
	s.paused = paused
	if !paused {
		s.quiet = false // what waited while paused never signals again
	}
}

// Send sends one message on socket i without blocking. If the socket's send
// high-water mark is reached the message waits in the socket's backlog, in
// order, and goes out as soon as the socket is writable. It returns an error
// only when libzmq refused the message for good (for example a ROUTER with
// ROUTER_MANDATORY and an unknown peer); the caller decides what that means.
// Loop goroutine only. The frames must not be modified after the call.
func (l *Loop[C]) Send(i int, frames ...[]byte) error {
	err := l.TrySend(i, frames...)
	if errors.Is(err, ErrWouldBlock) {
		l.enqueue(l.socks[i], frames)
		return nil
	}
	return err
}

// ErrWouldBlock is returned by TrySend when the message cannot be queued
// now (for a ROUTER with ROUTER_MANDATORY: that one peer's pipe is full).
var ErrWouldBlock = errors.New("poller: send would block")

// TrySend sends one message on socket i without blocking and without using
// the backlog: if libzmq cannot take it now it returns ErrWouldBlock and the
// message is not sent. A ROUTER uses it for replies, where a full pipe
// belongs to one peer (one that does not read) and must not hold back the
// replies to every other peer behind it. While the socket has a backlog,
// TrySend queues behind it like Send, to keep the order. Loop goroutine only.
func (l *Loop[C]) TrySend(i int, frames ...[]byte) error {
	s := l.socks[i]
	if len(s.backlog) > 0 {
		l.enqueue(s, frames)
		return nil
	}
	err := sendFrames(s.z, frames)
	s.quiet = false
	switch {
	case err == nil:
		l.sent.Add(1)
		return nil
	case isEAGAIN(err):
		return ErrWouldBlock
	default:
		l.sendErrors.Add(1)
		return fmt.Errorf("%s: send on %s: %w", l.opts.Name, s.name, err)
	}
}

func (l *Loop[C]) enqueue(s *sock, frames [][]byte) {
	l.backlogged.Add(1)
	s.backlog = append(s.backlog, frames)
	if len(s.backlog) >= l.opts.MaxBacklog {
		l.draining = true
	}
}

// sendFrames sends a multipart message with DONTWAIT. libzmq accepts or
// refuses a multipart message as a whole at its first frame, so EAGAIN can
// only come back from frame 0.
func sendFrames(z *zmq.Socket, frames [][]byte) error {
	last := len(frames) - 1
	for i, f := range frames {
		flags := zmq.DONTWAIT
		if i < last {
			flags |= zmq.SNDMORE
		}
		if _, err := z.SendBytes(f, flags); err != nil {
			return err
		}
	}
	return nil
}

func isEAGAIN(err error) bool { return zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) }

// run is the loop goroutine (the first turn; see detach.go).
func (l *Loop[C]) run(started chan<- error) {
	t := &turn{}
	l.cur.Store(t)
	var cause error
	setupDone := false
	defer func() { l.exit(t, recover(), cause, setupDone, started) }()
	if err := l.h.Setup(l); err != nil {
		cause = err
		return
	}
	if err := l.w.arm(l.socks); err != nil {
		cause = fmt.Errorf("%s: %w", l.opts.Name, err)
		return
	}
	setupDone = true
	started <- nil
	cause = l.loop(t)
}

// exit ends turn t's goroutine: it shuts the loop down, unless the loop
// moved on to another goroutine (p is what the goroutine recovered).
func (l *Loop[C]) exit(t *turn, p any, cause error, setupDone bool, started chan<- error) {
	if t.lost() {
		if p != nil {
			l.detachedPanics.Add(1)
		}
		return
	}
	if p != nil {
		cause = &PanicError{Value: p, Stack: debug.Stack()}
	}
	l.shutdown(cause, setupDone)
	if !setupDone {
		started <- cause
	}
	l.exitErr = cause
	if l.opts.OnExit != nil && setupDone {
		l.opts.OnExit(cause)
	}
	close(l.done)
}

// loop runs passes until Stop, a fatal socket error, or the loop moving
// on from turn t to another goroutine (errHandedOff).
func (l *Loop[C]) loop(t *turn) error {
	wantIn := make([]bool, len(l.socks))
	wantOut := make([]bool, len(l.socks))
	l.woke = true // nothing is known about the sockets yet
	for {
		worked, err := l.serviceSockets(t)
		if err != nil {
			return err
		}
		if l.runCommands(t) {
			worked = true
		}
		if t.lost() {
			return errHandedOff
		}
		if d := l.h.Deadline(); !d.IsZero() {
			if now := time.Now(); !now.Before(d) {
				l.h.HandleTimer(l, now)
				if t.lost() {
					return errHandedOff
				}
				worked = true
			}
		}
		select {
		case <-l.stopCh:
			return nil
		default:
		}
		if worked {
			continue
		}
		// Before sleeping, let the goroutines this pass readied (callers
		// handed their replies) run on this P: their next commands are then
		// queued before the loop decides, and it takes them in one pass
		// instead of one wake-up each. Once per sleep: not a spin.
		runtime.Gosched()
		if len(l.cmds) > 0 {
			continue
		}
		// Nothing to do, and the last zmq call on every socket was a
		// GetEvents that found nothing: safe to sleep.
		timeout := time.Duration(-1)
		if d := l.h.Deadline(); !d.IsZero() {
			timeout = max(time.Until(d), 0)
		}
		for i, s := range l.socks {
			wantIn[i] = !s.paused
			wantOut[i] = len(s.backlog) > 0
		}
		l.wakeups.Add(1)
		if err := l.w.wait(timeout, wantIn, wantOut); err != nil {
			return fmt.Errorf("%s: wait: %w", l.opts.Name, err)
		}
		l.woke = true
	}
}

// serviceSockets runs step 1 of a pass and reports whether it did anything.
//
// A receive that returns EAGAIN is itself the "zmq call that found nothing"
// after which the loop may sleep, so GetEvents is only asked when there is a
// backlog to flush (is the socket writable?), or the socket is paused or
// send-only (the call processes libzmq's mailbox, which resets its
// descriptor; without it the level-triggered wait would wake at once,
// forever). A quiet socket (see sock.quiet) is skipped unless its
// descriptor is readable; where the strategy cannot tell, a quiet socket
// that rarely receives (a monitor PAIR, an XPUB) is still asked on the
// first pass after a wait and every rareEvery passes.
func (l *Loop[C]) serviceSockets(t *turn) (bool, error) {
	worked := false
	l.passes++
	probeRare := l.woke || l.passes%rareEvery == 0
	l.woke = false
	known := l.readiness()
	for i, s := range l.socks {
		if len(s.backlog) == 0 {
			// Its last call found nothing and none since: its descriptor is
			// armed, so it has news only if that is readable now (and a
			// wait would see it).
			if known && s.quiet && !l.readyNow[i] {
				continue
			}
			if !known && s.quiet && s.rareIn && !probeRare {
				continue
			}
		}
		idle := s.paused || s.sendOnly
		if len(s.backlog) > 0 || idle || s.rareIn {
			ev, err := s.events()
			if err != nil {
				return worked, fmt.Errorf("%s: events of %s: %w", l.opts.Name, s.name, err)
			}
			s.quiet = idle || ev&zmq.POLLIN == 0
			if ev&zmq.POLLOUT != 0 && len(s.backlog) > 0 {
				if err := l.flush(s); err != nil {
					return worked, err
				}
				worked = true
			}
			// A socket that rarely receives is asked first (one cgo call)
			// rather than probed with a receive that finds nothing (three).
			if s.rareIn && ev&zmq.POLLIN == 0 {
				continue
			}
		}
		if idle {
			continue
		}
		got, err := l.receive(t, i, s, l.opts.Budget)
		if err != nil {
			return worked, err
		}
		if got > 0 {
			worked = true
		}
	}
	return worked, nil
}

// receive drains socket s with DONTWAIT until EAGAIN or max messages.
func (l *Loop[C]) receive(t *turn, i int, s *sock, max int) (int, error) {
	n := 0
	s.quiet = false
	for n < max && !s.paused {
		frames, err := l.recvMessage(s)
		if err != nil {
			if isEAGAIN(err) {
				// libzmq processed every pending command first: its
				// descriptor is reset and armed.
				s.quiet = true
				return n, nil
			}
			return n, fmt.Errorf("%s: receive on %s: %w", l.opts.Name, s.name, err)
		}
		n++
		if frames == nil {
			continue // over the frame limit: dropped and counted
		}
		l.received.Add(1)
		l.h.HandleMessage(l, i, frames)
		if t.lost() {
			return n, errHandedOff
		}
	}
	return n, nil
}

// rareEvery: a loop that cannot tell which descriptors are readable
// (zmqpoller) and never waits still asks its rarely receiving sockets for
// events every rareEvery passes.
const rareEvery = 32

// readiness asks the strategy which sockets' descriptors are readable, if
// any socket is quiet (else every socket is serviced anyway); false: not
// known.
func (l *Loop[C]) readiness() bool {
	for _, s := range l.socks {
		if s.quiet {
			if l.readyNow == nil {
				l.readyNow = make([]bool, len(l.socks))
			}
			clear(l.readyNow)
			return l.w.readable(l.readyNow)
		}
	}
	return false
}

// events returns the socket's ZMQ_EVENTS.
func (s *sock) events() (zmq.State, error) {
	if s.rx != nil {
		return s.rx.events()
	}
	return s.z.GetEvents()
}

// recvMessage receives one multipart message. A message of more than
// MaxFrames frames is drained and dropped (nil frames, counted in
// Stats.Oversized): a hostile peer cannot make the loop build an unbounded
// list.
func (l *Loop[C]) recvMessage(s *sock) ([][]byte, error) {
	if s.rx != nil {
		frames, err := s.rx.recv(l.opts.MaxFrames)
		if err == errOversized {
			l.oversized.Add(1)
			return nil, nil
		}
		return frames, err
	}
	b, err := s.z.RecvBytes(zmq.DONTWAIT)
	if err != nil {
		return nil, err
	}
	frames := make([][]byte, 1, 2)
	frames[0] = b
	for {
		more, err := s.z.GetRcvmore()
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		// The rest of a multipart message is already here: DONTWAIT cannot
		// return EAGAIN for it.
		b, err := s.z.RecvBytes(zmq.DONTWAIT)
		if err != nil {
			return nil, err
		}
		if frames != nil {
			frames = append(frames, b)
			if len(frames) > l.opts.MaxFrames {
				frames = nil
			}
		}
	}
	if frames == nil {
		l.oversized.Add(1)
	}
	return frames, nil
}

// flush sends backlogged messages until EAGAIN or the backlog is empty.
func (l *Loop[C]) flush(s *sock) error {
	s.quiet = false
	k := 0
	for ; k < len(s.backlog); k++ {
		err := sendFrames(s.z, s.backlog[k])
		if err == nil {
			l.sent.Add(1)
			continue
		}
		if isEAGAIN(err) {
			break
		}
		// A permanent error for this message: count it and move on; the
		// message's owner learns of it through its own timeout or ack.
		l.sendErrors.Add(1)
	}
	clear(s.backlog[:k])
	s.backlog = s.backlog[k:]
	if len(s.backlog) == 0 {
		s.backlog = nil
	}
	l.recheckDraining()
	return nil
}

// recheckDraining clears draining once no backlog is full.
func (l *Loop[C]) recheckDraining() {
	if !l.draining {
		return
	}
	l.draining = false
	for _, o := range l.socks {
		if len(o.backlog) >= l.opts.MaxBacklog {
			l.draining = true
		}
	}
}

// TakeBacklog removes and returns the messages waiting in socket i's send
// backlog, in order: libzmq never had them, so their owner may send them
// elsewhere or fail them as not sent. Loop goroutine only.
func (l *Loop[C]) TakeBacklog(i int) [][][]byte {
	s := l.socks[i]
	taken := s.backlog
	s.backlog = nil
	l.recheckDraining()
	return taken
}

// runCommands runs queued commands, up to the budget, unless a backlog is
// full or the loop moved on from turn t.
func (l *Loop[C]) runCommands(t *turn) bool {
	worked := false
	for n := 0; n < l.opts.Budget && !l.draining; n++ {
		select {
		case c := <-l.cmds:
			l.commands.Add(1)
			l.h.HandleCommand(l, c)
			worked = true
			if t.lost() {
				return worked
			}
		default:
			return worked
		}
	}
	return worked
}

// shutdown runs Handler.Shutdown with every command left in the queue, then
// releases the strategy and closes the sockets. It runs on the loop goroutine.
func (l *Loop[C]) shutdown(cause error, setupDone bool) {
	// No Submit can add to the queue once closed is set.
	l.stopOnce.Do(func() { close(l.stopCh) })
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	var pending []C
	for {
		select {
		case c := <-l.cmds:
			pending = append(pending, c)
			continue
		default:
		}
		break
	}
	if setupDone {
		func() {
			defer func() {
				if p := recover(); p != nil && cause == nil {
					cause = &PanicError{Value: p, Stack: debug.Stack()}
				}
			}()
			l.h.Shutdown(l, pending, cause)
		}()
	}
	l.watchdog.Stop()
	l.w.close()
	for _, s := range l.socks {
		_ = s.z.Close()
		if s.rx != nil {
			s.rx.free()
		}
	}
	l.socks = nil
}
