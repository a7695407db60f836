package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// introServer serves target with eps (and opts) from a node of its own,
// started in the test on the process-wide directory that "memory:" opens;
// the test's cleanup stops it.
func introServer(t *testing.T, target zmqmsg.Target, eps zmqmsg.Endpoints, opts ...zmqmsg.ServeOption) *zmqmsg.Server {
	t.Helper()
	tr, err := zmqmsg.New(zmqmsg.Config{Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
	})
	srv, err := tr.Serve(target, eps, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return srv
}

// calcEndpoints: add sums an array of numbers; fail fails with a two-line
// message.
var calcEndpoints = zmqmsg.Endpoints{
	"add": func(_ context.Context, a zmqmsg.Args) (any, error) {
		var ns []float64
		if err := a.Decode(&ns); err != nil {
			return nil, err
		}
		sum := 0.0
		for _, n := range ns {
			sum += n
		}
		return sum, nil
	},
	"fail": func(context.Context, zmqmsg.Args) (any, error) {
		return nil, errors.New("it broke\tbadly\non two lines")
	},
}

// tableRows splits a table into its lines: the header first.
func tableRows(t *testing.T, out string) []string {
	t.Helper()
	rows := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(rows) == 0 || rows[0] == "" {
		t.Fatalf("no table: %q", out)
	}
	return rows
}

// fields returns the columns of a table line (none of the cells checked
// holds a space).
func fields(row string) []string { return strings.Fields(row) }

// info prints a line per server of a topic: the methods and metadata each
// answered (ServeMetadata), and the same as one JSON array with --json.
func TestIntrospectInfo(t *testing.T) {
	const ex = "t-intro-info"
	a := introServer(t, zmqmsg.Target{Exchange: ex, Topic: "calc", Server: "a"}, calcEndpoints,
		zmqmsg.ServeMetadata(map[string]string{"version": "1.2.3", "desc": "adds numbers"}))
	introServer(t, zmqmsg.Target{Exchange: ex, Topic: "calc", Server: "b"}, zmqmsg.Endpoints{"add": calcEndpoints["add"]})
	aNode := a.Info().Node

	r := mem(t, "--exchange", ex, "--json", "info", "calc").want(t, 0)
	if strings.Count(r.stdout, "\n") != 1 || r.stderr != "" {
		t.Errorf("want one JSON line and nothing on stderr: %q %q", r.stdout, r.stderr)
	}
	got := decode[[]infoLine](t, r.stdout)
	if len(got) != 2 || got[0].Server != "a" || got[1].Server != "b" {
		t.Fatalf("info --json: %+v, want a and b", got)
	}
	for _, l := range got {
		if l.Exchange != ex || l.Topic != "calc" || l.Node == "" || l.Error != "" || l.ErrorType != "" || l.ServiceInfo == nil ||
			l.Protocol < 1 || l.Version == "" ||
			l.Started.IsZero() || l.Uptime <= 0 || l.Uptime > time.Minute {
			t.Errorf("info --json line %+v: %+v", l, l.ServiceInfo)
		}
	}
	if got[0].Node != aNode || !slices.Equal(got[0].Methods, []string{"add", "fail"}) ||
		!maps.Equal(got[0].Metadata, map[string]string{"version": "1.2.3", "desc": "adds numbers"}) {
		t.Errorf("a: %+v, node %s: want add and fail, and its metadata", got[0], aNode)
	}
	if !slices.Equal(got[1].Methods, []string{"add"}) || len(got[1].Metadata) != 0 {
		t.Errorf("b: %+v, want add only, no metadata", got[1])
	}
	// The keys a script reads.
	for _, key := range []string{`"exchange":"t-intro-info"`, `"topic":"calc"`, `"server":"a"`, `"uptime_ns":`, `"started":`,
		`"methods":["add","fail"]`, `"metadata":{"desc":"adds numbers","version":"1.2.3"}`, `"protocol":`} {
		if !strings.Contains(r.stdout, key) {
			t.Errorf("info --json lacks %s: %s", key, r.stdout)
		}
	}

	r = mem(t, "--exchange", ex, "info", "calc").want(t, 0)
	rows := tableRows(t, r.stdout)
	if len(rows) != 3 || !slices.Equal(fields(rows[0]), []string{"TOPIC", "SERVER", "NODE", "PROTOCOL", "VERSION", "UPTIME", "METHODS", "METADATA"}) {
		t.Fatalf("info table:\n%s", r.stdout)
	}
	if f := fields(rows[1]); f[0] != "calc" || f[1] != "a" || f[2] != aNode || f[6] != "add,fail" ||
		!strings.HasSuffix(rows[1], " desc=adds numbers,version=1.2.3") {
		t.Errorf("row of a: %q", rows[1])
	}
	if f := fields(rows[2]); f[1] != "b" || f[6] != "add" || f[7] != "-" || len(f) != 8 {
		t.Errorf("row of b: %q", rows[2])
	}
}

// stats counts each method's requests and errors on each server as the
// calls made them.
func TestIntrospectStats(t *testing.T) {
	const ex = "t-intro-stats"
	introServer(t, zmqmsg.Target{Exchange: ex, Topic: "calc", Server: "a"}, calcEndpoints)
	for range 3 {
		if r := mem(t, "--exchange", ex, "--json", "call", "calc", "add", "[1, 2]").want(t, 0); r.stdout != "3\n" {
			t.Fatalf("add: %q", r.stdout)
		}
	}
	mem(t, "--exchange", ex, "call", "calc", "fail").want(t, exitRemote)
	mem(t, "--exchange", ex, "call", "calc", "nope").want(t, exitRemote)
	mem(t, "--exchange", ex, "call", "calc", "nope").want(t, exitRemote)

	r := mem(t, "--exchange", ex, "--json", "stats", "calc").want(t, 0)
	got := decode[[]statsLine](t, r.stdout)
	if len(got) != 1 || got[0].ServerStats == nil || got[0].Server != "a" || got[0].Exchange != ex || got[0].Topic != "calc" || got[0].Error != "" {
		t.Fatalf("stats --json: %s", r.stdout)
	}
	st := got[0].ServerStats
	if len(st.Methods) != 2 || st.NoSuchMethod != 2 || st.Version == "" {
		t.Fatalf("stats of a: %+v", st)
	}
	add, fail := st.Methods[0], st.Methods[1]
	if add.Method != "add" || add.Requests != 3 || add.Errors != 0 || add.InFlight != 0 || add.ProcessingTime <= 0 ||
		add.AverageTime <= 0 || add.AverageTime > add.ProcessingTime || add.LastError != "" || !add.LastErrorAt.IsZero() {
		t.Errorf("add: %+v, want 3 requests, no error", add)
	}
	if fail.Method != "fail" || fail.Requests != 1 || fail.Errors != 1 || fail.InFlight != 0 ||
		!strings.Contains(fail.LastError, "it broke") || time.Since(fail.LastErrorAt) > time.Minute {
		t.Errorf("fail: %+v, want 1 request, 1 error, its message", fail)
	}

	r = mem(t, "--exchange", ex, "stats", "calc").want(t, 0)
	rows := tableRows(t, r.stdout)
	if len(rows) != 4 || !slices.Equal(fields(rows[0]), []string{"TOPIC", "SERVER", "METHOD", "REQUESTS", "ERRORS", "IN_FLIGHT",
		"AVG_MS", "TOTAL_S", "LAST_ERROR", "LAST_ERROR_AT"}) {
		t.Fatalf("stats table:\n%s", r.stdout)
	}
	if f := fields(rows[1]); !slices.Equal(f[:6], []string{"calc", "a", "add", "3", "0", "0"}) || f[8] != "-" || f[9] != "-" {
		t.Errorf("row of add: %q", rows[1])
	}
	// The last error on one line: its tab and line break are spaces.
	if f := fields(rows[2]); !slices.Equal(f[:6], []string{"calc", "a", "fail", "1", "1", "0"}) ||
		!strings.Contains(rows[2], "it broke badly on two lines") {
		t.Errorf("row of fail: %q", rows[2])
	}
	if !strings.HasPrefix(rows[3], "calc") || !strings.Contains(rows[3], noSuchMethodRow+"  2 ") {
		t.Errorf("row of the unknown methods: %q", rows[3])
	}
}

// ping lists each server of a topic with its round trip.
func TestIntrospectPing(t *testing.T) {
	const ex = "t-intro-ping"
	a := introServer(t, zmqmsg.Target{Exchange: ex, Topic: "calc", Server: "a"}, calcEndpoints)
	b := introServer(t, zmqmsg.Target{Exchange: ex, Topic: "calc", Server: "b"}, calcEndpoints)

	r := mem(t, "--exchange", ex, "--json", "ping", "calc").want(t, 0)
	got := decode[[]pingLine](t, r.stdout)
	if len(got) != 2 {
		t.Fatalf("ping --json: %s", r.stdout)
	}
	for i, srv := range []*zmqmsg.Server{a, b} {
		l := got[i]
		if l.Ping == nil || l.Server != srv.Name() || l.Node != srv.Info().Node || l.Exchange != ex || l.Topic != "calc" ||
			l.RTT <= 0 || l.RTT > float64(testTimeout/time.Millisecond) || l.Version == "" || l.Uptime <= 0 || l.Error != "" {
			t.Errorf("ping --json line %d: %+v", i, l)
		}
	}
	if !strings.Contains(r.stdout, `"rtt_ms":`) || !strings.Contains(r.stdout, `"uptime_ns":`) {
		t.Errorf("ping --json keys: %s", r.stdout)
	}

	r = mem(t, "--exchange", ex, "ping", "calc").want(t, 0)
	rows := tableRows(t, r.stdout)
	if len(rows) != 3 || !slices.Equal(fields(rows[0]), []string{"TOPIC", "SERVER", "NODE", "VERSION", "UPTIME", "RTT"}) {
		t.Fatalf("ping table:\n%s", r.stdout)
	}
	for i, name := range []string{"a", "b"} {
		if f := fields(rows[i+1]); len(f) != 6 || f[0] != "calc" || f[1] != name || !strings.HasSuffix(f[5], "ms") {
			t.Errorf("row of %s: %q", name, rows[i+1])
		}
	}
}

// Without TOPIC, ping, info and stats ask the servers of every topic of the
// exchange, and of that exchange only.
func TestIntrospectEveryTopic(t *testing.T) {
	const ex = "t-intro-all"
	introServer(t, zmqmsg.Target{Exchange: ex, Topic: "alpha", Server: "a1"}, calcEndpoints)
	introServer(t, zmqmsg.Target{Exchange: ex, Topic: "beta", Server: "b1"}, calcEndpoints)
	introServer(t, zmqmsg.Target{Exchange: ex, Topic: "beta", Server: "b2"}, calcEndpoints)
	introServer(t, zmqmsg.Target{Exchange: ex + "-other", Topic: "alpha", Server: "x"}, calcEndpoints)
	mem(t, "--exchange", ex, "call", "--server", "b2", "beta", "add", "[1]").want(t, 0)

	want := []string{"alpha/a1", "beta/b1", "beta/b2"}
	names := func(topic, server string) string { return topic + "/" + server }
	var seen []string
	for _, l := range decode[[]infoLine](t, mem(t, "--exchange", ex, "--json", "info").want(t, 0).stdout) {
		seen = append(seen, names(l.Topic, l.Server))
	}
	if !slices.Equal(seen, want) {
		t.Errorf("info: %v, want %v", seen, want)
	}
	seen = nil
	for _, l := range decode[[]pingLine](t, mem(t, "--exchange", ex, "--json", "ping").want(t, 0).stdout) {
		if l.Ping == nil || l.RTT <= 0 {
			t.Errorf("ping: %+v", l)
		}
		seen = append(seen, names(l.Topic, l.Server))
	}
	if !slices.Equal(seen, want) {
		t.Errorf("ping: %v, want %v", seen, want)
	}
	seen = nil
	for _, l := range decode[[]statsLine](t, mem(t, "--exchange", ex, "--json", "stats").want(t, 0).stdout) {
		if l.ServerStats == nil || len(l.Methods) != 2 {
			t.Fatalf("stats: %+v", l)
		}
		if want := uint64(0); l.Server == "b2" {
			want = 1
			if l.Methods[0].Requests != want {
				t.Errorf("stats of b2: %+v, want 1 request of add", l.Methods)
			}
		} else if l.Methods[0].Requests != want {
			t.Errorf("stats of %s: %+v, want none", l.Server, l.Methods)
		}
		seen = append(seen, names(l.Topic, l.Server))
	}
	if !slices.Equal(seen, want) {
		t.Errorf("stats: %v, want %v", seen, want)
	}
	// The tables: a line per server (stats: per method of each).
	for cmd, lines := range map[string]int{"info": 3, "ping": 3, "stats": 6} {
		rows := tableRows(t, mem(t, "--exchange", ex, cmd).want(t, 0).stdout)
		if len(rows) != lines+1 || !strings.HasPrefix(rows[1], "alpha ") || !strings.HasPrefix(rows[len(rows)-1], "beta ") {
			t.Errorf("%s table:\n%s", cmd, strings.Join(rows, "\n"))
		}
	}
}

// Nobody to ask is exit 5 (no_servers), nothing on stdout: a topic without
// servers, an exchange without topics.
func TestIntrospectNoServers(t *testing.T) {
	for _, cmd := range []string{"ping", "info", "stats"} {
		r := mem(t, "--timeout", "1s", cmd, "t-intro-nobody").want(t, exitUndelivered)
		if r.stdout != "" || !strings.Contains(r.stderr, "(default)/t-intro-nobody") || !strings.Contains(r.stderr, "no servers") ||
			strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%s, no servers: %q %q", cmd, r.stdout, r.stderr)
		}
		r = mem(t, "--timeout", "1s", "--json", "--exchange", "t-intro-empty", cmd).want(t, exitUndelivered)
		if e := decode[map[string]any](t, r.stderr); r.stdout != "" || e["type"] != "no_servers" || e["exit"] != float64(exitUndelivered) ||
			!strings.Contains(e["error"].(string), "exchange t-intro-empty") {
			t.Errorf("%s, no topics: %q %v", cmd, r.stdout, e)
		}
	}
	// A directory that cannot be read: exit 6.
	mem(t, "info", "--directory", closedRedis(t), "t").want(t, exitDirectory)
}

// A server that does not answer is listed with its error; the others'
// answers are printed all the same; exit 5, and the last line on stderr
// counts those that did not answer.
func TestIntrospectPartial(t *testing.T) {
	const ex = "t-intro-partial"
	a := introServer(t, zmqmsg.Target{Exchange: ex, Topic: "calc", Server: "z"}, calcEndpoints)
	// A server that a's node does not have: the node refuses it. Its name
	// sorts first, its line in a table comes last (after the answers).
	registerBeside(t, directory.Key{Exchange: ex, Topic: "calc"}, "ghost")

	for _, cmd := range []string{"ping", "info", "stats"} {
		for _, args := range [][]string{{cmd, "calc"}, {cmd}} {
			r := mem(t, append([]string{"--exchange", ex}, args...)...).want(t, exitUndelivered)
			rows := tableRows(t, r.stdout)
			if len(rows) < 3 || fields(rows[1])[1] != "z" || strings.Contains(rows[1], "error") ||
				fields(rows[len(rows)-1])[1] != "ghost" || !strings.Contains(rows[len(rows)-1], "error: ") {
				t.Errorf("%v: table:\n%s", args, r.stdout)
			}
			if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "zmqmsg "+cmd+": "+cmd+" ") ||
				!strings.Contains(r.stderr, ": 1 of 2 servers did not answer: ") {
				t.Errorf("%v: stderr %q", args, r.stderr)
			}

			r = mem(t, append([]string{"--exchange", ex, "--json"}, args...)...).want(t, exitUndelivered)
			got := decode[[]map[string]any](t, r.stdout)
			if len(got) != 2 || got[1]["server"] != "z" || got[1]["error"] != nil || got[1]["version"] == nil ||
				got[0]["server"] != "ghost" || got[0]["node"] != a.Info().Node || got[0]["topic"] != "calc" ||
				got[0]["error"] == nil || got[0]["error_type"] != "no_servers" || got[0]["version"] != nil {
				t.Errorf("%v --json: %s", args, r.stdout)
			}
			if e := decode[map[string]any](t, r.stderr); e["type"] != "unreached" || e["exit"] != float64(exitUndelivered) ||
				!strings.Contains(e["error"].(string), "1 of 2 servers did not answer") {
				t.Errorf("%v --json: stderr %v", args, e)
			}
		}
	}
	// Whatever the first silent server's error, a timeout included.
	for _, first := range []error{zmqmsg.ErrTimeout, &zmqmsg.RemoteError{Type: "x", Message: "y"}, zmqmsg.ErrNoServers} {
		err := fmt.Errorf("ping t: %w", &silentError{failed: 1, total: 3, first: first})
		if code, typ := classify(err); code != exitUndelivered || typ != "unreached" {
			t.Errorf("%v: exit %d (%s), want 5 (unreached)", err, code, typ)
		}
	}
}

// The new commands have their help, their line in the overview and in the
// package documentation's usage; and so does every command.
func TestIntrospectHelp(t *testing.T) {
	for _, name := range []string{"ping", "info", "stats"} {
		r := cliRun(t, nil, "", "help", name).want(t, 0)
		if !strings.HasPrefix(r.stdout, "usage: zmqmsg "+name+" [flags] [TOPIC]\n") || !strings.Contains(r.stdout, "--exchange") ||
			!strings.Contains(r.stdout, "zmqmsg."+name) {
			t.Errorf("help %s:\n%s", name, r.stdout)
		}
		if r2 := cliRun(t, nil, "", name, "--help").want(t, 0); r2.stdout != r.stdout {
			t.Errorf("%s --help differs from help %s", name, name)
		}
		cliRun(t, nil, "", name, "a", "b").want(t, exitUsage)
	}
	overview := cliRun(t, nil, "", "help").want(t, 0).stdout
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, _, _ := strings.Cut(string(src), "\npackage main")
	for _, cmd := range commands {
		if cmd.summary == "" || cmd.doc == "" || cmd.run == nil {
			t.Errorf("%s: summary, doc or run missing", cmd.name)
		}
		if !strings.Contains(overview, "\n  "+cmd.name+" ") {
			t.Errorf("the overview lacks %s", cmd.name)
		}
		if !strings.Contains(doc, "//\tzmqmsg "+cmd.name+" ") {
			t.Errorf("the package documentation lacks the usage of %s", cmd.name)
		}
	}
}

// call --monitor: a handler that runs for ten heartbeat intervals answers
// (its heartbeats keep the call alive), and ErrServerLost is exit 5,
// server_lost.
func TestCallMonitor(t *testing.T) {
	const ex = "t-call-monitor"
	tr, err := zmqmsg.New(zmqmsg.Config{Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	release := make(chan struct{})
	srv, err := tr.Serve(zmqmsg.Target{Exchange: ex, Topic: "slow"}, zmqmsg.Endpoints{
		"work": func(ctx context.Context, _ zmqmsg.Args) (any, error) {
			select {
			case <-release:
				return "done", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	done := make(chan result, 1)
	go func() {
		done <- mem(t, "--exchange", ex, "--json", "--timeout", "30s", "call", "--monitor", "10ms", "slow", "work")
	}()
	testutil.WaitFor(t, 20*time.Second, "ten heartbeats", func() bool { return tr.Stats().HeartbeatsSent >= 10 })
	close(release)
	if r := (<-done).want(t, 0); r.stdout != "\"done\"\n" {
		t.Fatalf("monitored call: %q", r.stdout)
	}
	mem(t, "call", "--monitor", "-1s", "slow", "work").want(t, exitUsage)
	if code, typ := classify(fmt.Errorf("call: %w", zmqmsg.ErrServerLost)); code != exitUndelivered || typ != "server_lost" {
		t.Errorf("ErrServerLost: exit %d %s, want 5 server_lost", code, typ)
	}
}
