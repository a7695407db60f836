package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// lazyDeadline is a handler's context for a request with a deadline: the
// server's context, ending at the caller's deadline too. It makes the
// timer and Done channel of a context.WithDeadline only when the handler
// asks for Done (or derives a context from it); a handler that never
// waits on its context costs one allocation instead of four and a timer.
type lazyDeadline struct {
	parent   context.Context
	deadline time.Time
	once     sync.Once
	armed    atomic.Bool
	real     context.Context // context.WithDeadline(parent, deadline), once armed
	cancel   context.CancelFunc
}

func (c *lazyDeadline) arm() context.Context {
	c.once.Do(func() {
		c.real, c.cancel = context.WithDeadline(c.parent, c.deadline)
		c.armed.Store(true)
	})
	return c.real
}

// Deadline returns the caller's deadline.
func (c *lazyDeadline) Deadline() (time.Time, bool) { return c.deadline, true }

// Done arms the context.
func (c *lazyDeadline) Done() <-chan struct{} { return c.arm().Done() }

// Err is the parent's error, or DeadlineExceeded once the deadline passed.
func (c *lazyDeadline) Err() error {
	if c.armed.Load() {
		return c.real.Err()
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value is the parent's, or, once armed, the real context's (which lets
// contexts derived from this one attach to it without a goroutine).
func (c *lazyDeadline) Value(key any) any {
	if c.armed.Load() {
		return c.real.Value(key)
	}
	return c.parent.Value(key)
}

// cancelNow cancels the context (its caller sent a CANCEL). Not after
// release.
func (c *lazyDeadline) cancelNow() {
	c.arm()
	c.cancel()
}

// release frees the timer, if the context was armed. Once the handler has
// returned.
func (c *lazyDeadline) release() {
	if c.armed.Load() {
		c.cancel()
	}
}
