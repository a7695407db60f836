package engine

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/zmqmsg/zmqmsg/envelope"
)

// The de-duplication window: at least the last max/2 ids or ttl/2, at most
// max ids; a forgotten id is new again.
func TestDedupWindow(t *testing.T) {
	d := newDedup(8, time.Minute)
	t0 := time.Now()
	ids := make([]envelope.ID, 20)
	for i := range ids {
		ids[i] = envelope.NewID()
	}
	for i := 0; i < 12; i++ {
		if !d.firstTime(ids[i], t0) {
			t.Fatalf("id %d not new", i)
		}
		d.finish(ids[i], castOutcome{}) // ran (running ids are never forgotten)
	}
	// The last max/2 = 4 ids at least are remembered, at most max = 8.
	remembered := 0
	for i := 0; i < 12; i++ {
		if !d.firstTime(ids[i], t0) {
			remembered++
		} else {
			d.forget(ids[i])
		}
	}
	for i := 8; i < 12; i++ {
		if d.firstTime(ids[i], t0) {
			t.Fatalf("recent id %d forgotten", i)
		}
	}
	if remembered < 4 || remembered > 8 {
		t.Fatalf("remembered %d", remembered)
	}
	d.forget(ids[11])
	if !d.firstTime(ids[11], t0) {
		t.Fatal("forgotten id not new")
	}
	// By age: remembered for ttl/2 at least, dropped after ttl.
	d2 := newDedup(1000, time.Minute)
	d2.firstTime(ids[0], t0)
	d2.finish(ids[0], castOutcome{})
	if d2.firstTime(ids[0], t0.Add(29*time.Second)) {
		t.Fatal("dropped before ttl/2")
	}
	d2.firstTime(ids[1], t0.Add(31*time.Second)) // rotates
	d2.finish(ids[1], castOutcome{})
	if d2.firstTime(ids[0], t0.Add(50*time.Second)) {
		t.Fatal("dropped before ttl")
	}
	d2.firstTime(ids[2], t0.Add(2*time.Minute)) // rotates, 1:29 > ttl after since → drops all
	if !d2.firstTime(ids[0], t0.Add(2*time.Minute)) || !d2.firstTime(ids[1], t0.Add(2*time.Minute)) {
		t.Fatal("kept past ttl")
	}
}

// A cast still running is remembered however many ids come after it, and
// however old it gets: its resends keep coming until it finishes.
func TestDedupKeepsRunning(t *testing.T) {
	d := newDedup(8, time.Minute)
	t0 := time.Now()
	running := envelope.NewID()
	if st, _ := d.see(running, t0, true); st != castNew {
		t.Fatal("first sight not new")
	}
	for i := 0; i < 40; i++ {
		id := envelope.NewID()
		d.see(id, t0, true)
		d.finish(id, castOutcome{})
	}
	if got, _ := d.see(running, t0, true); got != castRunning {
		t.Fatalf("after 40 more ids: %v, want running", got)
	}
	if got, _ := d.see(running, t0.Add(10*time.Minute), true); got != castRunning {
		t.Fatalf("after 10 minutes: %v, want running", got)
	}
	d.finish(running, castOutcome{})
	if got, _ := d.see(running, t0.Add(10*time.Minute), true); got != castDone {
		t.Fatalf("after it finished: %v, want done", got)
	}
}

// A stopping server looks ids up without recording new ones.
func TestDedupSeeWithoutRecording(t *testing.T) {
	d := newDedup(8, time.Minute)
	id, t0 := envelope.NewID(), time.Now()
	for i := 0; i < 2; i++ {
		if st, _ := d.see(id, t0, false); st != castNew {
			t.Fatal("an id looked up without recording was recorded")
		}
	}
	d.see(id, t0, true)
	if st, _ := d.see(id, t0, false); st != castRunning {
		t.Fatal("a recorded id is not found by a look-up")
	}
}

// A cast's outcome is kept with its id, in whichever generation it is, so
// that a resend is answered as the first send was; a failure's text is cut
// to maxAckText at a rune boundary.
func TestDedupKeepsOutcome(t *testing.T) {
	d := newDedup(8, time.Minute)
	t0 := time.Now()
	ok, failed, running := envelope.NewID(), envelope.NewID(), envelope.NewID()
	fail := castOutcome{Code: envelope.CodeRemote, ErrType: "QuotaError", ErrMsg: "over quota"}
	for _, id := range []envelope.ID{ok, failed, running} {
		d.see(id, t0, true)
	}
	if got := d.finish(ok, castOutcome{}); got != (castOutcome{}) {
		t.Fatalf("OK kept as %+v", got)
	}
	if got := d.finish(failed, fail); got != fail {
		t.Fatalf("failure kept as %+v", got)
	}
	// Rotate: the three are now the previous generation; running finishes there.
	d.see(envelope.NewID(), t0.Add(31*time.Second), true)
	nsm := castOutcome{Code: envelope.CodeNoSuchMethod, ErrType: "NoSuchMethod", ErrMsg: `zmqmsg: no such method: "x"`}
	d.finish(running, nsm)
	for _, c := range []struct {
		id   envelope.ID
		want castOutcome
	}{{ok, castOutcome{}}, {failed, fail}, {running, nsm}} {
		if st, got := d.see(c.id, t0.Add(32*time.Second), true); st != castDone || got != c.want {
			t.Fatalf("after a rotation: %v %+v, want done %+v", st, got, c.want)
		}
	}
	// Dropped with its generation.
	d.see(envelope.NewID(), t0.Add(2*time.Minute), true)
	if st, _ := d.see(failed, t0.Add(2*time.Minute), true); st != castNew {
		t.Fatalf("a failure outlived its generation: %v", st)
	}

	long := castOutcome{Code: envelope.CodeRemote, ErrType: "T", ErrMsg: strings.Repeat("é", maxAckText)} // 2 bytes a rune
	id := envelope.NewID()
	d.see(id, t0, true)
	got := d.finish(id, long)
	if len(got.ErrMsg) != maxAckText || !utf8.ValidString(got.ErrMsg) {
		t.Fatalf("a long message kept as %d bytes, valid UTF-8 %v", len(got.ErrMsg), utf8.ValidString(got.ErrMsg))
	}
	if _, again := d.see(id, t0, true); again != got {
		t.Fatal("a resend is not answered with the text the first ACK carried")
	}
}

// The failures' text is bounded by count and bytes; a failure whose text
// was dropped is still answered with its code.
func TestDedupBoundsFailureText(t *testing.T) {
	d := newDedup(1<<20, time.Hour)
	t0 := time.Now()
	fail := func(code envelope.Code, msg string) envelope.ID {
		id := envelope.NewID()
		d.see(id, t0, true)
		d.finish(id, castOutcome{Code: code, ErrType: "T", ErrMsg: msg})
		return id
	}
	first, firstNSM := fail(envelope.CodeRemote, "x"), fail(envelope.CodeNoSuchMethod, "y")
	for i := 0; i < failMax; i++ {
		fail(envelope.CodeRemote, "z")
		if n := len(d.curFail) + len(d.prevFail); n > failMax {
			t.Fatalf("%d failures kept, bound %d", n, failMax)
		}
	}
	if st, o := d.see(first, t0, true); st != castDone || o.Code != envelope.CodeRemote || o.ErrMsg != lostText {
		t.Fatalf("an old failure: %v %+v, want REMOTE with the stock text", st, o)
	}
	if _, o := d.see(firstNSM, t0, true); o.Code != envelope.CodeNoSuchMethod || o.ErrType != "NoSuchMethod" {
		t.Fatalf("an old unknown method: %+v, want NO_SUCH_METHOD", o)
	}
	recent := fail(envelope.CodeRemote, "recent")
	for i := 0; i < 4*failTextMax/maxAckText; i++ {
		fail(envelope.CodeRemote, strings.Repeat("m", 2*maxAckText))
		text := d.failText
		for _, o := range d.prevFail {
			text += len(o.ErrType) + len(o.ErrMsg)
		}
		if text > failTextMax {
			t.Fatalf("%d bytes of failure text kept, bound %d", text, failTextMax)
		}
		if i == failTextMax/(4*maxAckText) {
			if _, o := d.see(recent, t0, true); o.ErrMsg != "recent" {
				t.Fatalf("a failure forgotten after %d more: %+v", i, o)
			}
		}
	}
}
