package zmqmsg

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/proxy"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/engine"
)

// ProxyConfig configures a node proxy daemon run by StartProxy (the
// zmqmsg-proxy command is one).
type ProxyConfig struct {
	// Host is the address other nodes reach the node at, and the address
	// the ports bind to. Default "127.0.0.1".
	Host string
	// Ports are the node's public ports; see Ports (same defaults).
	Ports Ports
	// Dir is the directory of the IPC sockets the node's service processes
	// join (Config.ProxyDir). Required.
	Dir string
	// DirMode is Dir's mode, and the sockets': only processes that may open
	// them can serve on this node. Default 0700 (the daemon's user only).
	DirMode os.FileMode
	// MemberTTL is how long a service process that sends nothing keeps its
	// servers routed (it repeats its ATTACHes every second). Default 3s.
	MemberTTL time.Duration
	// Keepalive configures dead-peer detection on the public TCP sockets.
	Keepalive Keepalive
	// MaxMessageSize bounds a payload in bytes; a peer that sends a larger
	// frame is disconnected. Default 16 MiB.
	MaxMessageSize int
	// Logger receives the daemon's logs. nil discards them.
	Logger *slog.Logger
	// WaitStrategy selects how the broker loops sleep.
	WaitStrategy poller.Strategy
	// Security, if set, makes the public ports CURVE servers (see
	// Security); the service processes that join must set the same
	// Config.Security. The IPC sockets stay plaintext.
	Security *Security
}

// Proxy is a node proxy daemon: it owns a node's public ports (call, fanout,
// notify, direct cast) and relays between them and the service processes
// of the node, which join it over IPC (Config.ProxyDir) instead of each
// binding ports of their own. It registers nothing in the directory; the
// service processes register their servers under its node. See
// docs/design.md, "The proxy daemon".
type Proxy struct {
	d   *engine.Daemon
	sec *Security
}

// ErrProxyRunning is returned by StartProxy when another daemon holds the
// IPC directory.
var ErrProxyRunning = engine.ErrDaemonRunning

// StartProxy starts a node proxy daemon in this process and returns once
// its ports and IPC sockets are bound. A taken port, an unusable directory
// or another daemon on the same directory is an error.
func StartProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: ProxyConfig.Dir is required", ErrInvalidConfig)
	}
	if cfg.MemberTTL < 0 || cfg.MaxMessageSize < 0 {
		return nil, fmt.Errorf("%w: negative MemberTTL or MaxMessageSize", ErrInvalidConfig)
	}
	if cfg.DirMode&^os.ModePerm != 0 {
		return nil, fmt.Errorf("%w: DirMode %v is not a permission mode", ErrInvalidConfig, cfg.DirMode)
	}
	if err := checkLibzmq(); err != nil {
		return nil, err
	}
	// The same defaults and validation as a Transport's node.
	c := Config{Host: cfg.Host, Ports: cfg.Ports, Keepalive: cfg.Keepalive, MaxMessageSize: cfg.MaxMessageSize, Logger: cfg.Logger}.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	sec, err := cfg.Security.engine()
	if err != nil {
		return nil, err
	}
	d, err := engine.StartDaemon(engine.DaemonConfig{
		Host: c.Host, CallPort: c.Ports.Call, FanoutPort: c.Ports.Fanout, NotifyPort: c.Ports.Notify, CastPort: c.Ports.Cast,
		Dir: cfg.Dir, DirMode: cfg.DirMode, MemberTTL: cfg.MemberTTL,
		Socket: socketOptions(c), MaxMessageSize: c.MaxMessageSize,
		Strategy: cfg.WaitStrategy, Logger: c.Logger, TermTimeout: 5 * time.Second, Security: sec,
	})
	if err != nil {
		return nil, err
	}
	return &Proxy{d: d, sec: cfg.Security}, nil
}

// Node returns how other nodes reach the daemon's node.
func (p *Proxy) Node() directory.Node { return p.d.Node() }

// Dir returns the directory of the daemon's IPC sockets: the ProxyDir of
// the Transports that join it.
func (p *Proxy) Dir() string { return p.d.Dir() }

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
	FanoutDropped uint64 // fanouts a service process could not take, dropped
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
func (p *Proxy) Stats() ProxyStats {
	c, n := p.d.Counters()
	mc, mn := p.d.Members()
	st := ProxyStats{Members: mc, Listeners: mn, Draining: p.d.Draining(), Malformed: p.d.Oversized()}
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
		st.SendFailed += v.SendFailed.Load()
		st.MembersLost += v.MembersLost.Load()
		st.FailedLost += v.FailedLost.Load()
		st.Conflicts += v.Conflicts.Load()
		st.Refused += v.Refused.Load()
		st.HandshakeFailures += v.HandshakeFailed.Load()
	}
	st.AuthAllowed, st.AuthDenied = p.d.AuthCounters()
	return st
}

// Drain makes the daemon answer every new request with an error (callers
// fail at once instead of waiting for their deadline) and waits until the
// requests it already relayed have been answered, or ctx ends. Close it
// afterwards.
func (p *Proxy) Drain(ctx context.Context) error { return p.d.Drain(ctx) }

// Close stops the daemon: its sockets, its zmq context and its directory
// lock are gone when it returns. Service processes keep running and join
// the next daemon on the same directory by themselves. Idempotent.
func (p *Proxy) Close() error { return p.d.Close() }
