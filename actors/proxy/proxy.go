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
// # Structure
//
// Three loop handlers (poller.Handler), each the logic of one actor:
//
//   - public (public.go): the embedded proxy of a node that owns its
//     ports: the call ROUTER, the fanout XSUB and the direct-cast PULL.
//   - member (member.go): the proxy of a service process that joined a node
//     proxy daemon (Config.Join): one DEALER to the daemon.
//   - broker (broker_loop.go): the daemon's side (StartBroker): the node's
//     public ports, relayed to the members.
//
// Start picks public or member once. Both embed core (core.go): routing to
// the local servers, replies and answers. The three share one decode and
// validate step (decode.go) and one way of binding public ports (bind.go).
//
// Proxy is the handle other goroutines use. The state that outlives a loop
// restart lives in it, the route table (routes.go) and the fanout
// subscriptions (fanout.go), but only the current loop goroutine touches
// it: other goroutines change it with commands (commands.go).
//
// # Stability
//
// This package is exported for zmqmsg's own commands and tests only: its
// API may change in any release. Applications use the zmqmsg package.
package proxy

import (
	"context"
	"errors"
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
	// Set by Start; read-only after it returns.
	handle  *socket.Handle[Cmd]
	parent  *actor.PID
	root    *actor.RootContext
	log     *slog.Logger
	hooks   Hooks
	join    string // the daemon's endpoint, for a member
	ports          // bound by the first loop, before Start returns
	stopped chan struct{}
	stop    sync.Once
	// ack sends for Ack: plainAck, or hookedAck when Hooks.DropAck is set.
	ack func(ctx context.Context, routing [][]byte, id envelope.ID, body []byte) error

	counters Counters

	// Loop state that outlives a loop: only the current loop goroutine
	// touches it (a restarted loop starts after its predecessor stopped).
	routes  Routes
	fanRefs map[directory.Key]int // local servers per key: the XSUB is subscribed while above zero
}

// Start binds the call port and starts the proxy as a supervised actor tree
// under root: a parent actor ("proxy") supervising the ROUTER's socket actor.
// It returns once the port is bound; a bind error (a taken port) is returned.
func Start(ctx context.Context, root *actor.RootContext, name string, cfg Config) (*Proxy, error) {
	p := &Proxy{root: root, log: cfg.Logger, hooks: cfg.Hooks, join: cfg.Join, stopped: make(chan struct{})}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.ack = p.plainAck
	if cfg.Hooks.DropAck != nil {
		p.ack = p.hookedAck
	}
	// One handler type for the proxy's whole life, a fresh one per loop.
	newHandler := func() poller.Handler[Cmd] { return newPublic(p, cfg) }
	if cfg.Join != "" {
		newHandler = func() poller.Handler[Cmd] { return newMember(p, cfg) }
	}
	loop := cfg.Loop
	loop.OnHandoff = func() { p.counters.QuickOverran.Add(1) } // only quick runs detach
	var err error
	p.parent, p.handle, err = socket.StartSupervised(ctx, root, name, socket.Spec[Cmd]{
		Name:       "router",
		ZMQ:        cfg.ZMQ,
		NewHandler: newHandler,
		Loop:       loop,
		Logger:     p.log,
	})
	if err != nil {
		// The error names the endpoint that failed (the call, direct-cast
		// or fanout port).
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return p, nil
}

// Member reports whether the proxy is a member of a node proxy daemon.
func (p *Proxy) Member() bool { return p.join != "" }

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
	c := &replyCmd{expires: expires}
	c.frames = append(append(c.inline[:0], routing...), body...)
	return p.handle.Submit(ctx, c)
}

// Ack sends the ACK (body) of the CAST id, whose handler has run, to its
// caster, like Reply. The test hook DropAck may drop it.
func (p *Proxy) Ack(ctx context.Context, routing [][]byte, id envelope.ID, body []byte) error {
	return p.ack(ctx, routing, id, body)
}

func (p *Proxy) plainAck(ctx context.Context, routing [][]byte, _ envelope.ID, body []byte) error {
	return p.Reply(ctx, routing, time.Time{}, body)
}

func (p *Proxy) hookedAck(ctx context.Context, routing [][]byte, id envelope.ID, body []byte) error {
	if p.dropAck(id) {
		return nil
	}
	return p.Reply(ctx, routing, time.Time{}, body)
}

// dropAck asks the test hook whether to drop the ACK of id (counted).
func (p *Proxy) dropAck(id envelope.ID) bool {
	if p.hooks.DropAck(id) {
		p.counters.AcksDropped.Add(1)
		return true
	}
	return false
}

// Attach routes key to srv: it adds srv to the routes and, on a member of a
// daemon, tells the daemon and waits (bounded by ctx) until the daemon
// routes the topic to this process. A name another process of the node
// already serves is refused with an error wrapping ErrDuplicate.
func (p *Proxy) Attach(ctx context.Context, key directory.Key, srv Server) error {
	if err := p.route(ctx, routeAdd, key, srv); err != nil {
		return err
	}
	if !p.Member() {
		return nil
	}
	if _, err := p.control(ctx, envelope.KindAttach, key, srv.Name()); err != nil {
		// The ATTACH may still reach the daemon (it waits in the pipe
		// while the daemon is away): the DETACH behind it cancels it.
		// Should both be lost, the daemon drops the server after
		// MemberTTL anyway, since no heartbeat repeats it.
		_ = p.Detach(context.WithoutCancel(ctx), key, srv)
		p.Forget(key, srv)
		return err
	}
	return nil
}

// Detach stops routing new requests for key to srv (requests that name it
// still reach it: see Routes.Retire; Forget ends that) and, on a member,
// sends the daemon a DETACH without waiting for its answer: a request the
// daemon still relays is refused here by the stopping server (and
// re-routed by the caller's retry or answered NO_SERVERS), and a daemon
// that is gone drops the server after a few missed heartbeats anyway.
// It waits until the loop has retired srv; submitting is bounded by ctx.
func (p *Proxy) Detach(ctx context.Context, key directory.Key, srv Server) error {
	if err := p.route(ctx, routeRetire, key, srv); err != nil || !p.Member() {
		return err
	}
	return p.handle.Submit(ctx, &attachCmd{
		msg:     envelope.Message{Kind: envelope.KindDetach, Exchange: key.Exchange, Topic: key.Topic, Server: srv.Name()},
		expires: time.Now(),
		done:    make(chan attachResult, 1),
	})
}

// forgetWait bounds how long Forget waits for a restarting loop.
const forgetWait = 2 * rebindWait

// Forget removes srv from key's routes altogether (after Detach, once it
// has drained). It waits until the loop has, or for up to forgetWait while
// the loop restarts.
func (p *Proxy) Forget(key directory.Key, srv Server) {
	ctx, cancel := context.WithTimeout(context.Background(), forgetWait)
	defer cancel()
	if err := p.route(ctx, routeRemove, key, srv); err != nil && !errors.Is(err, ErrStopped) {
		p.log.Warn("forget failed: the server stays routed by name", "key", key.String(), "server", srv.Name(), "err", err)
	}
}

// Stop stops the proxy's actors and closes its socket. Idempotent.
func (p *Proxy) Stop() error {
	p.stop.Do(func() { close(p.stopped) })
	return p.root.StopFuture(p.parent).Wait()
}
