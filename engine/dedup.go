package engine

import (
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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
//
// An id's entry is one byte: running, succeeded, or failed with code
// REMOTE or NO_SUCH_METHOD. The text of a failure (errtype and errmsg, cut
// to maxAckText bytes each) is kept apart, in two add-only generations of
// their own, bounded by count and bytes (failMax, failTextMax): a resend
// gets the ACK its first send got as long as the server has not failed
// failMax/2 casts, or kept failTextMax/2 bytes of their text, since. After
// that it still gets the failure's code, with a stock text (lostText).
type dedup struct {
	mu    sync.Mutex
	cur   map[envelope.ID]castMark
	prev  map[envelope.ID]castMark
	since time.Time // when cur got its first id
	max   int
	ttl   time.Duration

	curFail, prevFail map[envelope.ID]castOutcome
	failText          int // bytes of text in curFail
}

func newDedup(max int, ttl time.Duration) *dedup {
	return &dedup{cur: make(map[envelope.ID]castMark), max: max, ttl: ttl}
}

// castMark is what the table holds for an id: one byte, as a bool would.
type castMark uint8

const (
	markRunning      castMark = iota // its handler has not finished
	markOK                           // its handler has run and succeeded
	markRemote                       // its handler failed: REMOTE
	markNoSuchMethod                 // the server has no such method: NO_SUCH_METHOD
)

// castOutcome is how a cast fared, as its ACK says: code OK, or a failure
// (REMOTE, NO_SUCH_METHOD) with its errtype and errmsg.
type castOutcome struct {
	Code    envelope.Code
	ErrType string
	ErrMsg  string
}

// Bounds on the failure text the table keeps: each string is cut to
// maxAckText bytes (in the first ACK too), and the failure generations
// hold at most failMax failures and failTextMax bytes of text together.
const (
	maxAckText  = 1024
	failMax     = 8192
	failTextMax = 1 << 20
	lostText    = "the failure's text is no longer kept (this is a late resend of a failed cast)"
)

// castState is what a server knows of a CAST id.
type castState int

const (
	castNew     castState = iota // first time: recorded as running
	castRunning                  // accepted before, its handler has not finished
	castDone                     // its handler has run
)

// firstTime records id and reports whether it was new.
func (d *dedup) firstTime(id envelope.ID, now time.Time) bool {
	st, _ := d.see(id, now, true)
	return st == castNew
}

// see returns what is known of id, with its outcome if it is done, and, if
// it is new and record is set, records it as running (a stopping server
// answers the ids it has, but takes no new one).
func (d *dedup) see(id envelope.ID, now time.Time, record bool) (castState, castOutcome) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if record && len(d.cur) > 0 && (2*len(d.cur) >= d.max || now.Sub(d.since) >= d.ttl/2) {
		dropped := d.prev
		d.prev, d.cur = d.cur, make(map[envelope.ID]castMark, len(d.cur))
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
	mark, ok := d.cur[id]
	if !ok {
		mark, ok = d.prev[id]
	}
	switch {
	case ok && mark == markRunning:
		return castRunning, castOutcome{}
	case ok:
		return castDone, d.outcome(id, mark)
	case !record:
		return castNew, castOutcome{}
	}
	if len(d.cur) == 0 {
		d.since = now
	}
	d.cur[id] = markRunning
	return castNew, castOutcome{}
}

// carryRunning copies the running ids of a generation being dropped into
// the current one.
func (d *dedup) carryRunning(m map[envelope.ID]castMark) {
	for id, mark := range m {
		if mark == markRunning {
			d.cur[id] = markRunning
		}
	}
}

// outcome returns the outcome of a done id.
func (d *dedup) outcome(id envelope.ID, mark castMark) castOutcome {
	if mark == markOK {
		return castOutcome{}
	}
	if o, ok := d.curFail[id]; ok {
		return o
	}
	if o, ok := d.prevFail[id]; ok {
		return o
	}
	if mark == markNoSuchMethod {
		return castOutcome{Code: envelope.CodeNoSuchMethod, ErrType: "NoSuchMethod", ErrMsg: lostText}
	}
	return castOutcome{Code: envelope.CodeRemote, ErrType: envelope.CodeRemote.String(), ErrMsg: lostText}
}

// finish marks id's handler as run, with its outcome (if id is still
// remembered), and returns the outcome as kept: a failure's text cut to
// maxAckText. The caster's ACK carries that, so that a resend is answered
// the same.
func (d *dedup) finish(id envelope.ID, o castOutcome) castOutcome {
	d.mu.Lock()
	defer d.mu.Unlock()
	mark := markOK
	switch o.Code {
	case envelope.CodeOK:
	case envelope.CodeNoSuchMethod:
		mark = markNoSuchMethod
	default:
		mark = markRemote
	}
	if mark != markOK {
		o.ErrType, o.ErrMsg = cutText(o.ErrType, maxAckText), cutText(o.ErrMsg, maxAckText)
	}
	m := d.cur
	if _, ok := m[id]; !ok {
		if m = d.prev; m == nil {
			return o
		}
		if _, ok := m[id]; !ok {
			return o // forgotten: nothing to keep
		}
	}
	m[id] = mark
	if mark != markOK {
		d.keepFailure(id, o)
	}
	return o
}

// keepFailure keeps a failure's outcome, in the current failure generation
// unless it holds failMax/2 failures or failTextMax/2 bytes of text: then it
// becomes the previous one, and the previous one is dropped.
func (d *dedup) keepFailure(id envelope.ID, o castOutcome) {
	n := len(o.ErrType) + len(o.ErrMsg)
	if 2*len(d.curFail) >= failMax || 2*(d.failText+n) > failTextMax {
		d.prevFail, d.curFail, d.failText = d.curFail, nil, 0
	}
	if d.curFail == nil {
		d.curFail = make(map[envelope.ID]castOutcome)
	}
	d.curFail[id] = o
	d.failText += n
}

// cutText returns s cut to at most n bytes, at a rune boundary, in a copy
// of its own (a slice of s would keep all of s).
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strings.Clone(s[:n])
}

// forget drops id again (its message was refused after all, so a retry must
// run it).
func (d *dedup) forget(id envelope.ID) {
	d.mu.Lock()
	delete(d.cur, id)
	delete(d.prev, id)
	d.mu.Unlock()
}
