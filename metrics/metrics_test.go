package metrics

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Every counter of Stats and ProxyStats has its own help text, and a
// family; counters end in _total.
func TestEveryFieldHasHelp(t *testing.T) {
	for _, c := range []struct {
		v    any
		help map[string]string
		fams []Family
	}{{zmqmsg.Stats{}, statsHelp, OfStats(zmqmsg.Stats{})}, {zmqmsg.ProxyStats{}, proxyHelp, OfProxy(zmqmsg.ProxyStats{})}} {
		tp := reflect.TypeOf(c.v)
		for i := range tp.NumField() {
			if _, ok := c.help[tp.Field(i).Name]; !ok {
				t.Errorf("%s.%s: no help text", tp.Name(), tp.Field(i).Name)
			}
		}
		if len(c.fams) != tp.NumField() {
			t.Errorf("%s: %d families for %d fields", tp.Name(), len(c.fams), tp.NumField())
		}
		for _, f := range c.fams {
			if (f.Kind == Counter) != strings.HasSuffix(f.Name, "_total") || !strings.HasPrefix(f.Name, "zmqmsg_") {
				t.Errorf("%s: kind %v", f.Name, f.Kind)
			}
		}
	}
	for name, want := range map[string]string{"CallRetries": "call_retries", "FanoutsSent": "fanouts_sent", "NodesDown": "nodes_down"} {
		if got := Snake(name); got != want {
			t.Errorf("Snake(%s) = %s, want %s", name, got, want)
		}
	}
}

// The text format, escapes included; the per-method sums; the bound on
// label values.
func TestWriteTextAndServers(t *testing.T) {
	var s Servers
	stats := []zmqmsg.ServerStats{
		{Ping: zmqmsg.Ping{Server: "a"}, Topic: "calc", Methods: []zmqmsg.MethodStats{{Method: "add", Requests: 3, Errors: 1, InFlight: 1, ProcessingTime: 1500 * time.Millisecond}}, NoSuchMethod: 2},
		{Ping: zmqmsg.Ping{Server: "b"}, Topic: "calc", Methods: []zmqmsg.MethodStats{{Method: "add", Requests: 2}}},
		{Topic: "we\"ird\\", Methods: []zmqmsg.MethodStats{{Method: "m\xff"}}},
	}
	var b strings.Builder
	if err := WriteText(&b, s.Of(stats)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# HELP zmqmsg_server_requests_total Handlers started by this process's servers and listeners, per method (calls, casts, fanouts, notifications).\n# TYPE zmqmsg_server_requests_total counter\n",
		`zmqmsg_server_requests_total{exchange="",topic="calc",method="add"} 5` + "\n",
		`zmqmsg_server_errors_total{exchange="",topic="calc",method="add"} 1` + "\n",
		`zmqmsg_server_in_flight{exchange="",topic="calc",method="add"} 1` + "\n",
		`zmqmsg_server_processing_seconds_total{exchange="",topic="calc",method="add"} 1.5` + "\n",
		`zmqmsg_server_no_such_method_total{exchange="",topic="calc"} 2` + "\n",
		`topic="we\"ird\\",method="m�"} 0` + "\n", // not UTF-8: replaced
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in\n%s", want, b.String())
		}
	}
	// Server a stops: its counts stay in the sums, which never decrease.
	b.Reset()
	if err := WriteText(&b, s.Of(stats[1:])); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`zmqmsg_server_requests_total{exchange="",topic="calc",method="add"} 5` + "\n",
		`zmqmsg_server_in_flight{exchange="",topic="calc",method="add"} 0` + "\n", `zmqmsg_server_no_such_method_total{exchange="",topic="calc"} 2` + "\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("after a server stopped: missing %q in\n%s", want, b.String())
		}
	}
	b.Reset()
	_ = WriteText(&b, []Family{{Name: "x", Help: "a \\ and\na line", Kind: Gauge, Samples: []Sample{{Value: 1}}}})
	if want := "# HELP x a \\\\ and\\na line\n"; !strings.HasPrefix(b.String(), want) {
		t.Errorf("help escaping: %q, want prefix %q", b.String(), want)
	}
	var many []zmqmsg.ServerStats
	for i := range MaxLabelValues + 5 {
		many = append(many, zmqmsg.ServerStats{Ping: zmqmsg.Ping{Server: fmt.Sprint(i)}, Topic: fmt.Sprintf("t%03d", i), Methods: []zmqmsg.MethodStats{{Method: "m", Requests: 1}}})
	}
	var s2 Servers
	fams := s2.Of(many)
	topics := map[string]float64{}
	for _, smp := range fams[0].Samples {
		topics[smp.Values[1]] += smp.Value
	}
	if len(topics) != MaxLabelValues+1 || topics[Other] != 5 {
		t.Fatalf("%d topics, other %v: want %d and 5", len(topics), topics[Other], MaxLabelValues+1)
	}
}
