package engine

import (
	"sync"
	"sync/atomic"
	"time"
)

// workerIdle is how long a worker waits for a request before it exits.
const workerIdle = 2 * time.Second

// workers run a server's requests from one queue on goroutines started on
// demand, at most max at once; a worker that waits workerIdle for a request
// exits, so an idle server holds no goroutine. With max 1 they run the
// queue in order (the direct-cast lane).
//
// A request is never stranded: offer starts a worker when none is idle, and
// a worker that times out checks the queue again after it has stopped
// counting itself (the two sides see each other's counters).
type workers struct {
	queue     chan *Request
	max       int32
	idleAfter time.Duration // workerIdle; shorter in tests
	run       func(*Request)
	start     func(func()) bool // the node's routine group
	wg        *sync.WaitGroup   // the server's: Stop waits for its workers

	running atomic.Int32
	idle    atomic.Int32
	shrink  chan struct{}          // reserve asks an idle worker to exit, freeing its slot
	room    atomic.Pointer[func()] // whenRoom's wake, until called
}

func newWorkers(size, max int, run func(*Request), start func(func()) bool, wg *sync.WaitGroup) *workers {
	return &workers{queue: make(chan *Request, size), shrink: make(chan struct{}, 1), max: int32(max), idleAfter: workerIdle, run: run, start: start, wg: wg}
}

// offer queues r without blocking (false: the queue is full) and starts a
// worker if none is idle. The caller keeps the queue open (Server.mu).
func (w *workers) offer(r *Request) bool {
	select {
	case w.queue <- r:
	default:
		return false
	}
	if w.idle.Load() == 0 {
		w.spawn()
	}
	return true
}

// whenRoom calls wake once when the queue (found full by offer) is at most
// half full: from the worker that took a request, or at once if it is now.
// Half, so that the waiting producer refills a batch per wake.
func (w *workers) whenRoom(wake func()) {
	w.room.Store(&wake)
	if len(w.queue) <= cap(w.queue)/2 {
		w.wakeRoom()
	}
}

// wakeRoom calls the waiting wake, if any and the queue has room.
func (w *workers) wakeRoom() {
	if w.room.Load() == nil || len(w.queue) > cap(w.queue)/2 {
		return
	}
	if f := w.room.Swap(nil); f != nil {
		(*f)()
	}
}

// reserve takes one of the max slots for a run outside the workers (a
// quick run on the proxy loop); false when all are taken. When idle
// workers hold them, one is asked to exit, so that the next reserve finds
// its slot (else a busy server's idle workers, never idle for long, would
// keep every request off the loop).
func (w *workers) reserve() bool {
	if w.takeSlot() {
		return true
	}
	if w.idle.Load() > 0 {
		select {
		case w.shrink <- struct{}{}:
		default:
		}
	}
	return false
}

// takeSlot counts one more of the max running, unless max already are.
func (w *workers) takeSlot() bool {
	for {
		n := w.running.Load()
		if n >= w.max {
			return false
		}
		if w.running.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release gives back a reserved slot, and starts a worker for what was
// queued while the slot was taken (offer could not start one then).
func (w *workers) release() {
	w.running.Add(-1)
	if len(w.queue) > 0 && w.idle.Load() == 0 {
		w.spawn()
	}
}

// spawn starts a worker unless max are running.
func (w *workers) spawn() {
	if !w.takeSlot() {
		return
	}
	w.wg.Add(1)
	if !w.start(func() { defer w.wg.Done(); w.work() }) {
		w.running.Add(-1)
		w.wg.Done()
	}
}

// work runs requests until the queue is closed and empty, or it waited
// workerIdle for one.
func (w *workers) work() {
	var timer *time.Timer
	for {
		select {
		case r, ok := <-w.queue:
			if !ok {
				w.running.Add(-1)
				return
			}
			w.wakeRoom()
			w.run(r)
			continue
		default:
		}
		if timer == nil {
			timer = time.NewTimer(w.idleAfter)
			defer timer.Stop()
		} else {
			timer.Reset(w.idleAfter)
		}
		w.idle.Add(1)
		select {
		case r, ok := <-w.queue:
			w.idle.Add(-1)
			if !ok {
				w.running.Add(-1)
				return
			}
			w.wakeRoom()
			w.run(r)
		case <-timer.C:
			w.idle.Add(-1)
			if !w.retire() {
				return
			}
		case <-w.shrink:
			w.idle.Add(-1)
			timer.Stop()
			if !w.retire() {
				return
			}
		}
	}
}

// retire stops counting the worker; it goes on (true) if a request came in
// meanwhile and no other worker took its place.
func (w *workers) retire() bool {
	w.running.Add(-1)
	return len(w.queue) > 0 && w.takeSlot()
}

// close closes the queue (under Server.mu, written) and starts a worker to
// drain what is left if none runs.
func (w *workers) close() {
	close(w.queue)
	w.spawn()
}
