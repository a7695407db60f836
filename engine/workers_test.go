package engine

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/envelope"
	"github.com/zmqmsg/zmqmsg/internal/routine"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// Workers start on demand, never more than max at once, run every request,
// keep a max-1 queue in order, and all exit when idle, so an idle server
// holds no goroutine; close drains what is queued.
func TestWorkersOnDemandBoundedAndIdleExit(t *testing.T) {
	for _, max := range []int{1, 4} {
		var g routine.Group
		var wg sync.WaitGroup
		var mu sync.Mutex
		var order []byte
		var now, peak atomic.Int32
		release := make(chan struct{})
		run := func(r *Request) {
			if n := now.Add(1); n > peak.Load() {
				peak.Store(n)
			}
			<-release
			mu.Lock()
			order = append(order, r.Msg.ID[0])
			mu.Unlock()
			now.Add(-1)
		}
		w := newWorkers(100, max, run, g.Go, &wg)
		w.idleAfter = 20 * time.Millisecond
		if w.running.Load() != 0 {
			t.Fatal("a worker runs before any request")
		}
		for i := 0; i < 50; i++ {
			var id envelope.ID
			id[0] = byte(i)
			if !w.offer(&Request{Msg: envelope.Message{ID: id}}) {
				t.Fatal("offer refused below the queue size")
			}
		}
		testutil.WaitFor(t, 5*time.Second, "workers to start", func() bool { return now.Load() == int32(max) })
		close(release)
		testutil.WaitFor(t, 5*time.Second, "every request to run", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 50 })
		testutil.WaitFor(t, 5*time.Second, "idle workers to exit", func() bool { return w.running.Load() == 0 && g.Running() == 0 })
		if p := peak.Load(); p > int32(max) {
			t.Fatalf("max %d: %d ran at once", max, p)
		}
		if max == 1 {
			for i, b := range order {
				if int(b) != i {
					t.Fatalf("max 1 ran out of order: %v", order)
				}
			}
		}
		// Requests after the workers left start one again; close drains.
		w.offer(&Request{})
		w.close()
		wg.Wait()
		if len(order) != 51 {
			t.Fatalf("ran %d, want 51", len(order))
		}
		g.Close()
	}
}

// A quick run on the proxy loop takes one of the max slots: reserve fails
// while workers hold them all, and makes an idle one exit so the next
// reserve succeeds; release starts a worker for what was queued meanwhile.
func TestWorkersReserveShrinksIdleAndReleaseStartsQueued(t *testing.T) {
	var g routine.Group
	var wg sync.WaitGroup
	var ran atomic.Int32
	w := newWorkers(10, 1, func(*Request) { ran.Add(1) }, g.Go, &wg)
	w.idleAfter = time.Hour // only a shrink makes the worker exit
	w.offer(&Request{})
	testutil.WaitFor(t, 5*time.Second, "the worker to run and idle", func() bool { return ran.Load() == 1 && w.idle.Load() == 1 })
	if w.reserve() {
		t.Fatal("reserve took a slot an idle worker holds")
	}
	testutil.WaitFor(t, 5*time.Second, "the idle worker to exit", func() bool { return w.running.Load() == 0 && g.Running() == 0 })
	if !w.reserve() {
		t.Fatal("reserve failed with a free slot")
	}
	if w.reserve() {
		t.Fatal("reserve took a second slot of max 1")
	}
	w.offer(&Request{}) // queued: the only slot is reserved
	if g.Running() != 0 {
		t.Fatal("a worker started beyond max")
	}
	w.release()
	testutil.WaitFor(t, 5*time.Second, "release to start a worker for the queued request", func() bool { return ran.Load() == 2 })
	w.close()
	wg.Wait()
	g.Close()
}
