// Package reply correlates replies with the calls waiting for them.
//
// A Table maps a message id to the buffered channel of the call that waits
// for its reply. The rules, after nats.go's respMap:
//
//   - a call registers its id BEFORE its request is sent, so a reply can
//     never arrive for an id nobody knows yet (the oslo.messaging zmq driver
//     lost up to 1.35% of replies by registering after sending);
//   - the first reply for an id removes the entry and is delivered without
//     blocking (the channel has room for exactly one result);
//   - a call that gives up (timeout, cancellation) removes its entry; a reply
//     that comes later is counted as late and dropped;
//   - a reply for an id that was never registered, or was already answered,
//     is counted as unmatched and dropped;
//   - Close fails every pending call at once.
//
// The table is used directly by callers and by the socket loops that receive
// replies (a mutex per shard, no mailbox hop on the hot path). Its lifetime
// belongs to the Supervisor actor, which lives outside the socket actors it
// supervises, so a socket restart never loses a pending call.
//
// # Stability
//
// This package is exported for zmqmsg's own commands and tests only: its
// API may change in any release. Applications use the zmqmsg package.
package reply

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/zmqmsg/zmqmsg/envelope"
)

// ErrClosed is the error of every call pending when the table closes, and of
// Register afterwards.
var ErrClosed = errors.New("reply: closed")

// ErrDuplicateID is returned by Register for an id already pending (two
// random 16-byte ids collided, or a caller reused one).
var ErrDuplicateID = errors.New("reply: duplicate id")

// Result is what a waiting call receives: a decoded reply message, or an
// error that ended the call (the table closed, the node went down, ...).
type Result struct {
	Msg envelope.Message
	Err error
}

const shards = 32

// recentSize is how many given-up ids each shard remembers to tell late
// replies from unmatched ones.
const recentSize = 256

type entry struct {
	ch  chan Result
	tag string // who the request went to (a node id), for FailTagged
}

type shard struct {
	mu      sync.Mutex
	pending map[envelope.ID]entry
	recent  [recentSize]envelope.ID // ring of ids whose callers gave up
	next    int
}

// Table is the pending-call table. The zero value is not usable: call NewTable.
type Table struct {
	shards [shards]shard
	closed atomic.Bool

	registered, delivered, late, unmatched, failed atomic.Uint64
}

// Stats are the table's counters.
type Stats struct {
	Registered uint64 // calls registered
	Delivered  uint64 // replies handed to a waiting call
	Late       uint64 // replies that came after their call gave up, dropped
	Unmatched  uint64 // replies for unknown or already answered ids, dropped
	Failed     uint64 // calls failed by Close or FailTagged
	Pending    int    // calls waiting now
}

// NewTable returns an empty table.
func NewTable() *Table {
	t := &Table{}
	for i := range t.shards {
		t.shards[i].pending = make(map[envelope.ID]entry)
	}
	return t
}

func (t *Table) shard(id envelope.ID) *shard { return &t.shards[id[15]%shards] }

// Register adds a pending call for id, sent to tag, and returns the channel
// on which its result will arrive (exactly once, unless the caller gives up
// with Forget first). It fails with ErrClosed after Close.
func (t *Table) Register(id envelope.ID, tag string) (<-chan Result, error) {
	// Room for one interim answer (see Deliver) and the final one.
	ch := make(chan Result, 2)
	return ch, t.register(id, tag, ch)
}

// Call is a pending call registered with RegisterCall: its result arrives
// on C, on a channel the table reuses once the call Releases it.
type Call struct {
	ch chan Result
}

// C returns the channel the call's result arrives on.
func (c Call) C() <-chan Result { return c.ch }

// RegisterCall is Register with a pooled channel: after the final result
// has been read from it, the caller gives it back with Release.
func (t *Table) RegisterCall(id envelope.ID, tag string) (Call, error) {
	ch := chanPool.Get().(chan Result)
	if err := t.register(id, tag, ch); err != nil {
		chanPool.Put(ch)
		return Call{}, err
	}
	return Call{ch: ch}, nil
}

// Release gives back the channel of a call that has received its final
// result from it: the result removed the entry, so nothing sends on it any
// more. A call that gave up (Forget) must not release it: a reply may be on
// its way into it.
func (t *Table) Release(c Call) {
	if c.ch != nil && len(c.ch) == 0 {
		chanPool.Put(c.ch)
	}
}

// chanPool holds the result channels of ended calls (RegisterCall).
var chanPool = sync.Pool{New: func() any { return make(chan Result, 2) }}

func (t *Table) register(id envelope.ID, tag string, ch chan Result) error {
	s := t.shard(id)
	s.mu.Lock()
	// Checked under the shard lock: Close sweeps each shard under the same
	// lock after setting closed, so no entry can slip in behind the sweep.
	if t.closed.Load() {
		s.mu.Unlock()
		return ErrClosed
	}
	if _, dup := s.pending[id]; dup {
		s.mu.Unlock()
		return ErrDuplicateID
	}
	s.pending[id] = entry{ch: ch, tag: tag}
	s.mu.Unlock()
	t.registered.Add(1)
	return nil
}

// Deliver hands a reply to the call waiting for m.ID. An ACK with code
// IN_PROGRESS is an interim answer: it is handed over too, and the call
// stays registered for its final answer. Deliver reports whether a call was
// waiting; if not, the reply is counted (late or unmatched) and the
// caller should drop it.
func (t *Table) Deliver(m envelope.Message) bool {
	s := t.shard(m.ID)
	s.mu.Lock()
	e, ok := s.pending[m.ID]
	if ok && m.Kind == envelope.KindAck && m.Code == envelope.CodeInProgress {
		// An interim answer: the call keeps waiting for the final one, on
		// the same entry. At most one waits in the channel unread.
		if len(e.ch) == 0 {
			e.ch <- Result{Msg: m}
		}
		s.mu.Unlock()
		return true
	}
	if ok {
		delete(s.pending, m.ID)
		s.mu.Unlock()
		e.ch <- Result{Msg: m} // room for it whatever the interim answers: never blocks
		t.delivered.Add(1)
		return true
	}
	late := false
	for _, r := range s.recent {
		if r == m.ID {
			late = true
			break
		}
	}
	s.mu.Unlock()
	if late {
		t.late.Add(1)
	} else {
		t.unmatched.Add(1)
	}
	return false
}

// Forget removes the pending call for id, because its caller gave up. A
// reply arriving afterwards is counted as late.
func (t *Table) Forget(id envelope.ID) {
	s := t.shard(id)
	s.mu.Lock()
	if _, ok := s.pending[id]; ok {
		delete(s.pending, id)
		s.recent[s.next] = id
		s.next = (s.next + 1) % recentSize
	}
	s.mu.Unlock()
}

// Fail ends the pending call for id with err, if it is still waiting, and
// reports whether it was.
func (t *Table) Fail(id envelope.ID, err error) bool {
	s := t.shard(id)
	s.mu.Lock()
	e, ok := s.pending[id]
	if ok {
		delete(s.pending, id)
	}
	s.mu.Unlock()
	if ok {
		e.ch <- Result{Err: err}
		t.failed.Add(1)
	}
	return ok
}

// FailTagged fails, with err, every pending call whose request went to tag.
// It returns how many it failed.
func (t *Table) FailTagged(tag string, err error) int {
	n := t.eachTagged(tag, func(s *shard, id envelope.ID, e entry) {
		delete(s.pending, id)
		e.ch <- Result{Err: err}
	})
	t.failed.Add(uint64(n))
	return n
}

// Tagged counts the pending calls whose request went to tag.
func (t *Table) Tagged(tag string) int {
	return t.eachTagged(tag, func(*shard, envelope.ID, entry) {})
}

// eachTagged runs f on every pending call of tag, under its shard's lock,
// and returns how many there were.
func (t *Table) eachTagged(tag string, f func(s *shard, id envelope.ID, e entry)) int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for id, e := range s.pending {
			if e.tag == tag {
				f(s, id, e)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// Close fails every pending call with err (ErrClosed if nil) and makes
// Register fail from now on. It is idempotent.
func (t *Table) Close(err error) {
	if err == nil {
		err = ErrClosed
	}
	if !t.closed.CompareAndSwap(false, true) {
		return
	}
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for id, e := range s.pending {
			delete(s.pending, id)
			e.ch <- Result{Err: err}
			t.failed.Add(1)
		}
		s.mu.Unlock()
	}
}

// Stats returns the table's counters.
func (t *Table) Stats() Stats {
	st := Stats{
		Registered: t.registered.Load(),
		Delivered:  t.delivered.Load(),
		Late:       t.late.Load(),
		Unmatched:  t.unmatched.Load(),
		Failed:     t.failed.Load(),
	}
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		st.Pending += len(s.pending)
		s.mu.Unlock()
	}
	return st
}
