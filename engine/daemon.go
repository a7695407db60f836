package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/zmqmsg/zmqmsg/actors/proxy"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/internal/config"
)

// Daemon is a node proxy running on its own: it binds the node's public
// ports and relays to the service processes of the node, which join it over
// IPC sockets in Dir (Config.Join). It registers nothing in the directory:
// each service process registers its own servers under the daemon's node.
//
// It owns a zmq context, a quiet actor system and two brokers: one for the
// CALL pipeline (call ROUTER, direct-cast PULL, fanout XSUB, and the IPC
// ROUTER "call") and one for NOTIFY (notify ROUTER and the IPC ROUTER
// "notify"). A lock file in Dir keeps a second daemon from taking over the
// IPC sockets of a running one (libzmq unlinks a stale socket file on bind).
type Daemon struct {
	cfg    config.ProxyConfig // with defaults, validated
	rt     *runtime
	call   *proxy.Broker
	notify *proxy.Broker
	node   atomic.Pointer[directory.Node] // set once every port is bound
	lock   *os.File

	closeOnce sync.Once
	closeErr  error
}

// StartDaemon starts a node proxy daemon. It returns once every port and
// IPC socket is bound; a taken port, a directory it cannot use, or another
// daemon on the same directory is an error, and then nothing is left
// running.
func StartDaemon(cfg config.ProxyConfig) (_ *Daemon, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg}
	if err := d.prepareDir(); err != nil {
		return nil, err
	}
	if d.rt, err = startRuntime(cfg.Node(), true); err != nil {
		d.lock.Close()
		return nil, err
	}
	defer func() {
		if err != nil {
			d.teardown()
		}
	}()
	ctx, cancel := context.WithTimeout(d.rt.ctx, startTimeout)
	defer cancel()
	if err := d.startBrokers(ctx); err != nil {
		return nil, err
	}
	node, err := d.rt.node(d.call.Endpoint(), d.call.CastEndpoint(), d.call.FanoutEndpoint(), d.notify.Endpoint())
	if err != nil {
		return nil, err
	}
	d.node.Store(&node) // from now on, hellos are answered
	return d, nil
}

// startBrokers binds the public ports and the IPC sockets: the CALL
// pipeline's broker (call ROUTER, direct-cast PULL, fanout XSUB, IPC
// ROUTER "call") and NOTIFY's (notify ROUTER, IPC ROUTER "notify").
func (d *Daemon) startBrokers(ctx context.Context) (err error) {
	rt, ports := d.rt, d.cfg.Ports
	callIPC, notifyIPC := JoinEndpoints(d.cfg.Dir)
	bc := proxy.BrokerConfig{
		ZMQ: rt.zctx, Node: d.Node, MemberTTL: d.cfg.MemberTTL, Options: rt.routerOptions(),
		SocketMode: d.cfg.DirMode & 0o777, Loop: rt.loop(),
	}
	call := bc
	call.Bind, call.CastBind, call.FanoutBind = rt.bind(ports.Call), rt.bind(ports.Cast), rt.bind(ports.Fanout)
	call.Backend, call.Logger = callIPC, rt.log.With("pipeline", "call")
	if d.call, err = proxy.StartBroker(ctx, rt.root, rt.name("daemon-call"), call); err != nil {
		return fmt.Errorf("zmqmsg: daemon call pipeline: %w", err)
	}
	notify := bc
	notify.Bind, notify.Backend, notify.Logger = rt.bind(ports.Notify), notifyIPC, rt.log.With("pipeline", "notify")
	if d.notify, err = proxy.StartBroker(ctx, rt.root, rt.name("daemon-notify"), notify); err != nil {
		return fmt.Errorf("zmqmsg: daemon notify pipeline: %w", err)
	}
	return nil
}

// prepareDir creates (or fixes the mode of) the IPC directory and takes its
// lock.
func (d *Daemon) prepareDir() error {
	dir, mode := d.cfg.Dir, d.cfg.DirMode&os.ModePerm
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("zmqmsg: daemon: IPC directory: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("zmqmsg: daemon: IPC directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("zmqmsg: daemon: IPC directory %s is not a directory", dir)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("zmqmsg: daemon: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%w: %s", ErrDaemonRunning, dir)
		}
		return fmt.Errorf("zmqmsg: daemon: lock %s: %w", dir, err)
	}
	d.lock = f
	// Only the daemon that holds the lock may change the directory's mode.
	if st.Mode().Perm() != mode {
		if err := os.Chmod(dir, mode); err != nil {
			return fmt.Errorf("zmqmsg: daemon: IPC directory: %w", err)
		}
		d.cfg.Logger.Info("IPC directory mode set", "dir", dir, "mode", fmt.Sprintf("%#o", mode), "was", fmt.Sprintf("%#o", st.Mode().Perm()))
	}
	return nil
}

// Node returns how other nodes reach the daemon's node (zero until every
// port is bound).
func (d *Daemon) Node() directory.Node {
	if n := d.node.Load(); n != nil {
		return *n
	}
	return directory.Node{}
}

// Dir returns the directory of the IPC sockets.
func (d *Daemon) Dir() string { return d.cfg.Dir }

// Members returns how many service processes are attached to the call and
// notify pipelines.
func (d *Daemon) Members() (call, notify int) { return d.call.Members(), d.notify.Members() }

// Draining reports whether both pipelines refuse new requests.
func (d *Daemon) Draining() bool { return d.call.Draining() && d.notify.Draining() }

// Oversized returns how many messages the brokers' loops dropped for
// having too many frames.
func (d *Daemon) Oversized() uint64 {
	return d.call.LoopStats().Oversized + d.notify.LoopStats().Oversized
}

// Counters returns the counters of the call and notify brokers.
func (d *Daemon) Counters() (call, notify *proxy.Counters) {
	return d.call.Counters(), d.notify.Counters()
}

// AuthCounters returns how many CURVE clients the daemon's ZAP handler
// accepted and refused (zero without Security).
func (d *Daemon) AuthCounters() (allowed, denied uint64) {
	if d.rt.zap == nil {
		return 0, 0
	}
	c := d.rt.zap.Counters()
	return c.Allowed.Load(), c.Denied.Load()
}

// SetAllowedClients replaces the client keys (Z85) the daemon's ZAP
// handler accepts; the daemon's own key stays allowed.
func (d *Daemon) SetAllowedClients(keys []string) error { return d.rt.setAllowed(keys) }

// ProxyStats are a daemon's counters.
type ProxyStats struct {
	Draining      bool   // Drain was called: new requests are refused
	Members       int    // service processes attached (call pipeline)
	Listeners     int    // service processes attached (notify pipeline)
	Relayed       uint64 // requests relayed to a service process
	Replies       uint64 // answers sent back to callers
	NoServers     uint64 // requests for a target no service process serves (answered with an error)
	Overloaded    uint64 // requests refused because the service process's pipe was full (answered)
	Malformed     uint64 // received messages that did not decode (or had too many frames), dropped
	WrongKind     uint64 // messages of a kind the port does not take, dropped
	DirectCasts   uint64 // direct casts relayed
	DirectDropped uint64 // direct casts no service process could take, dropped
	Fanouts       uint64 // fanouts relayed (one per service process)
	FanoutDropped uint64 // fanouts for a service process that was gone, dropped
	PushedBack    uint64 // direct casts and fanouts a service process's full pipe could not take at once: the port paused until it did
	SendFailed    uint64 // answers libzmq refused (caller gone or not reading), dropped
	MembersLost   uint64 // service processes dropped (silent, or their pipe vanished)
	FailedLost    uint64 // requests relayed to a service process that was lost, answered SERVER_LOST
	Conflicts     uint64 // servers refused because another process serves the name
	Refused       uint64 // requests refused while draining
	// HandshakeFailures counts failed security handshakes on the public
	// ports (CURVE: peers without CURVE, refused keys); AuthAllowed and
	// AuthDenied are the ZAP handler's answers.
	HandshakeFailures, AuthAllowed, AuthDenied uint64
}

// Stats returns the daemon's counters, both pipelines summed.
func (d *Daemon) Stats() ProxyStats {
	c, n := d.Counters()
	mc, mn := d.Members()
	st := ProxyStats{Members: mc, Listeners: mn, Draining: d.Draining(), Malformed: d.Oversized()}
	for _, v := range []*proxy.Counters{c, n} {
		st.Relayed += v.Requests.Load()
		st.Replies += v.Replies.Load()
		st.NoServers += v.NoServers.Load()
		st.Overloaded += v.Overloaded.Load()
		st.Malformed += v.Malformed.Load()
		st.WrongKind += v.WrongKind.Load()
		st.DirectCasts += v.DirectCasts.Load()
		st.DirectDropped += v.DirectDropped.Load()
		st.Fanouts += v.Fanouts.Load()
		st.FanoutDropped += v.FanoutDropped.Load()
		st.PushedBack += v.Held.Load()
		st.SendFailed += v.SendFailed.Load()
		st.MembersLost += v.MembersLost.Load()
		st.FailedLost += v.FailedLost.Load()
		st.Conflicts += v.Conflicts.Load()
		st.Refused += v.Refused.Load()
		st.HandshakeFailures += v.HandshakeFailed.Load()
	}
	st.AuthAllowed, st.AuthDenied = d.AuthCounters()
	return st
}

// Drain makes both brokers refuse new requests and waits until the
// requests they relayed have been answered, or ctx ends.
func (d *Daemon) Drain(ctx context.Context) error {
	// Both pipelines start draining at once, then both are waited for.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, b := range []*proxy.Broker{d.call, d.notify} {
		wg.Add(1)
		if !d.rt.routines.Go(func() { defer wg.Done(); errs[i] = b.Drain(ctx) }) {
			wg.Done()
			errs[i] = ErrClosed
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops the brokers, closes every socket and the zmq context, and
// releases the lock. Idempotent.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() { d.closeErr = d.teardown() })
	return d.closeErr
}

func (d *Daemon) teardown() error {
	var errs []error
	for _, b := range []*proxy.Broker{d.notify, d.call} {
		if b != nil {
			if err := b.Stop(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := d.rt.close(); err != nil {
		errs = append(errs, err)
	}
	d.lock.Close() // releases the flock
	return errors.Join(errs...)
}
