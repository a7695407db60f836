// Package zap is zmqmsg's ZAP handler: the ZeroMQ Authentication Protocol
// (RFC 27) endpoint that decides which CURVE clients a Transport's bound
// sockets accept.
//
// libzmq asks the ZAP handler of a socket's own zmq context, at
// inproc://zeromq.zap.01, about every CURVE handshake on a socket with a ZAP
// domain. pebbe/zmq4's AuthStart binds that endpoint only in the default
// context: a Transport, which has a context of its own, would find no
// handler there, and libzmq 4.3 (without the draft ZAP_ENFORCE_DOMAIN
// option) then accepts every client key. So every secured Transport runs
// this handler in its own context, and binds it before any CURVE server
// socket exists.
//
// The handler is a ROUTER owned by one socket actor's loop, like every other
// socket. A request is answered on the spot from an immutable set of keys
// (SetAllowed swaps in a new set);
// nothing in it blocks, and a request that does not parse is refused
// ("400") and counted, never fatal. Only a libzmq error on its inproc
// socket could make the loop fail and restart; libzmq would accept any key
// during that restart, so restarts are counted (Handler.Restarts, in a
// Transport's Stats) and logged by the socket actor; it is restarted as
// often as it fails (never stopped for good), with backoff.
//
// # Stability
//
// This package is exported for zmqmsg's own commands and tests only: its
// API may change in any release. Applications use the zmqmsg package.
package zap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/socket"
)

// Endpoint is where libzmq looks for a context's ZAP handler.
const Endpoint = "inproc://zeromq.zap.01"

// KeySize is the size of a CURVE public key in binary.
const KeySize = 32

// Key is a CURVE public key in binary.
type Key [KeySize]byte

// Config configures a ZAP handler.
type Config struct {
	// ZMQ is the Transport's context: the handler only answers for its
	// sockets.
	ZMQ *zmq.Context
	// Allowed are the client public keys the handler accepts; every other
	// key is refused.
	Allowed []Key
	// Domain is the ZAP domain the handler answers for; requests of other
	// domains are refused. Default socket.ZAPDomain.
	Domain string
	// Logger receives one line per refused handshake (first, then every
	// power of two), with the peer's address and never a key.
	Logger *slog.Logger
	// Loop configures the handler's loop.
	Loop poller.Options
}

// Counters count the handler's answers.
type Counters struct {
	Allowed   atomic.Uint64 // handshakes accepted (a listed key)
	Denied    atomic.Uint64 // handshakes refused (unknown key, wrong mechanism or domain)
	Malformed atomic.Uint64 // requests that were not ZAP 1.0, refused
}

// Handler is a running ZAP handler.
type Handler struct {
	counters Counters
	allowed  atomic.Pointer[map[Key]struct{}] // replaced whole by SetAllowed
	root     *actor.RootContext
	parent   *actor.PID
	handle   *socket.Handle[struct{}]
}

// SetAllowed replaces the accepted client keys; handshakes from now on are
// decided by the new set (connections already made stay).
func (h *Handler) SetAllowed(keys []Key) {
	m := make(map[Key]struct{}, len(keys))
	for _, k := range keys {
		m[k] = struct{}{}
	}
	h.allowed.Store(&m)
}

// Start binds the ZAP endpoint in cfg.ZMQ and serves it from a socket actor
// under root. It returns once the endpoint is bound: a CURVE server socket
// created after that is covered.
func Start(ctx context.Context, root *actor.RootContext, name string, cfg Config) (*Handler, error) {
	if cfg.Domain == "" {
		cfg.Domain = socket.ZAPDomain
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{root: root}
	h.SetAllowed(cfg.Allowed)
	loop := cfg.Loop
	loop.Name = name
	var err error
	// The handler must never stay down: without it libzmq 4.3 accepts any
	// key. It restarts (with backoff) whatever the failure, as often as it
	// takes; only a terminated context stops it.
	strategy := socket.NewStrategy(math.MaxInt32, time.Minute)
	strategy.Decider = func(reason any) actor.Directive {
		var errno zmq.Errno
		if err, ok := reason.(error); ok && errors.As(err, &errno) && errno == zmq.ETERM {
			return actor.StopDirective
		}
		return actor.RestartDirective
	}
	h.parent, h.handle, err = socket.StartSupervisedWith(ctx, root, name, strategy, socket.Spec[struct{}]{
		Name: "zap",
		ZMQ:  cfg.ZMQ,
		NewHandler: func() poller.Handler[struct{}] {
			return &handler{h: h, domain: cfg.Domain, log: cfg.Logger}
		},
		Loop:   loop,
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("zap handler: %w", err)
	}
	return h, nil
}

// Counters returns the handler's counters.
func (h *Handler) Counters() *Counters { return &h.counters }

// Restarts returns how often the handler's socket actor was restarted.
func (h *Handler) Restarts() uint64 { return h.handle.Restarts() }

// Stop stops the handler and closes its socket. Stop it after every CURVE
// server socket of the context is closed.
func (h *Handler) Stop() error { return h.root.StopFuture(h.parent).Wait() }

// handler is the loop's handler.
type handler struct {
	h      *Handler
	domain string
	log    *slog.Logger
}

func (z *handler) Setup(l *poller.Loop[struct{}]) error {
	_, s, err := l.NewSocket(zmq.ROUTER, "zap")
	if err != nil {
		return err
	}
	if err := s.Bind(Endpoint); err != nil {
		return fmt.Errorf("bind %s: %w", Endpoint, err)
	}
	return nil
}

// Status codes of RFC 27.
const (
	statusOK     = "200"
	statusDenied = "400"
)

// HandleMessage answers one ZAP request:
//
//	[routing id] [""] "1.0" request-id domain address identity mechanism credentials...
//
// with
//
//	[routing id] [""] "1.0" request-id status-code status-text user-id metadata
func (z *handler) HandleMessage(l *poller.Loop[struct{}], _ int, frames [][]byte) {
	// The routing frames run up to the empty delimiter (libzmq sends one).
	i := 0
	for i < len(frames) && len(frames[i]) > 0 {
		i++
	}
	if i == 0 || i >= len(frames) || len(frames)-i-1 < 6 {
		// No reply can be addressed, or too short to carry a request id:
		// nobody waits on a well-formed answer, so it is only counted.
		z.h.counters.Malformed.Add(1)
		return
	}
	routing, req := frames[:i+1], frames[i+1:]
	version, id, domain, address, mechanism := string(req[0]), req[1], string(req[2]), string(req[3]), string(req[5])
	status, text := statusDenied, "refused"
	switch {
	case version != "1.0":
		z.h.counters.Malformed.Add(1)
		text = "bad version"
	case domain != z.domain:
		text = "unknown domain"
	case mechanism != "CURVE":
		text = "CURVE required"
	case len(req) != 7 || len(req[6]) != KeySize:
		z.h.counters.Malformed.Add(1)
		text = "bad credentials"
	default:
		var k Key
		copy(k[:], req[6])
		if _, ok := (*z.h.allowed.Load())[k]; ok {
			status, text = statusOK, "OK"
		} else {
			text = "unknown key"
		}
	}
	if status == statusOK {
		z.h.counters.Allowed.Add(1)
	} else if n := z.h.counters.Denied.Add(1); n&(n-1) == 0 {
		// The peer's address and why; never a key.
		z.log.Warn("CURVE client refused", "address", address, "mechanism", mechanism, "reason", text, "refused_total", n)
	}
	reply := make([][]byte, 0, len(routing)+6)
	reply = append(reply, routing...)
	reply = append(reply, []byte("1.0"), id, []byte(status), []byte(text), nil, nil)
	// A full pipe to libzmq's own session cannot happen in practice; if it
	// did, the handshake would time out (refused), which is safe.
	_ = l.TrySend(0, reply...)
}

func (z *handler) HandleCommand(*poller.Loop[struct{}], struct{}) {}
func (z *handler) Deadline() time.Time                            { return time.Time{} }
func (z *handler) HandleTimer(*poller.Loop[struct{}], time.Time)  {}
func (z *handler) Shutdown(*poller.Loop[struct{}], []struct{}, error) {
}
