// Package cmdmetrics tests, with real processes, what the root module
// cannot (it depends on neither): the commands' --metrics-addr endpoints
// with Prometheus's own parser and linter, and a trace across a node proxy
// daemon and a service process.
package cmdmetrics

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/internal/redistest"
	"github.com/zmqmsg/zmqmsg/observe/zmqotel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// build compiles the two commands.
func build(t *testing.T) (cli, daemon string) {
	t.Helper()
	dir := t.TempDir()
	cli, daemon = filepath.Join(dir, "zmqmsg"), filepath.Join(dir, "zmqmsg-proxy")
	for out, pkg := range map[string]string{cli: "github.com/zmqmsg/zmqmsg/cmd/zmqmsg", daemon: "github.com/zmqmsg/zmqmsg/cmd/zmqmsg-proxy"} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return cli, daemon
}

// spawn starts bin and returns the first line of its output (stdout, or
// stderr when onStderr) that contains want; watching stderr, it also
// returns stdout, for the caller to read (the process may block on it
// otherwise); watching stdout, stderr is discarded. The process is killed
// at the end of the test.
func spawn(t *testing.T, bin string, onStderr bool, want string, args ...string) (string, io.Reader) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	pipe, other := stdout, io.Reader(nil)
	if onStderr {
		if pipe, err = cmd.StderrPipe(); err != nil {
			t.Fatal(err)
		}
		other = stdout
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(pipe)
		found := false
		for s.Scan() {
			if !found && strings.Contains(s.Text(), want) {
				found = true
				lines <- s.Text()
			}
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("%s exited before printing %q", bin, want)
		}
		return l, other
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not print %q within 30s", bin, want)
	}
	return "", nil
}

// scrape GETs url, lints the text with promlint and parses it with expfmt.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	list := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		list = append(list, f)
	}
	problems, err := promlint.NewWithMetricFamilies(list).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s: %s", url, p.Metric, p.Text)
	}
	return fams
}

func sample(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
				continue next
			}
		}
		if f.GetType() == dto.MetricType_COUNTER {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

// A bench server behind a node proxy daemon, both with --metrics-addr:
// after N calls, the member's scrape counts N echo requests and the
// daemon's N relayed requests; both pass Prometheus's parser and linter.
func TestCommandsServeMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes; skipped with -short")
	}
	cli, daemon := build(t)
	rds := redistest.Start(t)
	ipc := filepath.Join(t.TempDir(), "zmqmsg")
	line, _ := spawn(t, daemon, true, "metrics serving", "--host", "127.0.0.1", "--ipc-dir", ipc, "--log-format", "json",
		"--call-port", "0", "--fanout-port", "0", "--notify-port", "0", "--cast-port", "0", "--metrics-addr", "127.0.0.1:0")
	var dlog struct{ Addr string }
	if err := json.Unmarshal([]byte(line), &dlog); err != nil || dlog.Addr == "" {
		t.Fatalf("daemon log %q: %v", line, err)
	}
	line, _ = spawn(t, cli, false, `"ready":true`, "--directory", rds.URL(), "bench", "server", "--topic", "m", "--name", "m1",
		"--proxy-dir", ipc, "--metrics-addr", "127.0.0.1:0")
	var ready struct{ Metrics string }
	if err := json.Unmarshal([]byte(line), &ready); err != nil || ready.Metrics == "" {
		t.Fatalf("ready line %q: %v", line, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, err := directory.Open(ctx, rds.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	tr, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	const n = 9
	for range n {
		if err := tr.Client(zmqmsg.Target{Topic: "m"}).Call(ctx, "echo", []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	member := scrape(t, "http://"+ready.Metrics+"/metrics")
	if got := sample(t, member, "zmqmsg_server_requests_total", map[string]string{"topic": "m", "method": "echo"}); got != n {
		t.Errorf("member: echo requests %v, want %d", got, n)
	}
	if got := sample(t, member, "zmqmsg_pending_calls", nil); got != 0 {
		t.Errorf("member: pending calls %v", got)
	}
	d := scrape(t, "http://"+dlog.Addr+"/metrics")
	if got := sample(t, d, "zmqmsg_daemon_relayed_total", nil); got != n {
		t.Errorf("daemon: relayed %v, want %d", got, n)
	}
	if got := sample(t, d, "zmqmsg_daemon_members", nil); got != 1 {
		t.Errorf("daemon: members %v, want 1", got)
	}
}

// A trace crosses processes: a client span here, the server span in a
// service process behind a node proxy daemon (zmqmsg-proxy), one trace,
// the server's span the child of the client's.
func TestTraceAcrossDaemonAndMemberProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes; skipped with -short")
	}
	_, daemon := build(t)
	member := filepath.Join(t.TempDir(), "tracedserver")
	if b, err := exec.Command("go", "build", "-o", member, "github.com/zmqmsg/zmqmsg/observe/internal/tracedserver").CombinedOutput(); err != nil {
		t.Fatalf("build tracedserver: %v\n%s", err, b)
	}
	rds := redistest.Start(t)
	ipc := filepath.Join(t.TempDir(), "zmqmsg")
	spawn(t, daemon, true, "node proxy serving", "--host", "127.0.0.1", "--ipc-dir", ipc,
		"--call-port", "0", "--fanout-port", "0", "--notify-port", "0", "--cast-port", "0")
	_, spans := spawn(t, member, true, "serving", "--directory", rds.URL(), "--proxy-dir", ipc, "--topic", "traced")
	serverSpan := make(chan map[string]any, 1)
	go func() {
		dec := json.NewDecoder(spans)
		for {
			var s map[string]any
			if dec.Decode(&s) != nil {
				close(serverSpan)
				return
			}
			serverSpan <- s
		}
	}()

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, err := directory.Open(ctx, rds.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	tr, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}},
		zmqmsg.WithClientInterceptors(zmqotel.ClientInterceptor(zmqotel.WithTracerProvider(tp))))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Client(zmqmsg.Target{Topic: "traced"}).Call(ctx, "echo", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	client := rec.Ended()
	if len(client) != 1 {
		t.Fatalf("%d client spans", len(client))
	}
	var s map[string]any
	select {
	case s = <-serverSpan:
	case <-time.After(10 * time.Second):
		t.Fatal("no span from the service process")
	}
	sc, _ := s["SpanContext"].(map[string]any)
	parent, _ := s["Parent"].(map[string]any)
	if sc["TraceID"] != client[0].SpanContext().TraceID().String() || parent["SpanID"] != client[0].SpanContext().SpanID().String() ||
		parent["Remote"] != true || s["Name"] != "traced/echo" {
		t.Fatalf("server span %v: want trace %s, parent %s (remote)", s, client[0].SpanContext().TraceID(), client[0].SpanContext().SpanID())
	}
}
