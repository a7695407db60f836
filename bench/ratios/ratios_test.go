package main

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// cannedOutput is what a test binary prints for a few benchmarks.
const cannedOutput = `goos: linux
goarch: amd64
pkg: github.com/zmqmsg/zmqmsg/bench
cpu: Some CPU
BenchmarkZmqmsg_Call_Concurrent/strategy=netpoll/callers=64-2         	   60000	     41000 ns/op	     24390 calls/s	    1234 B/op	      11 allocs/op
BenchmarkZmqmsg_Call_Concurrent/strategy=netpoll/callers=6-2          	   10000	     90000 ns/op	     11111 calls/s	    1234 B/op	      11 allocs/op
BenchmarkZmqmsg_Call_Sequential/strategy=netpoll-2                    	    8000	    210000 ns/op	       205.5 p50-µs	       390.1 p99-µs	     900 B/op	      12 allocs/op
BenchmarkRawZMQ_PushPull                                              	 1000000	      1100 ns/op	    909090 msgs/s	      80 B/op	       2 allocs/op
--- BENCH: BenchmarkZmqmsg_Call_Sequential/strategy=netpoll-2
    zmqmsg_test.go:12: a log line
PASS
`

func TestParseLine(t *testing.T) {
	name, m, ok := parseLine("BenchmarkZmqmsg_Call_Sequential/strategy=netpoll-2   8000   210000 ns/op   205.5 p50-µs   900 B/op   12 allocs/op")
	if !ok || name != "BenchmarkZmqmsg_Call_Sequential/strategy=netpoll-2" {
		t.Fatalf("parseLine: %q %v", name, ok)
	}
	want := map[string]float64{"iterations": 8000, "ns/op": 210000, "p50-µs": 205.5, "B/op": 900, "allocs/op": 12}
	for unit, v := range want {
		if m[unit] != v {
			t.Errorf("%s = %v, want %v", unit, m[unit], v)
		}
	}
	for _, line := range []string{
		"--- FAIL: BenchmarkZmqmsg_Fanout/subs=8",
		"BenchmarkZmqmsg_Fanout",
		"--- BENCH: BenchmarkZmqmsg_Call_Sequential/strategy=netpoll-2",
		"BenchmarkX-2   100   12 calls/s", // no ns/op
		"BenchmarkX-2   many   12 ns/op",
		"PASS",
	} {
		if _, _, ok := parseLine(line); ok {
			t.Errorf("parseLine(%q) ok, want not a result line", line)
		}
	}
}

func TestFindResult(t *testing.T) {
	cases := map[string]float64{
		"BenchmarkZmqmsg_Call_Concurrent/strategy=netpoll/callers=64": 24390,
		"BenchmarkZmqmsg_Call_Concurrent/strategy=netpoll/callers=6":  11111,
	}
	for name, calls := range cases {
		m, ok := findResult(cannedOutput, name)
		if !ok || m["calls/s"] != calls {
			t.Errorf("%s: %v %v, want calls/s %v", name, m, ok, calls)
		}
	}
	if m, ok := findResult(cannedOutput, "BenchmarkRawZMQ_PushPull"); !ok || m["msgs/s"] != 909090 {
		t.Errorf("no -N suffix: %v %v", m, ok)
	}
	if _, ok := findResult(cannedOutput, "BenchmarkZmqmsg_Call_Concurrent/strategy=netpoll"); ok {
		t.Error("a parent name matched a sub-benchmark's line")
	}
}

func TestBenchPattern(t *testing.T) {
	got := benchPattern("BenchmarkZmqmsg_Call_Concurrent/strategy=netpoll/callers=64")
	if want := `^BenchmarkZmqmsg_Call_Concurrent$/^strategy=netpoll$/^callers=64$`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestFailExcerpt(t *testing.T) {
	out := "BenchmarkX/a-2  \n--- FAIL: BenchmarkX/a\n    x_test.go:5: boom\n--- FAIL: BenchmarkX\nFAIL\n"
	got := failExcerpt(out)
	if !strings.Contains(got, "x_test.go:5: boom") || strings.Contains(got, "BenchmarkX/a-2") {
		t.Errorf("excerpt: %q", got)
	}
}

func TestMedian(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	for _, c := range []struct {
		vs   []*float64
		want float64
		ok   bool
	}{
		{nil, 0, false},
		{[]*float64{nil, nil}, 0, false},
		{[]*float64{f(3), f(1), f(2)}, 2, true},
		{[]*float64{f(4), nil, f(1), f(3), f(2)}, 2.5, true},
	} {
		got, ok := median(c.vs)
		if got != c.want || ok != c.ok {
			t.Errorf("median: %v %v, want %v %v", got, ok, c.want, c.ok)
		}
	}
}

// results records canned rounds: benchmark → metric → one value per round.
func results(t *testing.T, rounds []map[string]map[string]float64) *Results {
	t.Helper()
	res := newResults(len(rounds))
	for i, round := range rounds {
		for name, m := range round {
			res.record(name, i, m)
		}
	}
	return res
}

func TestEvaluate(t *testing.T) {
	res := results(t, []map[string]map[string]float64{
		{"Z": {"calls/s": 300, "allocs/op": 11}, "P": {"calls/s": 100}, "Zero": {"calls/s": 0}},
		{"Z": {"calls/s": 100, "allocs/op": 13}, "P": {"calls/s": 100}},
		{"Z": {"calls/s": 200, "allocs/op": 12}, "P": {"calls/s": 200}},
	})
	res.Missing["Gone"] = "no benchmark Gone"
	res.fail("Broken", 0, errors.New("exit status 1"))
	for _, c := range []struct {
		row       Row
		ratio     float64 // -1: none
		met, note string
	}{
		{Row{Bench: "Z", Metric: "calls/s", Peer: "P", PeerMetric: "calls/s", Target: 1.5, Dir: AtLeast}, 2, "yes", ""},
		{Row{Bench: "Z", Metric: "calls/s", Peer: "P", PeerMetric: "calls/s", Target: 2.5, Dir: AtLeast}, 2, "no", ""},
		{Row{Bench: "Z", Metric: "calls/s", Peer: "P", PeerMetric: "calls/s", Target: 1.3, Dir: AtMost}, 2, "no", ""},
		{Row{Bench: "Z", Metric: "calls/s", Peer: "P", PeerMetric: "calls/s"}, 2, "-", ""},
		{Row{Bench: "Z", Metric: "allocs/op", Target: 12, Dir: AtMost}, -1, "yes", ""},
		{Row{Bench: "Gone", Metric: "calls/s", Peer: "P", PeerMetric: "calls/s", Target: 1, Dir: AtLeast}, -1, "n/a", "no benchmark Gone"},
		{Row{Bench: "Z", Metric: "calls/s", Peer: "Broken", PeerMetric: "calls/s", Target: 1, Dir: AtLeast}, -1, "n/a", "Broken failed"},
		{Row{Bench: "Z", Metric: "p50-µs", Target: 1, Dir: AtMost}, -1, "n/a", "Z reports no p50-µs"},
		{Row{Bench: "Z", Metric: "calls/s", Peer: "Zero", PeerMetric: "calls/s", Target: 1, Dir: AtLeast}, -1, "n/a", "peer's calls/s is 0"},
		{Row{Bench: "Gone", Metric: "calls/s", Peer: "Broken", PeerMetric: "calls/s", Target: 1, Dir: AtLeast}, -1, "n/a", "no benchmark Gone; Broken failed"},
	} {
		o := evaluate(c.row, res)
		if ratio := ratioOf(o); ratio != c.ratio || metCell(o) != c.met || o.Note() != c.note {
			t.Errorf("%+v: ratio %v met %s note %q, want %v %s %q", c.row, ratio, metCell(o), o.Note(), c.ratio, c.met, c.note)
		}
	}
}

func ratioOf(o Outcome) float64 {
	if o.Ratio == nil {
		return -1
	}
	return *o.Ratio
}

func TestPrintTablesShowsMissing(t *testing.T) {
	res := results(t, []map[string]map[string]float64{{"Z": {"calls/s": 300}, "P": {"calls/s": 100}}})
	rows := []Row{
		{Table: "throughput", What: "w1", Bench: "Z", Metric: "calls/s", Peer: "P", PeerMetric: "calls/s", Target: 1.5, Dir: AtLeast},
		{Table: "scale", What: "w2", Bench: "BenchmarkNope", Metric: "ns/op"},
	}
	res.Missing["BenchmarkNope"] = "no benchmark BenchmarkNope"
	var buf bytes.Buffer
	if err := printTables(&buf, evaluateAll(rows, res), nil); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"300 calls/s", "3.00", "≥ 1.5", "yes", "n/a (no benchmark BenchmarkNope)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestRowsAreWellFormed(t *testing.T) {
	for _, r := range Rows {
		if r.Table == "" || r.What == "" || r.Bench == "" || r.Metric == "" || (r.Peer != "") != (r.PeerMetric != "") {
			t.Errorf("row %+v", r)
		}
	}
	if got := selectRows(Rows, regexp.MustCompile("NATS_PublishAck")); len(got) != 1 {
		t.Errorf("-run NATS_PublishAck selects %d rows, want 1", len(got))
	}
}
