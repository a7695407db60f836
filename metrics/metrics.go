// Package metrics names zmqmsg's counters for monitoring, once: every
// field of Transport.Stats, every per-method record of its servers
// (Transport.ServerStats) and every counter of a node proxy daemon
// (Proxy.Stats) becomes a metric family with a Prometheus name (prefix
// zmqmsg_, base units, _total on counters) and help text. WriteText and
// Handler serve them in the Prometheus text format without any dependency
// (the commands' --metrics-addr); the observe module's zmqprom package
// turns the same families into a prometheus.Collector. Labels have bounded
// cardinality: a Limiter keeps at most MaxLabelValues values of a label and
// reports the rest as Other.
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/zmqmsg/zmqmsg"
)

// Namespace prefixes every name.
const Namespace = "zmqmsg"

// MaxLabelValues bounds the distinct values of one label.
const MaxLabelValues = 100

// Other is the label value of everything past MaxLabelValues.
const Other = "other"

// Kind is a family's metric type.
type Kind int

// The kinds a family can have.
const (
	Counter Kind = iota
	Gauge
)

func (k Kind) String() string {
	if k == Counter {
		return "counter"
	}
	return "gauge"
}

// Family is one metric: its name, help, kind, label names and samples.
type Family struct {
	Name    string
	Help    string
	Kind    Kind
	Labels  []string
	Samples []Sample
}

// Sample is one value of a family, with its label values (in the order
// of Family.Labels).
type Sample struct {
	Values []string
	Value  float64
}

// Limiter keeps the first MaxLabelValues values of a label it is asked
// about; later ones are Other. Safe for concurrent use.
type Limiter struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

// Value returns v, or Other once MaxLabelValues other values were seen.
// Bytes that are not UTF-8 become U+FFFD: a label value must be UTF-8,
// and a topic or method name need not be.
func (l *Limiter) Value(v string) string {
	v = strings.ToValidUTF8(v, "\uFFFD")
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

// statsHelp is the help of each field of zmqmsg.Stats; one missing here
// (a newer zmqmsg) gets its Go name, and fails this package's tests.
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

// proxyHelp is the help of each field of zmqmsg.ProxyStats.
var proxyHelp = map[string]string{
	"Draining":          "Drain was called: new requests are refused",
	"Members":           "service processes attached (call pipeline)",
	"Listeners":         "service processes attached (notify pipeline)",
	"Relayed":           "requests relayed to a service process",
	"Replies":           "answers sent back to callers",
	"NoServers":         "requests for a target no service process serves (answered with an error)",
	"Overloaded":        "requests refused because the service process's pipe was full (answered)",
	"Malformed":         "received messages that did not decode (or had too many frames), dropped",
	"WrongKind":         "messages of a kind the port does not take, dropped",
	"DirectCasts":       "direct casts relayed",
	"DirectDropped":     "direct casts no service process could take, dropped",
	"Fanouts":           "fanouts relayed (one per service process)",
	"FanoutDropped":     "fanouts for a service process that was gone, dropped",
	"PushedBack":        "direct casts and fanouts a service process's full pipe could not take at once: the port paused until it did",
	"SendFailed":        "answers libzmq refused (caller gone or not reading), dropped",
	"MembersLost":       "service processes dropped (silent, or their pipe vanished)",
	"FailedLost":        "requests relayed to a service process that was lost, answered SERVER_LOST",
	"Conflicts":         "servers refused because another process serves the name",
	"Refused":           "requests refused while draining",
	"HandshakeFailures": "failed security handshakes on the public ports (CURVE: peers without CURVE, refused keys)",
	"AuthAllowed":       "CURVE clients the ZAP handler accepted",
	"AuthDenied":        "CURVE clients the ZAP handler refused",
}

// Snake turns a Go field name into a name part: CallRetries is
// call_retries.
func Snake(name string) string {
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

// ofStruct makes a family of each numeric or boolean field of v: uint64
// fields are counters (prefix_name_total), int and bool fields gauges.
func ofStruct(v reflect.Value, prefix string, help map[string]string) []Family {
	t := v.Type()
	fams := make([]Family, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		h, ok := help[f.Name]
		if !ok {
			h = t.Name() + "." + f.Name
		}
		fam := Family{Name: prefix + Snake(f.Name), Help: h + ".", Kind: Gauge}
		x := v.Field(i)
		switch f.Type.Kind() {
		case reflect.Uint64:
			fam.Name, fam.Kind = fam.Name+"_total", Counter
			fam.Samples = []Sample{{Value: float64(x.Uint())}}
		case reflect.Int:
			fam.Samples = []Sample{{Value: float64(x.Int())}}
		case reflect.Bool:
			fam.Samples = []Sample{{Value: map[bool]float64{false: 0, true: 1}[x.Bool()]}}
		default:
			continue
		}
		fams = append(fams, fam)
	}
	return fams
}

// OfStats returns a family per field of st: zmqmsg_<name>_total for a
// counter, zmqmsg_<name> for a gauge (NodesDown, OpenSockets, PendingCalls).
func OfStats(st zmqmsg.Stats) []Family {
	return ofStruct(reflect.ValueOf(st), Namespace+"_", statsHelp)
}

// OfProxy returns a family per field of a daemon's counters:
// zmqmsg_daemon_<name>_total, and gauges for members, listeners and
// draining (1 while it drains).
func OfProxy(st zmqmsg.ProxyStats) []Family {
	return ofStruct(reflect.ValueOf(st), Namespace+"_daemon_", proxyHelp)
}

// Servers makes the per-method families of a process's servers, their
// labels bounded. Its zero value is ready; keep one per exporter, so that
// a label keeps its values and a counter its base from scrape to scrape.
type Servers struct {
	exchange, topic, method Limiter

	mu   sync.Mutex
	last map[serverKey]serverCounts // each server's counts at the last scrape
	base map[methodKey]*methodSum   // the counts of the servers that stopped since
	gone map[[2]string]float64      // the no_such_method counts of the servers that stopped
}

// serverKey names one run of one server: a restarted server is another.
type serverKey struct {
	exchange, topic, server string
	started                 int64
}

type serverCounts struct {
	methods map[methodKey]methodSum
	unknown [2]string
	noSuch  float64
}

type methodKey struct{ exchange, topic, method string }

type methodSum struct {
	requests, errors float64
	inFlight         float64
	seconds          float64
}

// Of returns zmqmsg_server_requests_total, _errors_total,
// _processing_seconds_total, zmqmsg_server_in_flight (per exchange, topic
// and method, summed over the servers of a topic) and
// zmqmsg_server_no_such_method_total (per exchange and topic). The counts
// of a server that stops stay in the sums (kept from its last scrape), so
// a counter never decreases while this Servers lives.
func (s *Servers) Of(stats []zmqmsg.ServerStats) []Family {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.base == nil {
		s.last, s.base, s.gone = map[serverKey]serverCounts{}, map[methodKey]*methodSum{}, map[[2]string]float64{}
	}
	now := make(map[serverKey]serverCounts, len(stats))
	for _, st := range stats {
		ex, topic := s.exchange.Value(st.Exchange), s.topic.Value(st.Topic)
		c := serverCounts{methods: make(map[methodKey]methodSum, len(st.Methods)), unknown: [2]string{ex, topic}, noSuch: float64(st.NoSuchMethod)}
		for _, m := range st.Methods {
			k := methodKey{ex, topic, s.method.Value(m.Method)}
			sum := c.methods[k]
			sum.requests += float64(m.Requests)
			sum.errors += float64(m.Errors)
			sum.inFlight += float64(m.InFlight)
			sum.seconds += m.ProcessingTime.Seconds()
			c.methods[k] = sum
		}
		now[serverKey{st.Exchange, st.Topic, st.Server, st.Started.UnixNano()}] = c
	}
	for k, c := range s.last {
		if _, ok := now[k]; ok {
			continue
		}
		for mk, v := range c.methods { // stopped: its counts go to the base
			b := s.base[mk]
			if b == nil {
				b = &methodSum{}
				s.base[mk] = b
			}
			b.requests += v.requests
			b.errors += v.errors
			b.seconds += v.seconds
		}
		s.gone[c.unknown] += c.noSuch
	}
	s.last = now

	sums := map[methodKey]*methodSum{}
	for k, b := range s.base {
		v := *b
		sums[k] = &v
	}
	unknown := maps.Clone(s.gone)
	for _, c := range now {
		for k, v := range c.methods {
			sum := sums[k]
			if sum == nil {
				sum = &methodSum{}
				sums[k] = sum
			}
			sum.requests += v.requests
			sum.errors += v.errors
			sum.inFlight += v.inFlight
			sum.seconds += v.seconds
		}
		if c.noSuch > 0 {
			unknown[c.unknown] += c.noSuch
		}
	}
	l := []string{"exchange", "topic", "method"}
	fams := []Family{
		{Name: Namespace + "_server_requests_total", Help: "Handlers started by this process's servers and listeners, per method (calls, casts, fanouts, notifications).", Kind: Counter, Labels: l},
		{Name: Namespace + "_server_errors_total", Help: "Handlers that returned an error or panicked, per method.", Kind: Counter, Labels: l},
		{Name: Namespace + "_server_in_flight", Help: "Handlers running now, per method.", Kind: Gauge, Labels: l},
		{Name: Namespace + "_server_processing_seconds_total", Help: "Run time of the finished handlers, per method.", Kind: Counter, Labels: l},
		{Name: Namespace + "_server_no_such_method_total", Help: "Requests for a method a server does not offer.", Kind: Counter, Labels: l[:2]},
	}
	for k, v := range sums {
		vals := []string{k.exchange, k.topic, k.method}
		fams[0].Samples = append(fams[0].Samples, Sample{vals, v.requests})
		fams[1].Samples = append(fams[1].Samples, Sample{vals, v.errors})
		fams[2].Samples = append(fams[2].Samples, Sample{vals, v.inFlight})
		fams[3].Samples = append(fams[3].Samples, Sample{vals, v.seconds})
	}
	for k, v := range unknown {
		if v > 0 {
			fams[4].Samples = append(fams[4].Samples, Sample{[]string{k[0], k[1]}, v})
		}
	}
	for i := range fams {
		slices.SortFunc(fams[i].Samples, func(a, b Sample) int { return slices.Compare(a.Values, b.Values) })
	}
	return fams
}

// WriteText writes fams in the Prometheus text exposition format 0.0.4.
// A family without samples is left out.
func WriteText(w io.Writer, fams []Family) error {
	bw := bufio.NewWriter(w)
	for _, f := range fams {
		if len(f.Samples) == 0 {
			continue
		}
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", f.Name, escapeHelp(f.Help), f.Name, f.Kind)
		for _, s := range f.Samples {
			bw.WriteString(f.Name)
			if len(f.Labels) > 0 {
				bw.WriteByte('{')
				for i, l := range f.Labels {
					if i > 0 {
						bw.WriteByte(',')
					}
					fmt.Fprintf(bw, "%s=\"%s\"", l, escapeLabel(s.Values[i]))
				}
				bw.WriteByte('}')
			}
			bw.WriteByte(' ')
			bw.WriteString(formatValue(s.Value))
			bw.WriteByte('\n')
		}
	}
	return bw.Flush()
}

func escapeHelp(s string) string {
	return strings.NewReplacer("\\", "\\\\", "\n", "\\n").Replace(s)
}

func escapeLabel(s string) string {
	return strings.NewReplacer("\\", "\\\\", "\n", "\\n", "\"", "\\\"").Replace(s)
}

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Handler serves the families collect returns at each request, in the
// text format.
func Handler(collect func() []Family) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_ = WriteText(w, collect())
	})
}

// Transport returns every family of t: its Stats and its servers' records.
func (s *Servers) Transport(t *zmqmsg.Transport) []Family {
	return append(OfStats(t.Stats()), s.Of(t.ServerStats())...)
}
