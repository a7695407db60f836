package engine

import (
	"time"

	"github.com/zmqmsg/zmqmsg/actors/socket"
)

// DefaultIdleSweep is how often the engine looks for sockets to nodes that
// are in none of its cached routes (they left the directory); such a
// socket that stayed idle for a whole period is closed.
const DefaultIdleSweep = 30 * time.Second

// sweepIdle runs until the engine closes, closing every idleSweep the
// sockets to departed nodes that were idle since the previous sweep and
// that no call waits on.
func (e *Engine) sweepIdle(every time.Duration) {
	defer e.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		live := e.res.liveSocketKeys()
		idle := func(key string) bool {
			if live[key] {
				return false
			}
			return e.table.Tagged(socketTag(key)) == 0
		}
		if e.closed.Load() {
			return // Close stops every socket itself
		}
		closeAll(e, e.dealers.sweep(idle))
		closeAll(e, e.pushers.sweep(idle))
		closeAll(e, e.publishers.sweep(idle))
		e.res.forgetDeparted()
	}
}

// closeAll stops the socket actors of hs and counts them.
func closeAll[C any](e *Engine, hs []*socket.Handle[C]) {
	for _, h := range hs {
		if err := e.root.StopFuture(h.PID()).Wait(); err != nil {
			e.log.Warn("closing an idle socket", "socket", h.Name(), "err", err)
			continue
		}
		e.idleClosed.Add(1)
		e.log.Info("closed an idle socket to a node that left the directory", "socket", h.Name())
	}
}
