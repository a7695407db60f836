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
	cur   map[envelope.ID]struct{}
	prev  map[envelope.ID]struct{}
	since time.Time // when cur got its first id
	max   int
	ttl   time.Duration
}

func newDedup(max int, ttl time.Duration) *dedup {
	return &dedup{cur: make(map[envelope.ID]struct{}), max: max, ttl: ttl}
}

// firstTime records id and reports whether it was new.
func (d *dedup) firstTime(id envelope.ID, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.cur) > 0 && (2*len(d.cur) >= d.max || now.Sub(d.since) >= d.ttl/2) {
		d.prev, d.cur = d.cur, make(map[envelope.ID]struct{}, len(d.cur))
		if now.Sub(d.since) >= d.ttl {
			d.prev = nil // all of it is older than ttl/2, some older than ttl
		}
	}
	if _, ok := d.cur[id]; ok {
		return false
	}
	if _, ok := d.prev[id]; ok {
		return false
	}
	if len(d.cur) == 0 {
		d.since = now
	}
	d.cur[id] = struct{}{}
	return true
}

// forget drops id again (its message was refused after all, so a retry must
// run it).
func (d *dedup) forget(id envelope.ID) {
	d.mu.Lock()
	delete(d.cur, id)
	delete(d.prev, id)
	d.mu.Unlock()
}
