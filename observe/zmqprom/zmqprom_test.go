package zmqprom_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/observe/internal/obstest"
	"github.com/zmqmsg/zmqmsg/observe/zmqprom"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scrape serves reg over a real HTTP server, GETs /metrics in the text
// format and parses it with Prometheus's own parser.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the scrape: %v", err)
	}
	return fams
}

// value returns the value of the sample of fam whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, fam string, want map[string]string) float64 {
	t.Helper()
	f, ok := fams[fam]
	if !ok {
		t.Fatalf("no metric %s in the scrape", fam)
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no sample of %s with %v", fam, want)
	return 0
}

// The counters a scrape shows are the traffic that was sent: Stats,
// per-method records and both histograms, under names and types that pass
// Prometheus's linter.
func TestScrapeCountsTheTraffic(t *testing.T) {
	dir := directory.NewMemory()
	t.Cleanup(func() { _ = dir.Close() })
	srvMetrics, cliMetrics := zmqprom.NewMetrics(), zmqprom.NewMetrics()
	srv := obstest.Node(t, dir, zmqmsg.WithServerInterceptors(srvMetrics.ServerInterceptor()))
	s, err := srv.Serve(zmqmsg.Target{Topic: "calc"}, zmqmsg.Endpoints{
		"add":  zmqmsg.Method(func(_ context.Context, a [2]int) (int, error) { return a[0] + a[1], nil }),
		"fail": func(context.Context, zmqmsg.Args) (any, error) { return nil, errors.New("no") },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	cl := obstest.Node(t, dir, zmqmsg.WithClientInterceptors(cliMetrics.ClientInterceptor()))
	c := cl.Client(zmqmsg.Target{Topic: "calc"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const calls, casts, fails = 7, 3, 2
	for i := range calls {
		var sum int
		if err := c.Call(ctx, "add", [2]int{i, 1}, &sum); err != nil {
			t.Fatal(err)
		}
	}
	for range casts {
		if err := c.Cast(ctx, "add", [2]int{1, 1}); err != nil {
			t.Fatal(err)
		}
	}
	for range fails {
		if err := c.Call(ctx, "fail", nil, nil); !errors.As(err, new(*zmqmsg.RemoteError)) {
			t.Fatalf("fail: %v", err)
		}
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(zmqprom.NewCollector(srv), srvMetrics)
	creg := prometheus.NewPedanticRegistry()
	creg.MustRegister(zmqprom.NewCollector(cl), cliMetrics)
	fams, cfams := scrape(t, reg), scrape(t, creg)

	checks := []struct {
		fams   map[string]*dto.MetricFamily
		name   string
		labels map[string]string
		want   float64
	}{
		{cfams, "zmqmsg_calls_total", nil, calls + fails},
		{cfams, "zmqmsg_call_errors_total", nil, fails},
		{cfams, "zmqmsg_casts_total", nil, casts},
		{cfams, "zmqmsg_pending_calls", nil, 0},
		{fams, "zmqmsg_casts_run_total", nil, casts},
		{fams, "zmqmsg_handler_errors_total", nil, fails},
		{fams, "zmqmsg_server_requests_total", map[string]string{"topic": "calc", "method": "add"}, calls + casts},
		{fams, "zmqmsg_server_errors_total", map[string]string{"topic": "calc", "method": "fail"}, fails},
		{fams, "zmqmsg_server_in_flight", map[string]string{"method": "add"}, 0},
		{cfams, "zmqmsg_client_duration_seconds", map[string]string{"pattern": "call", "method": "add", "outcome": "ok"}, calls},
		{cfams, "zmqmsg_client_duration_seconds", map[string]string{"pattern": "cast", "method": "add", "outcome": "ok"}, casts},
		{cfams, "zmqmsg_client_duration_seconds", map[string]string{"pattern": "call", "method": "fail", "outcome": "remote_error"}, fails},
		{fams, "zmqmsg_server_handling_seconds", map[string]string{"pattern": "call", "topic": "calc", "method": "add", "outcome": "ok"}, calls},
		{fams, "zmqmsg_server_handling_seconds", map[string]string{"pattern": "call", "method": "fail", "outcome": "error"}, fails},
	}
	for _, c := range checks {
		if got := value(t, c.fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if sec := value(t, fams, "zmqmsg_server_processing_seconds_total", map[string]string{"method": "add"}); sec <= 0 {
		t.Errorf("processing seconds of add: %v", sec)
	}
	for _, r := range []*prometheus.Registry{reg, creg} {
		problems, err := testutil.GatherAndLint(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// Past MaxLabelValues topics, the rest share the label value "other".
func TestLabelsAreBounded(t *testing.T) {
	dir := directory.NewMemory()
	t.Cleanup(func() { _ = dir.Close() })
	m := zmqprom.NewMetrics()
	cl := obstest.Node(t, dir, zmqmsg.WithClientInterceptors(m.ClientInterceptor()))
	for i := range zmqprom.MaxLabelValues + 20 {
		// No server: each call ends at its 1 ms deadline, still observed.
		tctx, tcancel := context.WithTimeout(context.Background(), time.Millisecond)
		_ = cl.Client(zmqmsg.Target{Topic: fmt.Sprintf("t%03d", i)}).Call(tctx, "m", nil, nil)
		tcancel()
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	fams := scrape(t, reg)
	topics := map[string]bool{}
	for _, s := range fams["zmqmsg_client_duration_seconds"].GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == "topic" {
				topics[l.GetValue()] = true
			}
		}
	}
	if len(topics) != zmqprom.MaxLabelValues+1 || !topics[zmqprom.Other] {
		t.Fatalf("%d topic values (other: %v), want %d and other", len(topics), topics[zmqprom.Other], zmqprom.MaxLabelValues+1)
	}
	if got := value(t, fams, "zmqmsg_client_duration_seconds", map[string]string{"topic": zmqprom.Other}); got != 20 {
		t.Errorf("other: %v observations, want 20", got)
	}
}
