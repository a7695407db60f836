package socket

import (
	"sync"
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

// pushPool recycles Push commands and their bodies: the pusher puts one
// back once libzmq has copied its body.
var pushPool = sync.Pool{New: func() any { return new(Push) }}

// maxPooledBody bounds the bodies kept in the pool.
const maxPooledBody = 4 << 10

// NewPush returns an empty Push, from the pool; its Body's capacity may be
// reused (append to Body[:0]).
func NewPush() *Push { return pushPool.Get().(*Push) }

// recycle puts c back into the pool.
func recycle(c *Push) {
	if cap(c.Body) > maxPooledBody {
		c.Body = nil
	}
	c.Body = c.Body[:0]
	pushPool.Put(c)
}

// PusherCounters are shared by every incarnation of one pusher.
type PusherCounters struct {
	// HandshakeFailed counts failed CURVE handshakes with the node.
	HandshakeFailed atomic.Uint64
	Sent            atomic.Uint64 // messages handed to libzmq
	Failed          atomic.Uint64 // messages libzmq refused for good, or left queued at shutdown (dropped)
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

	watch clientWatch // CURVE: a refused handshake is tried again
}

// Setup creates the PUSH and connects it.
func (p *Pusher) Setup(l *poller.Loop[PushCmd]) error {
	immediate := func(z *zmq.Socket) error { return z.SetImmediate(true) }
	var err error
	p.watch, err = connectClient(l, zmq.PUSH, "push", p.Endpoint, p.Options, immediate)
	return err
}

// HandleMessage handles the CURVE monitor's events (a PUSH receives
// nothing).
func (p *Pusher) HandleMessage(_ *poller.Loop[PushCmd], sock int, frames [][]byte) {
	p.watch.event(sock, frames, time.Now(), &p.Counters.HandshakeFailed)
}

// HandleCommand sends a message.
func (p *Pusher) HandleCommand(l *poller.Loop[PushCmd], c PushCmd) {
	if c, ok := c.(*Push); ok {
		if p.watch.rh.Refused() {
			// The node refused our key: dropped and counted, not left to
			// fill the backlog and block the casters.
			p.Counters.Failed.Add(1)
			return
		}
		if l.Backlogged(0) == 0 && l.TrySend(0, c.Body) == nil {
			// libzmq has copied the body: the command can be reused.
			p.Counters.Sent.Add(1)
			recycle(c)
			return
		}
		// Full (or behind a backlog): the backlog keeps the body, in order.
		if err := l.Send(0, c.Body); err != nil {
			p.Counters.Failed.Add(1)
			return
		}
		p.Counters.Sent.Add(1)
	}
}

// Deadline is when a refused connection is tried again.
func (p *Pusher) Deadline() time.Time { return p.watch.rh.Deadline() }

// HandleTimer tries a refused connection again.
func (p *Pusher) HandleTimer(l *poller.Loop[PushCmd], now time.Time) {
	if _, err := p.watch.rh.Reconnect(l.Socket(0), now); err != nil {
		p.Counters.HandshakeFailed.Add(1)
	}
}

// Shutdown counts the messages that never went out: still queued as
// commands, or waiting in the send backlog for a connection.
func (p *Pusher) Shutdown(l *poller.Loop[PushCmd], pending []PushCmd, _ error) {
	p.Counters.Failed.Add(uint64(len(pending) + l.Backlogged(0)))
}
