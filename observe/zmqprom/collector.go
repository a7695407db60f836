// Package zmqprom exports a zmqmsg Transport to Prometheus: a Collector
// over its counters (Transport.Stats) and its servers' per-method records
// (Transport.ServerStats), and Metrics, latency histograms fed by a client
// and a server interceptor. Nothing runs on the message path unless the
// interceptors are installed; the Collector reads counters at scrape time.
//
// Names follow Prometheus conventions: the prefix zmqmsg_, base units
// (seconds), _total on counters, and labels of bounded cardinality: at most
// MaxLabelValues distinct values of each of exchange, topic and method, the
// others reported as "other" (docs/design.md §23).
package zmqprom

import (
	"reflect"
	"strings"
	"sync"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zmqmsg/zmqmsg"
)

// Namespace prefixes every metric name.
const Namespace = "zmqmsg"

// MaxLabelValues bounds the distinct values of a label (exchange, topic,
// method) one Collector or Metrics reports; later values are "other".
const MaxLabelValues = 100

// Other is the label value of everything past MaxLabelValues.
const Other = "other"

// limiter keeps the first MaxLabelValues values of one label.
type limiter struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

func (l *limiter) value(v string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[v]; ok {
		return v
	}
	if l.seen == nil {
		l.seen = make(map[string]struct{})
	}
	if len(l.seen) >= MaxLabelValues {
		return Other
	}
	l.seen[v] = struct{}{}
	return v
}

// labels bounds the exchange, topic and method labels together.
type labels struct{ exchange, topic, method limiter }

func (ls *labels) of(exchange, topic, method string) (string, string, string) {
	return ls.exchange.value(exchange), ls.topic.value(topic), ls.method.value(method)
}

// statsHelp is the help text of each field of zmqmsg.Stats. A field
// missing here (a zmqmsg newer than this module) is exported all the same,
// with its Go name as help; the tests fail on one.
var statsHelp = map[string]string{
	"Calls":                 "calls sent",
	"CancelsSent":           "CANCELs sent: calls whose ctx was cancelled before their answer",
	"CallRetries":           "calls sent again to another server after a retryable failure (RetryPolicy)",
	"CallErrors":            "calls that ended with an error (timeouts included)",
	"Timeouts":              "calls that timed out",
	"LateReplies":           "replies that arrived after their call gave up, dropped",
	"UnmatchedReplies":      "replies for unknown ids, dropped",
	"MalformedFrames":       "received messages that did not decode, dropped",
	"WrongKind":             "decoded messages of a kind the socket does not take, dropped",
	"NoServers":             "requests this node's proxy could not route (answered with an error)",
	"Overloaded":            "requests refused because a server queue was full (answered)",
	"Expired":               "requests whose deadline passed before a worker took them, dropped",
	"CallsCancelled":        "calls whose caller gave up (CANCEL) while the handler ran: its ctx was cancelled",
	"HeartbeatsSent":        "IN_PROGRESS ACKs this node's servers sent for monitored calls (MonitorEvery)",
	"ServersLost":           "monitored calls that failed with ErrServerLost: no heartbeat for MonitorMisses intervals",
	"HeartbeatsReceived":    "IN_PROGRESS ACKs this Transport's monitored calls received",
	"HandlerErrors":         "handler errors returned to callers",
	"HandlerPanics":         "handler panics, returned to callers as RemoteError",
	"SendFailures":          "messages libzmq refused (peer gone), dropped",
	"Casts":                 "casts sent (each counted once, however often retried)",
	"CastRetries":           "cast resends after an ACK did not come in time",
	"CastsNotAcked":         "casts that failed with ErrNotAcked",
	"CastsResent":           "topic casts sent to another node's server after their node went down or never acknowledged",
	"CastsRun":              "cast handlers run by this node's servers",
	"CastErrors":            "cast handlers that returned an error (counted, logged)",
	"DuplicateCasts":        "retried casts a server had already had: acknowledged, not run again",
	"DirectCasts":           "direct casts handed to a PUSH socket",
	"DirectCastFailed":      "direct casts, and casts sent with acks off, that could not be sent (closed, refused, node unreachable, left queued at Close), dropped",
	"DirectCastsRun":        "direct cast handlers run by this node's servers",
	"DirectDropped":         "direct casts this node received but no server could take (queue full, none), dropped",
	"DirectRefused":         "direct casts (and casts sent with acks off) a local server had no method for, dropped (logged with the method)",
	"Fanouts":               "fanout casts sent (each once, whatever the number of nodes)",
	"FanoutsSent":           "fanout messages handed to a node's socket (one per node)",
	"FanoutsParked":         "fanout messages that waited for a node's subscription",
	"FanoutUnreached":       "fanout messages a node never took (not subscribed in time, socket failed); reported to the caster",
	"FanoutsRun":            "fanout handlers run by this node's servers",
	"FanoutDropped":         "fanouts this node received for a server that was stopping (or takes none), dropped",
	"PushedBack":            "direct casts and fanouts this node received that a full server lane could not take at once: the node stopped reading their socket until it did, so the senders waited",
	"FanoutDeliveries":      "fanouts this node handed to its servers' lanes (one per server)",
	"FanoutsRefused":        "fanouts a local server had no method for, dropped (logged with the method; one per server)",
	"Notifications":         "notifications sent (each once, whatever the number of pools)",
	"NotificationsUnheard":  "notifications sent to a topic no pool listened to (counted, logged)",
	"NotificationsRun":      "notification handlers run by this node's listeners",
	"NotifyFailures":        "deliveries to a pool that no member of the pool acknowledged",
	"NotificationsFiltered": "notifications a listener's priority filter dropped (acknowledged)",
	"SocketRestarts":        "socket actors restarted by their supervisor",
	"DirectoryErrors":       "failed directory lookups (cached entries kept serving)",
	"NodeDisconnects":       "connections to other nodes lost (peer gone, heartbeat timeout, keepalive)",
	"FailedNodeDown":        "calls and casts failed at once because their node's connection was lost",
	"ConnectFailures":       "failed attempts to connect to another node (refused, unreachable, connect timeout)",
	"NotSent":               "calls and casts whose caller waited, failed before libzmq had them, their node being unreachable (each then rerouted, or failed: ErrUnavailable, or ErrNodeDown for a cast an earlier attempt may have delivered)",
	"Rerouted":              "calls and casts that never ran where they were sent (their node unreachable, or its server stopping) and went to another server of their topic",
	"NodesDown":             "nodes whose connection is down now (new calls avoid them)",
	"RegistrationErrors":    "failed directory registrations and refreshes (retried until the directory returns)",
	"OpenSockets":           "sockets to other nodes open now (DEALERs, PUSHes, XPUBs)",
	"IdleSocketsClosed":     "sockets to nodes that left the directory, closed after a sweep period without use",
	"HandshakeFailures":     "failed security handshakes, both ways: peers refused by this node's ports, and nodes that refused this one",
	"AuthAllowed":           "CURVE clients the ZAP handler accepted",
	"AuthDenied":            "CURVE clients the ZAP handler refused (unknown key, wrong mechanism), logged without keys",
	"PendingCalls":          "calls waiting for a reply now",
}

// statField is one zmqmsg.Stats field as a metric.
type statField struct {
	index int
	desc  *prometheus.Desc
	kind  prometheus.ValueType
}

// snake turns a Go field name into a metric name part: CallRetries is
// call_retries.
func snake(name string) string {
	var b strings.Builder
	rs := []rune(name)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]))) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// statFields maps every field of zmqmsg.Stats: uint64 fields are counters
// (name_total), int fields gauges.
func statFields() []statField {
	t := reflect.TypeFor[zmqmsg.Stats]()
	fields := make([]statField, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		help, ok := statsHelp[f.Name]
		if !ok {
			help = "zmqmsg.Stats." + f.Name
		}
		name, kind := Namespace+"_"+snake(f.Name), prometheus.GaugeValue
		switch f.Type.Kind() {
		case reflect.Uint64:
			name, kind = name+"_total", prometheus.CounterValue
		case reflect.Int:
		default:
			continue // not a number: nothing to export
		}
		fields = append(fields, statField{index: i, desc: prometheus.NewDesc(name, help+".", nil, nil), kind: kind})
	}
	return fields
}

// Collector is a prometheus.Collector over one Transport: every counter of
// its Stats, and its servers' per-method records summed per exchange,
// topic and method. It reads them at each scrape.
type Collector struct {
	t      *zmqmsg.Transport
	fields []statField
	labels labels

	requests, errors, inFlight, seconds, noSuchMethod *prometheus.Desc
}

// NewCollector returns the Collector of t; register it with a
// prometheus.Registerer.
func NewCollector(t *zmqmsg.Transport) *Collector {
	fields := statFields()
	l := []string{"exchange", "topic", "method"}
	return &Collector{
		t:            t,
		fields:       fields,
		requests:     prometheus.NewDesc(Namespace+"_server_requests_total", "Handlers started by this process's servers, per method (calls, casts, fanouts).", l, nil),
		errors:       prometheus.NewDesc(Namespace+"_server_errors_total", "Handlers that returned an error or panicked, per method.", l, nil),
		inFlight:     prometheus.NewDesc(Namespace+"_server_in_flight", "Handlers running now, per method.", l, nil),
		seconds:      prometheus.NewDesc(Namespace+"_server_processing_seconds_total", "Run time of the finished handlers, per method.", l, nil),
		noSuchMethod: prometheus.NewDesc(Namespace+"_server_no_such_method_total", "Requests for a method a server does not offer.", l[:2], nil),
	}
}

// Describe sends every metric's description (prometheus.Collector).
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range c.fields {
		ch <- f.desc
	}
	for _, d := range []*prometheus.Desc{c.requests, c.errors, c.inFlight, c.seconds, c.noSuchMethod} {
		ch <- d
	}
}

type methodKey struct{ exchange, topic, method string }

type methodSum struct {
	requests, errors uint64
	inFlight         int64
	seconds          float64
}

// Collect sends the current values (prometheus.Collector).
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := reflect.ValueOf(c.t.Stats())
	for _, f := range c.fields {
		v := st.Field(f.index)
		var x float64
		if v.Kind() == reflect.Uint64 {
			x = float64(v.Uint())
		} else {
			x = float64(v.Int())
		}
		ch <- prometheus.MustNewConstMetric(f.desc, f.kind, x)
	}
	sums := map[methodKey]*methodSum{}
	unknown := map[[2]string]uint64{}
	for _, s := range c.t.ServerStats() {
		for _, m := range s.Methods {
			ex, topic, method := c.labels.of(s.Exchange, s.Topic, m.Method)
			k := methodKey{ex, topic, method}
			sum := sums[k]
			if sum == nil {
				sum = &methodSum{}
				sums[k] = sum
			}
			sum.requests += m.Requests
			sum.errors += m.Errors
			sum.inFlight += m.InFlight
			sum.seconds += m.ProcessingTime.Seconds()
		}
		if s.NoSuchMethod > 0 {
			ex, topic := c.labels.exchange.value(s.Exchange), c.labels.topic.value(s.Topic)
			unknown[[2]string{ex, topic}] += s.NoSuchMethod
		}
	}
	for k, s := range sums {
		ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(s.requests), k.exchange, k.topic, k.method)
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(s.errors), k.exchange, k.topic, k.method)
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(s.inFlight), k.exchange, k.topic, k.method)
		ch <- prometheus.MustNewConstMetric(c.seconds, prometheus.CounterValue, s.seconds, k.exchange, k.topic, k.method)
	}
	for k, n := range unknown {
		ch <- prometheus.MustNewConstMetric(c.noSuchMethod, prometheus.CounterValue, float64(n), k[0], k[1])
	}
}
