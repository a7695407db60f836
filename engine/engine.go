// Package engine is zmqmsg's core: it builds and tears down everything one
// Transport owns and implements the messaging patterns on top of the actors.
//
// # What one Engine owns
//
//	zmq.Context (its own, never the default one)
//	protoactor ActorSystem (quiet logger)
//	├── "reply" supervisor: owns the reply table; children: one DEALER socket
//	│    actor per remote node (the client end of the CALL pipeline)
//	└── "proxy-call" parent: child: the ROUTER socket actor on the call port
//	servers: worker goroutines per Server, fed by the proxy without a socket hop
//	resolver: the directory cache and its watch goroutines
//	"registrar" actor: registers this node's servers and refreshes them (TTL/3)
//
// # Shutdown order (Close)
//
//  1. refuse new work (Call, Serve return ErrClosed);
//  2. fail every pending call with ErrClosed (the reply table);
//  3. stop the servers: deregister, stop intake, cancel handler contexts,
//     wait (bounded) for the workers;
//  4. stop the proxy, then the reply supervisor and its socket actors: their
//     loops close the sockets;
//  5. stop the registrar and the resolver's goroutines;
//  6. terminate the zmq context, with a watchdog so that a socket left open
//     by a bug turns into an error instead of a hang;
//  7. shut the actor system down.
//
// # Stability
//
// This package is exported for zmqmsg's own commands and tests only: its
// API may change in any release. Applications use the zmqmsg package.
package engine

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/proxy"
	"github.com/zmqmsg/zmqmsg/actors/reply"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/actors/zap"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// AnyPort asks the OS for a free port.
const AnyPort = -1

// Config configures an Engine. The zmqmsg package fills it from its own
// Config, with defaults applied.
type Config struct {
	Host              string
	CallPort          int // AnyPort for a free port
	CastPort          int // the direct-cast port; AnyPort for a free one; 0 for none
	FanoutPort        int // the fanout port; AnyPort for a free one; 0 for none
	NotifyPort        int // the notify port; AnyPort for a free one; 0 for none
	Directory         directory.Directory
	Logger            *slog.Logger
	Strategy          poller.Strategy
	Socket            socket.Options
	CallTimeout       time.Duration
	MaxMessageSize    int
	ServerConcurrency int
	ServerQueue       int
	WaitForServers    time.Duration
	RegistrationTTL   time.Duration
	TermTimeout       time.Duration
	// Acks configures CAST acknowledgements.
	Acks AckPolicy
	// CastWindow bounds the un-acknowledged CASTs in flight to one node;
	// Cast waits (bounded by its ctx) while the window is full.
	CastWindow int
	// Hooks are for tests.
	Hooks proxy.Hooks
	// Join, if not empty, is the IPC directory of a node proxy daemon: the
	// engine joins that daemon's node instead of binding ports (the port
	// fields are then ignored). See JoinEndpoints.
	Join string
	// Security, if set, turns on CURVE on every TCP socket: see Security.
	Security *Security
	// IdleSweep is how often sockets to nodes that left the directory are
	// looked for and closed when idle; DefaultIdleSweep if zero.
	IdleSweep time.Duration
}

// Security is an engine's CURVE configuration, already validated by the
// zmqmsg package.
type Security struct {
	PublicKey, SecretKey string    // Z85, this node's key pair
	Allowed              []zap.Key // client public keys the ZAP handler accepts
}

// JoinEndpoints returns the IPC endpoints a node proxy daemon serving
// directory dir binds, and its members connect to: one for the CALL
// pipeline (with CAST, direct cast and FANOUT) and one for NOTIFY.
func JoinEndpoints(dir string) (call, notify string) {
	return "ipc://" + filepath.Join(dir, "call"), "ipc://" + filepath.Join(dir, "notify")
}

// AckPolicy configures CAST acknowledgements: the first wait for an ACK is
// Timeout, each retry waits Multiplier times longer, and after Retries
// resends of the same message id Cast fails with ErrNotAcked.
type AckPolicy struct {
	Disabled   bool
	Timeout    time.Duration
	Multiplier float64
	Retries    int
}

// Engine is the core of one Transport.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	zctx   *zmq.Context
	system *actor.ActorSystem
	root   *actor.RootContext

	table        *reply.Table
	replyPID     *actor.PID
	registrarPID *actor.PID // keeps the node's servers in the directory
	proxy        *proxy.Proxy
	notify       *proxy.Proxy // the NOTIFY pipeline's own proxy (nil without a notify port)
	zap          *zap.Handler // CURVE's ZAP handler (nil without Security)
	node         directory.Node
	instance     string // see Instance
	dir          directory.Directory
	res          *resolver

	// ctx ends when Close starts: it bounds every background wait.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	dealers socketSet[socket.DealerCmd] // node id (+"/notify") -> DEALER
	servers map[*Server]struct{}

	dealerCounters socket.DealerCounters
	pusherCounters socket.PusherCounters
	pushers        socketSet[socket.PushCmd] // node id -> direct-cast PUSH
	pubCounters    socket.PublisherCounters
	publishers     socketSet[socket.PubCmd] // node id -> fanout XPUB
	closed         atomic.Bool
	closeOnce      sync.Once
	closeErr       error
	wg             sync.WaitGroup

	calls, callErrors, timeouts, expired, panics, handlerErrors           atomic.Uint64
	casts, castRetries, castsNotAcked, castsRun, castErrors               atomic.Uint64
	fanouts, fanoutUnreached, fanoutsRun                                  atomic.Uint64
	notifications, notificationsUnheard, notificationsRun, notifyFailures atomic.Uint64
	notificationsFiltered                                                 atomic.Uint64
	directRun, directRefused                                              atomic.Uint64
	registrationErrors, castsResent, idleClosed, rerouted                 atomic.Uint64

	fanoutsRefused, directNoMethod atomic.Uint64 // one-way messages to a method the server does not have

	windowMu sync.Mutex
	windows  map[string]chan struct{} // node id -> un-acked CAST slots
}

// New starts an engine: its zmq context, actor system, reply supervisor and
// call-port proxy. A taken port is returned as an error, and then nothing is
// left running.
func New(cfg Config) (_ *Engine, err error) {
	e := &Engine{
		cfg:     cfg,
		log:     cfg.Logger,
		dir:     cfg.Directory,
		servers: make(map[*Server]struct{}),
		windows: make(map[string]chan struct{}),
		table:   reply.NewTable(),
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if e.zctx, e.system, err = newRuntime(e.log); err != nil {
		return nil, err
	}
	e.root = e.system.Root
	defer func() {
		if err != nil {
			e.teardown()
		}
	}()
	strategy := socket.NewStrategy(10, time.Minute)
	if e.replyPID, err = reply.SpawnSupervisor(e.root, "reply", e.table, strategy); err != nil {
		return nil, err
	}
	if err := e.startSecurity(); err != nil {
		return nil, err
	}
	port := "*"
	if cfg.CallPort != AnyPort {
		port = strconv.Itoa(cfg.CallPort)
	}
	bindOf := func(port int) string {
		switch port {
		case 0:
			return ""
		case AnyPort:
			return "tcp://" + net.JoinHostPort(cfg.Host, "*")
		}
		return "tcp://" + net.JoinHostPort(cfg.Host, strconv.Itoa(port))
	}
	startCtx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if cfg.Join != "" {
		if err := e.join(startCtx); err != nil {
			return nil, err
		}
		if err := e.startRegistrar(); err != nil {
			return nil, err
		}
		e.log.Info("zmqmsg node joined its proxy daemon", "dir", cfg.Join, "node", e.node.ID(), "instance", e.instance)
		return e, nil
	}
	e.proxy, err = proxy.Start(startCtx, e.root, "proxy-call", proxy.Config{
		ZMQ:        e.zctx,
		Bind:       "tcp://" + net.JoinHostPort(cfg.Host, port),
		CastBind:   bindOf(cfg.CastPort),
		FanoutBind: bindOf(cfg.FanoutPort),
		Options:    e.routerOptions(),
		Loop:       poller.Options{Strategy: cfg.Strategy},
		Logger:     e.log,
		Hooks:      cfg.Hooks,
	})
	if err != nil {
		return nil, fmt.Errorf("zmqmsg: node proxy: %w", err)
	}
	if nb := bindOf(cfg.NotifyPort); nb != "" {
		// NOTIFY has a proxy of its own: its own loop and port, so that a
		// storm of notifications never delays calls.
		e.notify, err = proxy.Start(startCtx, e.root, "proxy-notify", proxy.Config{
			ZMQ:     e.zctx,
			Bind:    nb,
			Options: e.routerOptions(),
			Loop:    poller.Options{Strategy: cfg.Strategy},
			Logger:  e.log,
			Hooks:   cfg.Hooks,
		})
		if err != nil {
			return nil, fmt.Errorf("zmqmsg: notify port: %w", err)
		}
	}
	e.node = directory.Node{Host: cfg.Host}
	if cfg.Security != nil {
		e.node.CurveKey = cfg.Security.PublicKey
	}
	if err := setPorts(map[string]*int{
		e.proxy.Endpoint(): &e.node.CallPort, e.proxy.CastEndpoint(): &e.node.CastPort,
		e.proxy.FanoutEndpoint(): &e.node.FanoutPort, e.notifyEndpoint(): &e.node.NotifyPort,
	}); err != nil {
		return nil, err
	}
	if err := e.startRegistrar(); err != nil {
		return nil, err
	}
	e.log.Info("zmqmsg node started", "host", cfg.Host, "call", e.proxy.Endpoint(), "strategy", cfg.Strategy.Resolve().String())
	return e, nil
}

// newRuntime makes what every engine and daemon runs on: a zmq context of
// its own (never the default one) and an actor system with a quiet logger.
// Dead letters are throttled for 10 ms only: the throttle runs a timer
// goroutine for its interval, which must not outlive a Close.
func newRuntime(log *slog.Logger) (*zmq.Context, *actor.ActorSystem, error) {
	zctx, err := zmq.NewContext()
	if err != nil {
		return nil, nil, fmt.Errorf("zmqmsg: new zmq context: %w", err)
	}
	quiet := log.With("component", "protoactor")
	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }),
		actor.WithDeadLetterThrottleInterval(10*time.Millisecond),
		actor.WithDeadLetterRequestLogging(false),
	)
	return zctx, system, nil
}

// startRegistrar starts the resolver, the idle-socket sweeper and the
// registrar actor.
func (e *Engine) startRegistrar() (err error) {
	e.res = newResolver(e.dir, e.log)
	every := e.cfg.IdleSweep
	if every <= 0 {
		every = DefaultIdleSweep
	}
	e.wg.Add(1)
	go e.sweepIdle(every)
	e.registrarPID, err = spawnRegistrar(e.root, e.dir, e.cfg.RegistrationTTL, e.log, &e.registrationErrors)
	if err != nil {
		return fmt.Errorf("zmqmsg: registrar: %w", err)
	}
	return nil
}

// join starts the engine's proxies as members of the node proxy daemon in
// cfg.Join, and takes the daemon's node as its own.
func (e *Engine) join(ctx context.Context) error {
	call, notify := JoinEndpoints(e.cfg.Join)
	sock := strings.TrimPrefix(call, "ipc://")
	if _, err := os.Stat(sock); err != nil {
		return fmt.Errorf("zmqmsg: join the node proxy daemon in %s: %w: %w", e.cfg.Join, proxy.ErrNoDaemon, err)
	}
	var err error
	for _, p := range []struct {
		name, endpoint string
		px             **proxy.Proxy
	}{{"proxy-call", call, &e.proxy}, {"proxy-notify", notify, &e.notify}} {
		*p.px, err = proxy.Start(ctx, e.root, p.name, proxy.Config{
			ZMQ:     e.zctx,
			Join:    p.endpoint,
			Options: e.routerOptions(),
			Loop:    poller.Options{Strategy: e.cfg.Strategy},
			Logger:  e.log,
			Hooks:   e.cfg.Hooks,
		})
		if err != nil {
			return fmt.Errorf("zmqmsg: join %s: %w", p.endpoint, err)
		}
	}
	hctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	// Hello on both pipelines: the node comes from the call pipeline's
	// answer, and the notify pipeline proves it is there too. A daemon
	// that is still binding its ports says so; ask again.
	for _, px := range []*proxy.Proxy{e.proxy, e.notify} {
		for {
			node, err := px.DaemonNode(hctx)
			if errors.Is(err, proxy.ErrDaemonBusy) {
				t := time.NewTimer(10 * time.Millisecond)
				select {
				case <-t.C:
					continue
				case <-hctx.Done():
					t.Stop()
				}
			}
			if err != nil {
				return fmt.Errorf("zmqmsg: join the node proxy daemon in %s: %w", e.cfg.Join, err)
			}
			if px == e.proxy {
				e.node = node
				if err := e.checkDaemonSecurity(); err != nil {
					return err
				}
			}
			break
		}
	}
	var tag [4]byte
	id := envelope.NewID()
	copy(tag[:], id[:])
	e.instance = hex.EncodeToString(tag[:])
	return nil
}

// joinTimeout bounds the wait for the daemon's first answer.
const joinTimeout = 5 * time.Second

// Instance returns "" for an engine with its own ports, and a random tag
// for one that joined a proxy daemon: several processes then share the
// daemon's node, and generated server names must not collide.
func (e *Engine) Instance() string { return e.instance }

// setPorts sets each port to the one its bound endpoint ("tcp://host:port")
// names; an empty endpoint (a port not bound) leaves it 0.
func setPorts(ports map[string]*int) error {
	for ep, port := range ports {
		if ep == "" {
			continue
		}
		_, p, err := net.SplitHostPort(trimScheme(ep))
		if err == nil {
			*port, err = strconv.Atoi(p)
		}
		if err != nil {
			return fmt.Errorf("zmqmsg: bound endpoint %q: %w", ep, err)
		}
	}
	return nil
}

func trimScheme(ep string) string {
	const tcp = "tcp://"
	if len(ep) > len(tcp) && ep[:len(tcp)] == tcp {
		return ep[len(tcp):]
	}
	return ep
}

func (e *Engine) notifyEndpoint() string {
	if e.notify == nil {
		return ""
	}
	return e.notify.Endpoint()
}

// routerOptions are the call ROUTER's socket options: the network settings,
// with room for the envelope above the payload limit.
func (e *Engine) routerOptions() socket.Options {
	o := e.cfg.Socket
	if e.cfg.MaxMessageSize > 0 {
		o.MaxMessageSize = int64(e.cfg.MaxMessageSize) + 256*1024
	}
	return o
}

// Node returns how other nodes reach this one.
func (e *Engine) Node() directory.Node { return e.node }

// Close shuts the engine down in the order given in the package doc. It is
// idempotent and returns the first error of the first call.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		e.table.Close(ErrClosed)
		e.mu.Lock()
		servers := make([]*Server, 0, len(e.servers))
		for s := range e.servers {
			servers = append(servers, s)
		}
		e.mu.Unlock()
		for _, s := range servers {
			ctx, cancel := context.WithTimeout(context.Background(), e.cfg.TermTimeout)
			s.shutdown(ctx, true)
			cancel()
		}
		e.closeErr = e.teardown()
	})
	return e.closeErr
}

// teardown stops the actors, goroutines and the zmq context (steps 4 to 7).
func (e *Engine) teardown() error {
	e.cancel()
	var errs []error
	if e.notify != nil {
		if err := e.notify.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop notify proxy: %w", err))
		}
	}
	if e.proxy != nil {
		if err := e.proxy.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop proxy: %w", err))
		}
	}
	if e.replyPID != nil {
		if err := e.root.PoisonFuture(e.replyPID).Wait(); err != nil {
			errs = append(errs, fmt.Errorf("stop reply supervisor: %w", err))
		}
	}
	if e.zap != nil {
		// Last of the sockets: no CURVE server socket is left open.
		if err := e.zap.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop zap handler: %w", err))
		}
	}
	if e.registrarPID != nil {
		if err := e.root.StopFuture(e.registrarPID).Wait(); err != nil {
			errs = append(errs, fmt.Errorf("stop registrar: %w", err))
		}
	}
	if e.res != nil {
		e.res.close()
	}
	e.wg.Wait()
	if err := e.term(); err != nil {
		errs = append(errs, err)
	}
	e.system.Shutdown()
	return errors.Join(errs...)
}

// term terminates the engine's zmq context (see terminate).
func (e *Engine) term() error { return terminate(e.zctx, e.cfg.TermTimeout, e.log) }

// terminate terminates a zmq context with a watchdog: Term blocks while any
// socket is open, which would be a bug in zmqmsg; turn it into an error.
func terminate(zctx *zmq.Context, timeout time.Duration, log *slog.Logger) error {
	done := make(chan error, 1)
	go func() { done <- zctx.Term() }()
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("zmqmsg: terminate zmq context: %w", err)
		}
		return nil
	case <-t.C:
		log.Error("zmq context did not terminate: a socket was left open", "waited", timeout)
		return fmt.Errorf("zmqmsg: zmq context did not terminate within %v", timeout)
	}
}

// dealer returns the DEALER socket actor connected to node, starting it on
// first use under the reply supervisor.
func (e *Engine) dealer(ctx context.Context, r route) (*socket.Handle[socket.DealerCmd], error) {
	if h := e.dealers.lookup(r.sockKey); h != nil {
		return h, nil // the hot path: no closure, no allocation
	}
	return e.dealerAt(ctx, r.Node, r.sockKey, r.nodeID, r.Node.CallEndpoint)
}

// dealerAt returns the DEALER socket actor named key (socketKey of a node
// id, with a suffix for pipelines other than CALL/CAST), connected to
// endpoint(); tag is what the reply table tags its calls with. endpoint and
// the socket options are only worked out when the socket is started, not on
// every send.
func (e *Engine) dealerAt(ctx context.Context, node directory.Node, key, tag string, endpoint func() string) (*socket.Handle[socket.DealerCmd], error) {
	if err := e.checkPeer(node); err != nil {
		return nil, err
	}
	return e.dealers.get(ctx, e, key, socketName("dealer", key), func() poller.Handler[socket.DealerCmd] {
		ep := endpoint()
		opts := e.clientOptions(node)
		return &socket.Dealer{
			Endpoint: ep, Tag: tag, Table: e.table, Options: opts, Counters: &e.dealerCounters,
			NodeDown:    func(cause string) error { return &NodeDownError{Node: tag, Cause: cause} },
			Unreachable: func(cause string) error { return &UnavailableError{Node: tag, Cause: cause} },
			HandshakeFailed: func(cause string) error {
				e.log.Warn("node refused the CURVE handshake: requests to it fail", "node", tag, "cause", cause)
				return &HandshakeError{Node: tag, Cause: cause}
			},
			OnLiveness: func(up bool) {
				// Only the CALL pipeline's connection decides whether new
				// calls avoid the node (the notify one's tag ends in
				// "/notify").
				if strings.HasSuffix(tag, "/notify") {
					return
				}
				if up {
					if _, was := e.res.down.LoadAndDelete(tag); was {
						e.log.Info("node answers again", "node", tag)
					}
					return
				}
				if _, was := e.res.down.LoadOrStore(tag, struct{}{}); !was {
					e.log.Warn("node down: its pending calls failed, new calls avoid it until it answers", "node", tag, "endpoint", ep)
				}
			},
		}
	})
}

// Stats are the engine's counters; every drop, failure and late reply is
// counted here, so that "nothing lost silently" can be checked.
type Stats struct {
	Calls                 uint64 // calls sent
	CallErrors            uint64 // calls that ended with an error (timeouts included)
	Timeouts              uint64 // calls that timed out
	LateReplies           uint64 // replies that arrived after their call gave up, dropped
	UnmatchedReplies      uint64 // replies for unknown ids, dropped
	MalformedFrames       uint64 // received messages that did not decode, dropped
	WrongKind             uint64 // decoded messages of a kind the socket does not take, dropped
	NoServers             uint64 // requests this node's proxy could not route (answered with an error)
	Overloaded            uint64 // requests refused because a server queue was full (answered)
	Expired               uint64 // requests whose deadline passed before a worker took them, dropped
	HandlerErrors         uint64 // handler errors returned to callers
	HandlerPanics         uint64 // handler panics, returned to callers as RemoteError
	SendFailures          uint64 // messages libzmq refused (peer gone), dropped
	Casts                 uint64 // casts sent (each counted once, however often retried)
	CastRetries           uint64 // cast resends after an ACK did not come in time
	CastsNotAcked         uint64 // casts that failed with ErrNotAcked
	CastsResent           uint64 // topic casts sent to another node's server after their node went down or never acknowledged
	CastsRun              uint64 // cast handlers run by this node's servers
	CastErrors            uint64 // cast handlers that returned an error (counted, logged)
	DuplicateCasts        uint64 // retried casts a server had already had: acknowledged, not run again
	DirectCasts           uint64 // direct casts handed to a PUSH socket
	DirectCastFailed      uint64 // direct casts, and casts sent with acks off, that could not be sent (closed, refused, node unreachable, left queued at Close), dropped
	DirectCastsRun        uint64 // direct cast handlers run by this node's servers
	DirectDropped         uint64 // direct casts this node received but no server could take (queue full, none), dropped
	DirectRefused         uint64 // direct casts (and casts sent with acks off) a local server had no method for, dropped (logged with the method)
	Fanouts               uint64 // fanout casts sent (each once, whatever the number of nodes)
	FanoutsSent           uint64 // fanout messages handed to a node's socket (one per node)
	FanoutsParked         uint64 // fanout messages that waited for a node's subscription
	FanoutUnreached       uint64 // fanout messages a node never took (not subscribed in time, socket failed); reported to the caster
	FanoutsRun            uint64 // fanout handlers run by this node's servers
	FanoutDropped         uint64 // fanouts this node received that a server could not take (lane full), dropped
	FanoutDeliveries      uint64 // fanouts this node handed to its servers' lanes (one per server)
	FanoutsRefused        uint64 // fanouts a local server had no method for, dropped (logged with the method; one per server)
	Notifications         uint64 // notifications sent (each once, whatever the number of pools)
	NotificationsUnheard  uint64 // notifications sent to a topic no pool listened to (counted, logged)
	NotificationsRun      uint64 // notification handlers run by this node's listeners
	NotifyFailures        uint64 // deliveries to a pool that no member of the pool acknowledged
	NotificationsFiltered uint64 // notifications a listener's priority filter dropped (acknowledged)
	SocketRestarts        uint64 // socket actors restarted by their supervisor
	DirectoryErrors       uint64 // failed directory lookups (cached entries kept serving)
	NodeDisconnects       uint64 // connections to other nodes lost (peer gone, heartbeat timeout, keepalive)
	FailedNodeDown        uint64 // calls and casts failed at once because their node's connection was lost
	ConnectFailures       uint64 // failed attempts to connect to another node (refused, unreachable, connect timeout)
	NotSent               uint64 // calls and casts whose caller waited, failed before libzmq had them, their node being unreachable (each then rerouted, or failed: ErrUnavailable, or ErrNodeDown for a cast an earlier attempt may have delivered)
	Rerouted              uint64 // calls and casts that never ran where they were sent (their node unreachable, or its server stopping) and went to another server of their topic
	NodesDown             int    // nodes whose connection is down now (new calls avoid them)
	RegistrationErrors    uint64 // failed directory registrations and refreshes (retried until the directory returns)
	OpenSockets           int    // sockets to other nodes open now (DEALERs, PUSHes, XPUBs)
	IdleSocketsClosed     uint64 // sockets to nodes that left the directory, closed after a sweep period without use
	HandshakeFailures     uint64 // failed security handshakes, both ways: peers refused by this node's ports, and nodes that refused this one
	AuthAllowed           uint64 // CURVE clients the ZAP handler accepted
	AuthDenied            uint64 // CURVE clients the ZAP handler refused (unknown key, wrong mechanism), logged without keys
	PendingCalls          int    // calls waiting for a reply now
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	ts := e.table.Stats()
	pc := e.proxy.Counters()
	st := Stats{
		Calls:                 e.calls.Load(),
		CallErrors:            e.callErrors.Load(),
		Timeouts:              e.timeouts.Load(),
		LateReplies:           ts.Late,
		UnmatchedReplies:      ts.Unmatched,
		MalformedFrames:       pc.Malformed.Load() + e.dealerCounters.Malformed.Load() + e.proxy.LoopStats().Oversized,
		WrongKind:             pc.WrongKind.Load() + e.dealerCounters.WrongKind.Load(),
		NoServers:             pc.NoServers.Load(),
		Overloaded:            pc.Overloaded.Load(),
		Expired:               e.expired.Load(),
		HandlerErrors:         e.handlerErrors.Load(),
		HandlerPanics:         e.panics.Load(),
		SendFailures:          pc.SendFailed.Load(),
		DirectoryErrors:       e.res.lookupErrors.Load(),
		RegistrationErrors:    e.registrationErrors.Load(),
		NodeDisconnects:       e.dealerCounters.Disconnects.Load(),
		FailedNodeDown:        e.dealerCounters.FailedByDown.Load(),
		ConnectFailures:       e.dealerCounters.ConnectFailures.Load(),
		NotSent:               e.dealerCounters.NotSent.Load(),
		Rerouted:              e.rerouted.Load(),
		NodesDown:             e.res.nodesDown(),
		SocketRestarts:        e.proxy.Restarts(),
		Casts:                 e.casts.Load(),
		CastRetries:           e.castRetries.Load(),
		CastsNotAcked:         e.castsNotAcked.Load(),
		CastsResent:           e.castsResent.Load(),
		CastsRun:              e.castsRun.Load(),
		CastErrors:            e.castErrors.Load(),
		DuplicateCasts:        pc.Duplicates.Load(),
		DirectCasts:           e.pusherCounters.Sent.Load(),
		DirectCastFailed:      e.pusherCounters.Failed.Load() + e.directRefused.Load() + e.dealerCounters.UnackedDropped.Load(),
		DirectCastsRun:        e.directRun.Load(),
		DirectDropped:         pc.DirectDropped.Load(),
		DirectRefused:         e.directNoMethod.Load(),
		Fanouts:               e.fanouts.Load(),
		FanoutsSent:           e.pubCounters.Sent.Load(),
		FanoutsParked:         e.pubCounters.Parked.Load(),
		FanoutUnreached:       e.pubCounters.NotSubscribed.Load() + e.fanoutUnreached.Load(),
		FanoutsRun:            e.fanoutsRun.Load(),
		FanoutDropped:         pc.FanoutDropped.Load(),
		FanoutDeliveries:      pc.Fanouts.Load(),
		FanoutsRefused:        e.fanoutsRefused.Load(),
		Notifications:         e.notifications.Load(),
		NotificationsUnheard:  e.notificationsUnheard.Load(),
		NotificationsRun:      e.notificationsRun.Load(),
		NotifyFailures:        e.notifyFailures.Load(),
		NotificationsFiltered: e.notificationsFiltered.Load(),
		PendingCalls:          ts.Pending,
		HandshakeFailures: pc.HandshakeFailed.Load() + e.dealerCounters.HandshakeFailed.Load() +
			e.pusherCounters.HandshakeFailed.Load() + e.pubCounters.HandshakeFailed.Load(),
		OpenSockets:       e.dealers.size() + e.pushers.size() + e.publishers.size(),
		IdleSocketsClosed: e.idleClosed.Load(),
	}
	if e.zap != nil {
		zc := e.zap.Counters()
		st.AuthAllowed, st.AuthDenied = zc.Allowed.Load(), zc.Denied.Load()
		st.MalformedFrames += zc.Malformed.Load()
		st.SocketRestarts += e.zap.Restarts()
	}
	e.dealers.each(func(h *socket.Handle[socket.DealerCmd]) {
		st.SocketRestarts += h.Restarts()
		st.MalformedFrames += h.Stats().Oversized
	})
	e.pushers.each(func(h *socket.Handle[socket.PushCmd]) { st.SocketRestarts += h.Restarts() })
	e.publishers.each(func(h *socket.Handle[socket.PubCmd]) { st.SocketRestarts += h.Restarts() })
	if e.notify != nil {
		// The NOTIFY pipeline's own proxy: its drops count the same.
		nc := e.notify.Counters()
		st.MalformedFrames += nc.Malformed.Load() + e.notify.LoopStats().Oversized
		st.WrongKind += nc.WrongKind.Load()
		st.NoServers += nc.NoServers.Load()
		st.Overloaded += nc.Overloaded.Load()
		st.SendFailures += nc.SendFailed.Load()
		st.DuplicateCasts += nc.Duplicates.Load()
		st.SocketRestarts += e.notify.Restarts()
		st.HandshakeFailures += nc.HandshakeFailed.Load()
	}
	return st
}
