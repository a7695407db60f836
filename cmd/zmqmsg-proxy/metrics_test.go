package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// opsAddr returns the addr of the log line msg ("metrics serving").
func opsAddr(t *testing.T, logs, msg string) string {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		var e struct{ Msg, Addr string }
		if json.Unmarshal([]byte(l), &e) == nil && e.Msg == msg {
			return e.Addr
		}
	}
	t.Fatalf("no %q line in the logs:\n%s", msg, logs)
	return ""
}

// --metrics-addr serves the daemon's counters in the Prometheus text
// format; --pprof-addr the profiles, on their own listener only.
func TestDaemonMetricsAndPprof(t *testing.T) {
	stop, _, wait, stderr := start(t, []string{"--log-format", "json", "--metrics-addr", "127.0.0.1:0", "--pprof-addr", "127.0.0.1:0"}, noEnv)
	maddr, paddr := opsAddr(t, stderr.String(), "metrics serving"), opsAddr(t, stderr.String(), "pprof serving")
	code, body := testutil.Get(t, "http://"+maddr+"/metrics")
	for _, want := range []string{"# TYPE zmqmsg_daemon_relayed_total counter\nzmqmsg_daemon_relayed_total 0\n", "# TYPE zmqmsg_daemon_members gauge\n", "zmqmsg_daemon_draining 0\n"} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("/metrics: %d, lacks %q:\n%s", code, want, body)
		}
	}
	if code, _ := testutil.Get(t, "http://"+paddr+"/debug/pprof/"); code != http.StatusOK {
		t.Errorf("/debug/pprof/: %d", code)
	}
	if code, _ := testutil.Get(t, "http://"+maddr+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("pprof on the metrics listener: %d, want 404", code)
	}
	stop()
	if c := wait(); c != 0 {
		t.Fatalf("exit %d: %s", c, stderr.String())
	}
}

// A taken --metrics-addr stops the daemon before it serves anything.
func TestDaemonMetricsAddrTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var stderr bytes.Buffer
	args := []string{"--call-port", "0", "--fanout-port", "0", "--notify-port", "0", "--cast-port", "0",
		"--ipc-dir", filepath.Join(t.TempDir(), "ipc"), "--metrics-addr", l.Addr().String()}
	if code := run(context.Background(), args, noEnv, &bytes.Buffer{}, &stderr, nil); code != 1 ||
		!strings.Contains(stderr.String(), "--metrics-addr") || strings.Contains(stderr.String(), "node proxy serving") {
		t.Fatalf("exit %d, stderr %q: want 1, naming --metrics-addr, before serving", code, stderr.String())
	}
}
