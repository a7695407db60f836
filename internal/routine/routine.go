// Package routine starts and accounts for the library's goroutines: every
// goroutine a Transport or a proxy daemon runs is started through a Group,
// which counts it, refuses to start one once the Group is closing, and lets
// Close wait for all of them (nats-server's startGoRoutine is the model).
package routine

import (
	"sync"
	"sync/atomic"
)

// Group is a set of goroutines with one lifetime. The zero value is ready.
type Group struct {
	mu      sync.Mutex
	closing bool // under mu: Go refuses
	wg      sync.WaitGroup
	running atomic.Int64
	started atomic.Uint64
}

// Go runs fn on a new goroutine and reports true, or reports false and runs
// nothing once Close has begun.
func (g *Group) Go(fn func()) bool {
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		return false
	}
	g.wg.Add(1)
	g.mu.Unlock()
	g.running.Add(1)
	g.started.Add(1)
	go func() {
		defer func() {
			g.running.Add(-1)
			g.wg.Done()
		}()
		fn()
	}()
	return true
}

// Close refuses new goroutines and waits for the running ones to return;
// the caller must first have told them to (a context, a closed channel).
// It is idempotent.
func (g *Group) Close() {
	g.mu.Lock()
	g.closing = true
	g.mu.Unlock()
	g.wg.Wait()
}

// Running returns how many of the group's goroutines are running now.
func (g *Group) Running() int { return int(g.running.Load()) }

// Started returns how many goroutines the group has started in all.
func (g *Group) Started() uint64 { return g.started.Load() }
