package engine

import (
	"sync"
	"time"

	"github.com/zmqmsg/zmqmsg/envelope"
)

// dedup remembers the ids of recent CASTs so that a retry (sent again
// because its ACK was lost) does not run its handler a second time. It keeps
// at most max ids; an id is remembered at least until max/2 more have
// arrived or ttl/2 has passed, whichever comes first: far longer than any
// retry takes.
//
// The ids are in two generations, each a map that is only ever added to: once
// the current one holds max/2 ids or is ttl/2 old it becomes the previous one,
// and the previous one is dropped whole. One map with an id deleted for each
// id added (evicting in ring order) would not stay bounded: a Go map's
// deletions leave tombstones, and under that churn its tables keep splitting
// (65536 ids: 7 MiB when first full, 13 MiB after 0.5 M more, 25 MiB after
// 20 M more).
type dedup struct {
	mu    sync.Mutex
	cur   map[envelope.ID]bool // id -> its handler has run
	prev  map[envelope.ID]bool
	since time.Time // when cur got its first id
	max   int
	ttl   time.Duration
}

func newDedup(max int, ttl time.Duration) *dedup {
	return &dedup{cur: make(map[envelope.ID]bool), max: max, ttl: ttl}
}

// castState is what a server knows of a CAST id.
type castState int

const (
	castNew     castState = iota // first time: recorded as running
	castRunning                  // accepted before, its handler has not finished
	castDone                     // its handler has run
)

// firstTime records id and reports whether it was new.
func (d *dedup) firstTime(id envelope.ID, now time.Time) bool {
	return d.see(id, now, true) == castNew
}

// see returns what is known of id and, if it is new and record is set,
// records it as running (a stopping server answers the ids it has, but
// takes no new one).
func (d *dedup) see(id envelope.ID, now time.Time, record bool) castState {
	d.mu.Lock()
	defer d.mu.Unlock()
	if record && len(d.cur) > 0 && (2*len(d.cur) >= d.max || now.Sub(d.since) >= d.ttl/2) {
		dropped := d.prev
		d.prev, d.cur = d.cur, make(map[envelope.ID]bool, len(d.cur))
		// A cast still running is never forgotten: its resends keep coming
		// until it finishes, and one taken for new would run it twice.
		// Running ids are few (at most the server's queue and workers).
		d.carryRunning(dropped)
		if now.Sub(d.since) >= d.ttl {
			// All of it is older than ttl/2, some older than ttl.
			d.carryRunning(d.prev)
			d.prev = nil
		}
		if len(d.cur) > 0 {
			d.since = now
		}
	}
	done, ok := d.cur[id]
	if !ok {
		done, ok = d.prev[id]
	}
	switch {
	case ok && done:
		return castDone
	case ok:
		return castRunning
	case !record:
		return castNew
	}
	if len(d.cur) == 0 {
		d.since = now
	}
	d.cur[id] = false
	return castNew
}

// carryRunning copies the running ids of a generation being dropped into
// the current one.
func (d *dedup) carryRunning(m map[envelope.ID]bool) {
	for id, done := range m {
		if !done {
			d.cur[id] = false
		}
	}
}

// finish marks id's handler as run (if id is still remembered).
func (d *dedup) finish(id envelope.ID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.cur[id]; ok {
		d.cur[id] = true
	} else if _, ok := d.prev[id]; ok {
		d.prev[id] = true
	}
}

// forget drops id again (its message was refused after all, so a retry must
// run it).
func (d *dedup) forget(id envelope.ID) {
	d.mu.Lock()
	delete(d.cur, id)
	delete(d.prev, id)
	d.mu.Unlock()
}
