// Package zmqprom exports zmqmsg to Prometheus: a Collector over a
// Transport's counters and its servers' per-method records, one over a
// node proxy daemon's counters, and Metrics, latency histograms fed by a
// client and a server interceptor. Nothing runs on the message path unless
// the interceptors are installed; the Collectors read counters at scrape
// time. The names, help texts and label bounds are those of package
// github.com/zmqmsg/zmqmsg/metrics, which the commands' --metrics-addr
// serves too (docs/design.md §23).
package zmqprom

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/metrics"
)

// Namespace prefixes every metric name.
const Namespace = metrics.Namespace

// MaxLabelValues bounds the distinct values of a label (exchange, topic,
// method); later values are Other.
const MaxLabelValues = metrics.MaxLabelValues

// Other is the label value of everything past MaxLabelValues.
const Other = metrics.Other

// Collector is a prometheus.Collector over metric families that it reads
// at each scrape.
type Collector struct {
	descs   map[string]*prometheus.Desc
	order   []*prometheus.Desc
	collect func() []metrics.Family
}

func newCollector(template []metrics.Family, collect func() []metrics.Family) *Collector {
	c := &Collector{descs: map[string]*prometheus.Desc{}, collect: collect}
	for _, f := range template {
		d := prometheus.NewDesc(f.Name, f.Help, f.Labels, nil)
		c.descs[f.Name] = d
		c.order = append(c.order, d)
	}
	return c
}

// NewCollector returns the Collector of t: every counter of its Stats
// (metrics.OfStats) and its servers' per-method records (metrics.Servers).
func NewCollector(t *zmqmsg.Transport) *Collector {
	var s metrics.Servers
	template := append(metrics.OfStats(zmqmsg.Stats{}), (&metrics.Servers{}).Of(nil)...)
	return newCollector(template, func() []metrics.Family { return s.Transport(t) })
}

// NewProxyCollector returns the Collector of a node proxy daemon's
// counters (metrics.OfProxy).
func NewProxyCollector(p *zmqmsg.Proxy) *Collector {
	return newCollector(metrics.OfProxy(zmqmsg.ProxyStats{}), func() []metrics.Family { return metrics.OfProxy(p.Stats()) })
}

// Describe sends every metric's description (prometheus.Collector).
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.order {
		ch <- d
	}
}

// Collect sends the current values (prometheus.Collector).
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c.collect() {
		d := c.descs[f.Name]
		if d == nil {
			continue // not described: a family this Collector did not start with
		}
		kind := prometheus.GaugeValue
		if f.Kind == metrics.Counter {
			kind = prometheus.CounterValue
		}
		for _, s := range f.Samples {
			ch <- prometheus.MustNewConstMetric(d, kind, s.Value, s.Values...)
		}
	}
}
