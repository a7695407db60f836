package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/proxy"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/actors/zap"
	"github.com/zmqmsg/zmqmsg/directory"
)

// DaemonConfig configures a node proxy daemon (see Daemon).
type DaemonConfig struct {
	Host                                       string
	CallPort, FanoutPort, NotifyPort, CastPort int // AnyPort for a free one
	// Dir is the directory of the IPC sockets; created with DirMode if
	// missing, and set to DirMode if it exists.
	Dir       string
	DirMode   os.FileMode
	MemberTTL time.Duration
	Socket    socket.Options
	// MaxMessageSize bounds a payload; the sockets allow the envelope above it.
	MaxMessageSize int
	Strategy       poller.Strategy
	Logger         *slog.Logger
	TermTimeout    time.Duration
	// Security, if set, makes the public ports CURVE servers with this key
	// pair and ZAP handler; the node (in hellos) carries the public key.
	// The IPC sockets stay plaintext: they are local, in a 0700 directory.
	Security *Security
}

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
	cfg    DaemonConfig
	log    *slog.Logger
	zctx   *zmq.Context
	system *actor.ActorSystem
	call   *proxy.Broker
	notify *proxy.Broker
	zap    *zap.Handler
	node   atomic.Pointer[directory.Node] // set once every port is bound
	lock   *os.File

	closeOnce sync.Once
	closeErr  error
}

// ErrDaemonRunning is returned when another daemon holds the lock of Dir.
var ErrDaemonRunning = errors.New("zmqmsg: another node proxy daemon is running in this directory")

// StartDaemon starts a node proxy daemon. It returns once every port and
// IPC socket is bound; a taken port, a directory it cannot use, or another
// daemon on the same directory is an error, and then nothing is left
// running.
func StartDaemon(cfg DaemonConfig) (_ *Daemon, err error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("zmqmsg: daemon: no IPC directory")
	}
	if cfg.DirMode == 0 {
		cfg.DirMode = 0o700
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if err := d.prepareDir(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			d.teardown()
		}
	}()
	if d.zctx, d.system, err = newRuntime(d.log); err != nil {
		return nil, err
	}
	bindOf := func(port int) string {
		p := strconv.Itoa(port)
		if port == AnyPort {
			p = "*"
		}
		return "tcp://" + net.JoinHostPort(cfg.Host, p)
	}
	opts := cfg.Socket
	if cfg.MaxMessageSize > 0 {
		opts.MaxMessageSize = int64(cfg.MaxMessageSize) + 256*1024
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if sec := cfg.Security; sec != nil {
		// The ZAP handler is bound before any CURVE server socket exists.
		if d.zap, err = startZAP(ctx, d.system.Root, d.zctx, cfg.Strategy, d.log, sec); err != nil {
			return nil, err
		}
		opts.Curve = &socket.Curve{PublicKey: sec.PublicKey, SecretKey: sec.SecretKey}
	}
	callIPC, notifyIPC := JoinEndpoints(cfg.Dir)
	d.call, err = proxy.StartBroker(ctx, d.system.Root, "daemon-call", proxy.BrokerConfig{
		ZMQ: d.zctx, Bind: bindOf(cfg.CallPort), CastBind: bindOf(cfg.CastPort), FanoutBind: bindOf(cfg.FanoutPort),
		Backend: callIPC, Node: d.Node, MemberTTL: cfg.MemberTTL, Options: opts, SocketMode: cfg.DirMode & 0o777,
		Loop: poller.Options{Strategy: cfg.Strategy}, Logger: d.log.With("pipeline", "call"),
	})
	if err != nil {
		return nil, fmt.Errorf("zmqmsg: daemon call pipeline: %w", err)
	}
	d.notify, err = proxy.StartBroker(ctx, d.system.Root, "daemon-notify", proxy.BrokerConfig{
		ZMQ: d.zctx, Bind: bindOf(cfg.NotifyPort), Backend: notifyIPC, Node: d.Node,
		MemberTTL: cfg.MemberTTL, Options: opts, SocketMode: cfg.DirMode & 0o777,
		Loop: poller.Options{Strategy: cfg.Strategy}, Logger: d.log.With("pipeline", "notify"),
	})
	if err != nil {
		return nil, fmt.Errorf("zmqmsg: daemon notify pipeline: %w", err)
	}
	node := directory.Node{Host: cfg.Host}
	if cfg.Security != nil {
		node.CurveKey = cfg.Security.PublicKey
	}
	if err := setPorts(map[string]*int{
		d.call.Endpoint(): &node.CallPort, d.call.CastEndpoint(): &node.CastPort,
		d.call.FanoutEndpoint(): &node.FanoutPort, d.notify.Endpoint(): &node.NotifyPort,
	}); err != nil {
		return nil, err
	}
	d.node.Store(&node) // from now on, hellos are answered
	return d, nil
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
		d.log.Info("IPC directory mode set", "dir", dir, "mode", fmt.Sprintf("%#o", mode), "was", fmt.Sprintf("%#o", st.Mode().Perm()))
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
	if d.zap == nil {
		return 0, 0
	}
	c := d.zap.Counters()
	return c.Allowed.Load(), c.Denied.Load()
}

// Drain makes both brokers refuse new requests and waits until the
// requests they relayed have been answered, or ctx ends.
func (d *Daemon) Drain(ctx context.Context) error {
	// Both pipelines start draining at once, then both are waited for.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, b := range []*proxy.Broker{d.call, d.notify} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.Drain(ctx)
		}()
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
	if d.zap != nil {
		if err := d.zap.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop zap handler: %w", err))
		}
	}
	if d.zctx != nil {
		if err := terminate(d.zctx, d.cfg.TermTimeout, d.log); err != nil {
			errs = append(errs, err)
		}
	}
	if d.system != nil {
		d.system.Shutdown()
	}
	if d.lock != nil {
		d.lock.Close() // releases the flock
	}
	return errors.Join(errs...)
}
