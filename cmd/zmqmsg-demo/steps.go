package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/zmqmsg/zmqmsg"
)

// demo is what the steps of run share: node A serves the calculator, node
// B calls it through calc.
type demo struct {
	ctx  context.Context
	w    io.Writer
	a, b *zmqmsg.Transport
	calc *zmqmsg.Client
	led  *ledger
}

// wait waits up to 10s each for n recorded casts and returns how many
// arrived.
func (l *ledger) wait(n int) int {
	for i := range n {
		select {
		case <-l.got:
		case <-time.After(10 * time.Second):
			return i
		}
	}
	return n
}

// last returns the last value server recorded.
func (l *ledger) last(server string) int {
	e := l.entries[server]
	return e[len(e)-1]
}

func (d *demo) roundRobin() error {
	seen := map[string]int{}
	for i := 1; i <= 6; i++ {
		var r Result
		t0 := time.Now()
		if err := call(d.ctx, d.calc, "add", Pair{i, 10 * i}, &r); err != nil {
			return err
		}
		lat := time.Since(t0)
		if r.Value != 11*i {
			return fmt.Errorf("add(%d, %d) = %d, want %d", i, 10*i, r.Value, 11*i)
		}
		seen[r.Server]++
		row(d.w, fmt.Sprintf("add(%d, %d) = %d", i, 10*i, r.Value), "answered by "+r.Server, lat)
	}
	if seen["calc-1"] != 3 || seen["calc-2"] != 3 {
		return fmt.Errorf("round robin: answers per server %v, want 3 each", seen)
	}
	return nil
}

func (d *demo) namedServer() error {
	var r Result
	t0 := time.Now()
	named := d.b.Client(zmqmsg.Target{Topic: topic, Server: "calc-2"})
	if err := call(d.ctx, named, "div", Pair{84, 2}, &r); err != nil {
		return err
	}
	lat := time.Since(t0)
	if r.Server != "calc-2" || r.Value != 42 {
		return fmt.Errorf("div(84, 2) on calc-2 = %+v, want 42 from calc-2", r)
	}
	row(d.w, fmt.Sprintf("div(84, 2) = %d", r.Value), "Target.Server=calc-2, answered by "+r.Server, lat)
	return nil
}

func (d *demo) failures() error {
	// A handler's error comes back as a *RemoteError.
	t0 := time.Now()
	err := call(d.ctx, d.calc, "div", Pair{1, 0}, nil)
	lat := time.Since(t0)
	var re *zmqmsg.RemoteError
	if !errors.As(err, &re) || re.Type != "ZeroDivisionError" {
		return fmt.Errorf("div(1, 0): got %v, want a RemoteError of type ZeroDivisionError", err)
	}
	row(d.w, "div(1, 0)", fmt.Sprintf("*zmqmsg.RemoteError Type=%s Message=%q", re.Type, re.Message), lat)

	// An unknown method.
	t0 = time.Now()
	err = call(d.ctx, d.calc, "sqrt", 2, nil)
	lat = time.Since(t0)
	if !errors.Is(err, zmqmsg.ErrNoSuchMethod) || !errors.As(err, &re) {
		return fmt.Errorf("sqrt: got %v, want ErrNoSuchMethod", err)
	}
	row(d.w, "sqrt(2)", fmt.Sprintf("ErrNoSuchMethod (RemoteError Type=%s)", re.Type), lat)

	// The caller's deadline passes while the handler works; the
	// handler's ctx ends at the same deadline.
	short, cancel := context.WithTimeout(d.ctx, 100*time.Millisecond)
	t0 = time.Now()
	err = d.calc.Call(short, "slow", SlowArgs{Work: 5 * time.Second}, nil)
	lat = time.Since(t0)
	cancel()
	if !errors.Is(err, zmqmsg.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("slow(5s) with a 100ms deadline: got %v, want ErrTimeout", err)
	}
	row(d.w, "slow(5s), 100ms deadline", "ErrTimeout (matches context.DeadlineExceeded)", lat)

	// Nobody serves this topic: the call waits Config.WaitForServers
	// (default 2s) for a server to appear, then gives up.
	t0 = time.Now()
	err = call(d.ctx, d.b.Client(zmqmsg.Target{Topic: "nobody-home"}), "add", Pair{1, 1}, nil)
	lat = time.Since(t0)
	if !errors.Is(err, zmqmsg.ErrNoServers) {
		return fmt.Errorf("call to an unserved topic: got %v, want ErrNoServers", err)
	}
	row(d.w, `add on topic "nobody-home"`, "ErrNoServers (after Config.WaitForServers)", lat)
	return nil
}

func (d *demo) casts() error {
	for i := 1; i <= 6; i++ {
		castCtx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
		t0 := time.Now()
		err := d.calc.Cast(castCtx, "record", i)
		lat := time.Since(t0)
		cancel()
		if err != nil {
			return fmt.Errorf("cast %d: %w", i, err)
		}
		row(d.w, fmt.Sprintf("record(%d)", i), "acknowledged", lat)
	}
	if got := d.led.wait(6); got < 6 {
		return fmt.Errorf("only %d of 6 acknowledged casts ran", got)
	}
	d.led.mu.Lock()
	fmt.Fprintf(d.w, "  ran on calc-1: %v, on calc-2: %v (round robin; each exactly once)\n", d.led.entries["calc-1"], d.led.entries["calc-2"])
	ran := len(d.led.entries["calc-1"]) + len(d.led.entries["calc-2"])
	d.led.mu.Unlock()
	if ran != 6 {
		return fmt.Errorf("6 casts ran %d times", ran)
	}
	return nil
}

func (d *demo) directCasts() error {
	direct := d.b.Client(zmqmsg.Target{Topic: topic, Server: "calc-1"}, zmqmsg.DirectCast())
	for i := 101; i <= 105; i++ {
		if err := direct.Cast(d.ctx, "record", i); err != nil {
			return fmt.Errorf("direct cast %d: %w", i, err)
		}
	}
	if got := d.led.wait(5); got < 5 {
		return fmt.Errorf("only %d of 5 direct casts ran", got)
	}
	d.led.mu.Lock()
	fmt.Fprintf(d.w, "  calc-1 ran, in order: %v\n", d.led.entries["calc-1"][3:])
	d.led.mu.Unlock()
	return nil
}

func (d *demo) fanout() error {
	fan := d.b.Client(zmqmsg.Target{Topic: topic, Fanout: true})
	t0 := time.Now()
	if err := fan.Cast(d.ctx, "record", 999); err != nil {
		return fmt.Errorf("fanout: %w", err)
	}
	if got := d.led.wait(2); got < 2 {
		return fmt.Errorf("the fanout reached %d of 2 servers", got)
	}
	d.led.mu.Lock()
	fmt.Fprintf(d.w, "  record(999) to every server in %s: calc-1 last got %d, calc-2 last got %d\n",
		ms(time.Since(t0)), d.led.last("calc-1"), d.led.last("calc-2"))
	d.led.mu.Unlock()
	return nil
}

func (d *demo) stats() error {
	sa, sb := d.a.Stats(), d.b.Stats()
	printStats(d.w, sa, sb)
	if sa.MalformedFrames+sb.MalformedFrames+sa.WrongKind+sb.WrongKind != 0 {
		return fmt.Errorf("malformed or misrouted frames on loopback: A %+v, B %+v", sa, sb)
	}
	if sb.PendingCalls != 0 {
		return fmt.Errorf("node B has %d pending calls after the demo", sb.PendingCalls)
	}
	return nil
}
