package zmqmsg

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// held serves "wait" on tr: each call blocks until released (or its ctx
// ends), and says when it started.
func held(t *testing.T, tr *Transport, topic string) (entered chan struct{}, release chan struct{}) {
	entered, release = make(chan struct{}, 1), make(chan struct{})
	serve(t, tr, Target{Topic: topic}, Endpoints{"wait": func(ctx context.Context, _ Args) (any, error) {
		entered <- struct{}{}
		select {
		case <-release:
			return "done", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	return entered, release
}

// A handler that runs for many heartbeat intervals is never taken for
// lost: its server's heartbeats keep the call alive, and its answer comes.
func TestMonitorSlowServerNeverTrips(t *testing.T) {
	dir := newDir(t)
	srv := newNode(t, dir)
	entered, release := held(t, srv, "mon-slow")
	cl := newNode(t, dir)
	c := cl.Client(Target{Topic: "mon-slow"}, MonitorEvery(MinMonitorInterval))
	ctx := testCtx(t, 30*time.Second)
	done := make(chan error, 1)
	var got string
	go func() { done <- c.Call(ctx, "wait", nil, &got) }()
	<-entered
	// Ten intervals: five times the silence that would end the call.
	testutil.WaitFor(t, 10*time.Second, "ten heartbeats", func() bool { return cl.Stats().HeartbeatsReceived >= 10 })
	close(release)
	if err := <-done; err != nil || got != "done" {
		t.Fatalf("monitored slow call: %q, %v", got, err)
	}
	// Many short monitored calls: no heartbeat ever follows its answer.
	for range 200 {
		if err := c.Call(ctx, "wait", nil, nil); err != nil { // released: returns at once
			t.Fatalf("short monitored call: %v", err)
		}
		<-entered
	}
	if st := cl.Stats(); st.LateReplies != 0 || st.UnmatchedReplies != 0 || st.ServersLost != 0 {
		t.Errorf("late %d, unmatched %d, lost %d; want 0", st.LateReplies, st.UnmatchedReplies, st.ServersLost)
	}
}

// A server that has sent a heartbeat and then goes silent, its connection
// still up (a process frozen, or restarted behind the same address), fails
// the call with ErrServerLost long before its deadline; a CANCEL goes out.
func TestMonitorSilentServerIsLost(t *testing.T) {
	dir := newDir(t)
	startRawNode(t, dir, directory.Key{Topic: "mon-silent"}, "frozen", envelope.KindCall, func(m *envelope.Message) envelope.Message {
		if m.Meta[MetaMonitor] != "20" {
			t.Errorf("monitor meta %q, want \"20\"", m.Meta[MetaMonitor])
		}
		return envelope.Message{Kind: envelope.KindAck, ID: m.ID, Code: envelope.CodeInProgress}
	})
	cl := newNode(t, dir)
	c := cl.Client(Target{Topic: "mon-silent"}, MonitorEvery(20*time.Millisecond))
	ctx := testCtx(t, 60*time.Second)
	err := c.Call(ctx, "wait", nil, nil)
	if !errors.Is(err, ErrServerLost) || ctx.Err() != nil {
		t.Fatalf("call to a silent server: %v (ctx %v), want ErrServerLost before the deadline", err, ctx.Err())
	}
	if st := cl.Stats(); st.ServersLost != 1 || st.CancelsSent != 1 || st.Timeouts != 0 {
		t.Errorf("stats: lost %d, cancels %d, timeouts %d; want 1, 1, 0", st.ServersLost, st.CancelsSent, st.Timeouts)
	}
}

// A server older than the monitor ignores the request for heartbeats and
// sends none: the call is never armed, and its late reply is still its
// answer.
func TestMonitorOldServerNeverTrips(t *testing.T) {
	dir := newDir(t)
	startRawNode(t, dir, directory.Key{Topic: "mon-old"}, "old", envelope.KindCall, func(m *envelope.Message) envelope.Message {
		// Slow: five intervals, as a server that predates the monitor.
		<-time.After(100 * time.Millisecond)
		return envelope.Message{Kind: envelope.KindReply, ID: m.ID, Payload: []byte(`"old"`)}
	})
	c := newNode(t, dir).Client(Target{Topic: "mon-old"}, MonitorEvery(20*time.Millisecond))
	var got string
	if err := c.Call(testCtx(t, 30*time.Second), "wait", nil, &got); err != nil || got != "old" {
		t.Fatalf("monitored call to an older server: %q, %v", got, err)
	}
}

// Through a node proxy daemon the member's heartbeats reach the caller:
// the call outlives many intervals.
func TestMonitorThroughTheDaemon(t *testing.T) {
	d := newDaemonNode(t)
	entered, release := held(t, d.members[0], "mon-daemon")
	c := d.client.Client(Target{Topic: "mon-daemon"}, MonitorEvery(MinMonitorInterval))
	done := make(chan error, 1)
	go func() { done <- c.Call(testCtx(t, 30*time.Second), "wait", nil, nil) }()
	<-entered
	testutil.WaitFor(t, 10*time.Second, "ten heartbeats", func() bool { return d.client.Stats().HeartbeatsReceived >= 10 })
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("monitored call through the daemon: %v", err)
	}
}
