// Package zmqotel traces zmqmsg messages with OpenTelemetry: a client
// interceptor starts a span per message and carries its W3C trace context
// (traceparent, tracestate) in the message's metadata; a server
// interceptor continues the trace in a span around the handler. A node
// proxy daemon relays the metadata untouched and adds no span.
//
// Attributes follow the semantic conventions of semconv v1.43.0: a CALL is
// an RPC (span kinds CLIENT and SERVER, named and with rpc.method
// "[exchange/]topic/method", rpc.system.name "zmqmsg"); a CAST, direct
// cast, FANOUT or NOTIFY is messaging (PRODUCER and CONSUMER, named
// "{pattern} {topic}", messaging.system "zmqmsg",
// messaging.destination.name the topic, messaging.operation.type send or
// process, messaging.operation.name the pattern). The trace context never
// pushes a message's metadata over zmqmsg.MaxMetadata: without room it is
// not propagated, and the client span says so in an event. A failure sets error.type and the span's status. A CALL's
// duration, in seconds, is recorded in rpc.client.call.duration and
// rpc.server.call.duration.
package zmqotel

import (
	"context"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/observe/zmqprom"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/rpcconv"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the spans.
const ScopeName = "github.com/zmqmsg/zmqmsg/observe/zmqotel"

// System is the value of rpc.system.name and messaging.system.
const System = "zmqmsg"

// Option configures the interceptors.
type Option func(*config)

type config struct {
	tp   trace.TracerProvider
	mp   metric.MeterProvider
	prop propagation.TextMapPropagator
}

// WithMeterProvider sets the provider of the call duration histograms,
// rpc.client.call.duration and rpc.server.call.duration (default:
// otel.GetMeterProvider()).
func WithMeterProvider(mp metric.MeterProvider) Option { return func(c *config) { c.mp = mp } }

// WithTracerProvider sets the provider (default: otel.GetTracerProvider()).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(c *config) { c.tp = tp } }

// WithPropagator sets the propagator (default: W3C trace context).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.prop = p }
}

func newConfig(opts []Option) config {
	c := config{tp: otel.GetTracerProvider(), mp: otel.GetMeterProvider(), prop: propagation.TraceContext{}}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	return c
}

// Method is the fully-qualified method name: rpc.method and the span name.
func Method(t zmqmsg.Target, method string) string {
	if t.Exchange == "" {
		return t.Topic + "/" + method
	}
	return t.Exchange + "/" + t.Topic + "/" + method
}

// spanName is rpc.method for a CALL, "{operation} {destination}" (the
// pattern and the topic) for the messaging patterns.
func spanName(p zmqmsg.Pattern, t zmqmsg.Target, rpcMethod string) string {
	if p == zmqmsg.PatternCall {
		return rpcMethod
	}
	return string(p) + " " + t.Topic
}

// attributes returns the span kind and attributes of a message.
func attributes(p zmqmsg.Pattern, t zmqmsg.Target, name string, client bool) (trace.SpanKind, []attribute.KeyValue) {
	if p == zmqmsg.PatternCall {
		kind := trace.SpanKindServer
		if client {
			kind = trace.SpanKindClient
		}
		return kind, []attribute.KeyValue{semconv.RPCSystemNameKey.String(System), semconv.RPCMethodKey.String(name)}
	}
	kind, op := trace.SpanKindConsumer, semconv.MessagingOperationTypeProcess
	if client {
		kind, op = trace.SpanKindProducer, semconv.MessagingOperationTypeSend
	}
	return kind, []attribute.KeyValue{semconv.MessagingSystemKey.String(System), semconv.MessagingDestinationName(t.Topic), op,
		semconv.MessagingOperationName(string(p))}
}

// end records err on span and ends it; a CALL's duration goes to rec too.
func end(ctx context.Context, span trace.Span, err error, p zmqmsg.Pattern, rpcMethod string, start time.Time, rec func(context.Context, float64, rpcconv.SystemNameAttr, ...attribute.KeyValue)) {
	var errType attribute.KeyValue
	if err != nil {
		errType = semconv.ErrorTypeKey.String(zmqprom.Outcome(err))
		span.SetAttributes(errType)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	if p == zmqmsg.PatternCall {
		attrs := []attribute.KeyValue{semconv.RPCMethodKey.String(rpcMethod)}
		if err != nil {
			attrs = append(attrs, errType)
		}
		rec(ctx, time.Since(start).Seconds(), System, attrs...)
	}
}

// inject puts ctx's trace context into the outgoing metadata, within
// zmqmsg.MaxMetadata entries: a caller's metadata that leaves no room
// drops tracestate first, then the whole context (a span event says so),
// rather than fail the call.
func inject(ctx context.Context, prop propagation.TextMapPropagator, span trace.Span) context.Context {
	carrier := propagation.MapCarrier{}
	prop.Inject(ctx, carrier)
	out := zmqmsg.OutgoingMetadata(ctx)
	room := zmqmsg.MaxMetadata - len(out)
	for k := range carrier {
		if _, ok := out[k]; ok {
			room++ // replaced, not added
		}
	}
	if len(carrier) > room {
		delete(carrier, "tracestate")
	}
	if len(carrier) > room {
		span.AddEvent("zmqmsg: trace context not propagated: the message's metadata is full")
		return ctx
	}
	for k, v := range carrier {
		ctx = zmqmsg.WithMetadata(ctx, k, v)
	}
	return ctx
}

// ClientInterceptor starts a span for every message the Transport's
// clients and notifiers send and injects its context into the metadata.
func ClientInterceptor(opts ...Option) zmqmsg.ClientInterceptor {
	c := newConfig(opts)
	tracer := c.tp.Tracer(ScopeName)
	dur, _ := rpcconv.NewClientCallDuration(c.mp.Meter(ScopeName)) // on error: a no-op histogram
	return func(ctx context.Context, info *zmqmsg.CallInfo, args, reply any, invoke zmqmsg.Invoker) error {
		start := time.Now()
		name := Method(info.Target, info.Method)
		kind, attrs := attributes(info.Pattern, info.Target, name, true)
		ctx, span := tracer.Start(ctx, spanName(info.Pattern, info.Target, name), trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
		if span.SpanContext().IsValid() {
			ctx = inject(ctx, c.prop, span)
		}
		err := invoke(ctx, info, args, reply)
		end(ctx, span, err, info.Pattern, name, start, dur.Record)
		return err
	}
}

// ServerInterceptor continues the caller's trace in a span around every
// handler the Transport's servers and listeners run.
func ServerInterceptor(opts ...Option) zmqmsg.ServerInterceptor {
	c := newConfig(opts)
	tracer := c.tp.Tracer(ScopeName)
	dur, _ := rpcconv.NewServerCallDuration(c.mp.Meter(ScopeName)) // on error: a no-op histogram
	return func(ctx context.Context, info *zmqmsg.ServerInfo, args zmqmsg.Args, handle zmqmsg.Handler) (any, error) {
		start := time.Now()
		ctx = c.prop.Extract(ctx, propagation.MapCarrier(zmqmsg.MetadataFrom(ctx)))
		target := info.Target
		target.Server = ""
		name := Method(target, info.Method)
		kind, attrs := attributes(info.Pattern, target, name, false)
		ctx, span := tracer.Start(ctx, spanName(info.Pattern, target, name), trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
		res, err := handle(ctx, args)
		end(ctx, span, err, info.Pattern, name, start, dur.Record)
		return res, err
	}
}
