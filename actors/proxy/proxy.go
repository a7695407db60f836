// Package proxy is the node proxy of the CALL pipeline.
//
// Every node (every Transport, or the proxy daemon) has one. It binds a
// ROUTER on the node's call port, and routes each request to one of the
// servers of the node registered for its target:
//
//	remote DEALER --tcp--> ROUTER (proxy loop) --Go channel--> server worker
//	remote DEALER <--tcp-- ROUTER (proxy loop) <--command----- server worker
//
// Servers in the proxy's own process get requests without a socket hop: the
// proxy loop offers the decoded request to the server's queue (a channel
// send that never blocks the loop), and a worker sends the reply back as a
// command to the loop. Latency on these machines is dominated by thread
// hand-offs, and an inproc socket between proxy and server would add two.
//
// Routing: a request names Exchange, Topic and optionally Server. With a
// server name it goes to that server; without, round robin among the node's
// servers of the topic. A target the node does not serve gets an ERROR frame
// with CodeNoServers; a full server queue gets CodeOverloaded. Frames that do
// not decode are dropped and counted, and the proxy keeps serving.
//
// # Stability
//
// This package is exported for zmqmsg's own commands and tests only: its
// API may change in any release. Applications use the zmqmsg package.
package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// Cmd is a command for the proxy loop. The interface is sealed.
type Cmd interface{ isProxyCmd() }

// replyCmd sends a reply (routing frames, then the body) on the ROUTER; if
// the caller's pipe stays full it is dropped at expires.
type replyCmd struct {
	frames  [][]byte
	expires time.Time
}

func (*replyCmd) isProxyCmd() {}

// Config configures a proxy.
type Config struct {
	// ZMQ is the Transport's context.
	ZMQ *zmq.Context
	// Bind is the call port's endpoint, e.g. "tcp://127.0.0.1:9501"; a port
	// of "*" asks the OS for a free one (see Proxy.Endpoint).
	Bind string
	// CastBind, if not empty, is the direct-cast port's endpoint (a PULL);
	// see Proxy.CastEndpoint.
	CastBind string
	// FanoutBind, if not empty, is the fanout port's endpoint (an XSUB);
	// see Proxy.FanoutEndpoint.
	FanoutBind string
	// Join, if not empty, makes the proxy a member of a node proxy daemon
	// (see Broker) at this IPC endpoint, instead of binding Bind, CastBind
	// and FanoutBind itself: see member.go.
	Join string
	// Heartbeat is how often a member repeats its ATTACHes; default
	// DefaultMemberHeartbeat.
	Heartbeat time.Duration
	// Options are applied to the ROUTER.
	Options socket.Options
	// Loop configures the proxy loop.
	Loop poller.Options
	// Logger receives events; nil discards them.
	Logger *slog.Logger
	// Hooks are for tests.
	Hooks Hooks
}

// Hooks let tests interfere with the proxy deterministically.
type Hooks struct {
	// DropAck, when set, is asked before each CAST acknowledgement; true
	// drops it (counted in Counters.AcksDropped), as a lost packet would.
	DropAck func(id envelope.ID) bool
}

// Proxy is a running node proxy.
type Proxy struct {
	routes         Routes
	counters       Counters
	handle         *socket.Handle[Cmd]
	parent         *actor.PID
	root           *actor.RootContext
	endpoint       string
	castEndpoint   string
	fanoutEndpoint string
	log            *slog.Logger
	hooks          Hooks
	join           string // the daemon's endpoint, for a member

	// fanRefs counts the local servers of each key: the XSUB is subscribed
	// to a key's topic frame while its count is above zero. It outlives the
	// loop, so a restarted loop subscribes again to what its predecessor had.
	fanMu   sync.Mutex
	fanRefs map[directory.Key]int
}

// FanoutEndpoint returns the bound fanout endpoint ("" if none).
func (p *Proxy) FanoutEndpoint() string { return p.fanoutEndpoint }

// CastEndpoint returns the bound direct-cast endpoint ("" if none).
func (p *Proxy) CastEndpoint() string { return p.castEndpoint }

// Start binds the call port and starts the proxy as a supervised actor tree
// under root: a parent actor ("proxy") supervising the ROUTER's socket actor.
// It returns once the port is bound; a bind error (a taken port) is returned.
func Start(ctx context.Context, root *actor.RootContext, name string, cfg Config) (*Proxy, error) {
	p := &Proxy{root: root, log: cfg.Logger, hooks: cfg.Hooks, join: cfg.Join}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	bind, castBind, fanBind := cfg.Bind, cfg.CastBind, cfg.FanoutBind
	var err error
	p.parent, p.handle, err = socket.StartSupervised(ctx, root, name, socket.Spec[Cmd]{
		Name: "router",
		ZMQ:  cfg.ZMQ,
		NewHandler: func() poller.Handler[Cmd] {
			// On a restart, bind again to the port the first start got.
			if p.endpoint != "" {
				bind = p.endpoint
			}
			if p.castEndpoint != "" {
				castBind = p.castEndpoint
			}
			if p.fanoutEndpoint != "" {
				fanBind = p.fanoutEndpoint
			}
			f := &frontend{p: p, bind: bind, castBind: castBind, fanBind: fanBind, opts: cfg.Options, castSock: -1, fanSock: -1}
			f.rq = replyQueue{sock: 0, counters: &p.counters, log: p.log}
			if cfg.Join != "" {
				every := cfg.Heartbeat
				if every <= 0 {
					every = DefaultMemberHeartbeat
				}
				f.member = &memberState{endpoint: cfg.Join, every: every}
			}
			return f
		},
		Loop:   cfg.Loop,
		Logger: p.log,
	})
	if err != nil {
		// The error names the endpoint that failed (the call, direct-cast
		// or fanout port).
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return p, nil
}

// dropAck asks the test hook whether to drop the ACK of id (counted).
func (p *Proxy) dropAck(id envelope.ID) bool {
	if h := p.hooks.DropAck; h != nil && h(id) {
		p.counters.AcksDropped.Add(1)
		return true
	}
	return false
}

// Ack sends the ACK (body) of the CAST id, whose handler has run, to its
// caster, like Reply. The test hook DropAck may drop it.
func (p *Proxy) Ack(ctx context.Context, routing [][]byte, id envelope.ID, body []byte) error {
	if p.dropAck(id) {
		return nil
	}
	return p.Reply(ctx, routing, time.Time{}, body)
}

// Endpoint returns the bound call endpoint, with the actual port.
func (p *Proxy) Endpoint() string { return p.endpoint }

// Routes returns the routing table, where local servers add themselves.
func (p *Proxy) Routes() *Routes { return &p.routes }

// Counters returns the proxy's counters.
func (p *Proxy) Counters() *Counters { return &p.counters }

// Restarts returns how often the ROUTER's socket actor was restarted.
func (p *Proxy) Restarts() uint64 { return p.handle.Restarts() }

// LoopStats returns the ROUTER loop's counters.
func (p *Proxy) LoopStats() poller.Stats { return p.handle.Stats() }

// Reply sends body (the encoded reply, one frame) back to the caller whose
// routing frames are given. It blocks only while the proxy's command queue
// is full, bounded by ctx.
//
// expires is when the caller stops waiting (its call's deadline); a reply
// that cannot be delivered by then is dropped and counted. Zero means
// DefaultReplyTTL from now.
func (p *Proxy) Reply(ctx context.Context, routing [][]byte, expires time.Time, body ...[]byte) error {
	frames := make([][]byte, 0, len(routing)+len(body))
	frames = append(frames, routing...)
	frames = append(frames, body...)
	return p.handle.Submit(ctx, &replyCmd{frames: frames, expires: expires})
}

// Stop stops the proxy's actors and closes its socket. Idempotent.
func (p *Proxy) Stop() error {
	return p.root.StopFuture(p.parent).Wait()
}

// frontend is the handler of the ROUTER loop.
type frontend struct {
	p        *Proxy
	bind     string
	castBind string // "" when the node has no direct-cast port
	fanBind  string // "" when the node has no fanout port
	opts     socket.Options
	castSock int // index of the PULL in the loop, -1 if none
	fanSock  int // index of the XSUB in the loop, -1 if none

	rq replyQueue // replies waiting for a caller whose pipe was full

	hs     socket.Handshakes // monitors of the public sockets (CURVE only)
	public []*zmq.Socket     // the public sockets, during Setup

	// member is set when the proxy is a member of a node proxy daemon
	// (Config.Join): socket 0 is then a DEALER connected to the daemon.
	member *memberState
}

func (f *frontend) Setup(l *poller.Loop[Cmd]) error {
	f.hs = socket.Handshakes{Failed: &f.p.counters.HandshakeFailed, Log: f.p.log}
	if f.member != nil {
		return f.setupMember(l)
	}
	if err := f.setupPublic(l); err != nil {
		return err
	}
	// The handshake monitors come last: the sockets above keep their
	// indexes whatever the security settings.
	for _, z := range f.public {
		if err := socket.Watch(&f.hs, l, z, f.opts); err != nil {
			return err
		}
	}
	f.public = nil
	return nil
}

// setupPublic creates and binds the ROUTER, the fanout XSUB and the
// direct-cast PULL.
func (f *frontend) setupPublic(l *poller.Loop[Cmd]) error {
	_, z, err := l.NewSocket(zmq.ROUTER, "router")
	if err != nil {
		return err
	}
	f.public = append(f.public, z)
	if err := f.opts.Apply(z); err != nil {
		return err
	}
	// Report unroutable replies (a caller that went away) as errors instead
	// of dropping them silently, so that they are counted.
	if err := z.SetRouterMandatory(1); err != nil {
		return err
	}
	if err := bindRetry(z, f.bind, f.p.endpoint != ""); err != nil {
		return fmt.Errorf("bind %s: %w", f.bind, err)
	}
	ep, err := z.GetLastEndpoint()
	if err != nil {
		return err
	}
	if f.p.endpoint == "" {
		// Written once, during the first start, before Start returns.
		f.p.endpoint = ep
	}
	if err := f.setupFanout(l); err != nil {
		return err
	}
	if f.castBind == "" {
		return nil
	}
	// The direct-cast port: a PULL that PUSH sockets of other nodes connect
	// to.
	var pull *zmq.Socket
	f.castSock, pull, err = l.NewSocket(zmq.PULL, "pull")
	if err != nil {
		return err
	}
	f.public = append(f.public, pull)
	po := f.opts
	po.RecvHWM = socket.DirectCastHWM
	if err := po.Apply(pull); err != nil {
		return err
	}
	if err := bindRetry(pull, f.castBind, f.p.castEndpoint != ""); err != nil {
		return fmt.Errorf("bind %s: %w", f.castBind, err)
	}
	if ep, err = pull.GetLastEndpoint(); err != nil {
		return err
	}
	if f.p.castEndpoint == "" {
		f.p.castEndpoint = ep
	}
	return nil
}

// handleDirect routes a direct cast from the PULL socket. Nobody waits for
// an answer: a cast that no server can take is dropped and counted.
func (f *frontend) handleDirect(frames [][]byte) {
	if len(frames) != 1 {
		f.p.counters.Malformed.Add(1)
		return
	}
	var m envelope.Message
	if err := envelope.DecodeInto(&m, frames[0]); err != nil {
		f.p.counters.Malformed.Add(1)
		return
	}
	if m.Kind != envelope.KindCast {
		f.p.counters.WrongKind.Add(1)
		return
	}
	key := directory.Key{Exchange: m.Exchange, Topic: m.Topic}
	req := &Request{Msg: m}
	for attempt := 0; attempt < maxPicks; attempt++ {
		srv, ok := f.p.routes.Pick(key, m.Server).(DirectServer)
		if !ok {
			break
		}
		switch srv.OfferDirect(req) {
		case Stopping:
			continue
		case Accepted:
			f.p.counters.DirectCasts.Add(1)
			return
		}
		break
	}
	if n := f.p.counters.DirectDropped.Add(1); n&(n-1) == 0 {
		f.p.log.Warn("direct cast dropped: no server could take it", "topic", m.Topic, "server", m.Server, "dropped_total", n)
	}
}

func (f *frontend) HandleMessage(l *poller.Loop[Cmd], sock int, frames [][]byte) {
	if f.hs.Handle(sock, frames) {
		return
	}
	switch sock {
	case f.castSock:
		f.handleDirect(frames)
		return
	case f.fanSock:
		f.handleFanout(frames)
		return
	}
	if f.member != nil && len(frames) == 1 {
		f.handleControl(l, frames[0])
		return
	}
	routing, body, err := envelope.SplitRouting(frames)
	if err != nil || len(routing) == 0 || len(routing[0]) == 0 {
		f.p.counters.Malformed.Add(1)
		return
	}
	var m envelope.Message
	if err := envelope.DecodeInto(&m, body); err != nil {
		f.p.counters.Malformed.Add(1)
		return
	}
	if m.Kind == envelope.KindStats && f.member == nil {
		if frames := statsReply(routing, &m, StatsAnswer{Role: "node", Counters: f.p.counters.Snapshot()}); frames != nil {
			f.send(l, frames, time.Time{})
		}
		return
	}
	if m.Kind != envelope.KindCall && !OneWay(m.Kind) {
		f.p.counters.WrongKind.Add(1)
		return
	}
	key := directory.Key{Exchange: m.Exchange, Topic: m.Topic}
	req := &Request{Routing: routing, Msg: m}
	// A server picked just before it stopped refuses with Stopping; by then
	// it is out of the routes, so picking again finds another one.
	for attempt := 0; attempt < maxPicks; attempt++ {
		srv := f.p.routes.Pick(key, m.Server)
		if srv == nil {
			f.p.counters.NoServers.Add(1)
			f.answer(l, sock, routing, &m, envelope.CodeNoServers, "no server for the target on this node")
			return
		}
		var o Offer
		var body []byte
		if is, ok := srv.(InlineServer); ok && is.Inline() {
			body, o = is.HandleInline(req)
		} else {
			o = srv.Offer(req)
		}
		switch o {
		case Stopping:
			continue
		case Full:
			f.p.counters.Overloaded.Add(1)
			f.answer(l, sock, routing, &m, envelope.CodeOverloaded, "server queue full")
			return
		case Duplicate:
			// Run already: acknowledge again, with the outcome it had.
			f.p.counters.Duplicates.Add(1)
			if req.Ack == nil {
				f.answer(l, sock, routing, &m, envelope.CodeOK, "")
			} else if m.Flags&envelope.FlagNoAck == 0 && !f.p.dropAck(m.ID) {
				f.send(l, append(routing[:len(routing):len(routing)], req.Ack), expiry(&m))
			}
			return
		case InProgress:
			f.p.counters.Duplicates.Add(1)
			f.answer(l, sock, routing, &m, envelope.CodeInProgress, "")
			return
		default:
			f.p.counters.Requests.Add(1)
		}
		// A CAST is acknowledged by its server once the handler has run
		// (an inline server returns the ACK as body): an ACK means the
		// message cannot be lost with the server's process any more.
		if body != nil && !(OneWay(m.Kind) && f.p.dropAck(m.ID)) {
			f.send(l, append(routing[:len(routing):len(routing)], body), expiry(&m))
		}
		return
	}
	f.p.counters.NoServers.Add(1)
	f.answer(l, sock, routing, &m, envelope.CodeShuttingDown, "server stopping")
}

// maxPicks bounds how often a request is re-routed away from stopping servers.
const maxPicks = 4

// answer answers a request from the loop: a CAST gets an ACK carrying code
// (CodeOK: the server has it), unless its sender asked for none; a CALL gets
// an ERROR frame with code.
func (f *frontend) answer(l *poller.Loop[Cmd], sock int, routing [][]byte, req *envelope.Message, code envelope.Code, text string) {
	if OneWay(req.Kind) && req.Flags&envelope.FlagNoAck == 0 && f.p.dropAck(req.ID) {
		return
	}
	if frames := answerFrames(routing, req, code, text); frames != nil {
		f.send(l, frames, expiry(req))
	}
}

func (f *frontend) HandleCommand(l *poller.Loop[Cmd], c Cmd) {
	switch c := c.(type) {
	case *replyCmd:
		f.send(l, c.frames, c.expires)
	case *subCmd:
		c.done <- f.subscribe(l, c.key, c.on)
	case *attachCmd:
		f.attach(l, c)
	}
}

// send sends a reply to one caller (see replyQueue).
func (f *frontend) send(l *poller.Loop[Cmd], frames [][]byte, expires time.Time) {
	f.rq.send(l, frames, expires)
}

// Deadline is when the loop next has timed work: retrying waiting replies,
// or a member's heartbeat to its daemon.
func (f *frontend) Deadline() time.Time {
	d := f.rq.deadline()
	if f.member != nil && (d.IsZero() || f.member.nextBeat.Before(d)) {
		d = f.member.nextBeat
	}
	return d
}

// HandleTimer retries the waiting replies and, on a member, sends the
// heartbeat that keeps its servers attached to the daemon.
func (f *frontend) HandleTimer(l *poller.Loop[Cmd], now time.Time) {
	f.rq.retry(l, now)
	if f.member != nil && !now.Before(f.member.nextBeat) {
		f.heartbeat(l, now)
	}
}

// Shutdown hands libzmq the replies submitted before the stop (the socket's
// linger then flushes them) and drops, counted, those still waiting for a
// full caller pipe: their callers are failed by their own Transport
// (timeout, or ErrClosed when it is the same one).
func (f *frontend) Shutdown(l *poller.Loop[Cmd], pending []Cmd, cause error) {
	n := f.rq.n
	for _, c := range pending {
		switch c := c.(type) {
		case *replyCmd:
			if cause == nil && f.rq.n == 0 && l.TrySend(0, c.frames...) == nil {
				f.p.counters.Replies.Add(1)
				continue
			}
			n++
		case *subCmd:
			c.done <- ErrStopped
		case *attachCmd:
			c.done <- attachResult{err: ErrStopped}
		}
	}
	f.p.counters.SendFailed.Add(uint64(n))
	if f.member != nil {
		for _, ch := range f.member.pending {
			ch.done <- attachResult{err: ErrStopped}
		}
	}
}
