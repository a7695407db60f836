// Package engine is zmqmsg's core: it builds and tears down everything one
// node owns and implements the messaging patterns on top of the actors.
//
// # What one Engine owns
//
//	runtime (runtime.go): zmq.Context, actor system, ZAP handler, goroutines
//	peers (peers.go): the reply supervisor and its table; one socket actor
//	│    per remote node and pipeline (DEALER, PUSH, XPUB); the idle sweep
//	├── caller, caster, fanouter, notifier: the senders (call.go, cast.go,
//	│    direct.go, fanout.go, notify.go), each with its own counters
//	resolver (resolver.go): the directory cache, its watches, down marks
//	proxies: "proxy-call" and "proxy-notify" (actors/proxy): the node's
//	│    ports, or the IPC sockets of a proxy daemon it joined
//	serving (server.go): the servers, fed by the proxies without a socket hop
//	registrar (registrar.go): keeps the servers in the directory (TTL/3)
//
// # Shutdown order (Close)
//
//  1. refuse new work (Call, Serve return ErrClosed);
//  2. fail every pending call with ErrClosed (the reply table);
//  3. stop the servers: deregister, stop intake, cancel handler contexts,
//     wait (bounded) for the workers;
//  4. stop the proxies, then the reply supervisor and its socket actors:
//     their loops close the sockets;
//  5. stop the registrar and the resolver's watches;
//  6. the runtime: the ZAP handler, the goroutines, the zmq context (with
//     a watchdog, so that a socket left open by a bug turns into an error
//     instead of a hang), the actor system.
//
// # Stability
//
// This package is exported for zmqmsg's own commands and tests only: its
// API may change in any release. Applications use the zmqmsg package; the
// types it re-exports from here by alias are part of its API.
package engine

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/proxy"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
	"github.com/zmqmsg/zmqmsg/internal/config"
)

// Engine is the core of one Transport: the composition of its parts.
type Engine struct {
	rt       *runtime
	node     directory.Node
	instance string // see Instance

	peers    *peers
	caller   caller
	caster   *caster
	fanouter fanouter
	notifier notifier
	res      *resolver
	reg      *registrarRef
	serving  *serving
	proxy    *proxy.Proxy // the CALL pipeline's proxy (with CAST, direct cast, FANOUT)
	notify   *proxy.Proxy // the NOTIFY pipeline's own proxy (nil without a notify port)

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New starts an engine for cfg (defaults are applied here): its runtime,
// its proxies on the node's ports (or joined to the daemon in
// cfg.ProxyDir), the senders and the registrar. A taken port is returned
// as an error, and then nothing is left running.
func New(cfg config.Config) (_ *Engine, err error) {
	rt, err := startRuntime(cfg, cfg.ProxyDir == "")
	if err != nil {
		return nil, err
	}
	cfg = rt.cfg
	e := &Engine{rt: rt}
	defer func() {
		if err != nil {
			e.teardown()
		}
	}()
	e.res = newResolver(cfg.Directory, rt.log)
	if e.peers, err = newPeers(rt, e.res, &e.closed); err != nil {
		return nil, err
	}
	e.caller.peers = e.peers
	e.caster = &caster{peers: e.peers, windows: make(map[string]chan struct{})}
	e.fanouter.peers = e.peers
	e.notifier.caster = e.caster
	startCtx, cancel := context.WithTimeout(rt.ctx, startTimeout)
	defer cancel()
	if cfg.ProxyDir != "" {
		err = e.join(startCtx)
	} else {
		err = e.bind(startCtx)
	}
	if err != nil {
		return nil, err
	}
	if e.reg, err = spawnRegistrar(rt.root, rt.name("registrar"), cfg.Directory, cfg.RegistrationTTL, rt.log); err != nil {
		return nil, fmt.Errorf("zmqmsg: registrar: %w", err)
	}
	e.serving = &serving{rt: rt, cfg: &rt.cfg, reg: e.reg, node: e.node, closed: &e.closed, servers: make(map[*Server]struct{})}
	every := orDefault(cfg.Hooks().IdleSweep, DefaultIdleSweep)
	rt.routines.Go(func() { e.peers.sweepIdle(every) })
	rt.log.Info("zmqmsg node started", "node", e.node.ID(), "daemon", cfg.ProxyDir, "instance", e.instance, "strategy", poller.Resolve(cfg.WaitStrategy).String())
	return e, nil
}

// orDefault returns d, or def if d is not positive.
func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// proxyConfig is the configuration of one of the node's proxies.
func (e *Engine) proxyConfig() proxy.Config {
	rt := e.rt
	return proxy.Config{ZMQ: rt.zctx, Options: rt.routerOptions(), Loop: rt.loop(), Logger: rt.log,
		Hooks: proxy.Hooks{DropAck: rt.cfg.Hooks().DropAck}}
}

// bind starts the node's proxies on its own ports: the call proxy (with
// the direct-cast and fanout ports) and the notify proxy, which has a loop
// and port of its own so that a storm of notifications never delays calls.
func (e *Engine) bind(ctx context.Context) (err error) {
	rt, ports := e.rt, e.rt.cfg.Ports
	pc := e.proxyConfig()
	pc.Bind, pc.CastBind, pc.FanoutBind = rt.bind(ports.Call), rt.bind(ports.Cast), rt.bind(ports.Fanout)
	if e.proxy, err = proxy.Start(ctx, rt.root, rt.name("proxy-call"), pc); err != nil {
		return fmt.Errorf("zmqmsg: node proxy: %w", err)
	}
	notifyEP := ""
	if nb := rt.bind(ports.Notify); nb != "" {
		nc := e.proxyConfig()
		nc.Bind = nb
		if e.notify, err = proxy.Start(ctx, rt.root, rt.name("proxy-notify"), nc); err != nil {
			return fmt.Errorf("zmqmsg: notify port: %w", err)
		}
		notifyEP = e.notify.Endpoint()
	}
	e.node, err = rt.node(e.proxy.Endpoint(), e.proxy.CastEndpoint(), e.proxy.FanoutEndpoint(), notifyEP)
	return err
}

// JoinEndpoints returns the IPC endpoints a node proxy daemon serving
// directory dir binds, and its members connect to: one for the CALL
// pipeline (with CAST, direct cast and FANOUT) and one for NOTIFY.
func JoinEndpoints(dir string) (call, notify string) {
	return "ipc://" + filepath.Join(dir, "call"), "ipc://" + filepath.Join(dir, "notify")
}

// joinTimeout bounds the wait for the daemon's first answer.
const joinTimeout = 5 * time.Second

// join starts the engine's proxies as members of the node proxy daemon in
// cfg.ProxyDir, and takes the daemon's node as its own.
func (e *Engine) join(ctx context.Context) (err error) {
	dir := e.rt.cfg.ProxyDir
	call, notify := JoinEndpoints(dir)
	if _, err := os.Stat(strings.TrimPrefix(call, "ipc://")); err != nil {
		return fmt.Errorf("zmqmsg: join the node proxy daemon in %s: %w: %w", dir, ErrNoProxy, err)
	}
	for _, p := range []struct {
		name, endpoint string
		px             **proxy.Proxy
	}{{"proxy-call", call, &e.proxy}, {"proxy-notify", notify, &e.notify}} {
		pc := e.proxyConfig()
		pc.Join = p.endpoint
		if *p.px, err = proxy.Start(ctx, e.rt.root, e.rt.name(p.name), pc); err != nil {
			return fmt.Errorf("zmqmsg: join %s: %w", p.endpoint, err)
		}
	}
	hctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	// Hello on both pipelines: the node comes from the call pipeline's
	// answer, and the notify pipeline proves it is there too.
	if e.node, err = daemonNode(hctx, e.proxy); err == nil {
		_, err = daemonNode(hctx, e.notify)
	}
	if err != nil {
		return fmt.Errorf("zmqmsg: join the node proxy daemon in %s: %w", dir, err)
	}
	if err := e.checkDaemonSecurity(); err != nil {
		return err
	}
	var tag [4]byte
	id := envelope.NewID()
	copy(tag[:], id[:])
	e.instance = hex.EncodeToString(tag[:])
	return nil
}

// daemonNode asks the daemon behind px for its node; a daemon that is
// still binding its ports says so, and is asked again.
func daemonNode(ctx context.Context, px *proxy.Proxy) (directory.Node, error) {
	for {
		node, err := px.DaemonNode(ctx)
		if !errors.Is(err, proxy.ErrDaemonBusy) {
			return node, err
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return node, err
		}
	}
}

// checkDaemonSecurity: a member and its daemon must agree on CURVE. A
// secured member behind a plaintext daemon would publish servers anyone
// can reach; a plaintext member behind a secured daemon could not call any
// secured node, its own included.
func (e *Engine) checkDaemonSecurity() error {
	sec, dir := e.rt.cfg.Security, e.rt.cfg.ProxyDir
	switch {
	case sec != nil && e.node.CurveKey == "":
		return fmt.Errorf("zmqmsg: join %s: %w: Security is set, but the proxy daemon runs without CURVE", dir, ErrInsecureNode)
	case sec == nil && e.node.CurveKey != "":
		return fmt.Errorf("zmqmsg: join %s: %w: the proxy daemon runs CURVE", dir, ErrSecurityRequired)
	}
	return nil
}

// Go runs fn on a goroutine of the node, which Close waits for; false
// (and fn does not run) once Close has begun.
func (e *Engine) Go(fn func()) bool { return e.rt.routines.Go(fn) }

// Closing returns a channel closed when Close starts tearing the node down,
// after its servers have stopped.
func (e *Engine) Closing() <-chan struct{} { return e.rt.ctx.Done() }

// Config returns the engine's configuration, with defaults applied.
func (e *Engine) Config() config.Config { return e.rt.cfg }

// Node returns how other nodes reach this one.
func (e *Engine) Node() directory.Node { return e.node }

// Instance returns "" for an engine with its own ports, and a random tag
// for one that joined a proxy daemon: several processes then share the
// daemon's node, and generated server names must not collide.
func (e *Engine) Instance() string { return e.instance }

// Call sends a CALL and waits for its answer; see caller.Call.
func (e *Engine) Call(ctx context.Context, t Target, method string, flags envelope.Flags, payload []byte) (envelope.Message, error) {
	return e.caller.Call(ctx, t, method, flags, payload, CallOptions{})
}

// CallWith is Call with a client's retry policy and pick.
func (e *Engine) CallWith(ctx context.Context, t Target, method string, flags envelope.Flags, payload []byte, o CallOptions) (envelope.Message, error) {
	return e.caller.Call(ctx, t, method, flags, payload, o)
}

// Cast sends an acknowledged CAST; see caster.Cast.
func (e *Engine) Cast(ctx context.Context, t Target, method string, flags envelope.Flags, payload []byte) error {
	return e.caster.Cast(ctx, t, method, flags, payload)
}

// DirectCast sends a CAST over the direct-cast pipeline; see
// caster.DirectCast.
func (e *Engine) DirectCast(ctx context.Context, t Target, method string, flags envelope.Flags, payload []byte) error {
	return e.caster.DirectCast(ctx, t, method, flags, payload)
}

// Fanout sends a FANOUT; see fanouter.Fanout.
func (e *Engine) Fanout(ctx context.Context, t Target, method string, flags envelope.Flags, payload []byte) error {
	return e.fanouter.Fanout(ctx, t, method, flags, payload)
}

// Notify sends a notification to every pool of topic; see notifier.Notify.
func (e *Engine) Notify(ctx context.Context, topic string, meta map[string]string, flags envelope.Flags, payload []byte) error {
	return e.notifier.Notify(ctx, topic, meta, flags, payload)
}

// Serve starts a server named name (unique within the topic) for key and
// returns once it is reachable: routed by the proxy and registered in the
// directory. svc.Methods are the method names dispatch offers, published
// in the directory entry; svc is what the server answers to the built-in
// methods (InfoMethod). With inline, the handlers run on the proxy loop
// goroutine itself: no hand-off to a worker and back, but a handler that
// blocks stalls every request to this node.
func (e *Engine) Serve(ctx context.Context, key directory.Key, name string, svc Service, dispatch Dispatch, inline bool) (*Server, error) {
	return e.serving.serve(ctx, e.proxy, key, name, svc, dispatch, inline)
}

// ServeNotify starts a notification listener: a server behind the notify
// proxy, registered as server name (pool/id) of Key{NotifyExchange, topic}.
func (e *Engine) ServeNotify(ctx context.Context, topic, name string, dispatch Dispatch) (*Server, error) {
	if e.notify == nil {
		return nil, fmt.Errorf("%w: this node has no notify port", ErrInvalidTarget)
	}
	return e.serving.serve(ctx, e.notify, directory.Key{Exchange: NotifyExchange, Topic: topic}, name, Service{}, dispatch, false)
}

// NoteFiltered counts a notification a listener's priority filter dropped.
func (e *Engine) NoteFiltered() { e.serving.notificationsFiltered.Add(1) }

// SetAllowedClients replaces the client keys (Z85) the node's ZAP handler
// accepts; the node's own key stays allowed.
func (e *Engine) SetAllowedClients(keys []string) error {
	if e.rt.cfg.ProxyDir != "" && e.rt.cfg.Security != nil {
		return errors.New("zmqmsg: this node joined a proxy daemon: its ports, and the keys they allow, are the daemon's")
	}
	return e.rt.setAllowed(keys)
}

// Close shuts the engine down in the order given in the package doc. It is
// idempotent and returns the first error of the first call.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		e.peers.table.Close(ErrClosed)
		e.serving.stopAll()
		e.closeErr = e.teardown()
	})
	return e.closeErr
}

// teardown stops the actors and then the runtime (steps 4 to 6); it also
// undoes a New that failed half way.
func (e *Engine) teardown() error {
	e.rt.cancel()
	var errs []error
	for _, px := range []*proxy.Proxy{e.notify, e.proxy} {
		if px == nil {
			continue
		}
		if err := px.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop proxy: %w", err))
		}
	}
	if e.peers != nil && e.peers.replyPID != nil {
		if err := e.peers.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if e.reg != nil {
		if err := e.reg.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if e.res != nil {
		e.res.close()
	}
	if err := e.rt.close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
