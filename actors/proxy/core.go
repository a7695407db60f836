package proxy

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// core is what the public and the member handler share: routing requests
// to the local servers, and sending replies and answers on socket 0 (the
// ROUTER, or the member's DEALER). Loop goroutine only.
type core struct {
	p  *Proxy
	rq replyQueue // replies waiting for a caller whose pipe was full

	// sendAck sends an ACK: sendAckPlain, or sendAckHooked when
	// Hooks.DropAck is set (chosen by init, once per loop).
	sendAck func(l *poller.Loop[Cmd], frames [][]byte, expires time.Time, id envelope.ID)

	held []held      // messages full lanes could not take yet (see hold)
	wake func()      // wakeHeld, made once
	room atomic.Bool // set by wake: retry the held cast
}

// init sets c up for p's loop; c must not move afterwards.
func (c *core) init(p *Proxy) {
	c.p = p
	c.rq = replyQueue{sock: 0, counters: &p.counters, log: p.log}
	c.wake = c.wakeHeld
	c.sendAck = c.sendAckPlain
	if p.hooks.DropAck != nil {
		c.sendAck = c.sendAckHooked
	}
}

func (c *core) sendAckPlain(l *poller.Loop[Cmd], frames [][]byte, expires time.Time, _ envelope.ID) {
	c.rq.send(l, frames, expires)
}

func (c *core) sendAckHooked(l *poller.Loop[Cmd], frames [][]byte, expires time.Time, id envelope.ID) {
	if !c.p.dropAck(id) {
		c.rq.send(l, frames, expires)
	}
}

// maxPicks bounds how often a request is re-routed away from stopping servers.
const maxPicks = 4

// request decodes a CALL, CAST or NOTIFY from socket 0 and routes it to a
// local server (see decodeRequest; stats: answer STATS too).
func (c *core) request(l *poller.Loop[Cmd], frames [][]byte, stats bool) {
	var m envelope.Message
	routing, _, ok := decodeRequest(&c.p.counters, frames, &m, stats)
	switch {
	case !ok:
	case m.Kind == envelope.KindStats:
		c.rq.sendStats(l, routing, &m, StatsAnswer{Role: "node", Counters: c.p.counters.Snapshot()})
	case m.Kind == envelope.KindCancel:
		c.cancel(&m)
	default:
		c.route(l, routing, &m)
	}
}

// cancel hands a CANCEL to the local server running its call: the one it
// names first, else any server of its topic (a call for any server went to
// the one this proxy picked, not the one the caller's resolver named).
// Nothing answers it; one whose call is not running here is counted and
// dropped.
func (c *core) cancel(m *envelope.Message) {
	key := directory.Key{Exchange: m.Exchange, Topic: m.Topic}
	if cs, ok := c.p.routes.Pick(key, m.Server).(Canceler); ok && m.Server != "" && cs.Cancel(m.ID) {
		c.p.counters.Cancels.Add(1)
		return
	}
	for _, srv := range c.p.routes.All(key) {
		if cs, ok := srv.(Canceler); ok && srv.Name() != m.Server && cs.Cancel(m.ID) {
			c.p.counters.Cancels.Add(1)
			return
		}
	}
	c.p.counters.CancelsLate.Add(1)
}

// route offers a request to a local server of its target, and answers its
// caller when the server does not take it.
func (c *core) route(l *poller.Loop[Cmd], routing [][]byte, m *envelope.Message) {
	key := directory.Key{Exchange: m.Exchange, Topic: m.Topic}
	req := &Request{Routing: routing, Msg: *m}
	// A server picked just before it stopped refuses with Stopping; by then
	// it is out of the routes, so picking again finds another one.
	for attempt := 0; attempt < maxPicks; attempt++ {
		srv := c.p.routes.Pick(key, m.Server)
		if srv == nil {
			c.p.counters.NoServers.Add(1)
			c.answer(l, routing, m, envelope.CodeNoServers, "no server for the target on this node")
			return
		}
		body, o, lost := c.offer(l, srv, req)
		if lost {
			return // not the loop any more: the answer follows as a settleCmd
		}
		if o != Stopping {
			c.settle(l, req, m, body, o)
			return
		}
	}
	c.p.counters.NoServers.Add(1)
	c.answer(l, routing, m, envelope.CodeShuttingDown, "server stopping")
}

// settle does what a server's answer o to req (decoded: m) asks of the
// loop. body is an inline server's answer.
func (c *core) settle(l *poller.Loop[Cmd], req *Request, m *envelope.Message, body []byte, o Offer) {
	routing := req.Routing
	switch o {
	case Full:
		c.p.counters.Overloaded.Add(1)
		c.answer(l, routing, m, envelope.CodeOverloaded, "server queue full")
	case Duplicate:
		// Run already: acknowledge again, with the outcome it had.
		c.p.counters.Duplicates.Add(1)
		if req.Ack == nil {
			c.answer(l, routing, m, envelope.CodeOK, "")
		} else if m.Flags&envelope.FlagNoAck == 0 {
			c.sendAck(l, append(routing[:len(routing):len(routing)], req.Ack), expiry(m), m.ID)
		}
	case InProgress:
		c.p.counters.Duplicates.Add(1)
		c.answer(l, routing, m, envelope.CodeInProgress, "")
	default:
		c.p.counters.Requests.Add(1)
		// A CAST is acknowledged by its server once the handler has run
		// (an inline server returns the ACK as body): an ACK means the
		// message cannot be lost with the server's process any more.
		if body == nil {
			return
		}
		frames := append(routing[:len(routing):len(routing)], body)
		if OneWay(m.Kind) {
			c.sendAck(l, frames, expiry(m), m.ID)
		} else {
			c.rq.send(l, frames, expiry(m))
		}
	}
}

// answer answers a request from the loop (see answerFrames): an ACK to a
// cast, an ERROR to a call.
func (c *core) answer(l *poller.Loop[Cmd], routing [][]byte, m *envelope.Message, code envelope.Code, text string) {
	frames := answerFrames(routing, m, code, text)
	switch {
	case frames == nil:
	case OneWay(m.Kind):
		c.sendAck(l, frames, expiry(m), m.ID)
	default:
		c.rq.send(l, frames, expiry(m))
	}
}

// direct hands a direct cast (from socket sock: the PULL, or the member's
// DEALER) to a server of its target. A full lane pushes back: the cast is
// held and sock paused until the lane has room, so libzmq's high-water
// marks stop the sender. Only a cast no server is there for is dropped
// (counted).
func (c *core) direct(l *poller.Loop[Cmd], sock int, m *envelope.Message) {
	req := &Request{Msg: *m}
	if srv := c.offerDirect(req); srv != nil {
		c.p.counters.Held.Add(1)
		c.hold(l, sock, req, nil, srv)
	}
}

// offerDirect offers req to a server of its target. It returns the server
// whose lane is full, or nil: taken, or dropped and counted.
func (c *core) offerDirect(req *Request) DirectServer {
	m := &req.Msg
	key := directory.Key{Exchange: m.Exchange, Topic: m.Topic}
	for attempt := 0; attempt < maxPicks; attempt++ {
		srv, ok := c.p.routes.Pick(key, m.Server).(DirectServer)
		if !ok {
			break
		}
		o := srv.OfferDirect(req)
		if o == Accepted {
			c.p.counters.DirectCasts.Add(1)
			return nil
		}
		if o == Full {
			return srv
		}
		if o != Stopping {
			break
		}
	}
	if n := c.p.counters.DirectDropped.Add(1); n&(n-1) == 0 {
		c.p.log.Warn("direct cast dropped: no server for it", append(envelope.LogAttrs(m), "topic", m.Topic, "server", m.Server, "dropped_total", n)...)
	}
	return nil
}

// DirectWaiter is a DirectServer that says when its lane, found full, has
// room again: it calls wake once, from any goroutine.
type DirectWaiter interface {
	WhenDirectRoom(wake func())
}

// heldRetry is how often a held message is offered again without a wake
// (a server that is not a DirectWaiter, or a wake that was lost).
const heldRetry = 50 * time.Millisecond

// held is a direct cast no lane could take yet, or a fanout that the
// servers in to could not: sock, the socket it came from, is paused until
// they take it. At most one per socket.
type held struct {
	req   *Request
	to    []DirectServer // a fanout's servers still to take it; nil: a direct cast
	sock  int
	retry time.Time
}

// hold keeps req (to: a fanout's servers whose lanes were full; nil: a
// direct cast srv's lane refused), pauses sock until it is taken, and
// asks srv for a wake.
func (c *core) hold(l *poller.Loop[Cmd], sock int, req *Request, to []DirectServer, srv DirectServer) {
	c.held = append(c.held, held{req: req, to: to, sock: sock, retry: time.Now().Add(heldRetry)})
	l.SetPaused(sock, true)
	if w, ok := srv.(DirectWaiter); ok {
		w.WhenDirectRoom(c.wake)
	}
}

// retryHeld offers every held message again, and resumes the socket of
// each one taken (or dropped: its servers are gone).
func (c *core) retryHeld(l *poller.Loop[Cmd]) {
	c.room.Store(false)
	holds := c.held
	c.held = nil
	for _, h := range holds {
		switch {
		case h.to != nil:
			if full := offerFanout(c, h.req, h.to, h.to[:0]); len(full) > 0 {
				c.hold(l, h.sock, h.req, full, full[0])
				continue
			}
		default:
			if srv := c.offerDirect(h.req); srv != nil {
				c.hold(l, h.sock, h.req, nil, srv)
				continue
			}
		}
		l.SetPaused(h.sock, false)
	}
}

// heldDeadline is when the held messages are retried without a wake.
func (c *core) heldDeadline() time.Time {
	var d time.Time
	for _, h := range c.held {
		d = sooner(d, h.retry)
	}
	return d
}

// heldTimer retries the held messages once a deadline has passed.
func (c *core) heldTimer(l *poller.Loop[Cmd], now time.Time) {
	if d := c.heldDeadline(); !d.IsZero() && !now.Before(d) {
		c.retryHeld(l)
	}
}

// roomCmd wakes the loop when a lane has room for the held direct cast.
type roomCmd struct{}

func (*roomCmd) isProxyCmd() {}

var theRoomCmd = &roomCmd{}

// noWait is a done context: Submit with it queues only if there is room.
var noWait = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// wakeHeld is the wake a full lane calls. Its command may not fit a full
// queue: the flag makes the next command retry then.
func (c *core) wakeHeld() {
	c.room.Store(true)
	_ = c.p.handle.Submit(noWait, theRoomCmd)
}

// command runs the commands both handlers take; false: not one of them.
func (c *core) command(l *poller.Loop[Cmd], cmd Cmd) bool {
	if c.room.Load() {
		c.retryHeld(l)
	}
	switch cmd := cmd.(type) {
	case *roomCmd:
	case *replyCmd:
		c.rq.send(l, cmd.frames, cmd.expires)
	case *settleCmd:
		c.settle(l, cmd.req, &cmd.req.Msg, cmd.body, cmd.o)
	case *routeCmd:
		cmd.done <- cmd.apply(&c.p.routes)
		if c.held != nil {
			c.retryHeld(l) // its server may be gone, or another there
		}
	default:
		return false
	}
	return true
}

// shutdown drops the held direct cast or fanout (counted), hands libzmq the replies
// submitted before the stop (the socket's linger then flushes them) and
// drops, counted, those still waiting for a full caller pipe: their callers are failed by their own Transport
// (timeout, or ErrClosed when it is the same one). Route changes are made
// (the routes outlive the loop); other commands fail with ErrStopped.
func (c *core) shutdown(l *poller.Loop[Cmd], pending []Cmd, cause error) {
	for _, h := range c.held {
		if h.to != nil {
			c.p.counters.FanoutDropped.Add(uint64(len(h.to)))
		} else {
			c.p.counters.DirectDropped.Add(1)
		}
	}
	c.held = nil
	n := c.rq.n
	for _, cmd := range pending {
		switch cmd := cmd.(type) {
		case *replyCmd:
			if cause == nil && c.rq.n == 0 && l.TrySend(0, cmd.frames...) == nil {
				c.p.counters.Replies.Add(1)
				continue
			}
			n++
		case *settleCmd:
			// An overrun quick run's answer: settled as the loop would
			// (a reply, an ACK, IN_PROGRESS); what must wait is dropped,
			// counted.
			if cause != nil {
				n++
				continue
			}
			waiting := c.rq.n
			c.settle(l, cmd.req, &cmd.req.Msg, cmd.body, cmd.o)
			n += c.rq.n - waiting
		case *routeCmd:
			cmd.done <- cmd.apply(&c.p.routes)
		case *subCmd:
			cmd.done <- ErrStopped
		case *attachCmd:
			cmd.done <- attachResult{err: ErrStopped}
		}
	}
	c.p.counters.SendFailed.Add(uint64(n))
}
