package socket

import (
	"errors"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// Replies is where a dealer delivers replies: the reply table
// (*reply.Table), which outlives the socket.
type Replies interface {
	Deliver(m envelope.Message) bool
	Fail(id envelope.ID, err error) bool
	FailTagged(tag string, err error) int
}

// ErrSocketStopped fails the requests of a dealer, and the fanouts of a
// publisher, that stopped without an error of its own (the Transport is
// closing).
var ErrSocketStopped = errors.New("socket: stopped")

// stopErr is what fails the commands of a loop that stopped with cause.
func stopErr(cause error) error {
	if cause == nil {
		return ErrSocketStopped
	}
	return cause
}

// DealerCmd is a command for a Dealer socket actor. The interface is sealed.
type DealerCmd interface{ isDealerCmd() }

// Request sends a CALL or a CAST to the remote node. Its result arrives through the
// reply table, where the caller registered ID before submitting.
type Request struct {
	ID   envelope.ID
	Body []byte // the encoded message (envelope.AppendMessage)
}

func (*Request) isDealerCmd() {}

// DealerCounters are shared by every incarnation of one dealer.
type DealerCounters struct {
	Malformed atomic.Uint64 // replies that could not be decoded, dropped
	WrongKind atomic.Uint64 // messages of a kind a dealer does not expect, dropped
	// Disconnects counts lost connections to the node; FailedByDown the
	// requests failed at once because of them (see Dealer.NodeDown).
	Disconnects, FailedByDown atomic.Uint64
	// HandshakeFailed counts failed ZMTP handshakes with the node (CURVE:
	// our key refused, or a mechanism mismatch).
	HandshakeFailed atomic.Uint64
	// ConnectFailures counts failed attempts to connect to the node
	// (refused, unreachable, connect timeout); NotSent the waiting requests
	// failed because of them, or because their connection dropped, before
	// libzmq ever had them (see Dealer.Unreachable); UnackedDropped the
	// casts sent without an ACK (nobody waits for them) dropped so.
	ConnectFailures, NotSent, UnackedDropped atomic.Uint64
}

// Dealer is the client end of the CALL pipeline towards one node: a DEALER
// connected to the node proxy's ROUTER. A request goes out as one frame, the
// body (the ROUTER sees [identity, body]); the reply comes back as one frame
// and is handed to the reply table.
type Dealer struct {
	Endpoint string  // tcp://host:port of the node's call port
	Tag      string  // the node id the table tags calls with
	Table    Replies // where replies go
	Options  Options
	Counters *DealerCounters
	// NodeDown, if set, turns on liveness: a socket monitor reports the
	// connection's events to the loop, and when the connection to the node
	// drops (the peer closed it, a ZMTP heartbeat timed out, TCP keepalive
	// gave up) every request still waiting on it is failed at once with
	// NodeDown(cause), instead of at its deadline: a reply can never come
	// back on a new connection (the ROUTER gives it a new identity).
	NodeDown func(cause string) error
	// OnLiveness, if set, is told when the connection comes up (true, ZMTP
	// handshake done) and goes down (false). Loop goroutine: do not block.
	OnLiveness func(up bool)
	// HandshakeFailed, if set, fails every request waiting on this node with
	// HandshakeFailed(cause) when a handshake with it fails (the node
	// refused our CURVE key), and every new one until a handshake
	// succeeds: they could only time out. The connection is tried again
	// with backoff (see Rehandshake), so a node that lists our key later
	// is reached.
	HandshakeFailed func(cause string) error
	// Unreachable, if set (with NodeDown), fails the requests that libzmq
	// never had: those waiting in the loop's send backlog (the DEALER has
	// ZMQ_IMMEDIATE, so a send waits there until a connection is
	// complete) when an attempt to connect fails or the connection drops,
	// and every new one while the node cannot be connected to. They never
	// left this process, so the caller may send them to another server.
	Unreachable func(cause string) error

	monitor     int // index of the monitor PAIR in the loop, -1 if none
	rh          Rehandshake
	refusal     error // what HandshakeFailed returned for the last failure
	up          bool  // a handshake completed and the connection has not dropped since
	unreachable error // what Unreachable returned for the last failed connect; nil once up
}

// Setup creates the DEALER, its monitor if liveness is on, and connects.
func (d *Dealer) Setup(l *poller.Loop[DealerCmd]) error {
	d.monitor = -1
	d.rh = newRehandshake(d.Endpoint, d.Options)
	d.refusal, d.up, d.unreachable = nil, false, nil
	_, z, err := l.NewSocket(zmq.DEALER, "dealer")
	if err != nil {
		return err
	}
	if err := d.Options.Apply(z); err != nil {
		return err
	}
	if d.NodeDown != nil {
		// The monitor is armed before Connect so that no event is missed;
		// its PAIR end belongs to this loop like the DEALER.
		// CLOSED on a connecting socket that is not up: an attempt to
		// connect failed (libzmq then retries after ReconnectInterval).
		events := zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED | HandshakeFailedEvents
		if d.monitor, err = ArmMonitor(l, z, events); err != nil {
			return err
		}
	}
	// IMMEDIATE: queue only to a completed connection, so nothing piles up
	// in the pipe of a peer that is not there; sends wait in the loop's
	// backlog instead until the connection is up.
	if err := z.SetImmediate(true); err != nil {
		return err
	}
	return z.Connect(d.Endpoint)
}

// HandleMessage decodes a reply and hands it to the waiting call, or
// handles a monitor event.
func (d *Dealer) HandleMessage(l *poller.Loop[DealerCmd], sock int, frames [][]byte) {
	if sock == d.monitor && sock >= 0 {
		d.handleEvent(l, frames, time.Now())
		return
	}
	_, body, err := envelope.SplitRouting(frames)
	if err != nil {
		d.Counters.Malformed.Add(1)
		return
	}
	var m envelope.Message
	if err := envelope.DecodeInto(&m, body); err != nil {
		d.Counters.Malformed.Add(1)
		return
	}
	switch m.Kind {
	case envelope.KindReply, envelope.KindError, envelope.KindAck:
		d.Table.Deliver(m) // late and unmatched replies are counted there
	default:
		d.Counters.WrongKind.Add(1)
	}
}

// handleEvent handles one monitor event.
func (d *Dealer) handleEvent(l *poller.Loop[DealerCmd], frames [][]byte, now time.Time) {
	ev, _, _, ok := ParseEvent(frames)
	if !ok {
		return
	}
	switch {
	case ev == zmq.EVENT_HANDSHAKE_SUCCEEDED:
		d.rh.Succeeded()
		d.refusal, d.up, d.unreachable = nil, true, nil
		if d.OnLiveness != nil {
			d.OnLiveness(true)
		}
	case ev == zmq.EVENT_CLOSED && !d.up:
		// An attempt to connect failed: refused, no route, or
		// ZMQ_CONNECT_TIMEOUT. Nothing can go out until a later attempt
		// succeeds, so what waits is failed as not sent, and so is every
		// new request until then.
		d.Counters.ConnectFailures.Add(1)
		if d.Unreachable == nil {
			return
		}
		if d.OnLiveness != nil {
			d.OnLiveness(false)
		}
		d.unreachable = d.Unreachable("cannot connect to " + d.Endpoint)
		d.failBacklog(l, d.unreachable)
	case ev == zmq.EVENT_DISCONNECTED:
		d.up = false
		// Mark the node down first: a caster whose request fails below
		// picks another node at once.
		if d.OnLiveness != nil {
			d.OnLiveness(false)
		}
		d.Counters.Disconnects.Add(1)
		if d.Unreachable != nil && d.refusal == nil {
			// Still in the backlog: never sent, so not "may have run".
			d.failBacklog(l, d.Unreachable("connection to "+d.Endpoint+" lost before it was sent"))
		}
		if d.refusal != nil {
			// The node dropped the connection because it refused our key:
			// what waits fails with that reason, not as a node down.
			d.Table.FailTagged(d.Tag, d.refusal)
			return
		}
		if n := d.Table.FailTagged(d.Tag, d.NodeDown("connection to "+d.Endpoint+" lost")); n > 0 {
			d.Counters.FailedByDown.Add(uint64(n))
		}
	case d.Options.Curve != nil && isRefusal(ev):
		// The node refused our key (or we speak different mechanisms):
		// nothing sent on this connection can be answered, and libzmq gives
		// the endpoint up (Rehandshake tries it again). Fail what waits,
		// with the reason.
		d.Counters.HandshakeFailed.Add(1)
		if d.HandshakeFailed == nil {
			return
		}
		d.rh.Failed(now)
		reason := "refused our key"
		if ev != zmq.EVENT_HANDSHAKE_FAILED_AUTH {
			reason = "handshake failed (security mechanism mismatch or broken handshake)"
		}
		d.refusal = d.HandshakeFailed(d.Endpoint + " " + reason)
		d.Table.FailTagged(d.Tag, d.refusal)
	}
}

// HandleCommand sends a request.
func (d *Dealer) HandleCommand(l *poller.Loop[DealerCmd], c DealerCmd) {
	switch c := c.(type) {
	case *Request:
		if d.refusal != nil {
			// The node refused our key: fail at once rather than wait in
			// the backlog for a handshake that is not coming.
			d.Table.Fail(c.ID, d.refusal)
			return
		}
		if d.unreachable != nil {
			d.notSent(c.ID, c.Body, d.unreachable)
			return
		}
		if err := l.Send(0, c.Body); err != nil {
			d.Table.Fail(c.ID, err)
		}
	}
}

// failBacklog fails, with err, every request waiting in the send backlog:
// libzmq never had them.
func (d *Dealer) failBacklog(l *poller.Loop[DealerCmd], err error) {
	for _, frames := range l.TakeBacklog(0) {
		body := frames[len(frames)-1]
		if id, ok := envelope.PeekID(body); ok {
			d.notSent(id, body, err)
		}
	}
}

// notSent fails request id (encoded as body), which libzmq never had, with
// err, and counts it: as not sent if its caller was waiting, as dropped if
// it was a cast sent without an ACK (nobody waits for it), not at all if
// its caller had already given up.
func (d *Dealer) notSent(id envelope.ID, body []byte, err error) {
	if d.Table.Fail(id, err) {
		d.Counters.NotSent.Add(1)
		return
	}
	if f, ok := envelope.PeekFlags(body); ok && f&envelope.FlagNoAck != 0 {
		d.Counters.UnackedDropped.Add(1)
	}
}

// Deadline is when a refused connection is tried again (callers time their
// own calls).
func (d *Dealer) Deadline() time.Time { return d.rh.Deadline() }

// HandleTimer tries a refused connection again when it is due. Requests
// then wait for that handshake's outcome (a refusal fails them through the
// table); a Connect that fails keeps failing them, and is tried again.
func (d *Dealer) HandleTimer(l *poller.Loop[DealerCmd], now time.Time) {
	switch did, err := d.rh.Reconnect(l.Socket(0), now); {
	case err != nil:
		d.refusal = err
	case did:
		d.refusal = nil
	}
}

// Shutdown fails the requests that never went out. Requests already sent on
// a socket that failed cannot be answered on its successor (a new socket has
// a new identity), so they are failed too.
func (d *Dealer) Shutdown(_ *poller.Loop[DealerCmd], pending []DealerCmd, cause error) {
	err := stopErr(cause)
	for _, c := range pending {
		if r, ok := c.(*Request); ok {
			d.Table.Fail(r.ID, err)
		}
	}
	if cause != nil {
		d.Table.FailTagged(d.Tag, cause)
	}
}
