package engine

import (
	"testing"
	"time"

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
		d.finish(ids[i]) // ran (running ids are never forgotten)
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
	d2.finish(ids[0])
	if d2.firstTime(ids[0], t0.Add(29*time.Second)) {
		t.Fatal("dropped before ttl/2")
	}
	d2.firstTime(ids[1], t0.Add(31*time.Second)) // rotates
	d2.finish(ids[1])
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
	if d.see(running, t0, true) != castNew {
		t.Fatal("first sight not new")
	}
	for i := 0; i < 40; i++ {
		id := envelope.NewID()
		d.see(id, t0, true)
		d.finish(id)
	}
	if got := d.see(running, t0, true); got != castRunning {
		t.Fatalf("after 40 more ids: %v, want running", got)
	}
	if got := d.see(running, t0.Add(10*time.Minute), true); got != castRunning {
		t.Fatalf("after 10 minutes: %v, want running", got)
	}
	d.finish(running)
	if got := d.see(running, t0.Add(10*time.Minute), true); got != castDone {
		t.Fatalf("after it finished: %v, want done", got)
	}
}

// A stopping server looks ids up without recording new ones.
func TestDedupSeeWithoutRecording(t *testing.T) {
	d := newDedup(8, time.Minute)
	id, t0 := envelope.NewID(), time.Now()
	for i := 0; i < 2; i++ {
		if d.see(id, t0, false) != castNew {
			t.Fatal("an id looked up without recording was recorded")
		}
	}
	d.see(id, t0, true)
	if d.see(id, t0, false) != castRunning {
		t.Fatal("a recorded id is not found by a look-up")
	}
}
