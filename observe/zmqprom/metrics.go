package zmqprom

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/metrics"
)

// Metrics are latency histograms, fed by its interceptors: the duration of
// every message a Transport's clients send (a CALL until its answer, a
// CAST until its ACK, a direct cast or fanout until the socket took it),
// and of every handler its servers run. Labels: pattern, exchange, topic,
// method and outcome. Register it, and install ClientInterceptor and
// ServerInterceptor with zmqmsg.WithClientInterceptors and
// zmqmsg.WithServerInterceptors.
type Metrics struct {
	client, server          *prometheus.HistogramVec
	exchange, topic, method metrics.Limiter
}

// Buckets are the classic buckets of both histograms, in seconds: 50 µs to
// about 3.3 s, doubling. A scraper that reads native histograms gets
// those instead (bucket factor 1.1).
var Buckets = prometheus.ExponentialBuckets(50e-6, 2, 17)

// NewMetrics returns empty histograms.
func NewMetrics() *Metrics {
	l := []string{"pattern", "exchange", "topic", "method", "outcome"}
	opts := func(name, help string) prometheus.HistogramOpts {
		return prometheus.HistogramOpts{
			Namespace: Namespace, Name: name, Help: help, Buckets: Buckets,
			NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 160, NativeHistogramMinResetDuration: time.Hour,
		}
	}
	return &Metrics{
		client: prometheus.NewHistogramVec(opts("client_duration_seconds", "Time from sending a message to its outcome, client side."), l),
		server: prometheus.NewHistogramVec(opts("server_handling_seconds", "Time a server's handler (and the interceptors after this one) took."), l),
	}
}

// Describe sends the histograms' descriptions (prometheus.Collector).
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.client.Describe(ch)
	m.server.Describe(ch)
}

// Collect sends the histograms (prometheus.Collector).
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.client.Collect(ch)
	m.server.Collect(ch)
}

// ClientInterceptor observes every message a Transport's clients send.
func (m *Metrics) ClientInterceptor() zmqmsg.ClientInterceptor {
	return func(ctx context.Context, info *zmqmsg.CallInfo, args, reply any, invoke zmqmsg.Invoker) error {
		start := time.Now()
		err := invoke(ctx, info, args, reply)
		ex, topic, method := m.exchange.Value(info.Target.Exchange), m.topic.Value(info.Target.Topic), m.method.Value(info.Method)
		m.client.WithLabelValues(string(info.Pattern), ex, topic, method, Outcome(err)).Observe(time.Since(start).Seconds())
		return err
	}
}

// ServerInterceptor observes every handler a Transport's servers run.
func (m *Metrics) ServerInterceptor() zmqmsg.ServerInterceptor {
	return func(ctx context.Context, info *zmqmsg.ServerInfo, args zmqmsg.Args, handle zmqmsg.Handler) (any, error) {
		start := time.Now()
		res, err := handle(ctx, args)
		ex, topic, method := m.exchange.Value(info.Target.Exchange), m.topic.Value(info.Target.Topic), m.method.Value(info.Method)
		m.server.WithLabelValues(string(info.Pattern), ex, topic, method, Outcome(err)).Observe(time.Since(start).Seconds())
		return res, err
	}
}

// Outcome names how a message fared, as the outcome label says it: one of
// a small fixed set.
func Outcome(err error) string {
	var re *zmqmsg.RemoteError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, zmqmsg.ErrNoSuchMethod):
		return "no_such_method"
	case errors.As(err, &re):
		return "remote_error"
	case errors.Is(err, zmqmsg.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, zmqmsg.ErrServerLost):
		return "server_lost"
	case errors.Is(err, zmqmsg.ErrNodeDown):
		return "node_down"
	case errors.Is(err, zmqmsg.ErrUnavailable), errors.Is(err, zmqmsg.ErrUnreached):
		return "unavailable"
	case errors.Is(err, zmqmsg.ErrNoServers):
		return "no_servers"
	case errors.Is(err, zmqmsg.ErrOverloaded):
		return "overloaded"
	case errors.Is(err, zmqmsg.ErrNotAcked), errors.Is(err, zmqmsg.ErrNotDelivered):
		return "not_acked"
	case errors.Is(err, zmqmsg.ErrDirectoryUnavailable):
		return "directory_unavailable"
	}
	return "error"
}
