package zmqmsg

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/zmqmsg/zmqmsg/engine"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// Pattern names the messaging pattern a message travels by.
type Pattern string

// The patterns an interceptor sees.
const (
	PatternCall       Pattern = "call"        // Client.Call
	PatternCast       Pattern = "cast"        // Client.Cast, acknowledged
	PatternDirectCast Pattern = "direct_cast" // Client.Cast with DirectCast
	PatternFanout     Pattern = "fanout"      // Client.Cast to a Fanout target
	PatternNotify     Pattern = "notify"      // Notifier.Notify, once per topic
)

// CallInfo describes an outgoing message to a ClientInterceptor. An
// interceptor may change Target and Method before it invokes the next one;
// Pattern only describes.
type CallInfo struct {
	Pattern Pattern
	Target  Target // NOTIFY: exchange NotifyExchange and the topic
	Method  string // NOTIFY: the event type

	priority  Priority // NOTIFY only
	publisher string
	at        time.Time
	opts      engine.CallOptions // CALL: the client's retry policy and pick
}

// Invoker sends the message of info: the next interceptor, or the
// Transport itself after the last. reply is Call's reply pointer (nil for
// the other patterns).
type Invoker func(ctx context.Context, info *CallInfo, args, reply any) error

// ClientInterceptor runs around every message a Transport's clients and
// notifiers send: it may read and change the outgoing metadata (with
// WithMetadata on the ctx it passes on), fail without invoking (the caller
// gets its error), and observe the result and its duration. A panic in
// one is returned to the caller as an error wrapping ErrInterceptorPanic.
type ClientInterceptor func(ctx context.Context, info *CallInfo, args, reply any, invoke Invoker) error

// ServerInfo describes an incoming request to a ServerInterceptor.
type ServerInfo struct {
	Pattern Pattern // a cast sent without acknowledgement (direct, or acks disabled) is PatternDirectCast
	Target  Target  // the server's exchange, topic and name (a listener: "pool/name")
	Method  string  // NOTIFY: the event type
}

// ServerInterceptor runs around every handler of a Transport's servers and
// listeners: it sees the request's metadata (MetadataFrom(ctx)) and
// arguments, may answer without calling handle (its error reaches the
// caller as a *RemoteError), and observes the result. A panic in one is a
// RemoteError of type "panic" for the caller, as a handler's is.
type ServerInterceptor func(ctx context.Context, info *ServerInfo, args Args, handle Handler) (any, error)

// Option configures a Transport beyond its Config.
type Option func(*options)

type options struct {
	client []ClientInterceptor
	server []ServerInterceptor
}

// WithClientInterceptors adds interceptors around every outgoing message;
// the first given runs outermost. Several options add up, in order.
func WithClientInterceptors(ics ...ClientInterceptor) Option {
	return func(o *options) { o.client = append(o.client, ics...) }
}

// WithServerInterceptors adds interceptors around every handler; the first
// given runs outermost. Several options add up, in order.
func WithServerInterceptors(ics ...ServerInterceptor) Option {
	return func(o *options) { o.server = append(o.server, ics...) }
}

// ErrInterceptorPanic: a client interceptor panicked; nothing may have been
// sent. The error also carries the panic's value.
var ErrInterceptorPanic = errors.New("zmqmsg: interceptor panicked")

// ErrInvalidMetadata: metadata with an empty or reserved key (the
// notification fields and keys starting with "zmqmsg."), a key or value
// over 65535 bytes, or more than MaxMetadata entries; nothing was sent.
var ErrInvalidMetadata = engine.ErrInvalidMetadata

// MaxMetadata bounds the entries of a message's metadata.
const MaxMetadata = engine.MaxMetadata

// Metadata are string pairs that travel with a message, in its envelope
// (docs/design.md §5.13). A Metadata returned by this package is shared:
// read it, do not modify it.
type Metadata map[string]string

// WithMetadata returns a copy of ctx whose outgoing metadata has key set to
// value: every message sent with it carries it (Call, Cast, fanout and
// notifications alike).
func WithMetadata(ctx context.Context, key, value string) context.Context {
	old := engine.MetaOf(ctx)
	m := make(map[string]string, len(old)+1)
	maps.Copy(m, old)
	m[key] = value
	return engine.WithMeta(ctx, m)
}

// OutgoingMetadata returns the metadata that messages sent with ctx carry
// (WithMetadata), or nil.
func OutgoingMetadata(ctx context.Context) Metadata { return engine.MetaOf(ctx) }

// incomingKey is the context key of a request's metadata in its handler.
type incomingKey struct{}

// MetadataFrom returns, in a handler or a server interceptor, the metadata
// the request arrived with (nil if none).
func MetadataFrom(ctx context.Context) Metadata {
	m, _ := ctx.Value(incomingKey{}).(Metadata)
	return m
}

// withIncoming puts a request's user metadata on its handler's ctx: none
// (no allocation) when it has none. Reserved keys (a notification's own
// fields, "zmqmsg." ones) are left out.
func withIncoming(ctx context.Context, meta map[string]string) context.Context {
	if len(meta) == 0 {
		return ctx
	}
	reserved := false
	for k := range meta {
		if engine.ReservedMeta(k) {
			reserved = true
			break
		}
	}
	if reserved {
		var user Metadata
		for k, v := range meta {
			if !engine.ReservedMeta(k) {
				if user == nil {
					user = make(Metadata, len(meta))
				}
				user[k] = v
			}
		}
		if user == nil {
			return ctx
		}
		return context.WithValue(ctx, incomingKey{}, user)
	}
	return context.WithValue(ctx, incomingKey{}, Metadata(meta))
}

// chainClient builds the Invoker that runs ics around last, or nil without
// interceptors.
func chainClient(ics []ClientInterceptor, last Invoker) Invoker {
	if len(ics) == 0 {
		return nil
	}
	next := last
	for i := len(ics) - 1; i >= 0; i-- {
		ic, inner := ics[i], next
		next = func(ctx context.Context, info *CallInfo, args, reply any) error {
			return ic(ctx, info, args, reply, inner)
		}
	}
	return next
}

// intercepted sends through the client interceptors, a panic in them
// becoming an error.
func (t *Transport) intercepted(ctx context.Context, info *CallInfo, args, reply any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrInterceptorPanic, p)
		}
	}()
	return t.chain(ctx, info, args, reply)
}

// send sends info's message through the client interceptors, if any.
func (t *Transport) send(ctx context.Context, info *CallInfo, args, reply any) error {
	if t.chain != nil {
		return t.intercepted(ctx, info, args, reply)
	}
	return t.invoke(ctx, info, args, reply)
}

// invoke is the last Invoker: it sends info's message.
func (t *Transport) invoke(ctx context.Context, info *CallInfo, args, reply any) error {
	switch info.Pattern {
	case PatternCall:
		return t.call(ctx, info.Target, info.Method, args, reply, info.opts)
	case PatternNotify:
		return t.notify(ctx, []string{info.Target.Topic}, info.priority, info.Method, info.publisher, info.at, args)
	}
	flags, payload, err := encode(t.codec, args)
	if err != nil {
		return fmt.Errorf("zmqmsg: encode arguments: %w", err)
	}
	switch info.Pattern {
	case PatternFanout:
		return t.e.Fanout(ctx, info.Target, info.Method, flags, payload)
	case PatternDirectCast:
		return t.e.DirectCast(ctx, info.Target, info.Method, flags, payload)
	}
	return t.e.Cast(ctx, info.Target, info.Method, flags, payload)
}

// serve runs a handler through the server interceptors.
func (t *Transport) serve(ctx context.Context, info *ServerInfo, args Args, h Handler) (any, error) {
	return serveChain(t.serverICs, ctx, info, args, h)
}

func serveChain(ics []ServerInterceptor, ctx context.Context, info *ServerInfo, args Args, h Handler) (any, error) {
	if len(ics) == 0 {
		return h(ctx, args)
	}
	return ics[0](ctx, info, args, func(ctx context.Context, a Args) (any, error) {
		return serveChain(ics[1:], ctx, info, a, h)
	})
}

// serverInfo describes req to the server interceptors.
func serverInfo(req *engine.Request, server string) *ServerInfo {
	m := &req.Msg
	info := &ServerInfo{Target: Target{Exchange: m.Exchange, Topic: m.Topic, Server: server}, Method: m.Method}
	switch {
	case m.Kind == envelope.KindCall:
		info.Pattern = PatternCall
	case m.Kind == envelope.KindFanout:
		info.Pattern = PatternFanout
	case m.Kind == envelope.KindNotify:
		info.Pattern = PatternNotify
	case m.Flags&envelope.FlagNoAck != 0:
		info.Pattern = PatternDirectCast
	default:
		info.Pattern = PatternCast
	}
	return info
}
