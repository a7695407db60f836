package directory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Stopper cancels a pending timer. *time.Timer satisfies it.
type Stopper interface {
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
}

// memoryOptions holds what MemoryOption can change; nil fields mean the
// real clock.
type memoryOptions struct {
	now       func() time.Time
	afterFunc func(d time.Duration, f func()) Stopper
}

// MemoryOption configures NewMemory.
type MemoryOption func(*memoryOptions)

// WithClock makes Memory read the time from now and schedule expiries with
// afterFunc, which must call f once d has passed unless stopped (as
// time.AfterFunc does). Tests use it to control time. A nil argument keeps
// the real clock for that part.
func WithClock(now func() time.Time, afterFunc func(d time.Duration, f func()) Stopper) MemoryOption {
	return func(o *memoryOptions) {
		o.now = now
		o.afterFunc = afterFunc
	}
}

// Memory is an in-process Directory. Create it with NewMemory; the zero value
// is also ready to use, with the real clock.
//
// Each entry has a timer (from the clock's afterFunc) that removes it and
// notifies watchers when its TTL runs out; Memory starts no goroutines of
// its own. Lookup also drops entries that are past their expiry, in case a
// timer is late.
type Memory struct {
	opts   memoryOptions
	shared bool // the Shared() instance: Close is a no-op

	mu     sync.Mutex
	closed bool
	topics map[Key]*topic // topics with entries or watchers
	seq    uint64         // +1 on every change of any topic's entries
}

// topic is the state of one Key.
type topic struct {
	entries  map[string]*record         // by Registration.Server
	watchers map[chan struct{}]struct{} // channels returned by Watch
	version  uint64                     // Memory.seq at the last change
}

// record is one stored entry with the timer that expires it. A refresh
// replaces the record, so a timer callback can tell whether it is stale.
type record struct {
	Entry
	timer Stopper
}

// Memory implements Directory, Lister and Versioner.
var (
	_ Directory = (*Memory)(nil)
	_ Lister    = (*Memory)(nil)
	_ Versioner = (*Memory)(nil)
)

// NewMemory returns an empty in-memory directory.
func NewMemory(opts ...MemoryOption) *Memory {
	m := &Memory{}
	for _, opt := range opts {
		if opt != nil {
			opt(&m.opts)
		}
	}
	return m
}

var shared = sync.OnceValue(func() *Memory {
	m := NewMemory()
	m.shared = true
	return m
})

// Shared returns the process-wide Memory directory used when a Transport is
// configured without one. It is created on first use and is never closed:
// its Close is a no-op that returns nil, so one user closing it cannot break
// the others. Users should Deregister what they Register.
func Shared() *Memory { return shared() }

// Register adds or refreshes r until ttl from now; see Directory.Register.
// Watchers are notified when the server is new or has moved to another Node,
// not on a plain refresh.
func (m *Memory) Register(ctx context.Context, r Registration, ttl time.Duration) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: ttl %v is not positive", ErrInvalid, ttl)
	}
	if err := m.lockOpen(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	t := m.topic(r.Key)
	old := t.entries[r.Server]
	r.Methods = slices.Clone(r.Methods) // the caller's slice stays the caller's
	rec := &record{Entry: Entry{Registration: r, Expires: m.now().Add(ttl)}}
	// The callback runs later (and takes m.mu), so rec.timer is set first.
	rec.timer = m.afterFunc(ttl, func() { m.expire(rec) })
	t.entries[r.Server] = rec
	if old != nil {
		stop(old.timer)
	}
	if old == nil || old.Node != r.Node || !slices.Equal(old.Methods, r.Methods) {
		m.changed(t)
	}
	return nil
}

// Deregister removes r at once; see Directory.Deregister. Only the entry
// with r's Key, Server and Node is removed: if the server has re-registered
// on another Node, a stale Deregister leaves the new entry alone.
func (m *Memory) Deregister(ctx context.Context, r Registration) error {
	if err := m.lockOpen(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if t := m.topics[r.Key]; t != nil {
		if rec := t.entries[r.Server]; rec != nil && rec.Node == r.Node {
			m.remove(t, rec)
		}
	}
	return nil
}

// Lookup returns the live entries of k; see Directory.Lookup.
func (m *Memory) Lookup(ctx context.Context, k Key) ([]Entry, error) {
	if err := m.lockOpen(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	out := []Entry{}
	t := m.topics[k]
	if t == nil {
		return out, nil
	}
	now := m.now()
	type keyed struct {
		id string // Node.ID(), computed once per entry, not per comparison
		e  Entry
	}
	live := make([]keyed, 0, len(t.entries))
	for _, rec := range t.entries {
		if !now.Before(rec.Expires) {
			m.remove(t, rec) // lazy expiry: its timer has not run yet
			continue
		}
		live = append(live, keyed{rec.Node.ID(), rec.Entry})
	}
	slices.SortFunc(live, func(a, b keyed) int {
		return cmp.Or(strings.Compare(a.id, b.id), strings.Compare(a.e.Server, b.e.Server))
	})
	out = make([]Entry, len(live))
	for i, k := range live {
		out[i] = k.e
	}
	return out, nil
}

// Version returns k's version; see Versioner. It drops the entries past
// their expiry first, as Lookup does. A key without state has the latest
// version of any key: it was either never used or removed since.
func (m *Memory) Version(ctx context.Context, k Key) (uint64, error) {
	if err := m.lockOpen(ctx); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	t := m.topics[k]
	if t == nil {
		return m.seq, nil
	}
	now := m.now()
	for _, rec := range t.entries {
		if !now.Before(rec.Expires) {
			m.remove(t, rec) // lazy expiry, as in Lookup
		}
	}
	if m.topics[k] == nil {
		return m.seq, nil // removed with its last entry
	}
	return t.version, nil
}

// List returns the live entries of every key; see Lister.List.
func (m *Memory) List(ctx context.Context) ([]Entry, error) {
	if err := m.lockOpen(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	now := m.now()
	out := []Entry{}
	for _, t := range m.topics {
		for _, rec := range t.entries {
			if !now.Before(rec.Expires) {
				m.remove(t, rec) // lazy expiry, as in Lookup
				continue
			}
			out = append(out, rec.Entry)
		}
	}
	sortEntries(out)
	return out, nil
}

// Watch reports changes to k; see Directory.Watch. After Close, Watch
// returns a channel that never receives and a no-op stop; Close does not
// close the channels of earlier watchers either, it just stops signalling.
func (m *Memory) Watch(k Key) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ch, func() {}
	}
	m.topic(k).watchers[ch] = struct{}{}
	stop := func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if t := m.topics[k]; t != nil { // nil after Close
			delete(t.watchers, ch) // a no-op the second time
			m.dropIfEmpty(k, t)
		}
	}
	return ch, stop
}

// Close stops all expiry timers and forgets all entries and watchers; later
// calls return ErrClosed. It is idempotent and always returns nil. Close of
// the Shared directory does nothing.
func (m *Memory) Close() error {
	if m.shared {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	for _, t := range m.topics {
		for _, rec := range t.entries {
			stop(rec.timer)
		}
	}
	m.topics = nil
	return nil
}

// lockOpen locks m.mu for a call with ctx, or fails with ctx's error or,
// after Close, with ErrClosed and leaves m.mu unlocked.
func (m *Memory) lockOpen(ctx context.Context) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// expire is the timer callback of rec: it removes rec unless rec was
// refreshed, deregistered or closed in the meantime.
func (m *Memory) expire(rec *record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.topics[rec.Key]; t != nil && t.entries[rec.Server] == rec {
		m.remove(t, rec)
	}
}

// topic returns the state of k, creating it if needed. m.mu must be held.
func (m *Memory) topic(k Key) *topic {
	t := m.topics[k]
	if t == nil {
		if m.topics == nil {
			m.topics = make(map[Key]*topic)
		}
		t = &topic{
			entries:  make(map[string]*record),
			watchers: make(map[chan struct{}]struct{}),
		}
		m.topics[k] = t
	}
	return t
}

// remove deletes rec from t, stops its timer and notifies watchers.
// m.mu must be held.
func (m *Memory) remove(t *topic, rec *record) {
	stop(rec.timer)
	delete(t.entries, rec.Server)
	m.changed(t)
	m.dropIfEmpty(rec.Key, t)
}

// dropIfEmpty forgets t once it has neither entries nor watchers, so that
// unused keys do not accumulate. m.mu must be held.
func (m *Memory) dropIfEmpty(k Key, t *topic) {
	if len(t.entries) == 0 && len(t.watchers) == 0 {
		delete(m.topics, k)
	}
}

// changed gives t a new version and notifies its watchers. m.mu must be
// held.
func (m *Memory) changed(t *topic) {
	m.seq++
	t.version = m.seq
	t.notify()
}

// notify signals every watcher of t without blocking: a watcher that has a
// signal pending already knows something changed.
func (t *topic) notify() {
	for ch := range t.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (m *Memory) now() time.Time {
	if m.opts.now != nil {
		return m.opts.now()
	}
	return time.Now()
}

func (m *Memory) afterFunc(d time.Duration, f func()) Stopper {
	if m.opts.afterFunc != nil {
		return m.opts.afterFunc(d, f)
	}
	return time.AfterFunc(d, f)
}

// stop stops s, tolerating a nil Stopper from a custom afterFunc.
func stop(s Stopper) {
	if s != nil {
		s.Stop()
	}
}

// ctxErr is ctx.Err(), treating a nil ctx as one that is never done.
func ctxErr(ctx context.Context) error {
	if ctx == nil {
		return nil
	}
	return ctx.Err()
}
