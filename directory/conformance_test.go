package directory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// The behaviour every Directory shares, run against Memory (real clock)
// and Redis. Memory's fake-clock tests in memory_test.go cover timing
// details that need a controlled clock.

// waitFor polls cond every 10 ms until it holds, or fails the test after
// timeout. Only for conditions without an event to wait on.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// waitSignal waits for a signal on ch or fails after timeout.
func waitSignal(t testing.TB, ch <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("no signal after %v: %s", timeout, what)
	}
}

// waitServers waits (on watch signals and a 50 ms re-check) until d's
// Lookup of k returns want, or fails after timeout.
func waitServers(t testing.TB, d Directory, k Key, want []string, timeout time.Duration) {
	t.Helper()
	ch, stop := d.Watch(k)
	defer stop()
	deadline := time.After(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var got []string
	for {
		es, err := d.Lookup(context.Background(), k)
		if err == nil {
			got = got[:0]
			for _, e := range es {
				got = append(got, e.Node.ID()+"/"+e.Server)
			}
			if equal(got, want) {
				return
			}
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-deadline:
			t.Fatalf("after %v: Lookup(%v) = %v, %v; want %v", timeout, k, got, err, want)
		}
	}
}

type dirFactory func(t *testing.T) Directory

func runConformance(t *testing.T, newDir dirFactory) {
	t.Run("Methods", func(t *testing.T) {
		d := newDir(t)
		ctx := t.Context()
		r := reg("s1", "10.0.0.1", 9501)
		r.Methods = []string{"add", "sub"}
		if err := d.Register(ctx, r, time.Minute); err != nil {
			t.Fatal(err)
		}
		ch, stop := d.Watch(key)
		defer stop()
		es, err := d.Lookup(ctx, key)
		if err != nil || len(es) != 1 || !es[0].Registration.Equal(r) {
			t.Fatalf("Lookup = %+v, %v; want the methods published", es, err)
		}
		// A server that offers other methods after a restart is a change.
		r.Methods = []string{"add", "mul", "sub"}
		if err := d.Register(ctx, r, time.Minute); err != nil {
			t.Fatal(err)
		}
		waitSignal(t, ch, 5*time.Second, "a change of methods")
		waitFor(t, 5*time.Second, "the new methods", func() bool {
			es, err := d.Lookup(ctx, key)
			return err == nil && len(es) == 1 && es[0].Registration.Equal(r)
		})
		// A Deregister names the node, whatever the methods.
		plain := r
		plain.Methods = nil
		if err := d.Deregister(ctx, plain); err != nil {
			t.Fatal(err)
		}
		if got := servers(t, d, key); len(got) != 0 {
			t.Fatalf("after Deregister: %v", got)
		}
	})
	t.Run("RegisterLookupDeregister", func(t *testing.T) {
		d := newDir(t)
		ctx := t.Context()
		r := reg("s1", "10.0.0.1", 9501)
		r.Node.FanoutPort, r.Node.NotifyPort, r.Node.CastPort = 9502, 9503, 9504
		if got := servers(t, d, key); len(got) != 0 {
			t.Fatalf("empty directory: got %v", got)
		}
		before := time.Now()
		if err := d.Register(ctx, r, time.Minute); err != nil {
			t.Fatal(err)
		}
		es, err := d.Lookup(ctx, key)
		if err != nil || len(es) != 1 {
			t.Fatalf("Lookup = %v, %v; want one entry", es, err)
		}
		if !es[0].Registration.Equal(r) {
			t.Fatalf("entry = %+v, want %+v", es[0].Registration, r)
		}
		// Redis converts expiries from its clock: allow some skew.
		if exp := es[0].Expires; exp.Before(before.Add(time.Minute-time.Second)) || exp.After(time.Now().Add(time.Minute+time.Second)) {
			t.Fatalf("Expires = %v, want about %v", exp, before.Add(time.Minute))
		}
		if got := servers(t, d, Key{Exchange: "other", Topic: "compute"}); len(got) != 0 {
			t.Fatalf("other exchange: got %v", got)
		}
		stale := r
		stale.Node.CallPort = 1
		if err := d.Deregister(ctx, stale); err != nil {
			t.Fatal(err)
		}
		if got := servers(t, d, key); len(got) != 1 {
			t.Fatalf("after a Deregister naming another node: got %v", got)
		}
		if err := d.Deregister(ctx, r); err != nil {
			t.Fatal(err)
		}
		if got := servers(t, d, key); len(got) != 0 {
			t.Fatalf("after Deregister: got %v", got)
		}
		if err := d.Deregister(ctx, r); err != nil {
			t.Fatalf("Deregister of an absent entry: %v", err)
		}
	})

	t.Run("Sorted", func(t *testing.T) {
		d := newDir(t)
		for _, r := range []Registration{
			reg("b", "10.0.0.2", 9501),
			reg("c", "10.0.0.1", 9502),
			reg("z", "10.0.0.1", 9501),
			reg("a", "10.0.0.1", 9501),
		} {
			if err := d.Register(t.Context(), r, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		want := []string{"10.0.0.1:9501/a", "10.0.0.1:9501/z", "10.0.0.1:9502/c", "10.0.0.2:9501/b"}
		if got := servers(t, d, key); !equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})

	t.Run("RefreshAndMove", func(t *testing.T) {
		d := newDir(t)
		ch, stop := d.Watch(key)
		defer stop()
		r := reg("s1", "10.0.0.1", 9501)
		if err := d.Register(t.Context(), r, time.Minute); err != nil {
			t.Fatal(err)
		}
		waitSignal(t, ch, 5*time.Second, "new server")
		es, _ := d.Lookup(t.Context(), key)
		if err := d.Register(t.Context(), r, 10*time.Minute); err != nil {
			t.Fatal(err)
		}
		es2, _ := d.Lookup(t.Context(), key)
		if len(es) != 1 || len(es2) != 1 || es2[0].Expires.Sub(es[0].Expires) < 8*time.Minute {
			t.Fatalf("refresh did not extend the expiry: %v then %v", es, es2)
		}
		r.Node.Host = "10.0.0.9"
		if err := d.Register(t.Context(), r, time.Minute); err != nil {
			t.Fatal(err)
		}
		waitSignal(t, ch, 5*time.Second, "moved server")
		if got := servers(t, d, key); !equal(got, []string{"10.0.0.9:9501/s1"}) {
			t.Fatalf("got %v", got)
		}
		if err := d.Deregister(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		waitSignal(t, ch, 5*time.Second, "deregistered server")
	})

	t.Run("Expiry", func(t *testing.T) {
		d := newDir(t)
		ch, stop := d.Watch(key)
		defer stop()
		if err := d.Register(t.Context(), reg("s1", "10.0.0.1", 9501), 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		waitServers(t, d, key, []string{}, 5*time.Second)
		signalled(ch) // a signal for the new server, maybe the expiry too
	})

	t.Run("Invalid", func(t *testing.T) {
		d := newDir(t)
		good := Registration{Key: Key{Topic: "t"}, Server: "s", Node: Node{Host: "h", CallPort: 1}}
		for _, tt := range []struct {
			name   string
			change func(*Registration)
			ttl    time.Duration
		}{
			{"empty topic", func(r *Registration) { r.Topic = "" }, time.Second},
			{"empty server", func(r *Registration) { r.Server = "" }, time.Second},
			{"empty host", func(r *Registration) { r.Node.Host = "" }, time.Second},
			{"call port 0", func(r *Registration) { r.Node.CallPort = 0 }, time.Second},
			{"cast port too big", func(r *Registration) { r.Node.CastPort = 65536 }, time.Second},
			{"zero ttl", func(*Registration) {}, 0},
			{"negative ttl", func(*Registration) {}, -time.Second},
		} {
			r := good
			tt.change(&r)
			if err := d.Register(t.Context(), r, tt.ttl); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: Register = %v, want ErrInvalid", tt.name, err)
			}
		}
		if got := servers(t, d, good.Key); len(got) != 0 {
			t.Fatalf("invalid registrations stored: %v", got)
		}
	})

	t.Run("Closed", func(t *testing.T) {
		d := newDir(t)
		ctx := t.Context()
		r := reg("s1", "10.0.0.1", 9501)
		// Watch a key with no registration: a Redis directory fills its
		// cache of a watched key in the background, and a fill that finds
		// entries may signal (the contract allows spurious signals). An
		// empty key changes nothing, so any signal would be Close's.
		ch, stop := d.Watch(key)
		defer stop()
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if signalled(ch) {
			t.Fatal("Close signalled or closed a watcher channel")
		}
		if err := d.Register(ctx, r, time.Minute); !errors.Is(err, ErrClosed) {
			t.Errorf("Register = %v", err)
		}
		if err := d.Deregister(ctx, r); !errors.Is(err, ErrClosed) {
			t.Errorf("Deregister = %v", err)
		}
		if _, err := d.Lookup(ctx, key); !errors.Is(err, ErrClosed) {
			t.Errorf("Lookup = %v", err)
		}
		if l, ok := d.(Lister); ok {
			if _, err := l.List(ctx); !errors.Is(err, ErrClosed) {
				t.Errorf("List = %v", err)
			}
		}
		ch2, stop2 := d.Watch(key)
		stop2()
		if ch2 == nil || signalled(ch2) {
			t.Error("Watch after Close must return a quiet, non-nil channel")
		}
	})

	t.Run("ContextDone", func(t *testing.T) {
		d := newDir(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		r := reg("s1", "10.0.0.1", 9501)
		if err := d.Register(ctx, r, time.Minute); !errors.Is(err, context.Canceled) {
			t.Fatalf("Register = %v", err)
		}
		if got := servers(t, d, key); len(got) != 0 {
			t.Fatalf("Register with a done ctx stored %v", got)
		}
		if err := d.Register(t.Context(), r, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := d.Deregister(ctx, r); !errors.Is(err, context.Canceled) {
			t.Fatalf("Deregister = %v", err)
		}
		if got := servers(t, d, key); len(got) != 1 {
			t.Fatalf("Deregister with a done ctx removed the entry")
		}
		if _, err := d.Lookup(ctx, key); !errors.Is(err, context.Canceled) {
			t.Fatalf("Lookup = %v", err)
		}
		if l, ok := d.(Lister); ok {
			if _, err := l.List(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("List = %v", err)
			}
		}
	})

	t.Run("List", func(t *testing.T) {
		d := newDir(t)
		l, ok := d.(Lister)
		if !ok {
			t.Skip("not a Lister")
		}
		k2 := Key{Topic: "{odd}/topic%"}
		for _, r := range []Registration{
			reg("b", "10.0.0.1", 9501),
			{Key: k2, Server: "a", Node: Node{Host: "10.0.0.1", CallPort: 1}},
			reg("a", "10.0.0.1", 9501),
		} {
			if err := d.Register(t.Context(), r, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		es, err := l.List(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range es {
			got = append(got, e.Key.String()+"@"+e.Node.ID()+"/"+e.Server)
		}
		want := []string{"(default)/{odd}/topic%@10.0.0.1:1/a", "ex/compute@10.0.0.1:9501/a", "ex/compute@10.0.0.1:9501/b"}
		if !equal(got, want) {
			t.Fatalf("List = %v, want %v", got, want)
		}
		if err := d.Deregister(t.Context(), es[0].Registration); err != nil {
			t.Fatal(err)
		}
		if es, err := l.List(t.Context()); err != nil || len(es) != 2 {
			t.Fatalf("List after Deregister = %v, %v", es, err)
		}
	})

	t.Run("Version", func(t *testing.T) { versionConformance(t, newDir(t)) })

	t.Run("Concurrent", func(t *testing.T) {
		d := newDir(t)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				ch, stop := d.Watch(key)
				defer stop()
				for i := range 20 {
					r := reg(fmt.Sprintf("s%d", i%4), "10.0.0.1", 9000+g)
					if err := d.Register(t.Context(), r, time.Minute); err != nil {
						t.Error(err)
						return
					}
					if _, err := d.Lookup(t.Context(), key); err != nil {
						t.Error(err)
						return
					}
					signalled(ch)
					if i%3 == 0 {
						if err := d.Deregister(t.Context(), r); err != nil {
							t.Error(err)
							return
						}
					}
				}
			})
		}
		wg.Wait()
	})
}

// versionConformance checks Versioner: every change gives k a version
// never seen before, a plain refresh keeps it.
func versionConformance(t *testing.T, d Directory) {
	v, ok := d.(Versioner)
	if !ok {
		t.Skip("not a Versioner")
	}
	ctx := t.Context()
	seen := map[uint64]string{}
	check := func(what string, same bool) uint64 {
		t.Helper()
		got, err := v.Version(ctx, key)
		if err != nil {
			t.Fatalf("Version %s: %v", what, err)
		}
		if prev, dup := seen[got]; dup && !same {
			t.Fatalf("Version %s = %d, as %s", what, got, prev)
		}
		seen[got] = what
		return got
	}
	check("of an unused key", false)
	r := reg("s1", "10.0.0.1", 9501)
	if err := d.Register(ctx, r, time.Minute); err != nil {
		t.Fatal(err)
	}
	v1 := check("after Register", false)
	if err := d.Register(ctx, r, time.Minute); err != nil {
		t.Fatal(err)
	}
	if v2 := check("after a plain refresh", true); v2 != v1 {
		t.Fatalf("Version after a plain refresh = %d, want %d", v2, v1)
	}
	if err := d.Register(ctx, reg("s2", "10.0.0.2", 9501), 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	v3 := check("after a second Register", false)
	waitFor(t, 5*time.Second, "a new version after s2 expired", func() bool {
		got, err := v.Version(ctx, key)
		return err == nil && got != v3
	})
	check("after an expiry", false)
	if err := d.Deregister(ctx, r); err != nil {
		t.Fatal(err)
	}
	check("after the last Deregister", false)
	if err := d.Register(ctx, r, time.Minute); err != nil {
		t.Fatal(err)
	}
	check("after a new Register", false)
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := v.Version(done, key); !errors.Is(err, context.Canceled) {
		t.Fatalf("Version with a done ctx = %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Version(ctx, key); !errors.Is(err, ErrClosed) {
		t.Fatalf("Version after Close = %v", err)
	}
}

func TestConformanceMemory(t *testing.T) {
	runConformance(t, func(t *testing.T) Directory {
		m := NewMemory()
		t.Cleanup(func() { m.Close() })
		return m
	})
}
