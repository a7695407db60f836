package engine

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

// The lazy deadline context behaves like context.WithDeadline: it ends at
// the deadline or with its parent, carries the parent's values, and
// contexts derived from it end with it.
func TestLazyDeadlineActsLikeWithDeadline(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	defer cancel()
	c := &lazyDeadline{parent: parent, deadline: time.Now().Add(50 * time.Millisecond)}
	defer c.release()
	if d, ok := c.Deadline(); !ok || d != c.deadline {
		t.Fatal("Deadline")
	}
	if c.Err() != nil || c.Value(ctxKey{}) != "v" {
		t.Fatalf("before: %v %v", c.Err(), c.Value(ctxKey{}))
	}
	child, stop := context.WithCancel(c)
	defer stop()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a derived context did not end at the deadline")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) || c.Value(ctxKey{}) != "v" {
		t.Fatalf("after: %v %v", c.Err(), c.Value(ctxKey{}))
	}

	// Unarmed: Err follows the clock and the parent without a timer.
	p2, cancel2 := context.WithCancel(context.Background())
	c2 := &lazyDeadline{parent: p2, deadline: time.Now().Add(time.Hour)}
	cancel2()
	if !errors.Is(c2.Err(), context.Canceled) {
		t.Fatalf("parent cancelled: %v", c2.Err())
	}
	c3 := &lazyDeadline{parent: context.Background(), deadline: time.Now().Add(-time.Second)}
	if !errors.Is(c3.Err(), context.DeadlineExceeded) {
		t.Fatalf("past deadline: %v", c3.Err())
	}
	c2.release()
	c3.release()
}
