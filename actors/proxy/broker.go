package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// Broker is the node proxy daemon's side of a pipeline: it owns the node's
// public TCP ports and relays between them and the service processes of the
// node (members, see Config.Join), which connect over IPC:
//
//	remote DEALER  --tcp--> ROUTER :9501 ─┐                ┌─> DEALER (member 1)
//	remote PUSH    --tcp--> PULL   :9504 ─┼─ broker loop ──┤   ROUTER ipc://DIR/call
//	remote XPUB    --tcp--> XSUB   :9502 ─┘                └─> DEALER (member 2)
//
// One loop owns every socket of the group, so relaying a message is one
// receive and one send on the same goroutine. The broker knows which member
// serves which (exchange, topic, server) from the members' ATTACH messages;
// it routes a CALL, CAST or NOTIFY to one member (round robin, or the one
// serving the named server), a direct cast likewise, and a fanout to every
// member serving its topic. It subscribes its XSUB to a topic while a member
// serves it. Replies come back on the member's pipe with the caller's
// routing frames and go out on the public ROUTER through a replyQueue.
//
// A member that sends nothing (not even its heartbeat ATTACHes) for
// MemberTTL is dropped, and so is one whose pipe has vanished (libzmq
// reports EHOSTUNREACH when the broker sends to it; a monitor of the IPC
// ROUTER makes the broker probe every member when a connection drops): its
// process died. Requests it had taken are answered at once with
// SERVER_LOST (they may have run). The routing state lives in the loop: a
// restarted loop learns it again from the members' next heartbeats.
type Broker struct {
	counters       Counters
	handle         *socket.Handle[BrokerCmd]
	parent         *actor.PID
	root           *actor.RootContext
	endpoint       string
	castEndpoint   string
	fanoutEndpoint string
	backend        string
	log            *slog.Logger
	members        atomic.Int64 // live members, for status
	nInflight      atomic.Int64 // requests relayed and not yet answered, for status
	socketMode     os.FileMode  // of the IPC socket file, set again after a re-bind
	isDraining     atomic.Bool  // for status: Drain has been called

	// State of the broker loop that must survive a restart of the loop.
	// Only the current loop goroutine touches it (a restarted loop starts
	// after its predecessor has stopped).
	inflight map[envelope.ID]inflight // relayed requests waiting for their answer
	draining bool                     // refuse new requests (Drain)
	drained  []chan struct{}          // Drain callers waiting for the last answer
}

// inflight is a relayed request: when its caller stops waiting, the
// member it went to (whose loss fails it), and what answering its caller
// takes. Kept under 128 bytes, so that the map stores it inline (no
// allocation per request).
type inflight struct {
	expires                 int64 // unix ns
	member                  string
	routing                 [][]byte // the caller's routing frames (the outer slice copied)
	exchange, topic, server string
	kind                    envelope.Kind
	flags                   envelope.Flags
}

// answerLost answers f's caller that its member was lost.
func (r *broker) answerLost(l *poller.Loop[BrokerCmd], id envelope.ID, f inflight, why string) {
	req := envelope.Message{Kind: f.kind, Flags: f.flags, ID: id, Deadline: f.expires, Exchange: f.exchange, Topic: f.topic, Server: f.server}
	r.answer(l, f.routing, &req, envelope.CodeServerLost, "the service process serving it was lost ("+why+"); it may have run")
}

// BrokerConfig configures a Broker.
type BrokerConfig struct {
	// ZMQ is the daemon's context.
	ZMQ *zmq.Context
	// Bind is the public ROUTER's endpoint (the call or the notify port).
	Bind string
	// CastBind and FanoutBind, if not empty, are the public PULL and XSUB
	// endpoints (the direct-cast and fanout ports).
	CastBind, FanoutBind string
	// Backend is the IPC endpoint members connect to, e.g.
	// "ipc:///run/zmqmsg/call".
	Backend string
	// Node returns the node the daemon's members register; it answers a
	// member's hello.
	Node func() directory.Node
	// MemberTTL is how long a silent member keeps its routes. Default
	// 3 × DefaultMemberHeartbeat.
	MemberTTL time.Duration
	// Options are applied to the public sockets; the IPC ROUTER gets them
	// without TCP keepalive.
	Options socket.Options
	// Loop configures the broker loop.
	Loop poller.Options
	// Logger receives events; nil discards them.
	Logger *slog.Logger
	// SocketMode, if not zero, is set on the IPC socket file after every
	// bind (a restarted loop binds again, and the new file gets the umask's
	// mode).
	SocketMode os.FileMode
}

// BrokerCmd is a command for the broker loop. The interface is sealed.
type BrokerCmd interface{ isBrokerCmd() }

// drainCmd makes the broker refuse new requests and reports when every
// relayed request has been answered.
type drainCmd struct{ done chan struct{} }

func (*drainCmd) isBrokerCmd() {}

// StartBroker binds the broker's sockets and starts its loop as a
// supervised actor tree under root. A taken port is returned as an error.
func StartBroker(ctx context.Context, root *actor.RootContext, name string, cfg BrokerConfig) (*Broker, error) {
	b := &Broker{root: root, log: cfg.Logger, backend: cfg.Backend, socketMode: cfg.SocketMode, inflight: make(map[envelope.ID]inflight)}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if cfg.MemberTTL <= 0 {
		cfg.MemberTTL = 3 * DefaultMemberHeartbeat
	}
	if cfg.Node == nil {
		return nil, errors.New("proxy: BrokerConfig.Node is required")
	}
	var err error
	b.parent, b.handle, err = socket.StartSupervised(ctx, root, name, socket.Spec[BrokerCmd]{
		Name: "broker",
		ZMQ:  cfg.ZMQ,
		NewHandler: func() poller.Handler[BrokerCmd] {
			c := cfg
			// On a restart, bind again to the ports the first start got.
			if b.endpoint != "" {
				c.Bind = b.endpoint
			}
			if b.castEndpoint != "" {
				c.CastBind = b.castEndpoint
			}
			if b.fanoutEndpoint != "" {
				c.FanoutBind = b.fanoutEndpoint
			}
			return &broker{b: b, cfg: c, castSock: -1, fanSock: -1,
				rq:      replyQueue{sock: sockFront, counters: &b.counters, log: b.log},
				members: make(map[string]*bMember), routes: make(map[directory.Key]*bRoute)}
		},
		Loop:   cfg.Loop,
		Logger: b.log,
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return b, nil
}

// Endpoint returns the bound public ROUTER endpoint, with the actual port.
func (b *Broker) Endpoint() string { return b.endpoint }

// CastEndpoint returns the bound direct-cast endpoint ("" if none).
func (b *Broker) CastEndpoint() string { return b.castEndpoint }

// FanoutEndpoint returns the bound fanout endpoint ("" if none).
func (b *Broker) FanoutEndpoint() string { return b.fanoutEndpoint }

// Backend returns the IPC endpoint members connect to.
func (b *Broker) Backend() string { return b.backend }

// Counters returns the broker's counters (the fields that apply to a relay).
func (b *Broker) Counters() *Counters { return &b.counters }

// Members returns how many service processes are attached now.
func (b *Broker) Members() int { return int(b.members.Load()) }

// InFlight returns how many relayed requests wait for their answer now.
func (b *Broker) InFlight() int { return int(b.nInflight.Load()) }

// Draining reports whether the broker refuses new requests (Drain was
// called and the broker loop has taken it in).
func (b *Broker) Draining() bool { return b.isDraining.Load() }

// LoopStats returns the broker loop's counters.
func (b *Broker) LoopStats() poller.Stats { return b.handle.Stats() }

// Restarts returns how often the broker loop was restarted.
func (b *Broker) Restarts() uint64 { return b.handle.Restarts() }

// Drain makes the broker answer every new request with a SHUTTING_DOWN
// error (callers fail at once instead of timing out) and waits until the
// requests already relayed have been answered, or ctx ends.
func (b *Broker) Drain(ctx context.Context) error {
	c := &drainCmd{done: make(chan struct{})}
	if err := b.handle.Submit(ctx, c); err != nil {
		return err
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("proxy: drain: %d requests still unanswered: %w", b.InFlight(), ctx.Err())
	}
}

// Stop stops the broker's actors and closes its sockets. Idempotent.
func (b *Broker) Stop() error { return b.root.StopFuture(b.parent).Wait() }

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

// Socket indexes in the broker loop.
const (
	sockFront = 0 // public ROUTER
	sockBack  = 1 // IPC ROUTER the members connect to
)

// sweepEvery is how often the broker looks for silent members and for
// relayed requests whose callers stopped waiting.
const sweepEvery = 500 * time.Millisecond

// broker is the handler of the broker loop. Everything in it is owned by
// the loop goroutine.
type broker struct {
	b        *Broker
	cfg      BrokerConfig
	castSock int // PULL, -1 if none
	fanSock  int // XSUB, -1 if none
	rq       replyQueue
	hs       socket.Handshakes // monitors of the public sockets (CURVE only)

	members    map[string]*bMember // by the member DEALER's identity
	routes     map[directory.Key]*bRoute
	nextSweep  time.Time
	backMon    int       // monitor of the IPC ROUTER's connections
	probeUntil time.Time // after a member connection dropped: probe the members at each sweep until then
}

// probeFor is how long the broker keeps probing its members after a member
// connection dropped: libzmq may detach the dead pipe a moment after the
// event.
const probeFor = 2 * time.Second

type bMember struct {
	id      string
	seen    time.Time
	servers map[bServer]time.Time // -> when its last ATTACH (or heartbeat) came
}

type bServer struct {
	key  directory.Key
	name string
}

type bRoute struct {
	entries []bEntry
	rr      uint
}

type bEntry struct {
	m    *bMember
	name string
}

func (r *broker) Setup(l *poller.Loop[BrokerCmd]) error {
	r.hs = socket.Handshakes{Failed: &r.b.counters.HandshakeFailed, Log: r.b.log}
	rebind := r.b.endpoint != ""
	var public []*zmq.Socket
	// bind creates, configures and binds a socket; before, if not nil,
	// runs before the bind.
	bind := func(t zmq.Type, name, endpoint string, opts socket.Options, stored *string, before func(*zmq.Socket) error) (int, *zmq.Socket, error) {
		i, z, err := l.NewSocket(t, name)
		if err != nil {
			return -1, nil, err
		}
		if before != nil {
			if err := before(z); err != nil {
				return -1, nil, err
			}
		}
		if opts.Curve != nil {
			public = append(public, z)
		}
		if err := opts.Apply(z); err != nil {
			return -1, nil, err
		}
		if t == zmq.ROUTER {
			if err := z.SetRouterMandatory(1); err != nil {
				return -1, nil, err
			}
		}
		if err := bindRetry(z, endpoint, rebind); err != nil {
			return -1, nil, fmt.Errorf("bind %s: %w", endpoint, err)
		}
		if stored != nil && *stored == "" {
			ep, err := z.GetLastEndpoint()
			if err != nil {
				return -1, nil, err
			}
			*stored = ep // written once, during the first start, before Start returns
		}
		return i, z, nil
	}
	if _, _, err := bind(zmq.ROUTER, "router", r.cfg.Bind, r.cfg.Options, &r.b.endpoint, nil); err != nil {
		return err
	}
	ipc := r.cfg.Options
	ipc.KeepaliveIdle = 0
	ipc.HeartbeatInterval = 0
	ipc.Curve = nil // local, in a 0700 directory
	// A member connection that drops (its process died) makes the broker
	// probe its members: a request relayed into a dying pipe is lost by
	// libzmq, and its caller must hear of it.
	r.backMon = -1
	armBack := func(z *zmq.Socket) (err error) {
		r.backMon, err = socket.ArmMonitor(l, z, zmq.EVENT_DISCONNECTED)
		return err
	}
	if _, _, err := bind(zmq.ROUTER, "backend", r.cfg.Backend, ipc, nil, armBack); err != nil {
		return err
	}
	if mode := r.b.socketMode; mode != 0 {
		if path, ok := strings.CutPrefix(r.cfg.Backend, "ipc://"); ok {
			if err := os.Chmod(path, mode); err != nil {
				return fmt.Errorf("chmod %s: %w", path, err)
			}
		}
	}
	if r.cfg.CastBind != "" {
		po := r.cfg.Options
		po.RecvHWM = socket.DirectCastHWM
		i, _, err := bind(zmq.PULL, "pull", r.cfg.CastBind, po, &r.b.castEndpoint, nil)
		if err != nil {
			return err
		}
		r.castSock = i
	}
	if r.cfg.FanoutBind != "" {
		i, _, err := bind(zmq.XSUB, "xsub", r.cfg.FanoutBind, r.cfg.Options, &r.b.fanoutEndpoint, nil)
		if err != nil {
			return err
		}
		r.fanSock = i
	}
	// The handshake monitors come last, so that sockFront and sockBack
	// keep their indexes.
	for _, z := range public {
		if err := socket.Watch(&r.hs, l, z, r.cfg.Options); err != nil {
			return err
		}
	}
	r.nextSweep = time.Now().Add(sweepEvery)
	return nil
}

func (r *broker) HandleMessage(l *poller.Loop[BrokerCmd], sock int, frames [][]byte) {
	if r.hs.Handle(sock, frames) {
		return
	}
	if sock == r.backMon {
		if ev, _, _, ok := socket.ParseEvent(frames); ok && ev == zmq.EVENT_DISCONNECTED {
			r.probeUntil = time.Now().Add(probeFor)
			r.probeMembers(l)
		}
		return
	}
	switch sock {
	case sockFront:
		r.fromCaller(l, frames)
	case sockBack:
		r.fromMember(l, frames)
	case r.castSock:
		r.direct(l, frames)
	case r.fanSock:
		r.fanout(l, frames)
	}
}

// fromCaller relays a request from the public ROUTER to one member.
func (r *broker) fromCaller(l *poller.Loop[BrokerCmd], frames [][]byte) {
	routing, body, err := envelope.SplitRouting(frames)
	if err != nil || len(routing) == 0 || len(routing[0]) == 0 {
		r.b.counters.Malformed.Add(1)
		return
	}
	var m envelope.Message
	if err := envelope.DecodeInto(&m, body); err != nil {
		r.b.counters.Malformed.Add(1)
		return
	}
	if m.Kind == envelope.KindStats {
		a := StatsAnswer{Role: "daemon", Counters: r.b.counters.Snapshot(), Members: len(r.members), InFlight: len(r.b.inflight)}
		if frames := statsReply(routing, &m, a); frames != nil {
			r.rq.send(l, frames, time.Time{})
		}
		return
	}
	if m.Kind != envelope.KindCall && !OneWay(m.Kind) {
		r.b.counters.WrongKind.Add(1)
		return
	}
	f, resent := r.b.inflight[m.ID]
	if r.b.draining && !resent {
		// A resend of a cast still in flight is relayed even while
		// draining: its member answers IN_PROGRESS or its ACK again.
		r.b.counters.Refused.Add(1)
		r.answer(l, routing, &m, envelope.CodeShuttingDown, "node proxy daemon draining")
		return
	}
	key := directory.Key{Exchange: m.Exchange, Topic: m.Topic}
	out := make([][]byte, 0, len(frames)+1)
	if resent {
		// A resend of a cast its member has not answered yet goes to that
		// member, even if its server has detached to drain: it answers
		// IN_PROGRESS, or its ACK again.
		out = append(append(append(out, []byte(f.member)), routing...), body)
		if err := l.TrySend(sockBack, out...); err == nil {
			r.b.counters.Requests.Add(1)
			return
		}
		// That member cannot take it: relayed below as a new request,
		// and no longer its member's (losing that member must not
		// answer it).
		delete(r.b.inflight, m.ID)
	}
	for attempt := 0; attempt < maxPicks; attempt++ {
		e, ok := r.pick(key, m.Server)
		if !ok {
			break
		}
		out = append(append(append(out[:0], []byte(e.m.id)), routing...), body)
		err := l.TrySend(sockBack, out...)
		switch {
		case err == nil:
			r.b.counters.Requests.Add(1)
			if m.Kind == envelope.KindCall || m.Flags&envelope.FlagNoAck == 0 {
				exp := m.Deadline
				if exp == 0 {
					exp = time.Now().Add(DefaultReplyTTL).UnixNano()
				}
				r.b.inflight[m.ID] = inflight{expires: exp, member: e.m.id, routing: slices.Clone(routing),
					exchange: m.Exchange, topic: m.Topic, server: m.Server, kind: m.Kind, flags: m.Flags}
				r.b.nInflight.Store(int64(len(r.b.inflight)))
			}
			return
		case errors.Is(err, poller.ErrWouldBlock):
			r.b.counters.Overloaded.Add(1)
			r.answer(l, routing, &m, envelope.CodeOverloaded, "service process not keeping up")
			return
		case unreachable(err):
			r.lose(l, e.m.id, "its pipe vanished")
			continue
		default:
			r.b.counters.SendFailed.Add(1)
			r.answer(l, routing, &m, envelope.CodeOverloaded, "relay failed: "+err.Error())
			return
		}
	}
	r.b.counters.NoServers.Add(1)
	r.answer(l, routing, &m, envelope.CodeNoServers, "no server for the target on this node")
}

func (r *broker) answer(l *poller.Loop[BrokerCmd], routing [][]byte, m *envelope.Message, code envelope.Code, text string) {
	if frames := answerFrames(routing, m, code, text); frames != nil {
		r.rq.send(l, frames, expiry(m))
	}
}

// pick returns the member entry for a request to key (and name).
func (r *broker) pick(key directory.Key, name string) (bEntry, bool) {
	rt := r.routes[key]
	if rt == nil || len(rt.entries) == 0 {
		return bEntry{}, false
	}
	if name != "" {
		for _, e := range rt.entries {
			if e.name == name {
				return e, true
			}
		}
		return bEntry{}, false
	}
	e := rt.entries[rt.rr%uint(len(rt.entries))]
	rt.rr++
	return e, true
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

// control handles an ATTACH or DETACH from member id.
func (r *broker) control(l *poller.Loop[BrokerCmd], id string, body []byte) {
	var m envelope.Message
	if err := envelope.DecodeInto(&m, body); err != nil {
		r.b.counters.Malformed.Add(1)
		return
	}
	ack := envelope.Message{Kind: envelope.KindAck, ID: m.ID}
	switch m.Kind {
	case envelope.KindAttach:
		switch {
		case m.Topic == "":
			// A hello. The node is known once every port is bound; a
			// hello before that is told to try again.
			if n := r.cfg.Node(); n.CallPort != 0 {
				ack.Meta = nodeMeta(n)
			} else {
				ack.Code, ack.ErrMsg = envelope.CodeShuttingDown, "daemon starting"
			}
		case m.Server == "":
			ack.Code, ack.ErrMsg = envelope.CodeMalformed, "ATTACH without a server name"
		default:
			if err := r.attach(l, id, directory.Key{Exchange: m.Exchange, Topic: m.Topic}, m.Server); err != nil {
				ack.Code, ack.ErrMsg = envelope.CodeConflict, err.Error()
			}
		}
	case envelope.KindDetach:
		if mb := r.members[id]; mb != nil {
			r.detach(l, mb, bServer{directory.Key{Exchange: m.Exchange, Topic: m.Topic}, m.Server})
		}
	default:
		r.b.counters.WrongKind.Add(1)
		return
	}
	if m.ID.IsZero() {
		return // a heartbeat: no answer
	}
	if ack.Code != envelope.CodeOK {
		ack.ErrType = ack.Code.String()
	}
	if b, err := envelope.Encode(&ack); err == nil {
		if err := l.TrySend(sockBack, []byte(id), b); err != nil {
			r.b.counters.SendFailed.Add(1)
		}
	}
}

// attach routes (key, name) to member id. A name served by another live
// member is a conflict; one served by a member whose pipe has vanished (a
// process restarted before its predecessor's TTL ran out) is taken over.
func (r *broker) attach(l *poller.Loop[BrokerCmd], id string, key directory.Key, name string) error {
	rt := r.routes[key]
	if rt != nil {
		for _, e := range rt.entries {
			if e.name != name {
				continue
			}
			if e.m.id == id {
				e.m.servers[bServer{key, name}] = time.Now() // a heartbeat
				return nil
			}
			if r.alive(l, e.m.id) {
				r.b.counters.Conflicts.Add(1)
				return fmt.Errorf("server %q of %s is served by another process of this node", name, key)
			}
			rt = r.routes[key] // lose changed the routes
			break
		}
	}
	mb := r.members[id]
	if mb == nil {
		mb = &bMember{id: id, seen: time.Now(), servers: make(map[bServer]time.Time)}
		r.members[id] = mb
		r.b.members.Store(int64(len(r.members)))
		r.b.log.Info("service process attached", "member", fmt.Sprintf("%x", id))
	}
	mb.servers[bServer{key, name}] = time.Now()
	if rt == nil {
		rt = &bRoute{}
		r.routes[key] = rt
		if r.fanSock >= 0 {
			if err := l.Send(r.fanSock, subFrame(key, true)); err != nil {
				r.b.log.Warn("fanout subscribe failed", "key", key.String(), "err", err)
			}
		}
	}
	rt.entries = append(rt.entries, bEntry{m: mb, name: name})
	return nil
}

// alive probes member id: a PING to a member whose pipe has vanished fails
// with EHOSTUNREACH, and the member is dropped.
func (r *broker) alive(l *poller.Loop[BrokerCmd], id string) bool {
	ping, err := envelope.Encode(&envelope.Message{Kind: envelope.KindPing})
	if err != nil {
		return true
	}
	if err := l.TrySend(sockBack, []byte(id), ping); unreachable(err) {
		r.lose(l, id, "its pipe vanished")
		return false
	}
	return true
}

// detach removes one server of member mb.
func (r *broker) detach(l *poller.Loop[BrokerCmd], mb *bMember, s bServer) {
	if _, ok := mb.servers[s]; !ok {
		return
	}
	delete(mb.servers, s)
	rt := r.routes[s.key]
	if rt == nil {
		return
	}
	kept := rt.entries[:0]
	for _, e := range rt.entries {
		if e.m != mb || e.name != s.name {
			kept = append(kept, e)
		}
	}
	clear(rt.entries[len(kept):])
	rt.entries = kept
	if len(mb.servers) == 0 {
		// A member with nothing to serve is forgotten; its next ATTACH
		// makes it a member again.
		delete(r.members, mb.id)
		r.b.members.Store(int64(len(r.members)))
	}
	if len(kept) == 0 {
		delete(r.routes, s.key)
		if r.fanSock >= 0 {
			if err := l.Send(r.fanSock, subFrame(s.key, false)); err != nil {
				r.b.log.Warn("fanout unsubscribe failed", "key", s.key.String(), "err", err)
			}
		}
	}
}

// lose drops member id, every route to it, and answers the requests it
// had. A member that detached its last server (a stopping process) is no
// longer in members but may still have requests in flight: it is lost all
// the same.
func (r *broker) lose(l *poller.Loop[BrokerCmd], id, why string) {
	m := r.members[id]
	if m != nil {
		for s := range m.servers {
			r.detach(l, m, s)
		}
		delete(r.members, id) // if detach has not already
		r.b.members.Store(int64(len(r.members)))
	}
	// Its requests will never be answered: tell their callers now. They
	// may have run (the member may have died after running one).
	failed := 0
	for rid, f := range r.b.inflight {
		if f.member == id {
			delete(r.b.inflight, rid)
			r.answerLost(l, rid, f, why)
			failed++
		}
	}
	if m == nil && failed == 0 {
		return
	}
	r.b.counters.FailedLost.Add(uint64(failed))
	r.b.nInflight.Store(int64(len(r.b.inflight)))
	r.checkDrained()
	n := r.b.counters.MembersLost.Add(1)
	r.b.log.Warn("service process lost: its servers are no longer routed", "member", fmt.Sprintf("%x", id), "why", why, "failed", failed, "lost_total", n)
}

// probeMembers probes every member, and every process that detached its
// last server but still has requests in flight (see alive).
func (r *broker) probeMembers(l *poller.Loop[BrokerCmd]) {
	ids := make(map[string]struct{}, len(r.members))
	for id := range r.members {
		ids[id] = struct{}{}
	}
	for _, f := range r.b.inflight {
		ids[f.member] = struct{}{}
	}
	for id := range ids {
		r.alive(l, id)
	}
}

// direct relays a direct cast from the PULL to one member.
func (r *broker) direct(l *poller.Loop[BrokerCmd], frames [][]byte) {
	if len(frames) != 1 {
		r.b.counters.Malformed.Add(1)
		return
	}
	var m envelope.Message
	if err := envelope.DecodeInto(&m, frames[0]); err != nil {
		r.b.counters.Malformed.Add(1)
		return
	}
	if m.Kind != envelope.KindCast {
		r.b.counters.WrongKind.Add(1)
		return
	}
	key := directory.Key{Exchange: m.Exchange, Topic: m.Topic}
	for attempt := 0; attempt < maxPicks; attempt++ {
		e, ok := r.pick(key, m.Server)
		if !ok {
			break
		}
		err := l.TrySend(sockBack, []byte(e.m.id), frames[0])
		if err == nil {
			r.b.counters.DirectCasts.Add(1)
			return
		}
		if unreachable(err) {
			r.lose(l, e.m.id, "its pipe vanished")
			continue
		}
		break
	}
	if n := r.b.counters.DirectDropped.Add(1); n&(n-1) == 0 {
		r.b.log.Warn("direct cast dropped: no service process could take it", "topic", m.Topic, "server", m.Server, "dropped_total", n)
	}
}

// fanout relays a fanout from the XSUB to every member serving its topic,
// once per member (the member hands it to each of its servers).
func (r *broker) fanout(l *poller.Loop[BrokerCmd], frames [][]byte) {
	if len(frames) != 2 {
		r.b.counters.Malformed.Add(1)
		return
	}
	var m envelope.Message
	if err := envelope.DecodeInto(&m, frames[1]); err != nil {
		r.b.counters.Malformed.Add(1)
		return
	}
	if m.Kind != envelope.KindFanout {
		r.b.counters.WrongKind.Add(1)
		return
	}
	rt := r.routes[directory.Key{Exchange: m.Exchange, Topic: m.Topic}]
	if rt == nil {
		// Its last member detached after the XSUB's subscription let it
		// in.
		if n := r.b.counters.FanoutDropped.Add(1); n&(n-1) == 0 {
			r.b.log.Warn("fanout dropped: no service process serves its topic", "topic", m.Topic, "dropped_total", n)
		}
		return
	}
	var sent []*bMember
	var lost []*bMember
next:
	for _, e := range rt.entries {
		for _, s := range sent {
			if s == e.m {
				continue next
			}
		}
		sent = append(sent, e.m)
		err := l.TrySend(sockBack, []byte(e.m.id), frames[1])
		switch {
		case err == nil:
			r.b.counters.Fanouts.Add(1)
		case unreachable(err):
			lost = append(lost, e.m)
		default:
			if n := r.b.counters.FanoutDropped.Add(1); n&(n-1) == 0 {
				r.b.log.Warn("fanout dropped: a service process could not take it", "topic", m.Topic, "err", err, "dropped_total", n)
			}
		}
	}
	for _, m := range lost {
		r.b.counters.FanoutDropped.Add(1)
		r.lose(l, m.id, "its pipe vanished")
	}
}

func (r *broker) HandleCommand(l *poller.Loop[BrokerCmd], c BrokerCmd) {
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

// Deadline is the next sweep, or an earlier reply retry.
func (r *broker) Deadline() time.Time {
	if d := r.rq.deadline(); !d.IsZero() && d.Before(r.nextSweep) {
		return d
	}
	return r.nextSweep
}

// HandleTimer retries waiting replies and sweeps silent members and
// forgotten requests.
func (r *broker) HandleTimer(l *poller.Loop[BrokerCmd], now time.Time) {
	r.rq.retry(l, now)
	if now.Before(r.nextSweep) {
		r.checkDrained()
		return
	}
	r.nextSweep = now.Add(sweepEvery)
	if now.Before(r.probeUntil) {
		r.probeMembers(l)
	}
	for _, m := range r.members {
		if now.Sub(m.seen) > r.cfg.MemberTTL {
			r.lose(l, m.id, fmt.Sprintf("silent for %v", now.Sub(m.seen).Round(time.Millisecond)))
			continue
		}
		// A server the member no longer repeats in its heartbeats (an
		// ATTACH that arrived after its Serve gave up, for instance) is
		// dropped like a silent member.
		for s, seen := range m.servers {
			if now.Sub(seen) > r.cfg.MemberTTL {
				r.b.log.Info("server no longer attached by its process: unrouted", "key", s.key.String(), "server", s.name)
				r.detach(l, m, s)
			}
		}
	}
	var departed map[string]struct{} // detached their last server, requests still in flight
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
	r.checkDrained()
}

// Shutdown counts what could not be delivered. On a stop (cause nil) the
// Drain callers are released; on a restart they keep waiting for the next
// loop, which keeps draining.
func (r *broker) Shutdown(_ *poller.Loop[BrokerCmd], pending []BrokerCmd, cause error) {
	r.b.counters.SendFailed.Add(uint64(r.rq.n))
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
