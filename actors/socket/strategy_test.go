package socket_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/socket"
)

// fakeClock is a Clock whose time moves only when the test says.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	f  func()
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = append(c.timers, fakeTimer{c.now.Add(d), f})
}

// advance moves the time on by d and runs the timers that are due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			due = append(due, t.f)
		} else {
			kept = append(kept, t)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// fakeSupervisor records what the strategy asks of it.
type fakeSupervisor struct {
	restarts, stops int
}

func (s *fakeSupervisor) Children() []*actor.PID            { return nil }
func (s *fakeSupervisor) EscalateFailure(any, any)          {}
func (s *fakeSupervisor) RestartChildren(...*actor.PID)     { s.restarts++ }
func (s *fakeSupervisor) StopChildren(...*actor.PID)        { s.stops++ }
func (s *fakeSupervisor) ResumeChildren(pids ...*actor.PID) {}
func (s *fakeSupervisor) counts() (restarts, stops int)     { return s.restarts, s.stops }

var _ actor.Supervisor = (*fakeSupervisor)(nil)

// Restarts back off (at once, 10 ms, 20 ms, 40 ms ... at most 100 ms),
// failures decay after the window, and too many within it stop the child;
// a failure restarting cannot help stops it at once. No sleeping: the
// clock is fake.
func TestStrategyBackoffAndDecay(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	s := socket.NewStrategy(6, time.Minute)
	s.Clock, s.MaxBackoff = clock, 100*time.Millisecond
	sup := &fakeSupervisor{}
	child := actor.NewPID("local", "sock")
	fail := func() { s.HandleFailure(nil, sup, child, nil, errors.New("socket broke"), nil) }

	fail() // 1st: at once
	if r, _ := sup.counts(); r != 1 || clock.pending() != 0 {
		t.Fatalf("first failure: %d restarts, %d waiting; want an immediate restart", r, clock.pending())
	}
	for i, wait := range []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 100 * time.Millisecond} {
		fail()
		before, _ := sup.counts()
		clock.advance(wait - time.Millisecond)
		if r, _ := sup.counts(); r != before {
			t.Fatalf("failure %d restarted before its backoff of %v", i+2, wait)
		}
		clock.advance(time.Millisecond)
		if r, _ := sup.counts(); r != before+1 {
			t.Fatalf("failure %d not restarted after its backoff of %v", i+2, wait)
		}
	}
	// A 7th failure within the minute: stopped.
	fail()
	if _, st := sup.counts(); st != 1 {
		t.Fatalf("7 failures within the window: %d stops, want 1", st)
	}

	// Decay: a failure every 40 s never reaches the limit, and each one
	// restarts at once or after the shortest backoff.
	other := actor.NewPID("local", "other")
	sup2 := &fakeSupervisor{}
	for i := 0; i < 20; i++ {
		s.HandleFailure(nil, sup2, other, nil, errors.New("rare"), nil)
		clock.advance(40 * time.Second)
	}
	if r, st := sup2.counts(); r != 20 || st != 0 {
		t.Fatalf("rare failures: %d restarts, %d stops; want 20, 0", r, st)
	}

	// A terminated context: stopped at once, whatever the history.
	third := actor.NewPID("local", "third")
	sup3 := &fakeSupervisor{}
	s.HandleFailure(nil, sup3, third, nil, &socket.LoopError{Socket: "x", Err: zmq.ETERM}, nil)
	if r, st := sup3.counts(); r != 0 || st != 1 {
		t.Fatalf("ETERM: %d restarts, %d stops; want 0, 1", r, st)
	}
}
