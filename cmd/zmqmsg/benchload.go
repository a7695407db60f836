package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// benchLoad is the sending side of a bench client run: what its goroutines
// share, their counters and what stops them.
type benchLoad struct {
	send    func(ctx context.Context) error
	timeout time.Duration // of each send (--timeout)
	count   int64         // --count; 0: no limit
	every   time.Duration // each goroutine's interval under --rate; 0: none

	sent, ok, failed, canceled atomic.Int64
	claimed                    atomic.Int64 // sends started, against count
	firstErr, lastErr          atomic.Pointer[error]
	lastOK, lastFail           atomic.Int64 // UnixNano of the last success (or the start), of the last failure

	stopOnce sync.Once
	stopped  chan struct{}
	stopErr  error // written before stopped is closed

	// The sends do not end with the run's ctx: on a signal, those in
	// flight finish (or are canceled after inFlightGrace) instead of
	// failing.
	sendCtx context.Context
	abort   context.CancelFunc
}

func (c *cli) newBenchLoad(ctx context.Context, send func(ctx context.Context) error) *benchLoad {
	b := &benchLoad{send: send, timeout: c.g.timeout, count: c.o.count, stopped: make(chan struct{})}
	if c.o.rate > 0 {
		// Each goroutine sends its share of --rate.
		b.every = time.Duration(float64(time.Second) * float64(c.o.concurrency) / c.o.rate)
	}
	b.sendCtx, b.abort = context.WithCancel(context.WithoutCancel(ctx))
	return b
}

// halt stops the run; why is what stopped it early, nil if it ran its
// course. The first call wins.
func (b *benchLoad) halt(why error) {
	b.stopOnce.Do(func() {
		b.stopErr = why
		close(b.stopped)
	})
}

// runLoad runs --concurrency goroutines sending until --duration, --count,
// a signal (ctx), a fatal error or a stall stops them. It returns how long
// they ran and their latencies.
func (c *cli) runLoad(ctx context.Context, b *benchLoad) (time.Duration, *histogram) {
	hists := make([]*histogram, c.o.concurrency)
	start := time.Now()
	b.lastOK.Store(start.UnixNano())
	deadline := time.AfterFunc(c.o.duration, func() { b.halt(nil) })
	var workers sync.WaitGroup
	for g := range hists {
		hists[g] = &histogram{}
		workers.Go(func() { b.worker(hists[g]) })
	}
	workersDone := make(chan struct{})
	go func() {
		workers.Wait()
		close(workersDone)
	}()
	var watchers sync.WaitGroup
	watchers.Go(func() { b.watch(ctx, workersDone) })
	progressDone := make(chan struct{})
	if isTerminal(c.stdout) && !c.g.json {
		watchers.Go(func() { c.progress(progressDone, start, &b.sent, &b.ok, &b.failed) })
	}
	<-workersDone
	b.halt(nil) // a --count run ends here
	elapsed := time.Since(start)
	deadline.Stop()
	close(progressDone)
	watchers.Wait()
	all := &histogram{}
	for _, h := range hists {
		all.merge(h)
	}
	return elapsed, all
}

// worker sends until the run stops or count is reached, recording the
// latencies of the successful sends in h. Under --rate it sends on a fixed
// schedule, catching up after a slow message but never bursting ahead.
func (b *benchLoad) worker(h *histogram) {
	next := time.Now()
	for {
		if b.every > 0 {
			if !b.waitUntil(next) {
				return
			}
			next = next.Add(b.every)
		}
		select {
		case <-b.stopped:
			return
		default:
		}
		if b.count > 0 && b.claimed.Add(1) > b.count {
			return
		}
		b.sendOne(h)
	}
}

// waitUntil waits for t; it reports false if the run stops first.
func (b *benchLoad) waitUntil(t time.Time) bool {
	wait := time.Until(t)
	if wait <= 0 {
		return true
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-b.stopped:
		return false
	}
}

// sendOne sends one message and counts how it went; a fatal error halts
// the run.
func (b *benchLoad) sendOne(h *histogram) {
	b.sent.Add(1)
	ctx, cancel := context.WithTimeout(b.sendCtx, b.timeout)
	t0 := time.Now()
	err := b.send(ctx)
	d := time.Since(t0)
	cancel()
	switch {
	case err == nil:
		b.ok.Add(1)
		b.lastOK.Store(time.Now().UnixNano())
		h.record(d)
	case b.sendCtx.Err() != nil:
		b.canceled.Add(1)
	default:
		b.failed.Add(1)
		b.firstErr.CompareAndSwap(nil, &err)
		b.lastErr.Store(&err)
		b.lastFail.Store(time.Now().UnixNano())
		if fatal(err) {
			b.halt(err)
		}
	}
}

// watch runs until the workers are done. It halts the run on a signal
// (ctx) or a stall; once the run stopped early, it cancels the sends still
// in flight after inFlightGrace.
func (b *benchLoad) watch(ctx context.Context, workersDone <-chan struct{}) {
	if !b.waitStop(ctx, workersDone) || b.stopErr == nil {
		return // the run's end: the sends in flight finish, bounded by --timeout
	}
	grace := time.NewTimer(inFlightGrace)
	defer grace.Stop()
	select {
	case <-grace.C:
		b.abort()
	case <-workersDone:
	}
}

// waitStop returns once the run stops, halting it on a signal (ctx) or a
// stall; it returns false if the workers finish first.
func (b *benchLoad) waitStop(ctx context.Context, workersDone <-chan struct{}) bool {
	tick := time.NewTicker(benchStall / 10)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			b.halt(errInterrupted)
			return true
		case <-tick.C:
			b.checkStall()
		case <-b.stopped:
			return true
		case <-workersDone:
			return false
		}
	}
}

// checkStall halts the run when every send failed since the last success,
// which is benchStall old.
func (b *benchLoad) checkStall() {
	okAt := b.lastOK.Load()
	if b.lastFail.Load() <= okAt || time.Since(time.Unix(0, okAt)) <= benchStall {
		return
	}
	if p := b.lastErr.Load(); p != nil {
		b.halt(fmt.Errorf("no send succeeded for %v: %w", time.Since(time.Unix(0, okAt)).Round(time.Second), *p))
	}
}
