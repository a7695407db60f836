package zmqmsg

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/directory"
)

// scatter is a topic served by four quick servers on two nodes, one that
// answers only when released, and one registered on a node that is gone.
type scatter struct {
	client  *Client
	entered chan struct{} // the slow server has its call
}

func newScatter(t *testing.T) *scatter {
	t.Helper()
	dir := newDir(t)
	a, b := newNode(t, dir), newNode(t, dir)
	sc := &scatter{entered: make(chan struct{}, 8)}
	name := func(s string) Endpoints {
		return Endpoints{"who": func(context.Context, Args) (any, error) { return s, nil }}
	}
	serve(t, a, Target{Topic: "sg", Server: "a1"}, name("a1"))
	serve(t, a, Target{Topic: "sg", Server: "a2"}, name("a2"))
	serve(t, b, Target{Topic: "sg", Server: "b1"}, name("b1"))
	serve(t, b, Target{Topic: "sg", Server: "b2"}, name("b2"))
	release := make(chan struct{})
	serve(t, a, Target{Topic: "sg", Server: "slow"}, Endpoints{"who": func(ctx context.Context, _ Args) (any, error) {
		sc.entered <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return "slow", nil
	}})
	t.Cleanup(func() { close(release) }) // before the servers stop (cleanups run last first)
	gone := directory.Node{Host: "127.0.0.1", CallPort: freePort(t)}
	reg := directory.Registration{Key: directory.Key{Topic: "sg"}, Server: "crashed", Node: gone, Methods: []string{"who"}}
	if err := dir.Register(context.Background(), reg, time.Minute); err != nil {
		t.Fatal(err)
	}
	sc.client = newNode(t, dir).Client(Target{Topic: "sg"})
	return sc
}

func byServer(rs []ServerReply) map[string]ServerReply {
	m := map[string]ServerReply{}
	for _, r := range rs {
		m[r.Server] = r
	}
	return m
}

// Every answer arrives; the slow server is reported by the stall timer,
// the crashed node as unreached, and nothing waits for the deadline.
func TestCallAllReportsEveryServer(t *testing.T) {
	sc := newScatter(t)
	ctx := testCtx(t, 60*time.Second)
	rs, err := sc.client.CallAll(ctx, "who", nil, StallAfter(time.Second))
	if err != nil {
		t.Fatalf("CallAll: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("CallAll returned only at the deadline")
	}
	if len(rs) != 6 {
		t.Fatalf("%d answers, want 6: %+v", len(rs), rs)
	}
	got := byServer(rs)
	for _, s := range []string{"a1", "a2", "b1", "b2"} {
		var who string
		if err := got[s].Decode(&who); err != nil || who != s {
			t.Errorf("server %s: reply %q, %v", s, who, err)
		}
	}
	if err := got["slow"].Err; !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "stalled") {
		t.Errorf("slow server: %v, want the stall's ErrTimeout", err)
	}
	if err := got["crashed"].Err; !errors.Is(err, ErrUnreached) {
		t.Errorf("crashed node's server: %v, want ErrUnreached", err)
	}
	// Answers first, in the order they came; the silent server last.
	if last := rs[len(rs)-1]; last.Server != "slow" {
		t.Errorf("last reported %s, want the silent server", last.Server)
	}
	if rs[0].Node == "" || rs[0].Elapsed <= 0 {
		t.Errorf("answer without its node or time: %+v", rs[0])
	}
}

func TestCallAllMaxReplies(t *testing.T) {
	sc := newScatter(t)
	rs, err := sc.client.CallAll(testCtx(t, 60*time.Second), "who", nil, MaxReplies(2))
	if err != nil {
		t.Fatalf("CallAll: %v", err)
	}
	replies, cancelled := 0, 0
	for _, r := range rs {
		switch {
		case r.Err == nil:
			replies++
		case errors.Is(r.Err, context.Canceled):
			cancelled++
		}
	}
	if replies < 2 || replies+cancelled+1 < len(rs) || len(rs) != 6 {
		t.Fatalf("%d replies, %d cancelled of %d: %+v", replies, cancelled, len(rs), rs)
	}
	if err := byServer(rs)["slow"].Err; !errors.Is(err, context.Canceled) {
		t.Fatalf("slow server: %v, want cancelled (MaxReplies reached)", err)
	}
}

// The stream hands over the first answer while the slow server still has
// its call; stopping cancels the rest.
func TestCallAllFuncStreams(t *testing.T) {
	sc := newScatter(t)
	ctx := testCtx(t, 60*time.Second)
	var seen []ServerReply
	stopped := false
	err := sc.client.CallAllFunc(ctx, "who", nil, func(r ServerReply) bool {
		seen = append(seen, r)
		if r.Err != nil || stopped {
			return true
		}
		select { // the first reply: the slow server is still running its call
		case <-sc.entered:
		case <-ctx.Done():
			t.Error("the slow server never got its call")
		}
		stopped = true
		return false
	})
	if err != nil {
		t.Fatalf("CallAllFunc: %v", err)
	}
	cancelled := 0
	for _, r := range seen {
		if errors.Is(r.Err, context.Canceled) {
			cancelled++
		}
	}
	if len(seen) != 6 || cancelled == 0 || !errors.Is(byServer(seen)["slow"].Err, context.Canceled) {
		t.Fatalf("saw %d answers, %d cancelled: %+v", len(seen), cancelled, seen)
	}
}

func TestCallAllRefusesWhatCannotStart(t *testing.T) {
	sc := newScatter(t)
	ctx := testCtx(t, 10*time.Second)
	fan := sc.client.t.Client(Target{Topic: "sg", Fanout: true})
	if _, err := fan.CallAll(ctx, "who", nil); !errors.Is(err, ErrInvalidTarget) {
		t.Fatalf("fanout target: %v, want ErrInvalidTarget", err)
	}
	short := testCtx(t, 300*time.Millisecond)
	if _, err := sc.client.t.Client(Target{Topic: "nobody-serves-this"}).CallAll(short, "who", nil); !errors.Is(err, ErrNoServers) && !errors.Is(err, ErrTimeout) {
		t.Fatalf("no servers: %v, want ErrNoServers or ErrTimeout", err)
	}
	if err := sc.client.CallAllFunc(ctx, "who", nil, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("nil callback: %v, want ErrInvalidConfig", err)
	}
}
