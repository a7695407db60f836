package poller

import (
	"errors"
	"sync/atomic"
	"time"
)

// A turn is one goroutine's tenure as a loop's owner. The loop starts with
// one; Detachable can end it and start the next on a new goroutine.
//
// Its word holds a state in the low two bits and, above them, the number
// of the Detachable call it belongs to, so that a late watchdog fire for
// one call can never take the loop from a later one.
type turn struct {
	word  atomic.Int64
	start atomic.Int64 // when the current Detachable function began, ns since Loop.epoch
}

const (
	turnOwner      int64 = iota // the goroutine runs the loop
	turnDetachable              // it runs a function of Detachable
	turnLost                    // the loop went on without it
	turnState      = 3          // the state's bits in word
)

// lost reports whether the loop has moved on to another goroutine.
func (t *turn) lost() bool { return t.word.Load()&turnState == turnLost }

// errHandedOff unwinds a goroutine whose turn was lost; it never leaves
// the package.
var errHandedOff = errors.New("poller: loop handed off")

// Detachable runs fn on the loop goroutine and reports whether this
// goroutine still owns the loop when fn returns. If fn runs longer than
// budget, the loop goes on on a new goroutine: fn's goroutine then no
// longer owns the sockets, Detachable returns false, and the caller (a
// HandleMessage, HandleCommand or HandleTimer) must return at once,
// touching neither the loop nor the handler's loop-owned state (hand the
// result to the loop with Submit). The loop then ends that goroutine.
//
// The budget is kept by a timer, so it holds as long as the Go scheduler
// runs timers: on a machine whose every P is busy it can stretch to the
// scheduler's preemption (about 10 ms). Stop waits for a detached fn to
// return. Loop goroutine only, from HandleMessage, HandleCommand or
// HandleTimer (never Setup or Shutdown); not nested.
func (l *Loop[C]) Detachable(budget time.Duration, fn func()) bool {
	t := l.cur.Load()
	w := (t.word.Load()&^turnState + turnState + 1) | turnDetachable // the next call's number
	t.start.Store(int64(time.Since(l.epoch)))
	l.budget.Store(int64(budget))
	t.word.Store(w)
	l.watchdog.Reset(budget)
	// The compare-and-swap back to turnOwner (0) decides the answer: a
	// hand-off between a check and the swap would leave two owners.
	returned := false
	defer func() {
		if !returned && t.word.CompareAndSwap(w, w&^turnState) {
			l.watchdog.Stop() // fn panicked while the loop was still ours
		}
	}()
	fn()
	returned = true
	if t.word.CompareAndSwap(w, w&^turnState) {
		l.watchdog.Stop()
		return true
	}
	return false
}

// handOff runs on the watchdog's goroutine: if the current turn's function
// has run past its budget, the turn is lost and the loop goes on on a new
// goroutine. The compare-and-swap on the turn's word orders the old
// owner's last use of the sockets before the new owner's first.
func (l *Loop[C]) handOff() {
	t := l.cur.Load()
	if t == nil {
		return
	}
	w := t.word.Load()
	if w&turnState != turnDetachable {
		return
	}
	if ran := time.Since(l.epoch) - time.Duration(t.start.Load()); ran < time.Duration(l.budget.Load()) {
		return // a late fire for an earlier call; Reset armed the timer again
	}
	if !t.word.CompareAndSwap(w, w&^turnState|turnLost) {
		return // that call returned meanwhile
	}
	next := &turn{}
	l.cur.Store(next)
	l.handoffs.Add(1)
	if l.opts.OnHandoff != nil {
		l.opts.OnHandoff()
	}
	// The group refuses only after Stop has seen the loop end, and the loop
	// cannot have ended: its owner was in fn.
	l.routines.Go(func() { l.resume(next) })
}

// resume runs the loop on a new goroutine after a hand-off.
func (l *Loop[C]) resume(t *turn) {
	var cause error
	defer func() { l.exit(t, recover(), cause, true, nil) }()
	cause = l.loop(t)
}
