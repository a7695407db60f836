package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/actors/proxy"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
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

// TestRoutesChangeWhileRouting: servers come and go (Attach, Detach,
// Forget from other goroutines) while the loop routes calls to a stable
// one; every call reaches it, and so does round robin once the others are
// forgotten (run with -race).
func TestRoutesChangeWhileRouting(t *testing.T) {
	p, zctx := startProxy(t)
	stable := newFakeServer("stable")
	attach(t, p, calcKey, stable)
	c := newClient(t, zctx, p.Endpoint())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				s := newFakeServer(fmt.Sprintf("g%d-%d", g, i%7))
				if err := p.Attach(ctx, calcKey, s); err != nil {
					errs <- err
					return
				}
				if err := p.Detach(ctx, calcKey, s); err != nil {
					errs <- err
					return
				}
				p.Forget(calcKey, s)
			}
		}()
	}
	for i := 0; i < 50; i++ {
		id := envelope.NewID()
		c.send(call(t, envelope.Message{ID: id, Exchange: calcKey.Exchange, Topic: calcKey.Topic, Server: "stable"}))
		req := stable.next(t, 5*time.Second)
		if req == nil || req.Msg.ID != id {
			t.Fatalf("call %d did not reach the stable server: %v", i, req)
		}
		answer(t, p, req, nil)
		if rep := c.reply(); rep.ID != id {
			t.Fatalf("call %d: reply %+v", i, rep)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	roundTrip(t, p, c, stable)
	roundTrip(t, p, c, stable)
}
