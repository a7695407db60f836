// Package config holds the configuration of a zmqmsg node and of a node
// proxy daemon: one definition, its defaults and its validation, in one
// place. The zmqmsg package re-exports every type here by alias (Config,
// Ports, Keepalive, AckPolicy, Security, ...) and documents the package's
// API; engine takes the same values, so nothing is copied field by field.
//
// It is a leaf: of zmqmsg's packages it imports only directory (the
// Directory field) and envelope (the test hooks' id type), so both the
// root package and engine can use it.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// AnyPort, as a port in Ports, asks the OS for a free port. The actual port
// is what the node registers in the directory (see Transport.Node).
const AnyPort = -1

// Default ports of the node proxy's pipelines.
const (
	DefaultCallPort   = 9501
	DefaultFanoutPort = 9502
	DefaultNotifyPort = 9503
	DefaultCastPort   = 9504
)

// CloseFlush bounds how long Transport.Close (and a proxy daemon's Close)
// waits for messages libzmq has taken but not yet sent: replies and ACKs
// sent just before, direct casts still queued. Peers that are gone or do
// not read cannot hold Close longer than this.
const CloseFlush = 500 * time.Millisecond

// ErrInvalidConfig: a Config field is out of range.
var ErrInvalidConfig = errors.New("zmqmsg: invalid config")

// Ports are the node proxy's TCP ports, one per pipeline. A zero field takes
// its default (9501 call, 9502 fanout, 9503 notify, 9504 direct cast), or
// AnyPort when Call is AnyPort: a node that asks for a free call port gets
// free ports throughout. AnyPort asks the OS for a free port. Bound so far:
// all four.
type Ports struct {
	Call, Fanout, Notify, Cast int
}

// Keepalive configures dead-peer detection on every TCP socket.
type Keepalive struct {
	// TCP keepalive: first probe after Idle without traffic, then every
	// Interval, giving up after Count probes. libzmq takes whole seconds
	// (rounded up). Default 30s, 5s, 3.
	Idle, Interval time.Duration
	Count          int
	// ZMTP heartbeats: a PING every HeartbeatInterval; a peer that sends
	// nothing within HeartbeatTimeout is disconnected. Default 2s and 6s.
	HeartbeatInterval, HeartbeatTimeout time.Duration
	// Disabled turns both off.
	Disabled bool
}

// AckPolicy configures CAST acknowledgements. A cast waits Timeout for its
// ACK, resends the same message (same id, same server) and waits Multiplier
// times longer, up to Retries resends, then fails with ErrNotAcked; the
// server runs a resent message's handler once. The ACK comes after the
// handler has run; a resend of a message whose handler is still running is
// answered IN_PROGRESS, which is not counted as a retry. The defaults suit
// a LAN: 250 ms, ×2, 3 retries (a cast gives up after 3.75 s without any
// answer).
type AckPolicy struct {
	// Disabled: Cast returns as soon as the message is handed to the node's
	// socket; nothing tells the sender whether it arrived, or whether its
	// handler failed (a method the server does not have is counted there:
	// Stats.DirectRefused).
	Disabled bool
	// Timeout is the first wait for an ACK. Default 250ms.
	Timeout time.Duration
	// Multiplier grows the wait for each retry. Default 2.
	Multiplier float64
	// Retries is how many times a message is resent. Default 3; -1 for
	// none (zero means the default).
	Retries int
}

// Resends returns how many times a cast is resent: Retries, with -1 (none)
// as 0.
func (p AckPolicy) Resends() int { return max(p.Retries, 0) }

// WaitStrategy selects how the socket loops sleep (docs/design.md §3).
type WaitStrategy int

const (
	// WaitDefault is WaitNetpoll where it is supported (Linux), else
	// WaitZMQPoll.
	WaitDefault WaitStrategy = iota
	// WaitNetpoll waits on each socket's ZMQ_FD through Go's netpoller.
	WaitNetpoll
	// WaitZMQPoll waits in zmq_poll, woken by an inproc PAIR socket.
	WaitZMQPoll
)

// String returns the strategy's name.
func (s WaitStrategy) String() string {
	switch s {
	case WaitDefault:
		return "default"
	case WaitNetpoll:
		return "netpoll"
	case WaitZMQPoll:
		return "zmqpoller"
	}
	return fmt.Sprintf("WaitStrategy(%d)", int(s))
}

// Codec encodes arguments and replies. A Transport's codec must be the same
// on both ends of a call. Values of type []byte bypass the codec.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default Codec, encoding/json.
type JSON struct{}

// Marshal encodes v as JSON.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes JSON data into v.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Config configures a Transport. The zero value is usable: every field has
// a default.
type Config struct {
	// Host is the address other nodes reach this node at, and the address
	// its ports bind to. Default "127.0.0.1".
	Host string
	// Directory knows which nodes serve which topic. nil means the
	// process-wide in-memory directory (directory.Shared), which is enough
	// for every Transport of one process.
	Directory directory.Directory
	// Ports are the node proxy's ports; see Ports.
	Ports Ports
	// CallTimeout bounds a call whose ctx has no deadline. Default 60s.
	CallTimeout time.Duration
	// WaitForServers is how long a call waits for a server of its target to
	// appear in the directory before failing with ErrNoServers (never past
	// the call's deadline). Default 2s.
	WaitForServers time.Duration
	// ConnectTimeout bounds one attempt to connect to another node: a node
	// that cannot be connected to (refused, unreachable, no answer within
	// ConnectTimeout) is marked down, and the requests waiting for it,
	// which it never had, go to another server of their topic (a request
	// for a named server fails with an *UnavailableError). Default 2s.
	ConnectTimeout time.Duration
	// Logger receives the Transport's logs. nil discards them.
	Logger *slog.Logger
	// Keepalive configures TCP keepalive and ZMTP heartbeats.
	Keepalive Keepalive
	// MaxMessageSize bounds a message's payload in bytes. Larger messages
	// are refused before sending (ErrTooLarge), and a peer that sends a
	// larger frame is disconnected. Default 16 MiB.
	MaxMessageSize int
	// ServerConcurrency is how many requests one Server runs at once.
	// Default 64.
	ServerConcurrency int
	// ServerQueue is how many accepted requests may wait for a worker;
	// beyond it requests are refused with ErrOverloaded. Default 1024.
	ServerQueue int
	// RegistrationTTL is how long a server's directory registration lives
	// unless refreshed (the Transport refreshes it every TTL/3). Default 30s.
	RegistrationTTL time.Duration
	// Codec encodes arguments and replies that are not []byte. Default JSON.
	Codec Codec
	// Acks configures CAST acknowledgements; see AckPolicy.
	Acks AckPolicy
	// CastWindow bounds the unacknowledged casts in flight to one node;
	// Cast waits (bounded by its ctx) while the window is full. Default 1024.
	CastWindow int
	// WaitStrategy selects how socket loops sleep; see WaitStrategy.
	WaitStrategy WaitStrategy
	// ProxyDir, if not empty, joins the node proxy daemon (cmd/zmqmsg-proxy,
	// or StartProxy) whose IPC sockets are in this directory, instead of
	// running an embedded node proxy: the Transport binds no port, its
	// servers are reached through the daemon's ports, and they register the
	// daemon's node in the directory. Host and Ports are then ignored. New
	// fails if the daemon does not answer within 5 s.
	ProxyDir string
	// Security, if set, turns on CURVE on every TCP socket; see Security.
	// A Transport joining a proxy daemon (ProxyDir) must match it: both
	// secured, or neither.
	Security *Security

	test *TestHooks // set by zmqmsg's own tests only (EditTestHooks)
}

// TestHooks let zmqmsg's own tests interfere deterministically. Nothing
// outside this module can set them: see EditTestHooks.
type TestHooks struct {
	// DropAck, when set, is asked before each CAST acknowledgement a node
	// proxy sends; true drops it (counted), as a lost packet would.
	DropAck func(id envelope.ID) bool
	// IdleSweep is how often sockets to nodes that left the directory are
	// looked for; zero keeps the default.
	IdleSweep time.Duration
	// QuickLimit is the running average handler time under which a
	// server's handlers run on the proxy loop; zero keeps the default.
	QuickLimit time.Duration
}

// EditTestHooks returns c's test hooks for a test to set (copies of c
// share them).
func EditTestHooks(c *Config) *TestHooks {
	if c.test == nil {
		c.test = &TestHooks{}
	}
	return c.test
}

// Hooks returns c's test hooks (zero without any).
func (c Config) Hooks() TestHooks {
	if c.test == nil {
		return TestHooks{}
	}
	return *c.test
}

// WithDefaults returns c with every zero field set to its default. It is
// idempotent.
func (c Config) WithDefaults() Config {
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Directory == nil {
		c.Directory = directory.Shared()
	}
	c.Ports = c.Ports.withDefaults()
	c.Keepalive = c.Keepalive.withDefaults()
	def(&c.MaxMessageSize, 16<<20)
	def(&c.ServerConcurrency, 64)
	def(&c.ServerQueue, 1024)
	def(&c.CastWindow, 1024)
	if !c.Acks.Disabled {
		def(&c.Acks.Timeout, 250*time.Millisecond)
		def(&c.Acks.Multiplier, 2)
		def(&c.Acks.Retries, 3)
	}
	def(&c.CallTimeout, 60*time.Second)
	def(&c.WaitForServers, 2*time.Second)
	def(&c.ConnectTimeout, 2*time.Second)
	def(&c.RegistrationTTL, 30*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Codec == nil {
		c.Codec = JSON{}
	}
	return c
}

func (p Ports) withDefaults() Ports {
	if p.Call == AnyPort {
		def(&p.Fanout, AnyPort)
		def(&p.Notify, AnyPort)
		def(&p.Cast, AnyPort)
	}
	def(&p.Call, DefaultCallPort)
	def(&p.Fanout, DefaultFanoutPort)
	def(&p.Notify, DefaultNotifyPort)
	def(&p.Cast, DefaultCastPort)
	return p
}

func (k Keepalive) withDefaults() Keepalive {
	if !k.Disabled {
		def(&k.Idle, 30*time.Second)
		def(&k.Interval, 5*time.Second)
		def(&k.Count, 3)
		def(&k.HeartbeatInterval, 2*time.Second)
		def(&k.HeartbeatTimeout, 6*time.Second)
	}
	return k
}

// def sets *p to v if it is zero.
func def[T int | float64 | time.Duration](p *T, v T) {
	if *p == 0 {
		*p = v
	}
}

// Validate reports the first field out of range as an ErrInvalidConfig, or
// a bad key as an ErrBadKey. It expects WithDefaults to have run.
func (c Config) Validate() error {
	if err := c.Ports.validate(); err != nil {
		return err
	}
	switch {
	case c.MaxMessageSize < 0:
		return fmt.Errorf("%w: negative MaxMessageSize", ErrInvalidConfig)
	case c.ServerConcurrency < 0 || c.ServerQueue < 0:
		return fmt.Errorf("%w: negative server concurrency or queue", ErrInvalidConfig)
	case c.CallTimeout < 0 || c.WaitForServers < 0 || c.RegistrationTTL < 0 || c.ConnectTimeout < 0:
		return fmt.Errorf("%w: negative duration", ErrInvalidConfig)
	case c.CastWindow < 0:
		return fmt.Errorf("%w: negative CastWindow", ErrInvalidConfig)
	case !c.Acks.Disabled && (c.Acks.Timeout < 0 || c.Acks.Multiplier < 1 || c.Acks.Retries < -1):
		return fmt.Errorf("%w: Acks needs Timeout ≥ 0, Multiplier ≥ 1 and Retries ≥ -1", ErrInvalidConfig)
	case c.WaitStrategy < WaitDefault || c.WaitStrategy > WaitZMQPoll:
		return fmt.Errorf("%w: unknown WaitStrategy %d", ErrInvalidConfig, c.WaitStrategy)
	}
	_, err := c.Security.Keys()
	return err
}

func (p Ports) validate() error {
	for _, port := range []struct {
		name string
		p    int
	}{{"call", p.Call}, {"fanout", p.Fanout}, {"notify", p.Notify}, {"cast", p.Cast}} {
		if port.p != AnyPort && (port.p < 1 || port.p > 65535) {
			return fmt.Errorf("%w: %s port %d not in 1..65535 (or AnyPort)", ErrInvalidConfig, port.name, port.p)
		}
	}
	return nil
}

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
	WaitStrategy WaitStrategy
	// Security, if set, makes the public ports CURVE servers (see
	// Security); the service processes that join must set the same
	// Config.Security. The IPC sockets stay plaintext.
	Security *Security
}

// Node returns the parts of c that a daemon's node shares with a
// Transport's, as a Config with the same defaults.
func (c ProxyConfig) Node() Config {
	return Config{Host: c.Host, Ports: c.Ports, Keepalive: c.Keepalive, MaxMessageSize: c.MaxMessageSize,
		Logger: c.Logger, WaitStrategy: c.WaitStrategy, Security: c.Security}.WithDefaults()
}

// WithDefaults returns c with every zero field set to its default.
func (c ProxyConfig) WithDefaults() ProxyConfig {
	n := c.Node()
	c.Host, c.Ports, c.Keepalive, c.MaxMessageSize, c.Logger = n.Host, n.Ports, n.Keepalive, n.MaxMessageSize, n.Logger
	if c.DirMode == 0 {
		c.DirMode = 0o700
	}
	return c
}

// Validate reports a field out of range (ErrInvalidConfig) or a bad key
// (ErrBadKey). It expects WithDefaults to have run.
func (c ProxyConfig) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: ProxyConfig.Dir is required", ErrInvalidConfig)
	case c.MemberTTL < 0:
		return fmt.Errorf("%w: negative MemberTTL", ErrInvalidConfig)
	case c.DirMode&^os.ModePerm != 0:
		return fmt.Errorf("%w: DirMode %v is not a permission mode", ErrInvalidConfig, c.DirMode)
	}
	return c.Node().Validate()
}
