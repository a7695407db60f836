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
	if d2.firstTime(ids[0], t0.Add(29*time.Second)) {
		t.Fatal("dropped before ttl/2")
	}
	d2.firstTime(ids[1], t0.Add(31*time.Second)) // rotates
	if d2.firstTime(ids[0], t0.Add(50*time.Second)) {
		t.Fatal("dropped before ttl")
	}
	d2.firstTime(ids[2], t0.Add(2*time.Minute)) // rotates, 1:29 > ttl after since → drops all
	if !d2.firstTime(ids[0], t0.Add(2*time.Minute)) || !d2.firstTime(ids[1], t0.Add(2*time.Minute)) {
		t.Fatal("kept past ttl")
	}
}
