package poller

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// pairSink owns a PAIR (a rarely receiving socket, like a monitor's) and
// counts what it receives; pauseAfter > 0 pauses it after that many, until
// a command resumes it.
type pairSink struct {
	addr       string
	pauseAfter int64
	got        atomic.Int64
}

func (p *pairSink) Setup(l *Loop[bool]) error {
	_, z, err := l.NewSocket(zmq.PAIR, "sink")
	if err != nil {
		return err
	}
	return z.Bind(p.addr)
}
func (p *pairSink) HandleMessage(l *Loop[bool], sock int, _ [][]byte) {
	if n := p.got.Add(1); n == p.pauseAfter {
		l.SetPaused(sock, true)
	}
}
func (p *pairSink) HandleCommand(l *Loop[bool], resume bool) { l.SetPaused(0, !resume) }
func (p *pairSink) Deadline() time.Time                      { return time.Time{} }
func (p *pairSink) HandleTimer(*Loop[bool], time.Time)       {}
func (p *pairSink) Shutdown(*Loop[bool], []bool, error)      {}

// A rarely receiving socket is asked for news again when a pass stopped
// short of draining it: at the receive budget, or while it was paused.
// Skipping it then strands its messages (the descriptor never fires again
// for them).
func TestRareSocketDrainedPastBudgetAndPause(t *testing.T) {
	for _, s := range strategies() {
		for _, pause := range []bool{false, true} {
			name := s.String() + "/budget"
			if pause {
				name = s.String() + "/pause"
			}
			t.Run(name, func(t *testing.T) {
				zctx := newContext(t)
				sink := &pairSink{addr: "inproc://rare-" + name}
				if pause {
					sink.pauseAfter = 1
				}
				l, err := Start[bool](zctx, sink, Options{Name: "sink", Strategy: s, Budget: 4})
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = l.Stop() }()
				peer, err := zctx.NewSocket(zmq.PAIR)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = peer.Close() }()
				_ = peer.SetLinger(0)
				if err := peer.Connect(sink.addr); err != nil {
					t.Fatal(err)
				}
				const n = 10
				for i := range n {
					if _, err := peer.SendBytes([]byte{byte(i)}, 0); err != nil {
						t.Fatal(err)
					}
				}
				if pause {
					waitFor(t, testCtx(t), "the first message", func() bool { return sink.got.Load() == 1 })
					if err := l.Submit(testCtx(t), true); err != nil {
						t.Fatal(err)
					}
				}
				waitFor(t, testCtx(t), "every message", func() bool { return sink.got.Load() == n })
			})
		}
	}
}

// testCtx is a context that ends with the test, or after 10 s.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
