package proxy_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/zmqmsg/zmqmsg/actors/proxy"
	"github.com/zmqmsg/zmqmsg/directory"
)

func TestRoutesRoundRobin(t *testing.T) {
	var r proxy.Routes // the zero value is ready to use
	servers := []*fakeServer{newFakeServer("a"), newFakeServer("b"), newFakeServer("c")}
	for _, s := range servers {
		if err := r.Add(calcKey, s); err != nil {
			t.Fatal(err)
		}
	}
	counts := map[string]int{}
	for i := 0; i < 30; i++ {
		s := r.Pick(calcKey, "")
		if s == nil {
			t.Fatal("no server picked")
		}
		if want := servers[i%3].Name(); s.Name() != want {
			t.Fatalf("pick %d: %s, want %s (in order of Add)", i, s.Name(), want)
		}
		counts[s.Name()]++
	}
	if counts["a"] != 10 || counts["b"] != 10 || counts["c"] != 10 {
		t.Fatalf("counts %v, want 10 each", counts)
	}
}

func TestRoutesNamedPick(t *testing.T) {
	var r proxy.Routes
	a, b := newFakeServer("a"), newFakeServer("b")
	for _, s := range []*fakeServer{a, b} {
		if err := r.Add(calcKey, s); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		if s := r.Pick(calcKey, "b"); s != proxy.Server(b) {
			t.Fatalf("named pick: %v", s)
		}
	}
	if s := r.Pick(calcKey, "nope"); s != nil {
		t.Fatalf("pick of an unknown name: %s", s.Name())
	}
	if s := r.Pick(directory.Key{Exchange: "ex", Topic: "other"}, "a"); s != nil {
		t.Fatalf("pick of a in another topic: %s", s.Name())
	}
	// Named picks do not move the round robin.
	if s := r.Pick(calcKey, ""); s != proxy.Server(a) {
		t.Fatalf("first round-robin pick %s, want a", s.Name())
	}
}

func TestRoutesRemove(t *testing.T) {
	var r proxy.Routes
	a, b, c := newFakeServer("a"), newFakeServer("b"), newFakeServer("c")
	for _, s := range []*fakeServer{a, b, c} {
		if err := r.Add(calcKey, s); err != nil {
			t.Fatal(err)
		}
	}
	r.Remove(calcKey, b)
	if s := r.Pick(calcKey, "b"); s != nil {
		t.Fatal("b is still routed by name")
	}
	for i := 0; i < 10; i++ {
		if s := r.Pick(calcKey, ""); s == proxy.Server(b) {
			t.Fatal("b is still picked by round robin")
		}
	}
	// Removing another server of the same name, or from another key, is a
	// no-op.
	r.Remove(calcKey, newFakeServer("a"))
	r.Remove(directory.Key{Topic: "other"}, a)
	if s := r.Pick(calcKey, "a"); s != proxy.Server(a) {
		t.Fatal("a was removed by a stranger of the same name")
	}
	r.Remove(calcKey, b) // twice: no-op
	r.Remove(calcKey, a)
	r.Remove(calcKey, c)
	if s := r.Pick(calcKey, ""); s != nil {
		t.Fatalf("picked %s from an empty topic", s.Name())
	}
	// The name is free again.
	if err := r.Add(calcKey, newFakeServer("b")); err != nil {
		t.Fatalf("re-add after remove: %v", err)
	}
	if s := r.Pick(calcKey, ""); s == nil || s.Name() != "b" {
		t.Fatalf("pick after re-add: %v", s)
	}
}

func TestRoutesDuplicate(t *testing.T) {
	var r proxy.Routes
	first := newFakeServer("a")
	if err := r.Add(calcKey, first); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(calcKey, newFakeServer("a")); !errors.Is(err, proxy.ErrDuplicate) {
		t.Fatalf("duplicate name: %v, want ErrDuplicate", err)
	}
	if err := r.Add(calcKey, first); !errors.Is(err, proxy.ErrDuplicate) {
		t.Fatalf("same server twice: %v, want ErrDuplicate", err)
	}
	// The same name in another topic or exchange is fine.
	if err := r.Add(directory.Key{Exchange: "ex", Topic: "other"}, newFakeServer("a")); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(directory.Key{Exchange: "ex2", Topic: "calc"}, newFakeServer("a")); err != nil {
		t.Fatal(err)
	}
	// The failed Adds changed nothing.
	for i := 0; i < 3; i++ {
		if s := r.Pick(calcKey, ""); s != proxy.Server(first) {
			t.Fatalf("pick %d: %v", i, s)
		}
	}
}

// TestRoutesConcurrent: picks never see a half-updated table while servers
// come and go (run with -race).
func TestRoutesConcurrent(t *testing.T) {
	var r proxy.Routes
	stable := newFakeServer("stable")
	if err := r.Add(calcKey, stable); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if r.Pick(calcKey, "") == nil || r.Pick(calcKey, "stable") != proxy.Server(stable) {
					errs <- fmt.Errorf("pick lost the stable server")
					return
				}
			}
		}()
	}
	for i := 0; i < 2000; i++ {
		s := newFakeServer(fmt.Sprintf("s%d", i%7))
		if err := r.Add(calcKey, s); err != nil {
			t.Fatal(err)
		}
		r.Remove(calcKey, s)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
