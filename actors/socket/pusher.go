package socket

import (
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
)

// DirectCastHWM is the high-water mark (messages) of the direct-cast PUSH
// and PULL. Direct casts are small and many: at libzmq's default of 1000 a
// burst spends its time in the loop's backlog path instead of libzmq's
// pipe. Memory stays bounded: about DirectCastHWM messages per connection.
const DirectCastHWM = 100_000

// PushCmd is a command for a Pusher socket actor. The interface is sealed.
type PushCmd interface{ isPushCmd() }

// Push sends one encoded message (a direct cast).
type Push struct {
	Body []byte
}

func (*Push) isPushCmd() {}

// PusherCounters are shared by every incarnation of one pusher.
type PusherCounters struct {
	Sent   atomic.Uint64 // messages handed to libzmq
	Failed atomic.Uint64 // messages libzmq refused for good, or left queued at shutdown (dropped)
}

// Pusher is the client end of the direct-cast pipeline towards one node: a
// PUSH connected to the node's PULL. Messages go out in the order they were
// submitted. With IMMEDIATE, nothing is queued to a connection that is not
// up: the loop's backlog holds messages (in order) until it is, and when
// the backlog is full, Submit blocks the caster (bounded by its ctx).
type Pusher struct {
	Endpoint string
	Options  Options
	Counters *PusherCounters
}

// Setup creates the PUSH and connects it.
func (p *Pusher) Setup(l *poller.Loop[PushCmd]) error {
	_, z, err := l.NewSocket(zmq.PUSH, "push")
	if err != nil {
		return err
	}
	if err := p.Options.Apply(z); err != nil {
		return err
	}
	if err := z.SetImmediate(true); err != nil {
		return err
	}
	return z.Connect(p.Endpoint)
}

// HandleMessage is never called: a PUSH receives nothing.
func (p *Pusher) HandleMessage(*poller.Loop[PushCmd], int, [][]byte) {}

// HandleCommand sends a message.
func (p *Pusher) HandleCommand(l *poller.Loop[PushCmd], c PushCmd) {
	if c, ok := c.(*Push); ok {
		if err := l.Send(0, c.Body); err != nil {
			p.Counters.Failed.Add(1)
			return
		}
		p.Counters.Sent.Add(1)
	}
}

// Deadline: no timers.
func (p *Pusher) Deadline() time.Time { return time.Time{} }

// HandleTimer is never called.
func (p *Pusher) HandleTimer(*poller.Loop[PushCmd], time.Time) {}

// Shutdown counts the messages that never went out: still queued as
// commands, or waiting in the send backlog for a connection.
func (p *Pusher) Shutdown(l *poller.Loop[PushCmd], pending []PushCmd, _ error) {
	p.Counters.Failed.Add(uint64(len(pending) + l.Backlogged(0)))
}
