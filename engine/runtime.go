package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/actors/zap"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/internal/config"
	"github.com/zmqmsg/zmqmsg/internal/routine"
)

// runtime is what an Engine and a Daemon both run on, made by one function
// (startRuntime) and torn down by one (close): a zmq context of its own
// (never the default one), an actor system with a quiet logger, the ZAP
// handler of a node that binds CURVE ports, the goroutines started for it,
// and the socket options every TCP socket of the node starts from.
type runtime struct {
	cfg      config.Config // with defaults, validated
	log      *slog.Logger
	zctx     *zmq.Context
	system   *actor.ActorSystem
	root     *actor.RootContext
	id       string        // prefix of the node's actor names in the shared system
	zap      *zap.Handler  // nil without Security, or on a member of a daemon
	routines routine.Group // every goroutine of the node (Go, never go)

	// ctx ends when teardown starts: it bounds every background wait.
	ctx    context.Context
	cancel context.CancelFunc

	sock socket.Options // TCP sockets; a CURVE server's role when secured
}

// termTimeout bounds the zmq context's termination (see terminate).
const termTimeout = 5 * time.Second

// startTimeout bounds binding the ports and joining a daemon.
const startTimeout = 10 * time.Second

// startRuntime applies cfg's defaults, validates it and makes a runtime
// for it. bindsTCP: the node binds TCP ports of its own, so a secured node
// needs a ZAP handler; a member of a daemon binds none. On error nothing
// is left running.
func startRuntime(cfg config.Config, bindsTCP bool) (*runtime, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkLibzmq(); err != nil {
		return nil, err
	}
	zctx, err := zmq.NewContext()
	if err != nil {
		return nil, fmt.Errorf("zmqmsg: new zmq context: %w", err)
	}
	rt := &runtime{cfg: cfg, log: cfg.Logger, zctx: zctx, sock: socketOptions(cfg)}
	rt.system, rt.id = acquireSystem()
	rt.root = rt.system.Root
	rt.ctx, rt.cancel = context.WithCancel(context.Background())
	if err := rt.startSecurity(bindsTCP); err != nil {
		_ = rt.close()
		return nil, err
	}
	return rt, nil
}

// startSecurity starts the ZAP handler, before any CURVE server socket
// exists, and gives the TCP sockets their CURVE server role (client sockets
// get their role per node: clientOptions).
func (rt *runtime) startSecurity(bindsTCP bool) error {
	sec := rt.cfg.Security
	if sec == nil {
		return nil
	}
	keys, err := sec.Keys()
	if err != nil {
		return err
	}
	rt.sock.Curve = &socket.Curve{PublicKey: sec.PublicKey, SecretKey: sec.SecretKey}
	if !bindsTCP {
		return nil // a member binds no TCP port: the daemon's handler decides
	}
	if !zmq.HasCurve() {
		return fmt.Errorf("zmqmsg: Security needs CURVE, and this libzmq was built without it")
	}
	sctx, cancel := context.WithTimeout(rt.ctx, 5*time.Second)
	defer cancel()
	rt.zap, err = zap.Start(sctx, rt.root, rt.name("zap"), zap.Config{
		ZMQ: rt.zctx, Allowed: zapKeys(keys), Logger: rt.log, Loop: rt.loop(),
	})
	if err != nil {
		return fmt.Errorf("zmqmsg: %w", err)
	}
	return nil
}

func zapKeys(keys []config.Key) []zap.Key {
	out := make([]zap.Key, len(keys))
	for i, k := range keys {
		out[i] = zap.Key(k)
	}
	return out
}

// setAllowed replaces the client keys the ZAP handler accepts (the node's
// own key is always among them).
func (rt *runtime) setAllowed(clients []string) error {
	if rt.cfg.Security == nil || rt.zap == nil {
		return fmt.Errorf("%w: no Security configured", config.ErrInvalidConfig)
	}
	next := *rt.cfg.Security
	next.AllowedClients = clients
	keys, err := next.Keys()
	if err != nil {
		return err
	}
	rt.zap.SetAllowed(zapKeys(keys))
	return nil
}

// loop is how every socket loop of the node sleeps.
func (rt *runtime) loop() poller.Options { return poller.Options{Strategy: rt.cfg.WaitStrategy} }

// routerOptions are the options of a bound socket: the network settings,
// with room for the envelope above the payload limit.
func (rt *runtime) routerOptions() socket.Options {
	o := rt.sock
	if rt.cfg.MaxMessageSize > 0 {
		o.MaxMessageSize = int64(rt.cfg.MaxMessageSize) + 256*1024
	}
	return o
}

// bind returns the endpoint a pipeline's port binds: "" for port 0 (none),
// "*" for AnyPort.
func (rt *runtime) bind(port int) string {
	switch port {
	case 0:
		return ""
	case config.AnyPort:
		return "tcp://" + net.JoinHostPort(rt.cfg.Host, "*")
	}
	return "tcp://" + net.JoinHostPort(rt.cfg.Host, strconv.Itoa(port))
}

// node returns the node that the bound endpoints (call, cast, fanout,
// notify; "" for one not bound) make: the host, the actual ports, and the
// CURVE key a secured node publishes.
func (rt *runtime) node(call, cast, fanout, notify string) (directory.Node, error) {
	n := directory.Node{Host: rt.cfg.Host}
	if rt.cfg.Security != nil {
		n.CurveKey = rt.cfg.Security.PublicKey
	}
	for _, p := range []struct {
		ep   string
		port *int
	}{{call, &n.CallPort}, {cast, &n.CastPort}, {fanout, &n.FanoutPort}, {notify, &n.NotifyPort}} {
		if p.ep == "" {
			continue
		}
		_, port, err := net.SplitHostPort(trimScheme(p.ep))
		if err == nil {
			*p.port, err = strconv.Atoi(port)
		}
		if err != nil {
			return n, fmt.Errorf("zmqmsg: bound endpoint %q: %w", p.ep, err)
		}
	}
	return n, nil
}

func trimScheme(ep string) string {
	const tcp = "tcp://"
	if len(ep) > len(tcp) && ep[:len(tcp)] == tcp {
		return ep[len(tcp):]
	}
	return ep
}

// close ends what startRuntime started, after the caller has stopped its
// own actors (they own the sockets): the ZAP handler (the last socket), the
// goroutines, the zmq context, the actor system.
func (rt *runtime) close() error {
	rt.cancel()
	var errs []error
	if rt.zap != nil {
		if err := rt.zap.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop zap handler: %w", err))
		}
	}
	rt.routines.Close()
	if err := terminate(rt.zctx, termTimeout, rt.log); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// The actor system is shared by the nodes of a process: protoactor sizes
// each system's process registry for 1,024 shards of concurrent maps (about
// 3 MiB in some 130,000 allocations: 5-13 ms), more than everything else an
// idle node holds. It is made when a first node starts and kept for the
// life of the process (an idle system runs no goroutine), so a process
// pays for it once, not for every Transport it opens; each node's actors
// carry the node's prefix (runtime.name) and stop with the node. Its own log lines are
// discarded: every failure of ours reaches the node's logger through its
// own code.
var shared struct {
	mu     sync.Mutex
	system *actor.ActorSystem
	nodes  uint64 // prefixes handed out
}

// acquireSystem returns the process's actor system and a prefix for one
// node's actor names, unique in it.
func acquireSystem() (*actor.ActorSystem, string) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.system == nil {
		quiet := slog.New(slog.DiscardHandler)
		// Dead letters are throttled for 10 ms only: the throttle runs a
		// timer goroutine for its interval, which must not outlive a Close.
		shared.system = actor.NewActorSystem(
			actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }),
			actor.WithDeadLetterThrottleInterval(10*time.Millisecond),
			actor.WithDeadLetterRequestLogging(false),
		)
	}
	shared.nodes++
	return shared.system, fmt.Sprintf("node%d", shared.nodes)
}

// name is the name of one of the node's top-level actors.
func (rt *runtime) name(actor string) string { return rt.id + "/" + actor }

// terminate terminates a zmq context with a watchdog: Term blocks while any
// socket is open, which would be a bug in zmqmsg; turn it into an error.
func terminate(zctx *zmq.Context, timeout time.Duration, log *slog.Logger) error {
	done := make(chan error, 1)
	go func() { done <- zctx.Term() }() // not in the group: it may outlive a hung Term
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

// socketOptions are the settings of every TCP socket of a node.
func socketOptions(cfg config.Config) socket.Options {
	o := socket.Options{
		MaxMessageSize: int64(cfg.MaxMessageSize),
		// A node that went away is retried at 100 ms, backing off to 5 s:
		// libzmq's default (no backoff) would retry ten times a second forever.
		ReconnectInterval:    100 * time.Millisecond,
		ReconnectIntervalMax: 5 * time.Second,
		ConnectTimeout:       cfg.ConnectTimeout,
		// Close flushes what libzmq has taken but not sent (a reply, an ACK,
		// a direct cast handed over just before), for up to CloseFlush.
		Linger: config.CloseFlush,
	}
	if k := cfg.Keepalive; !k.Disabled {
		o.KeepaliveIdle, o.KeepaliveInterval, o.KeepaliveCount = k.Idle, k.Interval, k.Count
		o.HeartbeatInterval, o.HeartbeatTimeout = k.HeartbeatInterval, k.HeartbeatTimeout
		o.HeartbeatTTL = k.HeartbeatTimeout
	}
	return o
}

// MinLibzmq is the oldest libzmq zmqmsg runs on: 4.3.3 fixed the
// CVE-2020-15166 family of remote memory exhaustion and overflow bugs.
var MinLibzmq = [3]int{4, 3, 3}

// ErrLibzmqTooOld: the linked libzmq is older than MinLibzmq.
var ErrLibzmqTooOld = fmt.Errorf("zmqmsg: libzmq too old (need %d.%d.%d or later)", MinLibzmq[0], MinLibzmq[1], MinLibzmq[2])

func checkLibzmq() error {
	major, minor, patch := zmq.Version()
	have := [3]int{major, minor, patch}
	for i := range have {
		if have[i] != MinLibzmq[i] {
			if have[i] < MinLibzmq[i] {
				return fmt.Errorf("%w: linked against %d.%d.%d", ErrLibzmqTooOld, major, minor, patch)
			}
			return nil
		}
	}
	return nil
}
