package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
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
	counters     Counters
	handle       *socket.Handle[BrokerCmd]
	parent       *actor.PID
	root         *actor.RootContext
	ports               // bound by the first loop, before StartBroker returns
	backend      string // as configured
	backendBound string // as bound by the first loop
	log          *slog.Logger
	members      atomic.Int64 // live members, for status
	nInflight    atomic.Int64 // requests relayed and not yet answered, for status
	socketMode   os.FileMode  // of the IPC socket file, set again after a re-bind
	isDraining   atomic.Bool  // for status: Drain has been called

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
			return &broker{b: b, cfg: cfg, castSock: -1, fanSock: -1, back: -1, backMon: -1,
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
