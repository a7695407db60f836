package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// sockFront is the public ROUTER's index in the broker loop.
const sockFront = 0

// sweepEvery is how often the broker looks for silent members and for
// relayed requests whose callers stopped waiting.
const sweepEvery = 500 * time.Millisecond

// broker is the handler of the broker loop. A fresh one is made for every
// (re)start of the loop; everything in it is owned by the loop goroutine.
// The members and their routes (broker_members.go) are learnt again from
// the members' heartbeats after a restart.
type broker struct {
	b        *Broker
	cfg      BrokerConfig
	castSock int               // PULL, -1 if none
	fanSock  int               // XSUB, -1 if none
	back     int               // IPC ROUTER the members connect to
	backMon  int               // monitor of the IPC ROUTER's connections
	hs       socket.Handshakes // monitors of the public sockets (CURVE only)
	rq       replyQueue

	members    map[string]*bMember // by the member DEALER's identity
	routes     map[directory.Key]*bRoute
	nextSweep  time.Time
	probeUntil time.Time // after a member connection dropped: probe the members at each sweep until then

	// What members' full pipes refused: at most one message per socket,
	// which stays paused until it is relayed (see hold).
	held []bHeld
}

// Setup binds the public sockets (again, on a restart: to the ports the
// first start got) and the IPC ROUTER the members connect to.
func (r *broker) Setup(l *poller.Loop[BrokerCmd]) error {
	r.hs = socket.Handshakes{Failed: &r.b.counters.HandshakeFailed, Log: r.b.log}
	want := ports{call: r.cfg.Bind, cast: r.cfg.CastBind, fanout: r.cfg.FanoutBind}
	ps, err := bindPublic(l, want, &r.b.ports, r.cfg.Options)
	if err != nil {
		return err
	}
	r.castSock, r.fanSock = ps.cast, ps.fanout
	if err := r.bindBackend(l); err != nil {
		return err
	}
	if err := watchPublic(&r.hs, l, ps, r.cfg.Options); err != nil {
		return err
	}
	r.nextSweep = time.Now().Add(sweepEvery)
	return nil
}

// bindBackend binds the IPC ROUTER and gives its socket file the daemon's
// mode.
func (r *broker) bindBackend(l *poller.Loop[BrokerCmd]) error {
	ipc := r.cfg.Options
	ipc.KeepaliveIdle = 0
	ipc.HeartbeatInterval = 0
	ipc.Curve = nil // local, in a 0700 directory
	// A member connection that drops (its process died) makes the broker
	// probe its members: a request relayed into a dying pipe is lost by
	// libzmq, and its caller must hear of it.
	armBack := func(z *zmq.Socket) (err error) {
		r.backMon, err = socket.ArmMonitor(l, z, zmq.EVENT_DISCONNECTED)
		return err
	}
	var err error
	if r.back, _, err = bindOne(l, zmq.ROUTER, "backend", r.cfg.Backend, &r.b.backendBound, ipc, armBack); err != nil {
		return err
	}
	if mode := r.b.socketMode; mode != 0 {
		if path, ok := strings.CutPrefix(r.cfg.Backend, "ipc://"); ok {
			if err := os.Chmod(path, mode); err != nil {
				return fmt.Errorf("chmod %s: %w", path, err)
			}
		}
	}
	return nil
}

// HandleMessage handles a message from any of the broker's sockets.
func (r *broker) HandleMessage(l *poller.Loop[BrokerCmd], sock int, frames [][]byte) {
	switch sock {
	case sockFront:
		r.fromCaller(l, frames)
	case r.back:
		r.fromMember(l, frames)
	case r.castSock:
		r.direct(l, frames)
	case r.fanSock:
		r.fanout(l, frames)
	case r.backMon:
		if ev, _, _, ok := socket.ParseEvent(frames); ok && ev == zmq.EVENT_DISCONNECTED {
			r.probeUntil = time.Now().Add(probeFor)
			r.probeMembers(l)
		}
	default:
		r.hs.Handle(sock, frames)
	}
}

// fromCaller relays a request from the public ROUTER to one member.
func (r *broker) fromCaller(l *poller.Loop[BrokerCmd], frames [][]byte) {
	var m envelope.Message
	routing, body, ok := decodeRequest(&r.b.counters, frames, &m, true)
	if !ok {
		return
	}
	if m.Kind == envelope.KindStats {
		a := StatsAnswer{Role: "daemon", Counters: r.b.counters.Snapshot(), Members: len(r.members), InFlight: len(r.b.inflight)}
		r.rq.sendStats(l, routing, &m, a)
		return
	}
	f, resent := r.b.inflight[m.ID]
	if m.Kind == envelope.KindCancel {
		r.relayCancel(l, f, resent, routing, body)
		return
	}
	if r.b.draining && !resent {
		// A resend of a cast still in flight is relayed even while
		// draining: its member answers IN_PROGRESS or its ACK again.
		r.b.counters.Refused.Add(1)
		r.rq.answer(l, routing, &m, envelope.CodeShuttingDown, "node proxy daemon draining")
		return
	}
	out := make([][]byte, 0, len(frames)+1)
	if resent {
		// A resend of a cast its member has not answered yet goes to that
		// member, even if its server has detached to drain: it answers
		// IN_PROGRESS, or its ACK again.
		out = append(append(append(out, []byte(f.member)), routing...), body)
		if err := l.TrySend(r.back, out...); err == nil {
			r.b.counters.Requests.Add(1)
			return
		}
		// That member cannot take it: relayed below as a new request,
		// and no longer its member's (losing that member must not
		// answer it).
		delete(r.b.inflight, m.ID)
	}
	r.relay(l, &m, routing, body, out[:0])
}

// relayCancel relays a CANCEL to the member running its call (f, in
// flight), best effort: nothing answers a CANCEL, and one whose call is
// not in flight, was not a CALL, came from another caller than the call,
// or whose member's pipe is full, is counted and dropped.
func (r *broker) relayCancel(l *poller.Loop[BrokerCmd], f inflight, inFlight bool, routing [][]byte, body []byte) {
	if inFlight && f.kind == envelope.KindCall && len(f.routing) > 0 && bytes.Equal(f.routing[0], routing[0]) {
		out := append(append(append(make([][]byte, 0, len(routing)+2), []byte(f.member)), routing...), body)
		if l.TrySend(r.back, out...) == nil {
			r.b.counters.Cancels.Add(1)
			return
		}
	}
	r.b.counters.CancelsLate.Add(1)
}

// relay sends a request (decoded: m) to a member serving its target, and
// keeps it in flight until the member answers. out is room for the frames.
func (r *broker) relay(l *poller.Loop[BrokerCmd], m *envelope.Message, routing [][]byte, body []byte, out [][]byte) {
	key := directory.Key{Exchange: m.Exchange, Topic: m.Topic}
	for attempt := 0; attempt < maxPicks; attempt++ {
		e, ok := r.pick(key, m.Server)
		if !ok {
			break
		}
		out = append(append(append(out[:0], []byte(e.m.id)), routing...), body)
		err := l.TrySend(r.back, out...)
		switch {
		case err == nil:
			r.b.counters.Requests.Add(1)
			if m.Kind == envelope.KindCall || m.Flags&envelope.FlagNoAck == 0 {
				r.track(m, e.m.id, routing)
			}
			return
		case errors.Is(err, poller.ErrWouldBlock):
			r.b.counters.Overloaded.Add(1)
			r.rq.answer(l, routing, m, envelope.CodeOverloaded, "service process not keeping up")
			return
		case unreachable(err):
			r.lose(l, e.m.id, "its pipe vanished")
			continue
		default:
			r.b.counters.SendFailed.Add(1)
			r.rq.answer(l, routing, m, envelope.CodeOverloaded, "relay failed: "+err.Error())
			return
		}
	}
	r.b.counters.NoServers.Add(1)
	r.rq.answer(l, routing, m, envelope.CodeNoServers, "no server for the target on this node")
}

// track keeps a request relayed to member in flight until it is answered.
func (r *broker) track(m *envelope.Message, member string, routing [][]byte) {
	exp := m.Deadline
	if exp == 0 {
		exp = time.Now().Add(DefaultReplyTTL).UnixNano()
	}
	r.b.inflight[m.ID] = inflight{expires: exp, member: member, routing: slices.Clone(routing),
		exchange: m.Exchange, topic: m.Topic, server: m.Server, kind: m.Kind, flags: m.Flags}
	r.b.nInflight.Store(int64(len(r.b.inflight)))
}

// answerLost answers f's caller that its member was lost.
func (r *broker) answerLost(l *poller.Loop[BrokerCmd], id envelope.ID, f inflight, why string) {
	req := envelope.Message{Kind: f.kind, Flags: f.flags, ID: id, Deadline: f.expires, Exchange: f.exchange, Topic: f.topic, Server: f.server}
	r.rq.answer(l, f.routing, &req, envelope.CodeServerLost, "the service process serving it was lost ("+why+"); it may have run")
}

// fromMember handles a member's message: a reply to relay to its caller, or
// a control message.
func (r *broker) fromMember(l *poller.Loop[BrokerCmd], frames [][]byte) {
	if len(frames) < 2 || len(frames[0]) == 0 {
		r.b.counters.Malformed.Add(1)
		return
	}
	id := string(frames[0])
	if m := r.members[id]; m != nil {
		m.seen = time.Now()
	}
	if len(frames) == 2 {
		r.control(l, id, frames[1])
		return
	}
	rest := frames[1:]
	mid, ok := envelope.PeekID(rest[len(rest)-1])
	if !ok {
		r.b.counters.Malformed.Add(1)
		return
	}
	f, known := r.b.inflight[mid]
	if known && !interim(rest[len(rest)-1]) {
		// An IN_PROGRESS ACK is not the answer: the cast stays in flight
		// (a drain waits for its final ACK).
		delete(r.b.inflight, mid)
		r.b.nInflight.Store(int64(len(r.b.inflight)))
	}
	var exp time.Time
	if known {
		exp = time.Unix(0, f.expires)
	}
	r.rq.send(l, rest, exp)
	r.checkDrained()
}

// interim reports whether body is an ACK with code IN_PROGRESS.
func interim(body []byte) bool {
	code, ok := envelope.PeekAck(body)
	return ok && code == envelope.CodeInProgress
}

// unreachable reports whether err (as wrapped by the loop) is libzmq's
// EHOSTUNREACH: a ROUTER_MANDATORY send to a peer whose pipe is gone.
func unreachable(err error) bool {
	var eno zmq.Errno
	if errors.As(err, &eno) {
		return eno == zmq.EHOSTUNREACH
	}
	var sys syscall.Errno
	return errors.As(err, &sys) && zmq.Errno(sys) == zmq.EHOSTUNREACH
}

// direct relays a direct cast from the PULL to one member. A member whose
// pipe is full pushes back: the cast is held and the PULL paused until the
// pipe takes it (see retryHeld), so libzmq's high-water marks stop the
// sender. Only a cast no member is there for is dropped (counted).
func (r *broker) direct(l *poller.Loop[BrokerCmd], frames [][]byte) {
	h := bHeld{sock: r.castSock, body: frames[0]}
	if !decodeBody(&r.b.counters, frames, 1, envelope.KindCast, &h.m) {
		return
	}
	if !r.relayDirect(l, &h.m, h.body) {
		r.hold(l, h)
	}
}

// bHeld is a direct cast (to == nil) or a fanout (to: the members still to
// take it) waiting for room in members' pipes. The socket it came from is
// paused meanwhile.
type bHeld struct {
	sock int // PULL or XSUB
	m    envelope.Message
	body []byte
	to   []*bMember
	at   time.Time // its next try
	wait time.Duration
}

// A held message is offered again after heldFirst, then after twice as
// long each time up to heldMax: a member's pipe gets room as the member
// reads, and libzmq says so to nobody who is not sending.
const (
	heldFirst = time.Millisecond
	heldMax   = 16 * time.Millisecond
)

// hold keeps h and pauses its socket until h is relayed.
func (r *broker) hold(l *poller.Loop[BrokerCmd], h bHeld) {
	r.b.counters.Held.Add(1)
	h.wait = heldFirst
	h.at = time.Now().Add(heldFirst)
	r.held = append(r.held, h)
	l.SetPaused(h.sock, true)
}

// retryHeld offers each held message whose time has come again, and
// resumes its socket once it is relayed (or dropped: nobody is left for
// it).
func (r *broker) retryHeld(l *poller.Loop[BrokerCmd], now time.Time) {
	kept := r.held[:0]
	for _, h := range r.held {
		if !now.Before(h.at) {
			done := false
			if h.to == nil {
				done = r.relayDirect(l, &h.m, h.body)
			} else {
				h.to = r.relayFanout(l, h.m.Topic, h.body, h.to)
				done = len(h.to) == 0
			}
			if done {
				l.SetPaused(h.sock, false)
				continue
			}
			h.wait = min(2*h.wait, heldMax)
			h.at = now.Add(h.wait)
		}
		kept = append(kept, h)
	}
	r.held = kept
}

// relayDirect sends a direct cast (m, its body) to a member serving its
// target; false: that member's pipe is full. A cast no member can take is
// dropped and counted.
func (r *broker) relayDirect(l *poller.Loop[BrokerCmd], m *envelope.Message, body []byte) bool {
	key := directory.Key{Exchange: m.Exchange, Topic: m.Topic}
	for attempt := 0; attempt < maxPicks; attempt++ {
		e, ok := r.pick(key, m.Server)
		if !ok {
			break
		}
		err := l.TrySend(r.back, []byte(e.m.id), body)
		if err == nil {
			r.b.counters.DirectCasts.Add(1)
			return true
		}
		if errors.Is(err, poller.ErrWouldBlock) {
			return false
		}
		if !unreachable(err) {
			break
		}
		r.lose(l, e.m.id, "its pipe vanished")
	}
	if n := r.b.counters.DirectDropped.Add(1); n&(n-1) == 0 {
		r.b.log.Warn("direct cast dropped: no service process for it", append(envelope.LogAttrs(m), "topic", m.Topic, "server", m.Server, "dropped_total", n)...)
	}
	return true
}

// fanout relays a fanout from the XSUB to every member serving its topic,
// once per member (the member hands it to each of its servers). A member
// whose pipe is full pushes back like a direct cast's: the fanout is held
// for the members that could not take it and the XSUB paused until they
// do (see retryHeld), so the publishers' high-water marks stop the
// casters. Only a member that is gone loses it (counted).
func (r *broker) fanout(l *poller.Loop[BrokerCmd], frames [][]byte) {
	var m envelope.Message
	if !decodeBody(&r.b.counters, frames, 2, envelope.KindFanout, &m) {
		return
	}
	rt := r.routes[directory.Key{Exchange: m.Exchange, Topic: m.Topic}]
	if rt == nil {
		// Its last member detached after the XSUB's subscription let it
		// in.
		r.fanoutDropped(m.Topic, "no service process serves its topic", nil)
		return
	}
	var to []*bMember
next:
	for _, e := range rt.entries {
		for _, s := range to {
			if s == e.m {
				continue next
			}
		}
		to = append(to, e.m)
	}
	if full := r.relayFanout(l, m.Topic, frames[1], to); len(full) > 0 {
		r.hold(l, bHeld{sock: r.fanSock, m: m, body: frames[1], to: full})
	}
}

// relayFanout sends body to each member of to and returns those whose
// pipe was full (to's array is reused). A member whose pipe is gone is
// lost; it and one that is no longer attached lose the fanout (counted).
func (r *broker) relayFanout(l *poller.Loop[BrokerCmd], topic string, body []byte, to []*bMember) []*bMember {
	full := to[:0]
	var lost []*bMember
	for _, m := range to {
		if r.members[m.id] != m {
			r.fanoutDropped(topic, "its service process is gone", nil)
			continue
		}
		err := l.TrySend(r.back, []byte(m.id), body)
		switch {
		case err == nil:
			r.b.counters.Fanouts.Add(1)
		case errors.Is(err, poller.ErrWouldBlock):
			full = append(full, m)
		case unreachable(err):
			lost = append(lost, m)
		default:
			r.fanoutDropped(topic, "a service process could not take it", err)
		}
	}
	for _, m := range lost {
		r.b.counters.FanoutDropped.Add(1)
		r.lose(l, m.id, "its pipe vanished")
	}
	return full
}

// fanoutDropped counts and logs (at powers of two) a fanout not relayed.
func (r *broker) fanoutDropped(topic, why string, err error) {
	if n := r.b.counters.FanoutDropped.Add(1); n&(n-1) == 0 {
		args := []any{"topic", topic, "dropped_total", n}
		if err != nil {
			args = append(args, "err", err)
		}
		r.b.log.Warn("fanout dropped: "+why, args...)
	}
}

// HandleCommand runs a drainCmd.
func (r *broker) HandleCommand(_ *poller.Loop[BrokerCmd], c BrokerCmd) {
	if d, ok := c.(*drainCmd); ok {
		r.b.draining = true
		r.b.isDraining.Store(true)
		r.b.drained = append(r.b.drained, d.done)
		r.checkDrained()
	}
}

// checkDrained reports a drain done once nothing relayed waits for an
// answer and no answer waits for its caller.
func (r *broker) checkDrained() {
	if r.b.draining && len(r.b.inflight) == 0 && r.rq.n == 0 {
		for _, ch := range r.b.drained {
			close(ch)
		}
		r.b.drained = nil
	}
}

// Deadline is the next sweep, or an earlier reply or held message retry.
func (r *broker) Deadline() time.Time {
	d := sooner(r.rq.deadline(), r.nextSweep)
	for _, h := range r.held {
		d = sooner(h.at, d)
	}
	return d
}

// HandleTimer retries waiting replies and sweeps silent members and
// forgotten requests.
func (r *broker) HandleTimer(l *poller.Loop[BrokerCmd], now time.Time) {
	r.rq.retry(l, now)
	r.retryHeld(l, now)
	if !now.Before(r.nextSweep) {
		r.nextSweep = now.Add(sweepEvery)
		if now.Before(r.probeUntil) {
			r.probeMembers(l)
		}
		r.sweepMembers(l, now)
		r.sweepInflight(l, now)
	}
	r.checkDrained()
}

// sweepInflight forgets the relayed requests whose callers stopped waiting,
// and probes the processes that detached their last server while requests
// they took are still in flight.
func (r *broker) sweepInflight(l *poller.Loop[BrokerCmd], now time.Time) {
	var departed map[string]struct{}
	for id, f := range r.b.inflight {
		switch {
		case now.UnixNano() > f.expires:
			delete(r.b.inflight, id)
		case r.members[f.member] == nil:
			if departed == nil {
				departed = map[string]struct{}{}
			}
			departed[f.member] = struct{}{}
		}
	}
	for id := range departed {
		r.alive(l, id) // one that died is lost, and its requests answered
	}
	r.b.nInflight.Store(int64(len(r.b.inflight)))
}

// Shutdown counts what could not be delivered (held messages too). On a
// stop (cause nil) the Drain callers are released; on a restart they keep
// waiting for the next loop, which keeps draining.
func (r *broker) Shutdown(_ *poller.Loop[BrokerCmd], pending []BrokerCmd, cause error) {
	r.b.counters.SendFailed.Add(uint64(r.rq.n))
	for _, h := range r.held {
		if h.to == nil {
			r.b.counters.DirectDropped.Add(1)
		} else {
			r.b.counters.FanoutDropped.Add(uint64(len(h.to)))
		}
	}
	for _, c := range pending {
		if d, ok := c.(*drainCmd); ok {
			if cause != nil {
				r.b.draining = true
				r.b.drained = append(r.b.drained, d.done)
				continue
			}
			close(d.done)
		}
	}
	if cause == nil {
		for _, ch := range r.b.drained {
			close(ch)
		}
		r.b.drained = nil
	}
	r.b.members.Store(0)
}
