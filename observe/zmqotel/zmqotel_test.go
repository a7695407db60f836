package zmqotel_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/observe/internal/obstest"
	"github.com/zmqmsg/zmqmsg/observe/zmqotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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

	srv := obstest.Node(t, dir, zmqmsg.WithServerInterceptors(zmqotel.ServerInterceptor(zmqotel.WithTracerProvider(tp))))
	s, err := srv.Serve(zmqmsg.Target{Topic: "calc"}, zmqmsg.Endpoints{
		"add":  zmqmsg.Method(func(_ context.Context, a [2]int) (int, error) { return a[0] + a[1], nil }),
		"fail": func(context.Context, zmqmsg.Args) (any, error) { return nil, errors.New("no") },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	cl := obstest.Node(t, dir, zmqmsg.WithClientInterceptors(zmqotel.ClientInterceptor(zmqotel.WithTracerProvider(tp))))
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
	if len(spans) != 2 {
		t.Fatalf("%d spans for the failed call, want 2", len(spans))
	}
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
		attr(spans[0], "messaging.destination.name") != "calc" || spans[1].Name() != "cast calc" {
		t.Fatalf("cast spans: %v", spans)
	}
}

// Through a node proxy daemon (it relays the metadata untouched and adds
// no span) the member's server span is the client span's child.
func TestTraceCrossesTheDaemon(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	dir := directory.NewMemory()
	t.Cleanup(func() { _ = dir.Close() })
	ipc := filepath.Join(t.TempDir(), "zmqmsg")
	p, err := zmqmsg.StartProxy(zmqmsg.ProxyConfig{Dir: ipc, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	member, err := zmqmsg.New(zmqmsg.Config{Directory: dir, ProxyDir: ipc},
		zmqmsg.WithServerInterceptors(zmqotel.ServerInterceptor(zmqotel.WithTracerProvider(tp))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = member.Close() })
	s, err := member.Serve(zmqmsg.Target{Topic: "d"}, zmqmsg.Endpoints{"m": func(context.Context, zmqmsg.Args) (any, error) { return 1, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	cl := obstest.Node(t, dir, zmqmsg.WithClientInterceptors(zmqotel.ClientInterceptor(zmqotel.WithTracerProvider(tp))))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.Client(zmqmsg.Target{Topic: "d"}).Call(ctx, "m", nil, nil); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 2 || spans[0].SpanKind() != trace.SpanKindServer || spans[0].Parent().SpanID() != spans[1].SpanContext().SpanID() {
		t.Fatalf("spans through the daemon: %v", spans)
	}
}

// Every CALL's duration is recorded once on each side, with rpc.method and,
// for a failure, error.type; a CAST is not an RPC and records none.
func TestCallDurationMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	dir := directory.NewMemory()
	t.Cleanup(func() { _ = dir.Close() })
	srv := obstest.Node(t, dir, zmqmsg.WithServerInterceptors(zmqotel.ServerInterceptor(zmqotel.WithMeterProvider(mp))))
	s, err := srv.Serve(zmqmsg.Target{Topic: "calc"}, zmqmsg.Endpoints{
		"add":  func(context.Context, zmqmsg.Args) (any, error) { return 1, nil },
		"fail": func(context.Context, zmqmsg.Args) (any, error) { return nil, errors.New("no") },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	c := obstest.Node(t, dir, zmqmsg.WithClientInterceptors(zmqotel.ClientInterceptor(zmqotel.WithMeterProvider(mp)))).Client(zmqmsg.Target{Topic: "calc"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 3 {
		if err := c.Call(ctx, "add", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.Call(ctx, "fail", nil, nil)
	if err := c.Cast(ctx, "add", nil); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			h, ok := m.Data.(metricdata.Histogram[float64])
			if !ok {
				t.Fatalf("%s: %T", m.Name, m.Data)
			}
			if m.Unit != "s" {
				t.Errorf("%s: unit %q", m.Name, m.Unit)
			}
			for _, dp := range h.DataPoints {
				method, _ := dp.Attributes.Value("rpc.method")
				et, _ := dp.Attributes.Value("error.type")
				counts[m.Name+" "+method.AsString()+" "+et.AsString()] += dp.Count
			}
		}
	}
	want := map[string]uint64{
		"rpc.client.call.duration calc/add ": 3, "rpc.client.call.duration calc/fail remote_error": 1,
		"rpc.server.call.duration calc/add ": 3, "rpc.server.call.duration calc/fail error": 1,
	}
	if !maps.Equal(counts, want) {
		t.Fatalf("histogram counts %v, want %v", counts, want)
	}
}

// A caller's metadata at its bound leaves no room for the trace context:
// the call still goes, without it, and the client span says why.
func TestFullMetadataStillCalls(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	dir := directory.NewMemory()
	t.Cleanup(func() { _ = dir.Close() })
	srv := obstest.Node(t, dir)
	s, err := srv.Serve(zmqmsg.Target{Topic: "full"}, zmqmsg.Endpoints{"m": func(context.Context, zmqmsg.Args) (any, error) { return 1, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	c := obstest.Node(t, dir, zmqmsg.WithClientInterceptors(zmqotel.ClientInterceptor(zmqotel.WithTracerProvider(tp)))).Client(zmqmsg.Target{Topic: "full"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range zmqmsg.MaxMetadata {
		ctx = zmqmsg.WithMetadata(ctx, fmt.Sprintf("k%02d", i), "v")
	}
	if err := c.Call(ctx, "m", nil, nil); err != nil {
		t.Fatalf("a call with full metadata, traced: %v", err)
	}
	spans := rec.Ended()
	if len(spans) != 1 || len(spans[0].Events()) != 1 || !strings.Contains(spans[0].Events()[0].Name, "not propagated") {
		t.Fatalf("spans %v: want one client span with the event", spans)
	}
}
