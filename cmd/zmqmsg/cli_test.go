package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
)

// libServer serves topic with eps from a node started in the test, on the
// process-wide directory that "memory:" opens.
func libServer(t *testing.T, topic string, eps zmqmsg.Endpoints) {
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
	srv, err := tr.Serve(zmqmsg.Target{Topic: topic}, eps)
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
}

// stats returns a bench server's counters, read with `call TOPIC stats`.
func stats(t *testing.T, topic, server string) benchStats {
	t.Helper()
	r := mem(t, "call", topic, "stats", "--server", server, "--json").want(t, 0)
	return decode[benchStats](t, r.stdout)
}

// waitStats reads a bench server's counters until ok accepts them.
func waitStats(t *testing.T, topic, server string, ok func(benchStats) bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		s := stats(t, topic, server)
		if ok(s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters of %s: %+v", server, s)
		}
	}
}

func TestCall(t *testing.T) {
	_, name := benchServer(t, "t-call", "--name", "b1")
	if name != "b1" {
		t.Fatalf("server name %q, want b1", name)
	}
	r := mem(t, "call", "t-call", "echo", `{"a": [1, 2]}`).want(t, 0)
	if want := "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n"; r.stdout != want {
		t.Errorf("indented reply %q, want %q", r.stdout, want)
	}
	r = mem(t, "--json", "call", "t-call", "echo", `{"a": [1, 2]}`).want(t, 0)
	if r.stdout != `{"a":[1,2]}`+"\n" {
		t.Errorf("--json reply %q", r.stdout)
	}
	// Arguments from stdin, flags after the arguments.
	r = cliRun(t, nil, `"from stdin"`, "call", "t-call", "echo", "-", "--directory", "memory:", "--json").want(t, 0)
	if r.stdout != `"from stdin"`+"\n" {
		t.Errorf("stdin reply %q", r.stdout)
	}
	// A negative number needs "--" to end the flags.
	r = mem(t, "--json", "call", "t-call", "echo", "--", "-1").want(t, 0)
	if r.stdout != "-1\n" {
		t.Errorf("reply %q, want -1", r.stdout)
	}
	who := decode[map[string]any](t, mem(t, "call", "--server", "b1", "t-call", "whoami").want(t, 0).stdout)
	if who["server"] != "b1" || who["pid"] == nil || who["host"] == nil {
		t.Errorf("whoami: %v", who)
	}
	if s := stats(t, "t-call", "b1"); s.Calls != 5 {
		t.Errorf("calls counted %d, want 5", s.Calls)
	}
}

func TestCastFanoutDirect(t *testing.T) {
	_, a := benchServer(t, "t-cast", "--name", "a")
	_, b := benchServer(t, "t-cast", "--name", "b", "--pool", "other")

	r := mem(t, "cast", "t-cast", "sink", `{"x":1}`, "--server", "a").want(t, 0)
	if r.stdout != "" {
		t.Errorf("cast printed %q", r.stdout)
	}
	r = mem(t, "cast", "t-cast", "sink", "--direct", "--server", "b", "--json").want(t, 0)
	st := decode[map[string]any](t, r.stdout)
	if st["ok"] != true || st["pattern"] != "direct" {
		t.Errorf("status %v", st)
	}
	mem(t, "fanout", "t-cast", "sink", "[1,2,3]").want(t, 0)

	waitStats(t, "t-cast", a, func(s benchStats) bool { return s.Casts == 1 && s.Fanouts == 1 && s.Direct == 0 && s.Sinks == 2 })
	waitStats(t, "t-cast", b, func(s benchStats) bool { return s.Casts == 0 && s.Fanouts == 1 && s.Direct == 1 && s.Sinks == 2 })

	mem(t, "fanout", "t-cast", "sink", "--server", "a").want(t, 2) // no such flag
}

// A fanout's method is checked against the methods its topic's servers
// publish: one that a server lacks is refused, nothing sent; servers that
// publish none are not checked.
func TestFanoutMethods(t *testing.T) {
	_, a := benchServer(t, "t-fan-m", "--name", "a")
	// An older node's server on a's node: no methods published.
	registerBeside(t, directory.Key{Topic: "t-fan-m"}, "old")

	mem(t, "fanout", "t-fan-m", "sink").want(t, 0)
	r := mem(t, "fanout", "t-fan-m", "nope").want(t, exitRemote)
	want := `fanout t-fan-m nope: no such method: a server of (default)/t-fan-m does not offer "nope" (nothing sent): a (offered: "echo", "sink", "stats", "whoami")`
	if strings.TrimSpace(r.stderr) != "zmqmsg fanout: "+want {
		t.Errorf("stderr %q, want %q", r.stderr, want)
	}
	r = mem(t, "--json", "fanout", "t-fan-m", "nope").want(t, exitRemote)
	e := decode[struct {
		Error, Type, Method string
		Exit                int
		Lacking             []lackingServer
		Total               int `json:"lacking_total"`
	}](t, r.stderr)
	if e.Type != "no_such_method" || e.Exit != exitRemote || e.Method != "nope" || e.Total != 1 || len(e.Lacking) != 1 ||
		e.Lacking[0].Server != a || !slices.Equal(e.Lacking[0].Offered, []string{"echo", "sink", "stats", "whoami"}) {
		t.Errorf("JSON error %+v", e)
	}
	// Nothing sent: a's lane runs fanouts in order, and has run two, both
	// sinks, once the second sink is in.
	mem(t, "fanout", "t-fan-m", "sink").want(t, 0)
	waitStats(t, "t-fan-m", a, func(s benchStats) bool { return s.Sinks == 2 })
	if s := stats(t, "t-fan-m", a); s.Fanouts != 2 {
		t.Errorf("fanouts run %d, want 2: %+v", s.Fanouts, s)
	}
	// call and cast are not checked: the server answers them.
	mem(t, "call", "t-fan-m", "nope").want(t, exitRemote)
}

func TestNoSuchMethodBounds(t *testing.T) {
	e := &noSuchMethodError{key: directory.Key{Topic: "t"}, method: "m"}
	for i := range 7 {
		var ms []string
		for j := range 12 {
			ms = append(ms, fmt.Sprintf("m%02d", j))
		}
		e.lacking = append(e.lacking, directory.Entry{Registration: directory.Registration{Server: fmt.Sprintf("s%d", i), Methods: ms}})
	}
	msg := e.Error()
	if !strings.HasPrefix(msg, `no such method: 7 servers of (default)/t do not offer "m" (nothing sent): s0 (offered: "m00", `) ||
		!strings.Contains(msg, `"m09", … 2 more), s1 (`) || strings.Contains(msg, "s5") || !strings.HasSuffix(msg, " and 2 more") {
		t.Errorf("message %q", msg)
	}
	if n := e.named(); len(n) != maxLackingNamed || len(n[0].Offered) != maxOfferedNamed || n[0].More != 2 {
		t.Errorf("named %+v", n)
	}
	if code, typ := classify(fmt.Errorf("fanout: %w", e)); code != exitRemote || typ != "no_such_method" {
		t.Errorf("classify: %d %s", code, typ)
	}
}

func TestNotifyListen(t *testing.T) {
	all := start(t, nil, "listen", "--directory", "memory:", "--pool", "p1", "--count", "2", "t-notify")
	if l := all.stderr.next(t); !strings.Contains(l, "listening") {
		t.Fatalf("stderr %q", l)
	}
	errs := start(t, nil, "listen", "--directory", "memory:", "--pool", "p2", "--priority", "error,critical", "--count", "1", "t-notify", "t-other")
	if l := errs.stderr.next(t); !strings.Contains(l, "listening") {
		t.Fatalf("stderr %q", l)
	}
	mem(t, "notify", "t-notify", "compute.start", `{"vcpus":4}`, "--publisher", "test-pub").want(t, 0)
	r := mem(t, "--json", "notify", "--priority", "error", "t-notify", "compute.fail", `"boom"`).want(t, 0)
	if st := decode[map[string]any](t, r.stdout); st["ok"] != true || st["pattern"] != "notify" || st["event_type"] != "compute.fail" {
		t.Errorf("status %v", st)
	}
	if code := all.wait(t); code != 0 {
		t.Fatalf("listen exit %d: %s", code, all.stderr.String())
	}
	if code := errs.wait(t); code != 0 {
		t.Fatalf("listen exit %d: %s", code, errs.stderr.String())
	}

	first := decode[notificationLine](t, all.stdout.next(t))
	if first.Topic != "t-notify" || first.Priority != "info" || first.Publisher != "test-pub" || first.EventType != "compute.start" ||
		string(first.Payload) != `{"vcpus":4}` || first.MessageID == "" || time.Since(first.Timestamp) > time.Minute {
		t.Errorf("first notification %+v", first)
	}
	second := decode[notificationLine](t, all.stdout.next(t))
	if second.Priority != "error" || second.EventType != "compute.fail" || string(second.Payload) != `"boom"` ||
		!strings.HasPrefix(second.Publisher, "zmqmsg-cli@") {
		t.Errorf("second notification %+v", second)
	}
	onlyErr := decode[notificationLine](t, errs.stdout.next(t))
	if onlyErr.MessageID != second.MessageID || onlyErr.Priority != "error" {
		t.Errorf("pool p2 got %+v, want the error one (%s)", onlyErr, second.MessageID)
	}
	if strings.Count(all.stdout.String(), "\n") != 2 || strings.Count(errs.stdout.String(), "\n") != 1 {
		t.Errorf("extra output: %q, %q", all.stdout.String(), errs.stdout.String())
	}
}

func TestServers(t *testing.T) {
	_, name := benchServer(t, "t-servers", "--name", "s1", "--pool", "pl")
	type line struct {
		Exchange, Topic, Server, Node string
		Endpoints                     map[string]string
		Expires                       time.Time
		ExpiresIn                     float64  `json:"expires_in_s"`
		Methods                       []string `json:"methods"`
	}
	out := mem(t, "--json", "servers", "t-servers").want(t, 0).stdout
	got := decode[[]line](t, out)
	if len(got) != 2 {
		t.Fatalf("servers: %+v, want the server and its listener", got)
	}
	srv, lis := got[0], got[1]
	if srv.Exchange != "" || srv.Topic != "t-servers" || srv.Server != name || srv.ExpiresIn <= 0 || srv.ExpiresIn > 31 ||
		len(srv.Endpoints) != 4 || !strings.HasPrefix(srv.Endpoints["call"], "tcp://127.0.0.1:") ||
		!slices.Equal(srv.Methods, []string{"echo", "sink", "stats", "whoami"}) {
		t.Errorf("server entry %+v", srv)
	}
	// A listener publishes no methods: null, not [].
	if lis.Exchange != "zmqmsg.notify" || !strings.HasPrefix(lis.Server, "pl/") || lis.Methods != nil ||
		!strings.Contains(out, `"methods":null`) {
		t.Errorf("listener entry %+v in %s", lis, out)
	}
	// --exchange filters when given; TOPIC filters.
	if got := decode[[]line](t, mem(t, "--json", "--exchange", "", "servers", "t-servers").want(t, 0).stdout); len(got) != 1 {
		t.Errorf("--exchange '': %+v", got)
	}
	if got := decode[[]line](t, mem(t, "--json", "servers", "t-nothing").want(t, 0).stdout); len(got) != 0 {
		t.Errorf("unknown topic: %+v", got)
	}

	r := mem(t, "servers", "t-servers").want(t, 0)
	rows := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(rows) != 3 || !strings.HasPrefix(rows[0], "EXCHANGE") || !strings.HasSuffix(rows[0], "METHODS") ||
		!strings.Contains(rows[1], "(default)") || !strings.Contains(rows[1], "s1") || !strings.HasSuffix(rows[1], " echo,sink,stats,whoami") ||
		!strings.Contains(rows[2], "zmqmsg.notify") || !strings.HasSuffix(rows[2], " -") {
		t.Errorf("table:\n%s", r.stdout)
	}
}

func TestMethodsCell(t *testing.T) {
	many := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"}
	for _, tc := range []struct {
		methods []string
		width   int
		want    string
	}{
		{nil, 20, "-"},
		{[]string{}, 20, ""},
		{[]string{"a", "b"}, 20, "a,b"},
		{many, 100, strings.Join(many, ",")},
		{many, 30, "alpha,bravo,charlie,delta,…+5"},
		{many, 29, "alpha,bravo,charlie,delta,…+5"},
		{many, 28, "alpha,bravo,charlie,…+6"},
		{[]string{"averyveryverylongmethodname", "b"}, 10, "…+2"},
	} {
		got := methodsCell(tc.methods, tc.width)
		if got != tc.want || utf8.RuneCountInString(got) > tc.width {
			t.Errorf("methodsCell(%q, %d) = %q, want %q", tc.methods, tc.width, got, tc.want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		msg  string
	}{
		{nil, nil, "usage: zmqmsg COMMAND"},
		{[]string{"frobnicate"}, nil, `unknown command "frobnicate"`},
		{[]string{"bench"}, nil, "bench needs a subcommand"},
		{[]string{"bench", "frob"}, nil, `"frob" is not a subcommand of bench: want bench server or bench client`},
		{[]string{"bench", "foo", "--topic", "x"}, nil, `"foo" is not a subcommand of bench`},
		{[]string{"--json", "bench", "foo"}, nil, `"foo" is not a subcommand of bench`},
		{[]string{"call", "t"}, nil, "missing arguments"},
		{[]string{"call", "t", "m", "{}", "extra"}, nil, "too many arguments"},
		{[]string{"call", "--directory", "memory:", "t", "m", "{bad"}, nil, "invalid JSON argument"},
		{[]string{"cast", "--directory", "memory:", "t", "m", "-"}, nil, "invalid JSON stdin"},
		{[]string{"call", "--bogus", "t", "m"}, nil, "flag provided but not defined: -bogus"},
		{[]string{"notify", "--directory", "memory:", "--priority", "loud", "t", "e"}, nil, `bad priority "loud"`},
		{[]string{"listen", "--directory", "memory:", "--priority", "info,loud", "t"}, nil, `bad priority "loud"`},
		{[]string{"bench", "client", "--duration", "soon"}, nil, `invalid value "soon" for flag -duration`},
		{[]string{"bench", "client", "--directory", "memory:", "--duration", "-1s"}, nil, "--duration -1s"},
		{[]string{"bench", "client", "--directory", "memory:", "--pattern", "carrier-pigeon"}, nil, "bad --pattern"},
		{[]string{"call", "--timeout", "0s", "t", "m"}, nil, "--timeout 0s"},
		{[]string{"call", "--log-level", "loud", "t", "m"}, nil, "--log-level"},
		{[]string{"call", "t", "m"}, map[string]string{"ZMQMSG_TIMEOUT": "later"}, `invalid value "later" for ZMQMSG_TIMEOUT`},
	} {
		r := cliRun(t, tc.env, "not json", tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.msg) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 && tc.args != nil {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q on one line", tc.args, r.code, r.stderr, tc.msg)
		}
	}
	// With --json, the error is JSON.
	r := cliRun(t, nil, "", "call", "--json", "--directory", "memory:", "t", "m", "{bad").want(t, exitUsage)
	if e := decode[map[string]any](t, r.stderr); e["type"] != "usage" || e["exit"] != float64(2) || e["error"] == "" {
		t.Errorf("JSON error %v", e)
	}
}

func TestHelp(t *testing.T) {
	r := cliRun(t, nil, "", "help").want(t, 0)
	for _, want := range []string{"bench client", "ZMQMSG_DIRECTORY", "exit codes"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	r = cliRun(t, nil, "", "bench", "client", "--help").want(t, 0)
	for _, want := range []string{"--pattern pattern", "ZMQMSG_CONCURRENCY", "(default 16)", "--timeout"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("bench client --help lacks %q:\n%s", want, r.stdout)
		}
	}
	r = cliRun(t, nil, "", "help", "listen").want(t, 0)
	if !strings.Contains(r.stdout, "--pool NAME") {
		t.Errorf("help listen:\n%s", r.stdout)
	}
	cliRun(t, nil, "", "help", "nope").want(t, exitUsage)
}

func TestErrors(t *testing.T) {
	libServer(t, "t-errors", zmqmsg.Endpoints{
		"wait": func(ctx context.Context, _ zmqmsg.Args) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
		"fail": func(context.Context, zmqmsg.Args) (any, error) {
			return nil, errors.New("it broke")
		},
	})
	// Whichever comes first, the caller's timer or the handler's error at
	// the same deadline, it is a timeout.
	for range 3 {
		r := mem(t, "call", "--timeout", "300ms", "t-errors", "wait").want(t, exitTimeout)
		if !strings.Contains(r.stderr, "timed out") && !strings.Contains(r.stderr, "deadline exceeded") || r.stdout != "" {
			t.Errorf("timeout: %q %q", r.stdout, r.stderr)
		}
	}
	if code, kind := classify(&zmqmsg.RemoteError{Type: remoteDeadlineType, Message: "context deadline exceeded"}); code != exitTimeout || kind != "timeout" {
		t.Errorf("a handler's deadline error: exit %d (%s), want 3", code, kind)
	}
	r := mem(t, "call", "--json", "t-errors", "fail").want(t, exitRemote)
	if e := decode[map[string]any](t, r.stderr); e["type"] != "remote" || e["remote_message"] != "it broke" {
		t.Errorf("remote error: %v", e)
	}
	r = mem(t, "call", "t-errors", "nope").want(t, exitRemote)
	if !strings.Contains(r.stderr, "NoSuchMethod") {
		t.Errorf("unknown method: %q", r.stderr)
	}
	t0 := time.Now()
	r = mem(t, "call", "--timeout", "1s", "t-nobody", "m").want(t, exitUndelivered)
	if !strings.Contains(r.stderr, "no servers") || time.Since(t0) > 5*time.Second {
		t.Errorf("no servers: %q after %v", r.stderr, time.Since(t0))
	}
	mem(t, "cast", "--timeout", "1s", "t-nobody", "m").want(t, exitUndelivered)
	mem(t, "bench", "client", "--timeout", "1s", "--topic", "t-nobody").want(t, exitUndelivered)
	// A notification nobody listens to is not delivered: it is unheard.
	r = mem(t, "notify", "t-nobody", "e").want(t, exitUndelivered)
	if !strings.Contains(r.stderr, "nobody listens to t-nobody") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("unheard: %q", r.stderr)
	}
	r = mem(t, "--json", "notify", "t-nobody", "e").want(t, exitUndelivered)
	if e := decode[map[string]any](t, r.stderr); e["type"] != "unheard" || e["unheard"] != true || e["exit"] != float64(exitUndelivered) {
		t.Errorf("unheard, --json: %v", e)
	}
	// A directory URL the CLI cannot parse is bad input.
	if r := mem(t, "call", "--directory", "nope://", "t", "m").want(t, exitUsage); !strings.Contains(r.stderr, "open directory") {
		t.Errorf("bad URL: %q", r.stderr)
	}
}

func TestEnv(t *testing.T) {
	benchServer(t, "t-env")
	// The environment sets the directory and --json...
	r := cliRun(t, map[string]string{"ZMQMSG_DIRECTORY": "memory:", "ZMQMSG_JSON": "true"}, "", "call", "t-env", "echo", `{ "k" : 1 }`).want(t, 0)
	if r.stdout != `{"k":1}`+"\n" {
		t.Errorf("env --json: %q", r.stdout)
	}
	// ...and the command line beats it.
	env := map[string]string{"ZMQMSG_DIRECTORY": "nope://", "ZMQMSG_TIMEOUT": "1ns", "ZMQMSG_JSON": "true"}
	r = cliRun(t, env, "", "call", "--directory", "memory:", "--timeout", "10s", "--json=false", "t-env", "echo", `{"k":1}`).want(t, 0)
	if r.stdout != "{\n  \"k\": 1\n}\n" {
		t.Errorf("flags over env: %q", r.stdout)
	}
	// An environment variable of a command's own flag.
	r = cliRun(t, map[string]string{"ZMQMSG_DIRECTORY": "memory:", "ZMQMSG_PRIORITY": "loud"}, "", "notify", "t-env", "e").want(t, exitUsage)
	if !strings.Contains(r.stderr, "loud") {
		t.Errorf("ZMQMSG_PRIORITY: %q", r.stderr)
	}
}

func TestBenchClient(t *testing.T) {
	srvA, a := benchServer(t, "t-bench", "--name", "a", "--pool", "pa")
	_, b := benchServer(t, "t-bench", "--name", "b", "--pool", "pb")
	const count = 200
	for _, tc := range []struct {
		pattern string
		mult    int64 // copies expected per message: servers for fanout, pools for notify
	}{{"call", 1}, {"cast", 1}, {"direct", 1}, {"fanout", 2}, {"notify", 2}} {
		t.Run(tc.pattern, func(t *testing.T) {
			r := mem(t, "bench", "client", "--json", "--topic", "t-bench", "--pattern", tc.pattern,
				"--concurrency", "4", "--duration", "10s", "--count", "200", "--size", "100").want(t, 0)
			res := decode[benchResult](t, r.stdout)
			if res.Pattern != tc.pattern || res.Servers != 2 || res.Sent != count || res.OK != count || res.Errors != 0 ||
				res.Expected != count*tc.mult || res.Received != res.Expected || res.Lost == nil || *res.Lost != 0 || res.Extra != 0 || res.Dropped != 0 {
				t.Errorf("counts: %+v", res)
			}
			// Embedded nodes: the servers are the only hops (their nodes'
			// own counters are theirs), and nothing is unexplained.
			if len(res.DroppedAt) != 2 || res.DroppedAt["server a"] == nil || res.DroppedAt["server b"] == nil ||
				res.Unexplained == nil || *res.Unexplained != 0 {
				t.Errorf("dropped at %v, unexplained %v", res.DroppedAt, res.Unexplained)
			}
			lat := res.Latency
			if res.Rate <= 0 || lat.P50 <= 0 || lat.P50 > lat.P90 || lat.P90 > lat.P99 || lat.P99 > lat.Max || lat.Max > 10000 {
				t.Errorf("rate %v, latency %+v", res.Rate, lat)
			}
		})
	}
	// --rate paces the senders: in 1 s at 50/s, 2 goroutines send at most
	// 50 plus the one each sends at once.
	paced := decode[benchResult](t, mem(t, "bench", "client", "--json", "--topic", "t-bench", "--pattern", "call",
		"--concurrency", "2", "--duration", "1s", "--rate", "50").want(t, 0).stdout)
	if paced.Sent == 0 || paced.Sent > 52 || paced.Lost == nil || *paced.Lost != 0 {
		t.Errorf("--rate 50 for 1s: %+v", paced)
	}
	// The table; and --duration bounds a run without --count.
	r := mem(t, "bench", "client", "--topic", "t-bench", "--pattern", "call", "--concurrency", "2", "--duration", "300ms").want(t, 0)
	rows := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(rows) != 3 || !strings.HasPrefix(rows[0], "bench call: (default)/t-bench, 2 servers") || !strings.Contains(rows[1], "p99 ms") {
		t.Errorf("table:\n%s", r.stdout)
	}
	// The bench server's final counters on stop.
	if code := srvA.stop(t); code != 0 {
		t.Fatalf("bench server exit %d", code)
	}
	final := decode[struct {
		Stopped bool
		Stats   benchStats
	}](t, srvA.stdout.next(t))
	if s := final.Stats; !final.Stopped || s.Server != a || s.Pool != "pa" || s.Casts < 100 || s.Fanouts != count || s.Notifications != count {
		t.Errorf("final counters of %s: %+v", a, final)
	}
	if s := stats(t, "t-bench", b); s.Calls+s.Casts+s.Direct < count || s.Fanouts != count || s.Notifications != count {
		t.Errorf("counters of %s: %+v", b, s)
	}
}

func TestProxyDir(t *testing.T) {
	ipc := t.TempDir()
	p, err := zmqmsg.StartProxy(zmqmsg.ProxyConfig{Dir: ipc, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	// The bench server and the listener join the daemon (one by flag, one
	// by environment) and are reached through its ports.
	benchServer(t, "t-proxy", "--name", "px", "--proxy-dir", ipc)
	l := start(t, map[string]string{"ZMQMSG_PROXY_DIR": ipc}, "listen", "--directory", "memory:", "--count", "1", "t-proxy-n")
	if s := l.stderr.next(t); !strings.Contains(s, "listening") {
		t.Fatalf("stderr %q", s)
	}
	r := mem(t, "--json", "call", "t-proxy", "whoami").want(t, 0)
	if who := decode[map[string]any](t, r.stdout); who["node"] != p.Node().CallEndpoint() {
		t.Errorf("whoami %v: want the daemon's node %s", who, p.Node().CallEndpoint())
	}
	mem(t, "notify", "t-proxy-n", "e", "1").want(t, 0)
	if code := l.wait(t); code != 0 {
		t.Fatalf("listen exit %d", code)
	}
	if n := decode[notificationLine](t, l.stdout.next(t)); n.EventType != "e" {
		t.Errorf("notification %+v", n)
	}
	for _, e := range decode[[]serverLine](t, mem(t, "--json", "servers", "t-proxy").want(t, 0).stdout) {
		if e.Node != p.Node().ID() {
			t.Errorf("%+v: want the daemon's node %s", e, p.Node().ID())
		}
	}
	// No daemon in the directory: an error, not a hang.
	r = mem(t, "bench", "server", "--proxy-dir", t.TempDir(), "--topic", "t-proxy")
	if r.code != exitError || !strings.Contains(r.stderr, "proxy") {
		t.Errorf("no daemon: exit %d, %q", r.code, r.stderr)
	}
}

// keygen makes key files; a bench server with --curve-key serves only
// callers whose key it allows, and the CLI tells a refused key (exit 5,
// not delivered) and a missing key (usage of the security flags) apart
// from a timeout.
func TestCurve(t *testing.T) {
	dir := t.TempDir()
	srvKey, cliKey, otherKey := dir+"/server.key", dir+"/client.key", dir+"/other.key"
	var cliPub string
	for _, f := range []string{srvKey, cliKey, otherKey} {
		r := mem(t, "keygen", f, "--json").want(t, 0)
		out := decode[map[string]string](t, r.stdout)
		if len(out["public_key"]) != 40 {
			t.Fatalf("keygen: %q", r.stdout)
		}
		if f == cliKey {
			cliPub = out["public_key"]
		}
	}
	mem(t, "keygen", srvKey).want(t, 1) // never overwrites
	allow := dir + "/allowed"
	if err := os.WriteFile(allow, []byte(cliPub+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	benchServer(t, "secure", "--curve-key", srvKey, "--curve-allow", allow)
	mem(t, "call", "secure", "stats", "--curve-key", cliKey).want(t, 0)
	r := mem(t, "call", "secure", "stats", "--curve-key", otherKey).want(t, 5)
	if !strings.Contains(r.stderr, "refused") {
		t.Fatalf("refused key: stderr %q", r.stderr)
	}
	r = mem(t, "call", "secure", "stats").want(t, 5)
	if !strings.Contains(r.stderr, "requires CURVE") || !strings.Contains(r.stderr, "needs --curve-key") {
		t.Fatalf("no key: stderr %q", r.stderr)
	}
	if err := os.Chmod(cliKey, 0o644); err != nil {
		t.Fatal(err)
	}
	mem(t, "call", "secure", "stats", "--curve-key", cliKey).want(t, 2)
}

func TestCallAll(t *testing.T) {
	benchServer(t, "t-all", "--name", "b1")
	benchServer(t, "t-all", "--name", "b2")
	r := mem(t, "--json", "call", "--all", "t-all", "echo", `{"n": 7}`).want(t, 0)
	lines := jsonLines(t, r.stdout)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want one per server:\n%s", len(lines), r.stdout)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		reply, _ := l["reply"].(map[string]any)
		if reply["n"] != float64(7) || l["node"] == "" || l["elapsed_ms"] == nil {
			t.Errorf("line %v: want the echoed reply, the node and the time", l)
		}
		seen[l["server"].(string)] = true
	}
	if !seen["b1"] || !seen["b2"] {
		t.Errorf("servers %v, want b1 and b2", seen)
	}
	r = mem(t, "call", "--all", "--stall", "2s", "t-all", "echo", `7`).want(t, 0)
	if got := strings.Count(r.stdout, "\n"); got != 2 || !strings.Contains(r.stdout, "b1") || !strings.Contains(r.stdout, "b2") {
		t.Errorf("text output, want a line per server:\n%s", r.stdout)
	}
	mem(t, "call", "--stall", "1s", "t-all", "echo").want(t, 2)
	mem(t, "call", "--all", "--server", "b1", "t-all", "echo").want(t, 2)
}

// registerBeside registers, in the process-wide "memory:" directory, a
// server named name on the node of key's only server, with no methods
// published, as an older node would; the test's cleanup removes it.
func registerBeside(t *testing.T, key directory.Key, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	es, err := directory.Shared().Lookup(ctx, key)
	if err != nil || len(es) != 1 {
		t.Fatalf("lookup: %v %+v", err, es)
	}
	reg := directory.Registration{Key: key, Server: name, Node: es[0].Node}
	if err := directory.Shared().Register(ctx, reg, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = directory.Shared().Deregister(context.Background(), reg) })
}
