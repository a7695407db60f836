package engine

import (
	"sync"
	"time"

	"github.com/zmqmsg/zmqmsg/envelope"
)

// dedup remembers the ids of recent CASTs so that a retry (sent again
// because its ACK was lost) does not run its handler a second time. It keeps
// at most max ids, each for at most ttl: memory is bounded whatever the
// traffic (it grows only as ids arrive), and an id is remembered far longer
// than any retry takes.
type dedup struct {
	mu   sync.Mutex
	seen map[envelope.ID]time.Time
	ring []envelope.ID // insertion order, for eviction once max is reached
	next int
	max  int
	ttl  time.Duration
}

func newDedup(max int, ttl time.Duration) *dedup {
	return &dedup{seen: make(map[envelope.ID]time.Time), max: max, ttl: ttl}
}

// firstTime records id and reports whether it was new.
func (d *dedup) firstTime(id envelope.ID, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if at, ok := d.seen[id]; ok && now.Sub(at) < d.ttl {
		return false
	}
	if len(d.ring) < d.max {
		d.ring = append(d.ring, id)
	} else {
		delete(d.seen, d.ring[d.next]) // evict the oldest
		d.ring[d.next] = id
		d.next = (d.next + 1) % d.max
	}
	d.seen[id] = now
	return true
}

// forget drops id again (its message was refused after all, so a retry must
// run it).
func (d *dedup) forget(id envelope.ID) {
	d.mu.Lock()
	delete(d.seen, id)
	d.mu.Unlock()
}
