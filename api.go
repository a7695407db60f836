package zmqmsg

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/engine"
	"github.com/zmqmsg/zmqmsg/envelope"
	"github.com/zmqmsg/zmqmsg/internal/config"
)

// Target addresses the servers of a topic: Exchange (optional namespace),
// Topic (required), Server (optional: one named server; "" = any), and
// Fanout (Cast reaches every server of the topic; Call refuses it).
type Target = engine.Target

// AnyPort, as a port in Ports, asks the OS for a free port. The actual port
// is what the node registers in the directory (see Transport.Node).
const AnyPort = config.AnyPort

// Default ports of the node proxy's pipelines.
const (
	DefaultCallPort   = config.DefaultCallPort
	DefaultFanoutPort = config.DefaultFanoutPort
	DefaultNotifyPort = config.DefaultNotifyPort
	DefaultCastPort   = config.DefaultCastPort
)

// CloseFlush bounds how long Transport.Close (and a proxy daemon's Close)
// waits for messages libzmq has taken but not yet sent.
const CloseFlush = config.CloseFlush

// Config configures a Transport; the zero value is usable (every field has
// a default). Its fields are documented in internal/config, where the one
// definition that New and the proxy daemon share lives.
type Config = config.Config

// Ports are the node proxy's TCP ports, one per pipeline.
type Ports = config.Ports

// Keepalive configures dead-peer detection on every TCP socket.
type Keepalive = config.Keepalive

// AckPolicy configures CAST acknowledgements.
type AckPolicy = config.AckPolicy

// WaitStrategy selects how the socket loops sleep.
type WaitStrategy = config.WaitStrategy

// The wait strategies (docs/design.md §3).
const (
	WaitDefault = config.WaitDefault // WaitNetpoll on Linux, else WaitZMQPoll
	WaitNetpoll = config.WaitNetpoll // each socket's ZMQ_FD in Go's netpoller
	WaitZMQPoll = config.WaitZMQPoll // zmq_poll, woken by an inproc PAIR
)

// Transport is one node: it owns a ZeroMQ context, the node proxy on the
// node's ports, the sockets to other nodes, and the servers it serves. It is
// safe for concurrent use.
type Transport struct {
	e     *engine.Engine
	codec Codec // the engine's, with its default
	seq   atomic.Uint64

	chain     Invoker             // the client interceptors around invoke; nil without any
	serverICs []ServerInterceptor // around every handler
}

// New starts a Transport: it binds the node's ports (a taken port is an
// error) and returns when the node is reachable. opts add interceptors.
func New(cfg Config, opts ...Option) (*Transport, error) {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	for _, ic := range o.client {
		if ic == nil {
			return nil, fmt.Errorf("%w: nil client interceptor", ErrInvalidConfig)
		}
	}
	for _, ic := range o.server {
		if ic == nil {
			return nil, fmt.Errorf("%w: nil server interceptor", ErrInvalidConfig)
		}
	}
	e, err := engine.New(cfg)
	if err != nil {
		return nil, err
	}
	t := &Transport{e: e, codec: e.Config().Codec, serverICs: o.server}
	t.chain = chainClient(o.client, t.invoke)
	return t, nil
}

// Close shuts the Transport down: calls in flight fail with ErrClosed at
// once, servers stop (their handlers' contexts are cancelled), and every
// goroutine, socket and the ZeroMQ context are gone when it returns. It is
// idempotent.
func (t *Transport) Close() error { return t.e.Close() }

// Node returns how other nodes reach this one: its host and actual ports.
func (t *Transport) Node() directory.Node { return t.e.Node() }

// newName generates a server name unique within the node: "host:port#N",
// or "host:port#TAG.N" on a Transport that joined a proxy daemon, whose node
// other processes share.
func (t *Transport) newName() string {
	if inst := t.e.Instance(); inst != "" {
		return fmt.Sprintf("%s#%s.%d", t.e.Node().ID(), inst, t.seq.Add(1))
	}
	return fmt.Sprintf("%s#%d", t.e.Node().ID(), t.seq.Add(1))
}

// Stats is a snapshot of a Transport's counters.
type Stats = engine.Stats

// Stats returns the Transport's counters: every dropped, late, malformed or
// failed message is counted there.
func (t *Transport) Stats() Stats { return t.e.Stats() }

// NodeStats are the counters of a node's proxy, as its call port answers a
// STATS request (docs/design.md §5.12).
type NodeStats = engine.NodeStats

// NodeStats asks node for its proxy's counters over the wire, so that a
// tool can account for what was dropped on the way (a daemon's counters
// are in no process of the caller's). It waits until ctx ends, or
// Config.CallTimeout without a deadline.
func (t *Transport) NodeStats(ctx context.Context, node directory.Node) (NodeStats, error) {
	return t.e.NodeStats(ctx, node)
}

// Args are a request's arguments as a handler receives them: the request
// itself, as the node proxy decoded it from the wire.
type Args struct {
	req   *engine.Request
	codec Codec
}

// Decode decodes the arguments into v (a pointer). Arguments sent as []byte
// can only be decoded into a *[]byte.
func (a Args) Decode(v any) error {
	m := &a.req.Msg
	if m.Flags&envelope.FlagRaw != 0 {
		p, ok := v.(*[]byte)
		if !ok {
			return &BadArgumentsError{Reason: fmt.Sprintf("raw []byte arguments cannot be decoded into %T", v)}
		}
		*p = m.Payload
		return nil
	}
	if err := a.codec.Unmarshal(m.Payload, v); err != nil {
		return &BadArgumentsError{Reason: err.Error()}
	}
	return nil
}

// Raw returns the encoded arguments. They belong to the request alone and
// stay valid after the handler returns.
func (a Args) Raw() []byte { return a.req.Msg.Payload }

// BadArgumentsError is a handler's error for arguments that do not decode.
// The caller sees it as a RemoteError of type "BadArguments".
type BadArgumentsError struct{ Reason string }

func (e *BadArgumentsError) Error() string { return "zmqmsg: bad arguments: " + e.Reason }

// ErrorType names the error for RemoteError.Type.
func (e *BadArgumentsError) ErrorType() string { return "BadArguments" }

// Handler serves one method. Its result is sent back with the Transport's
// codec; a []byte result is sent as is. An error reaches the caller as a
// *RemoteError with the error's type (its ErrorType() string method if it
// has one, else its Go type) and message. ctx ends at the caller's deadline
// or when the Transport closes.
type Handler func(ctx context.Context, args Args) (any, error)

// Endpoints maps method names to handlers.
type Endpoints map[string]Handler

// Method adapts a typed function to a Handler: the arguments are decoded
// into an A, the result R is encoded.
func Method[A, R any](fn func(ctx context.Context, args A) (R, error)) Handler {
	return func(ctx context.Context, args Args) (any, error) {
		var a A
		if err := args.Decode(&a); err != nil {
			return nil, err
		}
		return fn(ctx, a)
	}
}

// Server is a running server of one topic.
type Server struct {
	s *engine.Server
}

// Name returns the server's name (Target.Server, or a generated one).
func (s *Server) Name() string { return s.s.Name() }

// Stop stops the server: it deregisters, takes no new requests, and waits
// until the requests it accepted have been answered, or ctx ends (their
// handlers' contexts are then cancelled). Idempotent.
func (s *Server) Stop(ctx context.Context) error { return s.s.Stop(ctx) }

// Serve starts a server of target.Topic (in target.Exchange) with the given
// endpoints and returns once the server is reachable: routed by this node's
// proxy and registered in the directory. target.Server names it (unique
// within the topic); empty means a generated name. By default each request
// runs on one of Config.ServerConcurrency worker goroutines; see Inline.
func (t *Transport) Serve(target Target, endpoints Endpoints, opts ...ServeOption) (*Server, error) {
	var so serveOptions
	for _, o := range opts {
		if o != nil {
			o(&so)
		}
	}
	if target.Fanout {
		return nil, fmt.Errorf("%w: Serve takes the topic's target, without Fanout", ErrInvalidTarget)
	}
	name := target.Server
	if name == "" {
		name = t.newName()
	}
	eps := make(Endpoints, len(endpoints))
	for k, h := range endpoints {
		if h == nil {
			return nil, fmt.Errorf("%w: nil handler for %q", ErrInvalidConfig, k)
		}
		if engine.Reserved(k) {
			return nil, fmt.Errorf("%w: %q (built-in methods start with %q)", ErrReservedMethod, k, ReservedMethodPrefix)
		}
		eps[k] = h
	}
	methods := make([]string, 0, len(eps))
	for m := range eps {
		methods = append(methods, m)
	}
	slices.Sort(methods)
	offered := offeredList(methods)
	codec := t.codec
	dispatch := func(ctx context.Context, req *engine.Request) (engine.Reply, error) {
		h, ok := eps[req.Msg.Method]
		if !ok {
			return engine.Reply{}, fmt.Errorf("%w: %q (offered: %s)", ErrNoSuchMethod, req.Msg.Method, offered)
		}
		ctx = withIncoming(ctx, req.Msg.Meta)
		var res any
		var err error
		if len(t.serverICs) == 0 {
			res, err = h(ctx, Args{req: req, codec: codec})
		} else {
			res, err = t.serve(ctx, serverInfo(req, name), Args{req: req, codec: codec}, h)
		}
		if err != nil || req.Msg.Kind != envelope.KindCall {
			return engine.Reply{}, err // a one-way message's result goes nowhere: not encoded
		}
		flags, payload, err := encode(codec, res)
		if err != nil {
			return engine.Reply{}, fmt.Errorf("zmqmsg: encode reply: %w", err)
		}
		return engine.Reply{Flags: flags, Payload: payload}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc := engine.Service{Methods: methods, Metadata: so.meta}
	s, err := t.e.Serve(ctx, directory.Key{Exchange: target.Exchange, Topic: target.Topic}, name, svc, dispatch, so.inline)
	if err != nil {
		return nil, err
	}
	return &Server{s: s}, nil
}

// offeredList names methods for a NoSuchMethod error, at most about 512
// bytes of them.
func offeredList(methods []string) string {
	var b strings.Builder
	for i, m := range methods {
		if b.Len()+len(m) > 512 {
			fmt.Fprintf(&b, ", … %d more", len(methods)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(m))
	}
	return b.String()
}

// ServeOption configures a Server.
type ServeOption func(*serveOptions)

type serveOptions struct {
	inline bool
	meta   map[string]string // ServeMetadata
}

// Inline runs the server's handlers on the node proxy's loop goroutine, the
// one that owns the node's call socket, instead of on worker goroutines. It
// saves two goroutine hand-offs per call (see docs/design.md for the
// numbers), but a handler that blocks, or merely takes long, delays every
// call to every server of this node: use it only for short, non-blocking
// handlers (no I/O, no waiting on locks or channels). A panic is still
// recovered and returned as a RemoteError. Config.ServerConcurrency does not
// apply: inline handlers run one at a time. An inline handler must not
// start or stop servers: Serve and Stop wait for the loop it runs on, and
// give up only at their time limits (seconds).
func Inline() ServeOption { return func(o *serveOptions) { o.inline = true } }

// Client sends messages to one target. It is cheap, and safe for
// concurrent use.
type Client struct {
	t      *Transport
	target Target
	direct bool               // Cast goes over the direct-cast pipeline (DirectCast)
	opts   engine.CallOptions // Retry, LeastOutstanding, MonitorEvery
}

// RetryPolicy retries the calls of idempotent methods on another server of
// the target, after ErrNodeDown or ErrServerLost (the call may have run:
// hence idempotent methods only) or ErrOverloaded (it did not), with backoff and within the
// call's deadline; see Retry. Counted in Stats.CallRetries.
type RetryPolicy = engine.RetryPolicy

// Retry makes the client's calls to the methods p names retry (see
// RetryPolicy). A call to a named server (Target.Server) is not retried:
// there is no other server to go to.
func Retry(p RetryPolicy) ClientOption {
	return func(c *Client) {
		p.Methods = slices.Clone(p.Methods)
		c.opts.Retry = &p
	}
}

// LeastOutstanding makes the client's calls go to the server of the target
// with the fewest calls from this Transport still waiting for their answer
// (round robin between equals), instead of the next server in turn: a slow
// server then gets fewer calls.
func LeastOutstanding() ClientOption { return func(c *Client) { c.opts.LeastOutstanding = true } }

// MonitorEvery makes the client's calls ask their server for a heartbeat
// every d while the handler runs (d is raised to at least 10ms): for long
// calls, as oslo's call_monitor_timeout. A call whose server has sent one
// and then stays silent for 2×d fails with ErrServerLost, long before its
// deadline, whatever the node's connection says; a slow server that is
// alive never trips it, unless its node stalls for 2×d (pick d well above
// the pauses you expect: a second for a call of minutes). d is cut to an
// hour. A server older than the monitor sends none, and its calls wait for
// their deadline as before (docs/design.md §22). It applies to Call; CallAll
// and Discover do not monitor.
func MonitorEvery(d time.Duration) ClientOption {
	return func(c *Client) { c.opts.MonitorEvery = d }
}

// MetaMonitor is the reserved metadata key of a monitored CALL (the
// interval in milliseconds); MinMonitorInterval is the shortest interval.
const (
	MetaMonitor        = engine.MetaMonitor
	MinMonitorInterval = engine.MinMonitor
)

// ErrServerLost: a call made with MonitorEvery heard no heartbeat from its
// server for two intervals. The node may be fine; the server is not
// answering, and the call may have run. Counted in Stats.ServersLost.
var ErrServerLost = engine.ErrServerLost

// ClientOption configures a Client.
type ClientOption func(*Client)

// DirectCast makes the client's Cast use the direct-cast pipeline: a PUSH
// socket to the server's node (port 9504 by default) instead of the
// acknowledged DEALER pipeline. It is the fast path for high-rate one-way
// traffic: Cast returns once the message is queued for the socket, there is
// no acknowledgement and no retry, and a server runs the direct casts of one
// sender in the order they were sent. A message the receiving node cannot
// hand to a server (its lane is full, or the server is gone) is dropped
// there and counted (Stats.DirectDropped), and so is one whose method the
// server does not have (Stats.DirectRefused, logged with the method); one
// that cannot be sent is counted here (Stats.DirectCastFailed).
func DirectCast() ClientOption { return func(c *Client) { c.direct = true } }

// Client returns a Client for target.
func (t *Transport) Client(target Target, opts ...ClientOption) *Client {
	c := &Client{t: t, target: target}
	for _, o := range opts {
		if o != nil {
			o(c)
		}
	}
	return c
}

// Call invokes method on one server of the client's target (the named one,
// or the next in round robin) and waits for its reply, which is decoded into
// reply (a pointer; nil discards it). args is encoded with the codec, or
// sent as is if it is a []byte.
//
// Call waits until the reply arrives, ctx ends, or the deadline passes: ctx's
// deadline, or Config.CallTimeout from now. It returns ErrTimeout (which
// matches context.DeadlineExceeded) on a deadline, ctx.Err() when ctx is
// cancelled, ErrNoServers when no server of the target appears within
// Config.WaitForServers, ErrDirectoryUnavailable when the directory cannot
// be read and nothing about the target is cached, a *RemoteError for a
// handler's error, ErrTooLarge, ErrOverloaded, or ErrClosed.
//
// A call never waits on a node that cannot be connected to: one that its
// node never had goes to a server of the topic on another node, and fails
// with an *UnavailableError (ErrUnavailable) when it named its server or no
// other node serves the topic. One whose node's connection was lost after
// it was sent fails with a *NodeDownError (ErrNodeDown): it may have run;
// so does, with ErrServerLost, one whose server stopped sending the
// heartbeats MonitorEvery asked for. A ctx that has already ended sends
// nothing.
func (c *Client) Call(ctx context.Context, method string, args, reply any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.t.chain != nil {
		return c.t.intercepted(ctx, &CallInfo{Pattern: PatternCall, Target: c.target, Method: method, opts: c.opts}, args, reply)
	}
	return c.t.call(ctx, c.target, method, args, reply, c.opts)
}

// call sends a CALL and decodes its reply.
func (t *Transport) call(ctx context.Context, target Target, method string, args, reply any, o engine.CallOptions) error {
	if args == nil && engine.Reserved(method) {
		args = []byte(nil) // the server ignores them: no codec asked to encode nil
	}
	flags, payload, err := encode(t.codec, args)
	if err != nil {
		return fmt.Errorf("zmqmsg: encode arguments: %w", err)
	}
	m, err := t.e.CallWith(ctx, target, method, flags, payload, o)
	if err != nil {
		return err
	}
	if r, ok := reply.(*rawReply); ok {
		r.msg = m // CallAll: decoded later, by ServerReply.Decode
		return nil
	}
	return decodeReply(t.replyCodec(method), &m, reply)
}

// replyCodec is the codec of method's replies: JSON for the built-in
// methods, whatever the Transport's.
func (t *Transport) replyCodec(method string) Codec {
	if engine.Reserved(method) {
		return JSON{}
	}
	return t.codec
}

// decodeReply decodes a REPLY's payload into reply (nil discards it).
func decodeReply(codec Codec, m *envelope.Message, reply any) error {
	if reply == nil {
		return nil
	}
	if m.Flags&envelope.FlagRaw != 0 {
		p, ok := reply.(*[]byte)
		if !ok {
			return fmt.Errorf("zmqmsg: raw []byte reply cannot be decoded into %T", reply)
		}
		*p = m.Payload
		return nil
	}
	if err := codec.Unmarshal(m.Payload, reply); err != nil {
		return fmt.Errorf("zmqmsg: decode reply: %w", err)
	}
	return nil
}

// Cast sends method and args to one server of the client's target (the
// named one, or the next in round robin) without waiting for a result.
//
// With acknowledgements on (the default; see AckPolicy) it returns once the
// server has run the handler: nil, or the *RemoteError a Call would get. It
// fails with ErrNotAcked when no answer comes after the retries; delivery
// is at least once (docs/design.md §7). With them off, or with DirectCast,
// it returns once the socket has the message. With Target.Fanout it
// reaches every server of the topic and returns once every node has taken
// the message, or a *FanoutError naming those that did not (§8). It also
// fails like Call, and waits, bounded by ctx, while Config.CastWindow casts
// to one node are unacknowledged.
func (c *Client) Cast(ctx context.Context, method string, args any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.t.chain != nil {
		info := &CallInfo{Pattern: PatternCast, Target: c.target, Method: method}
		switch {
		case c.target.Fanout:
			info.Pattern = PatternFanout
		case c.direct:
			info.Pattern = PatternDirectCast
		}
		return c.t.intercepted(ctx, info, args, nil)
	}
	flags, payload, err := encode(c.t.codec, args)
	if err != nil {
		return fmt.Errorf("zmqmsg: encode arguments: %w", err)
	}
	switch {
	case c.target.Fanout:
		return c.t.e.Fanout(ctx, c.target, method, flags, payload)
	case c.direct:
		return c.t.e.DirectCast(ctx, c.target, method, flags, payload)
	}
	return c.t.e.Cast(ctx, c.target, method, flags, payload)
}

// encode encodes v with codec, or passes a []byte through as raw.
func encode(codec Codec, v any) (envelope.Flags, []byte, error) {
	if b, ok := v.([]byte); ok {
		if b == nil {
			b = []byte{}
		}
		return envelope.FlagRaw, b, nil
	}
	b, err := codec.Marshal(v)
	return 0, b, err
}

// Errors. Compare with errors.Is.
var (
	// ErrClosed: the Transport (or the Server) is closed.
	ErrClosed = engine.ErrClosed
	// ErrNoServers: no server of the target appeared within
	// Config.WaitForServers, or the named server is unknown.
	ErrNoServers = engine.ErrNoServers
	// ErrTimeout: the call's deadline passed. It matches
	// context.DeadlineExceeded.
	ErrTimeout = engine.ErrTimeout
	// ErrTooLarge: the message is over Config.MaxMessageSize; nothing was sent.
	ErrTooLarge = engine.ErrTooLarge
	// ErrOverloaded: the server's queue was full; the request did not run.
	ErrOverloaded = engine.ErrOverloaded
	// ErrNoSuchMethod matches the RemoteError of a call to an unknown method.
	ErrNoSuchMethod = engine.ErrNoSuchMethod
	// ErrInvalidTarget: a target without a topic, or otherwise unusable.
	ErrInvalidTarget = engine.ErrInvalidTarget
	// ErrUnavailable: the connection to the target's node is being
	// re-established; the request was not sent.
	ErrUnavailable = engine.ErrUnavailable
	// ErrDirectoryUnavailable: the directory could not be read and nothing
	// about the target was cached: nothing was sent, and it is not known
	// whether the target has servers.
	ErrDirectoryUnavailable = engine.ErrDirectoryUnavailable
	// ErrUnreached: a node was not reached. A fanout that missed nodes of
	// its topic returns a *FanoutError naming them; a CallAll reports each
	// server whose node could not be reached with an error wrapping it.
	ErrUnreached = engine.ErrUnreached
	// ErrNodeDown: the connection to the node serving the request was lost
	// while the request waited for its answer (the node died, its link was
	// cut, a heartbeat timed out): the request fails at once, not at its
	// deadline. The error is a *NodeDownError. A CALL may or may not have
	// run. New calls avoid a node that is down while another serves the
	// target.
	ErrNodeDown = engine.ErrNodeDown
	// ErrNotAcked: a cast got no acknowledgement after all its retries.
	ErrNotAcked = engine.ErrNotAcked
	// ErrNoProxy: Config.ProxyDir names a directory where no node proxy
	// daemon answers.
	ErrNoProxy = engine.ErrNoProxy
	// ErrInvalidConfig: a Config field is out of range.
	ErrInvalidConfig = config.ErrInvalidConfig
)

// RemoteError is a handler's error as seen by the caller: its Type and
// Message on the server.
type RemoteError = engine.RemoteError

// NodeDownError names the node whose connection was lost; it matches
// ErrNodeDown.
type NodeDownError = engine.NodeDownError

// UnavailableError names the node that could not be connected to; the
// request was never sent. It matches ErrUnavailable.
type UnavailableError = engine.UnavailableError

// FanoutError names the nodes a fanout did not reach (node id -> why).
type FanoutError = engine.FanoutError
