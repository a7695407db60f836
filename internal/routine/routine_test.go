package routine

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestGroupCountsWaitsAndRefusesAfterClose(t *testing.T) {
	var g Group
	release := make(chan struct{})
	started := make(chan struct{}, 3)
	for i := 0; i < 3; i++ {
		if !g.Go(func() { started <- struct{}{}; <-release }) {
			t.Fatal("Go refused before Close")
		}
	}
	for i := 0; i < 3; i++ {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("goroutine did not start")
		}
	}
	if n := g.Running(); n != 3 {
		t.Fatalf("Running = %d, want 3", n)
	}
	closed := make(chan struct{})
	go func() { g.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while goroutines ran")
	default:
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if g.Running() != 0 || g.Started() != 3 {
		t.Fatalf("Running %d Started %d, want 0 and 3", g.Running(), g.Started())
	}
	if g.Go(func() { t.Error("ran after Close") }) {
		t.Fatal("Go accepted after Close")
	}
	g.Close() // idempotent
}
