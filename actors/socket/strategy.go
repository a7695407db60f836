package socket

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Clock is the time source of a Strategy; tests inject a fake one so that
// backoff and failure decay are tested without sleeping.
type Clock interface {
	Now() time.Time
	// AfterFunc runs f on its own goroutine after d.
	AfterFunc(d time.Duration, f func())
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time                      { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) { time.AfterFunc(d, f) }

// Strategy is the supervisor strategy of socket actors: one for one, with
// restart backoff and failure decay.
//
//   - Decider decides per failure: Restart (a new loop and socket) or Stop
//     (a terminated context, a taken address: restarting cannot help).
//   - Failures older than Window are forgotten (decay): a socket that
//     failed once an hour ago starts from scratch.
//   - The first failure within the window restarts at once; the n-th waits
//     MinBackoff·2^(n-2), at most MaxBackoff, so a socket that keeps failing
//     (a peer that breaks it, a resource that is gone) does not spin. While
//     it waits its handle answers ErrUnavailable.
//   - More than MaxRestarts failures within Window stops the actor.
//
// The reply and ack tables live outside the supervised socket actors, so a
// restart loses no pending call (those sent on the failed socket fail with
// its error: a new socket has a new identity).
type Strategy struct {
	MaxRestarts            int
	Window                 time.Duration
	MinBackoff, MaxBackoff time.Duration
	Decider                func(reason any) actor.Directive
	Clock                  Clock

	mu    sync.Mutex
	fails map[string][]time.Time // child id -> its failures within Window
}

var _ actor.SupervisorStrategy = (*Strategy)(nil)

// Default backoff of socket actors' restarts.
const (
	DefaultMinBackoff = 10 * time.Millisecond
	DefaultMaxBackoff = time.Second
)

// NewStrategy returns the supervisor strategy for socket actors: one for
// one, at most maxRestarts restarts within window (failure decay), with
// backoff between DefaultMinBackoff and DefaultMaxBackoff, on the wall
// clock.
func NewStrategy(maxRestarts int, window time.Duration) *Strategy {
	return &Strategy{
		MaxRestarts: maxRestarts, Window: window,
		MinBackoff: DefaultMinBackoff, MaxBackoff: DefaultMaxBackoff,
		Decider: Decider, Clock: realClock{},
	}
}

// HandleFailure implements actor.SupervisorStrategy. It runs in the
// supervisor's mailbox turn.
func (s *Strategy) HandleFailure(_ *actor.ActorSystem, supervisor actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason any, _ any) {
	if s.Decider(reason) != actor.RestartDirective {
		s.forget(child)
		supervisor.StopChildren(child)
		return
	}
	delay, stop := s.failed(child)
	switch {
	case stop:
		supervisor.StopChildren(child)
	case delay <= 0:
		supervisor.RestartChildren(child)
	default:
		// Restarting sends a system message to the child's mailbox: safe
		// from the timer's goroutine. A child stopped meanwhile makes it a
		// dead letter.
		s.Clock.AfterFunc(delay, func() { supervisor.RestartChildren(child) })
	}
}

// failed records a failure of child now and returns how long to wait
// before restarting it, or stop when it failed too often.
func (s *Strategy) failed(child *actor.PID) (delay time.Duration, stop bool) {
	now := s.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fails == nil {
		s.fails = make(map[string][]time.Time)
	}
	id := child.String()
	// Forget whoever has not failed within the window (children stopped or
	// collected long ago included), so the map does not grow with churn.
	for k, ts := range s.fails {
		if k != id && len(ts) > 0 && now.Sub(ts[len(ts)-1]) >= s.Window {
			delete(s.fails, k)
		}
	}
	recent := s.fails[id][:0:0]
	for _, t := range s.fails[id] {
		if now.Sub(t) < s.Window {
			recent = append(recent, t) // decay: older failures are forgotten
		}
	}
	recent = append(recent, now)
	if len(recent) > s.MaxRestarts {
		delete(s.fails, id)
		return 0, true
	}
	s.fails[id] = recent
	return s.backoff(len(recent)), false
}

// backoff is the wait before the restart after the n-th recent failure.
func (s *Strategy) backoff(n int) time.Duration {
	if n <= 1 || s.MinBackoff <= 0 {
		return 0
	}
	d := s.MinBackoff
	for i := 2; i < n && d < s.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.MaxBackoff)
}

func (s *Strategy) forget(child *actor.PID) {
	s.mu.Lock()
	delete(s.fails, child.String())
	s.mu.Unlock()
}
