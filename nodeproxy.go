package zmqmsg

import (
	"context"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/engine"
	"github.com/zmqmsg/zmqmsg/internal/config"
)

// ProxyConfig configures a node proxy daemon run by StartProxy (the
// zmqmsg-proxy command is one); its fields are documented in
// internal/config.
type ProxyConfig = config.ProxyConfig

// Proxy is a node proxy daemon: it owns a node's public ports (call, fanout,
// notify, direct cast) and relays between them and the service processes
// of the node, which join it over IPC (Config.ProxyDir) instead of each
// binding ports of their own. It registers nothing in the directory; the
// service processes register their servers under its node. See
// docs/design.md, "The proxy daemon".
type Proxy struct {
	d *engine.Daemon
}

// ErrProxyRunning is returned by StartProxy when another daemon holds the
// IPC directory.
var ErrProxyRunning = engine.ErrDaemonRunning

// StartProxy starts a node proxy daemon in this process and returns once
// its ports and IPC sockets are bound. A taken port, an unusable directory
// or another daemon on the same directory is an error.
func StartProxy(cfg ProxyConfig) (*Proxy, error) {
	d, err := engine.StartDaemon(cfg)
	if err != nil {
		return nil, err
	}
	return &Proxy{d: d}, nil
}

// Node returns how other nodes reach the daemon's node.
func (p *Proxy) Node() directory.Node { return p.d.Node() }

// Dir returns the directory of the daemon's IPC sockets: the ProxyDir of
// the Transports that join it.
func (p *Proxy) Dir() string { return p.d.Dir() }

// ProxyStats are a daemon's counters, both pipelines summed.
type ProxyStats = engine.ProxyStats

// Stats returns the daemon's counters.
func (p *Proxy) Stats() ProxyStats { return p.d.Stats() }

// Drain makes the daemon answer every new request with an error (callers
// fail at once instead of waiting for their deadline) and waits until the
// requests it already relayed have been answered, or ctx ends. Close it
// afterwards.
func (p *Proxy) Drain(ctx context.Context) error { return p.d.Drain(ctx) }

// Close stops the daemon: its sockets, its zmq context and its directory
// lock are gone when it returns. Service processes keep running and join
// the next daemon on the same directory by themselves. Idempotent.
func (p *Proxy) Close() error { return p.d.Close() }
