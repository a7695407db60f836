package zmqmsg

import (
	"context"
	"errors"
	"fmt"
	"github.com/zmqmsg/zmqmsg/internal/config"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// Issue 10, item 2: an acknowledged cast's ACK carries its handler's
// outcome, so a typo in a method name or a failing handler is an error for
// the caster, not a silent success.

// failing returns endpoints whose methods fail, counting their runs.
func failing(runs *atomic.Int64) Endpoints {
	return Endpoints{
		"typed": func(ctx context.Context, a Args) (any, error) {
			runs.Add(1)
			return nil, &quotaError{left: 0}
		},
		"plain": func(ctx context.Context, a Args) (any, error) {
			runs.Add(1)
			return nil, errors.New("disk full")
		},
		"boom": func(ctx context.Context, a Args) (any, error) {
			runs.Add(1)
			panic("boom")
		},
		"fine": func(ctx context.Context, a Args) (any, error) {
			runs.Add(1)
			return nil, nil
		},
	}
}

// A cast to a method the server does not have fails with a *RemoteError
// matching ErrNoSuchMethod; a handler's error or panic comes back as the
// *RemoteError a call would get. On worker and on inline servers; the
// server still counts them (CastErrors).
func TestCastFailureReachesCaster(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) {
			dir := newDir(t)
			serverNode := newNode(t, dir)
			var runs atomic.Int64
			var opts []ServeOption
			if inline {
				opts = append(opts, Inline())
			}
			s, err := serverNode.Serve(Target{Topic: "jobs"}, failing(&runs), opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Stop(context.Background()) })
			c := newNode(t, dir).Client(Target{Topic: "jobs"})
			ctx := testCtx(t, 10*time.Second)

			for _, tc := range []struct {
				method, typ, msg string
			}{
				{"nosuch", "NoSuchMethod", `zmqmsg: no such method: "nosuch"`},
				{"typed", "QuotaExceeded", "quota exceeded, 0 left"},
				{"plain", "*errors.errorString", "disk full"},
				{"boom", "panic", "boom"},
			} {
				err := c.Cast(ctx, tc.method, 1)
				var re *RemoteError
				if !errors.As(err, &re) || re.Type != tc.typ || !strings.HasPrefix(re.Message, tc.msg) {
					t.Fatalf("cast to %q: %#v, want a *RemoteError %s: %s", tc.method, err, tc.typ, tc.msg)
				}
				if got, want := errors.Is(err, ErrNoSuchMethod), tc.method == "nosuch"; got != want {
					t.Fatalf("cast to %q: errors.Is(err, ErrNoSuchMethod) = %v", tc.method, got)
				}
			}
			if err := c.Cast(ctx, "fine", 1); err != nil {
				t.Fatalf("a cast whose handler succeeds: %v", err)
			}
			if n := runs.Load(); n != 4 {
				t.Fatalf("handlers ran %d times, want 4", n)
			}
			if st := serverNode.Stats(); st.CastErrors != 4 || st.CastsRun != 5 || st.HandlerPanics != 1 {
				t.Fatalf("server: %d cast errors, %d run, %d panics; want 4, 5, 1", st.CastErrors, st.CastsRun, st.HandlerPanics)
			}
		})
	}
}

// A failed cast whose ACKs are lost is resent to the same server, which
// does not run it again and answers the resend with the same failure.
func TestCastFailureSurvivesLostAck(t *testing.T) {
	dir := newDir(t)
	var drops atomic.Int64
	drops.Store(2)
	serverNode := newNode(t, dir, func(c *Config) {
		config.EditTestHooks(c).DropAck = func(envelope.ID) bool { return drops.Add(-1) >= 0 }
	})
	var runs atomic.Int64
	serve(t, serverNode, Target{Topic: "lossy"}, failing(&runs))
	clientNode := newNode(t, dir, func(c *Config) { c.Acks = AckPolicy{Timeout: 100 * time.Millisecond, Multiplier: 2, Retries: 3} })
	c := clientNode.Client(Target{Topic: "lossy"})
	ctx := testCtx(t, 10*time.Second)
	for _, tc := range []struct{ method, typ string }{{"typed", "QuotaExceeded"}, {"nosuch", "NoSuchMethod"}} {
		drops.Store(2)
		runsBefore, dupBefore := runs.Load(), serverNode.Stats().DuplicateCasts
		err := c.Cast(ctx, tc.method, 1)
		var re *RemoteError
		if !errors.As(err, &re) || re.Type != tc.typ {
			t.Fatalf("cast to %q after 2 lost ACKs: %#v, want a *RemoteError of type %s", tc.method, err, tc.typ)
		}
		if d := serverNode.Stats().DuplicateCasts - dupBefore; d != 2 {
			t.Fatalf("cast to %q: %d resends answered from the de-duplication table, want 2", tc.method, d)
		}
		if tc.method == "typed" {
			if n := runs.Load() - runsBefore; n != 1 {
				t.Fatalf("the handler ran %d times, want 1", n)
			}
			if re.Message != "quota exceeded, 0 left" {
				t.Fatalf("resend answered %q", re.Message)
			}
		}
	}
	if st := clientNode.Stats(); st.CastRetries != 4 || st.CastsNotAcked != 0 || st.CastsResent != 0 {
		t.Fatalf("client: %d retries, %d not acked, %d resent elsewhere; want 4, 0, 0", st.CastRetries, st.CastsNotAcked, st.CastsResent)
	}
}

// A cast to a topic whose server fails it is not sent to another server of
// the topic: the failure is the answer.
func TestCastFailureNotResent(t *testing.T) {
	dir := newDir(t)
	a, b := newNode(t, dir), newNode(t, dir)
	var runsA, runsB atomic.Int64
	serve(t, a, Target{Topic: "two", Server: "a"}, failing(&runsA))
	serve(t, b, Target{Topic: "two", Server: "b"}, failing(&runsB))
	clientNode := newNode(t, dir)
	c := clientNode.Client(Target{Topic: "two"})
	ctx := testCtx(t, 10*time.Second)
	for i, method := range []string{"plain", "boom", "nosuch"} {
		if err := c.Cast(ctx, method, i); !errors.As(err, new(*RemoteError)) {
			t.Fatalf("cast %q: %v, want a *RemoteError", method, err)
		}
		if got := a.Stats().CastsRun + b.Stats().CastsRun; got != uint64(i+1) {
			t.Fatalf("after %d failed casts the servers ran %d", i+1, got)
		}
	}
	if n := runsA.Load() + runsB.Load(); n != 2 {
		t.Fatalf("handlers ran %d times for 2 casts", n)
	}
	if st := clientNode.Stats(); st.CastsResent != 0 || st.Rerouted != 0 || st.CastRetries != 0 {
		t.Fatalf("client: %d resent, %d rerouted, %d retries; want none", st.CastsResent, st.Rerouted, st.CastRetries)
	}
	// One server: the other's handler never ran.
	one := newNode(t, dir).Client(Target{Topic: "two", Server: "a"})
	before := runsB.Load()
	if err := one.Cast(ctx, "typed", 1); !errors.As(err, new(*RemoteError)) {
		t.Fatal(err)
	}
	if runsB.Load() != before {
		t.Fatal("a failed cast to server a ran on server b")
	}
}

// A fanout to a method a server does not have is dropped by that server and
// counted on its node (FanoutsRefused, one per server); the caster's
// fanout succeeds (no per-server confirmation).
func TestFanoutUnknownMethodCounted(t *testing.T) {
	dir := newDir(t)
	a, b := newNode(t, dir), newNode(t, dir)
	rec := newRecorder()
	serve(t, a, Target{Topic: "fan", Server: "a1"}, rec.endpoints("a1"))
	serve(t, a, Target{Topic: "fan", Server: "a2"}, rec.endpoints("a2"))
	serve(t, b, Target{Topic: "fan", Server: "b1"}, rec.endpoints("b1"))
	c := newNode(t, dir).Client(Target{Topic: "fan", Fanout: true})
	ctx := testCtx(t, 10*time.Second)
	if err := c.Cast(ctx, "sqe", 1); err != nil {
		t.Fatalf("fanout to an unknown method: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "each node to count its refused fanouts", func() bool {
		return a.Stats().FanoutsRefused == 2 && b.Stats().FanoutsRefused == 1
	})
	// A known method is not counted.
	if err := c.Cast(ctx, "seq", 2); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 3)
	if ra, rb := a.Stats().FanoutsRefused, b.Stats().FanoutsRefused; ra != 2 || rb != 1 {
		t.Fatalf("refused %d and %d after a good fanout, want 2 and 1", ra, rb)
	}
}

// A direct cast, or a cast sent with acks off, to an unknown method is
// counted on the receiving node (DirectRefused).
func TestUnackedCastUnknownMethodCounted(t *testing.T) {
	dir := newDir(t)
	serverNode := newNode(t, dir)
	var runs atomic.Int64
	serve(t, serverNode, Target{Topic: "direct"}, failing(&runs))
	ctx := testCtx(t, 10*time.Second)
	if err := newNode(t, dir).Client(Target{Topic: "direct"}, DirectCast()).Cast(ctx, "nosuch", 1); err != nil {
		t.Fatalf("direct cast: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "the refused direct cast to be counted", func() bool { return serverNode.Stats().DirectRefused == 1 })
	noAcks := newNode(t, dir, func(c *Config) { c.Acks.Disabled = true })
	if err := noAcks.Client(Target{Topic: "direct"}).Cast(ctx, "nosuch", 1); err != nil {
		t.Fatalf("cast with acks off: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "the refused unacknowledged cast to be counted", func() bool { return serverNode.Stats().DirectRefused == 2 })
	// A handler's own error is not a refusal.
	if err := newNode(t, dir).Client(Target{Topic: "direct"}, DirectCast()).Cast(ctx, "plain", 1); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the direct cast to run", func() bool { return runs.Load() == 1 })
	if st := serverNode.Stats(); st.DirectRefused != 2 || st.FanoutsRefused != 0 {
		t.Fatalf("refused: %d direct, %d fanouts; want 2, 0", st.DirectRefused, st.FanoutsRefused)
	}
}

// Notifications keep their semantics: a listener whose handler fails still
// acknowledges (the failure is counted and logged on its node), so Notify
// succeeds and the notification does not move to another pool member.
func TestNotifyHandlerFailureStillAcked(t *testing.T) {
	dir := newDir(t)
	var runs atomic.Int64
	fail := func(ctx context.Context, n Notification) error {
		runs.Add(1)
		return errors.New("listener broke")
	}
	a, b := newNode(t, dir), newNode(t, dir)
	listen(t, a, []string{"events"}, "pool", fail)
	listen(t, b, []string{"events"}, "pool", fail)
	notifier := newNode(t, dir)
	ctx := testCtx(t, 10*time.Second)
	const n = 6
	for i := 0; i < n; i++ {
		if err := notifier.Notifier("p", "events").Info(ctx, "ev", i); err != nil {
			t.Fatalf("notification %d to failing listeners: %v", i, err)
		}
	}
	if got := runs.Load(); got != n {
		t.Fatalf("listeners ran %d times for %d notifications, want exactly %d", got, n, n)
	}
	if st := notifier.Stats(); st.NotifyFailures != 0 || st.CastRetries != 0 || st.CastsNotAcked != 0 {
		t.Fatalf("notifier: %d failures, %d retries, %d not acked; want none", st.NotifyFailures, st.CastRetries, st.CastsNotAcked)
	}
	if errs := a.Stats().CastErrors + b.Stats().CastErrors; errs != n {
		t.Fatalf("listener nodes counted %d handler errors, want %d", errs, n)
	}
}

// ackNode is a raw ROUTER registered as a node serving key: it answers
// every CAST with the ACK that answer makes of it, and counts them.
type ackNode struct {
	casts atomic.Int64
	stop  chan struct{}
	done  chan struct{}
}

func startAckNode(t *testing.T, dir directory.Directory, key directory.Key, server string, answer func(*envelope.Message)) *ackNode {
	return startRawNode(t, dir, key, server, envelope.KindCast, func(m *envelope.Message) envelope.Message {
		ack := envelope.Message{Kind: envelope.KindAck, ID: m.ID}
		answer(&ack)
		return ack
	})
}

// startRawNode starts a raw ROUTER registered as a node serving key, as a
// foreign or older node would: it answers every message of kind with what
// answer makes of it, and counts them (ackNode.casts).
func startRawNode(t *testing.T, dir directory.Directory, key directory.Key, server string, kind envelope.Kind, answer func(*envelope.Message) envelope.Message) *ackNode {
	t.Helper()
	z, err := testutil.ZMQ(t).NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	_ = z.SetLinger(0)
	_ = z.SetRcvtimeo(50 * time.Millisecond)
	if err := z.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := z.GetLastEndpoint()
	_, port, _ := net.SplitHostPort(ep[len("tcp://"):])
	p, _ := strconv.Atoi(port)
	node := directory.Node{Host: "127.0.0.1", CallPort: p}
	if err := dir.Register(testCtx(t, 5*time.Second), directory.Registration{Key: key, Server: server, Node: node}, time.Minute); err != nil {
		t.Fatal(err)
	}
	n := &ackNode{stop: make(chan struct{}), done: make(chan struct{})}
	go func() { // the socket's only goroutine
		defer close(n.done)
		defer z.Close()
		for {
			select {
			case <-n.stop:
				return
			default:
			}
			frames, err := z.RecvMessageBytes(0)
			if err != nil || len(frames) != 2 {
				continue
			}
			m, err := envelope.Decode(frames[1])
			if err != nil || m.Kind != kind {
				continue
			}
			n.casts.Add(1)
			out := answer(&m)
			body, err := envelope.Encode(&out)
			if err == nil {
				_, _ = z.SendMessage(frames[0], body)
			}
		}
	}()
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(n.stop) }); <-n.done })
	return n
}

// What a caster makes of a final ACK from a foreign or newer server: REMOTE
// is the handler's *RemoteError; a code it does not know is an error
// ("cast refused"), never a success, and neither is resent.
func TestCastAckCodesFromRawNode(t *testing.T) {
	dir := newDir(t)
	codes := make(chan envelope.Code, 1)
	raw := startAckNode(t, dir, directory.Key{Topic: "raw"}, "fake", func(m *envelope.Message) {
		m.Code, m.ErrType, m.ErrMsg = <-codes, "ValueError", "bad value"
	})
	c := newNode(t, dir).Client(Target{Topic: "raw", Server: "fake"})
	ctx := testCtx(t, 10*time.Second)

	codes <- envelope.CodeRemote
	err := c.Cast(ctx, "anything", 1)
	var re *RemoteError
	if !errors.As(err, &re) || re.Type != "ValueError" || re.Message != "bad value" {
		t.Fatalf("ACK REMOTE: %#v, want a *RemoteError ValueError: bad value", err)
	}
	codes <- 99
	if err := c.Cast(ctx, "anything", 1); err == nil || err.Error() != "zmqmsg: cast refused: Code(99): bad value" {
		t.Fatalf("ACK with code 99: %v, want cast refused", err)
	}
	if n := raw.casts.Load(); n != 2 {
		t.Fatalf("the raw node got %d casts, want 2 (no resend)", n)
	}
}

// Through a node proxy daemon, the member's ACK carries the failure too,
// and a fanout to an unknown method is counted by each member that got it.
func TestProxyDaemonCastFailure(t *testing.T) {
	d := newDaemonNode(t)
	ctx := testCtx(t, 20*time.Second)
	var runs atomic.Int64
	serve(t, d.members[0], Target{Topic: "jobs", Server: "a"}, failing(&runs))
	serve(t, d.members[1], Target{Topic: "jobs", Server: "b"}, failing(&runs))
	c := d.client.Client(Target{Topic: "jobs"})
	var re *RemoteError
	if err := c.Cast(ctx, "nosuch", 1); !errors.Is(err, ErrNoSuchMethod) || !errors.As(err, &re) {
		t.Fatalf("cast to an unknown method through the daemon: %v", err)
	}
	if err := c.Cast(ctx, "typed", 1); !errors.As(err, &re) || re.Type != "QuotaExceeded" {
		t.Fatalf("failing cast through the daemon: %v", err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("handlers ran %d times, want 1", n)
	}
	if err := d.client.Client(Target{Topic: "jobs", Fanout: true}).Cast(ctx, "nosuch", 1); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "both members to count the refused fanout", func() bool {
		return d.members[0].Stats().FanoutsRefused == 1 && d.members[1].Stats().FanoutsRefused == 1
	})
}
