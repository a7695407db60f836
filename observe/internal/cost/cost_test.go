// Package cost measures what the integrations add to a call: go test
// -bench . ./internal/cost (from the observe module).
package cost

import (
	"context"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/observe/internal/obstest"
	"github.com/zmqmsg/zmqmsg/observe/zmqotel"
	"github.com/zmqmsg/zmqmsg/observe/zmqprom"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// BenchmarkCall: 64 callers of one server on another Transport, without
// instrumentation, with Prometheus histograms, with OpenTelemetry (SDK
// tracer sampling every span, or 1 % of the traces, into no exporter, and
// the duration histograms).
func BenchmarkCall(b *testing.B) {
	for _, c := range []struct {
		name   string
		client []zmqmsg.ClientInterceptor
		server []zmqmsg.ServerInterceptor
	}{
		{name: "plain"},
		{name: "prometheus", client: []zmqmsg.ClientInterceptor{promM.ClientInterceptor()}, server: []zmqmsg.ServerInterceptor{promM.ServerInterceptor()}},
		{name: "otel", client: []zmqmsg.ClientInterceptor{zmqotel.ClientInterceptor(otelOpts...)}, server: []zmqmsg.ServerInterceptor{zmqotel.ServerInterceptor(otelOpts...)}},
		{name: "otel-sampled-1pct", client: []zmqmsg.ClientInterceptor{zmqotel.ClientInterceptor(otel1pct...)}, server: []zmqmsg.ServerInterceptor{zmqotel.ServerInterceptor(otel1pct...)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			dir := directory.NewMemory()
			b.Cleanup(func() { _ = dir.Close() }) // after the nodes (cleanups run last first)
			srv := obstest.Node(b, dir, zmqmsg.WithServerInterceptors(c.server...))
			s, err := srv.Serve(zmqmsg.Target{Topic: "cost"}, zmqmsg.Endpoints{"echo": func(_ context.Context, a zmqmsg.Args) (any, error) { return a.Raw(), nil }})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Stop(context.Background())
			cl := obstest.Node(b, dir, zmqmsg.WithClientInterceptors(c.client...))
			client := cl.Client(zmqmsg.Target{Topic: "cost"})
			payload := []byte("0123456789abcdef")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			if err := client.Call(ctx, "echo", payload, nil); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var reply []byte
				for pb.Next() {
					if err := client.Call(ctx, "echo", payload, &reply); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}

var (
	promM    = zmqprom.NewMetrics()
	tp       = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	mp       = sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	otelOpts = []zmqotel.Option{zmqotel.WithTracerProvider(tp), zmqotel.WithMeterProvider(mp)}
	tp1pct   = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))))
	otel1pct = []zmqotel.Option{zmqotel.WithTracerProvider(tp1pct), zmqotel.WithMeterProvider(mp)}
)
