package zmqotel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/observe/zmqotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func node(t *testing.T, dir directory.Directory, opts ...zmqmsg.Option) *zmqmsg.Transport {
	t.Helper()
	tr, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
	})
	return tr
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) string {
	for _, a := range s.Attributes() {
		if a.Key == k {
			return a.Value.String()
		}
	}
	return ""
}

// A call across two Transports yields a client span and a server span of
// one trace, the server's child of the client's; a handler's error sets
// both spans' status; a cast is a producer and a consumer span.
func TestTraceCrossesTransports(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	dir := directory.NewMemory()
	t.Cleanup(func() { _ = dir.Close() })

	srv := node(t, dir, zmqmsg.WithServerInterceptors(zmqotel.ServerInterceptor(zmqotel.WithTracerProvider(tp))))
	s, err := srv.Serve(zmqmsg.Target{Topic: "calc"}, zmqmsg.Endpoints{
		"add":  zmqmsg.Method(func(_ context.Context, a [2]int) (int, error) { return a[0] + a[1], nil }),
		"fail": func(context.Context, zmqmsg.Args) (any, error) { return nil, errors.New("no") },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	cl := node(t, dir, zmqmsg.WithClientInterceptors(zmqotel.ClientInterceptor(zmqotel.WithTracerProvider(tp))))
	c := cl.Client(zmqmsg.Target{Topic: "calc"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var sum int
	if err := c.Call(ctx, "add", [2]int{1, 2}, &sum); err != nil || sum != 3 {
		t.Fatalf("add: %d, %v", sum, err)
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	server, client := spans[0], spans[1] // the server's ends first
	if client.SpanKind() != trace.SpanKindClient || server.SpanKind() != trace.SpanKindServer {
		t.Fatalf("kinds: client %v, server %v", client.SpanKind(), server.SpanKind())
	}
	if server.SpanContext().TraceID() != client.SpanContext().TraceID() || server.Parent().SpanID() != client.SpanContext().SpanID() || !server.Parent().IsRemote() {
		t.Fatalf("server span %v (parent %v) is not the client span's %v child", server.SpanContext(), server.Parent(), client.SpanContext())
	}
	for _, sp := range spans {
		if sp.Name() != "calc/add" || attr(sp, "rpc.system.name") != "zmqmsg" || attr(sp, "rpc.method") != "calc/add" {
			t.Errorf("span %q: rpc.system.name %q, rpc.method %q", sp.Name(), attr(sp, "rpc.system.name"), attr(sp, "rpc.method"))
		}
	}

	if err := c.Call(ctx, "fail", 0, nil); !errors.As(err, new(*zmqmsg.RemoteError)) {
		t.Fatalf("fail: %v", err)
	}
	spans = rec.Ended()[2:]
	for _, sp := range spans {
		if sp.Status().Code != codes.Error || attr(sp, "error.type") == "" {
			t.Errorf("span %s %v: status %v, error.type %q", sp.Name(), sp.SpanKind(), sp.Status(), attr(sp, "error.type"))
		}
	}

	if err := c.Cast(ctx, "add", [2]int{1, 1}); err != nil {
		t.Fatal(err)
	}
	spans = rec.Ended()[4:]
	if len(spans) != 2 || spans[0].SpanKind() != trace.SpanKindConsumer || spans[1].SpanKind() != trace.SpanKindProducer ||
		spans[0].SpanContext().TraceID() != spans[1].SpanContext().TraceID() || attr(spans[1], "messaging.system") != "zmqmsg" ||
		attr(spans[0], "messaging.destination.name") != "calc" {
		t.Fatalf("cast spans: %v", spans)
	}
}
